"""``infertap drift baseline --generative`` and ``drift run`` on captured generative records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from infertap.drift import baseline as baseline_file
from infertap.drift import generative
from infertap.logger import record
from infertap.logger.cli import main
from tests.unit.drift import capture
from tests.unit.drift.test_generative import _evidently_mmd, calls

HOUR = 3_600_000_000


def _capture(
    root: Path, name: str, *, completion: float, t0_us: int, seed: int, vectors: np.ndarray[Any, Any] | None = None
) -> None:
    """80 generative calls (and one other record); with ``vectors`` ``(81, d)``, the FP32 ``output.embedding``."""
    gen = calls(80, completion=completion, ttft=0.05, length_share=0.1, tokens=False, seed=seed)
    tbl = capture.table(np.zeros((gen.num_rows, 1)), t0_us=t0_us)
    for col in gen.column_names:
        tbl = tbl.set_column(tbl.schema.get_field_index(col), col, gen.column(col))
    if vectors is not None:
        n, d = vectors.shape
        shape = pa.array([[1, d]] * n, pa.list_(pa.int64()))
        data = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * d), pa.array(vectors.ravel()))
        column = pa.StructArray.from_arrays([shape, data.cast(pa.list_(pa.float32()))], names=["shape", "data"])
        tbl = tbl.append_column(record.tensor_field("output", "embedding", "FP32"), column)
    capture.write(root, tbl, f"{name}.parquet")


def _iso(k: int) -> str:
    return str(pa.scalar(capture.T0_US + k * HOUR, pa.timestamp("us", tz="UTC")).as_py().isoformat())


def _run(
    root: Path, tmp: Path, capsys: pytest.CaptureFixture[str], hour: int, *extra: str
) -> tuple[int, dict[str, Any]]:
    base = tmp / "base.json"
    code = main(["drift", "baseline", str(root), "--from-capture", "--generative", "--model", "m", "-o", str(base),
                 "--start", _iso(0), "--end", _iso(1)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    report, prom = tmp / "report.html", tmp / "drift.prom"
    code = main(["drift", "run", str(root), "--baseline", str(base), "--start", _iso(hour), "--end", _iso(hour + 1),
                 "--report", str(report), "--metrics-textfile", str(prom), *extra])  # fmt: skip
    out, err = capsys.readouterr()
    assert code != 2, err
    assert report.read_text().count("completion_length") >= 1
    assert 'feature="completion_length"' in prom.read_text()
    return code, json.loads(out)


def test_shorter_completions_drift_in_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cap"
    _capture(root, "ref", completion=40, t0_us=capture.T0_US, seed=1)
    _capture(root, "cur", completion=12, t0_us=capture.T0_US + HOUR, seed=2)
    code, doc = _run(root, tmp_path, capsys, 1, "--drift-share", "0.2")
    feats = {f["name"]: f for f in doc["features"]}
    assert code == 1
    assert set(feats) == {"prompt_length", "completion_length", "ttft_s", "output_tokens_per_s", "finish_reason"}
    assert feats["completion_length"]["drifted"]
    assert feats["completion_length"]["test"] == "ks"
    assert feats["finish_reason"]["test"] == "z"  # Evidently's default for two categories (stop, length)
    assert feats["completion_length"]["n_current"] == 80


def test_same_behaviour_is_no_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cap"
    _capture(root, "ref", completion=40, t0_us=capture.T0_US, seed=1)
    _capture(root, "cur", completion=40, t0_us=capture.T0_US + HOUR, seed=3)
    code, doc = _run(root, tmp_path, capsys, 1)
    assert code == 0
    assert not doc["dataset_drift"]


def test_generative_baseline_needs_a_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("a\n1\n")
    code = main(["drift", "baseline", str(table), "--generative", "--model", "m", "-o", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "infertap drift: error: --generative needs --from-capture"


def test_spark_engine_refuses_a_generative_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cap"
    _capture(root, "ref", completion=40, t0_us=capture.T0_US, seed=1)
    base = tmp_path / "base.json"
    assert (
        main(["drift", "baseline", str(root), "--from-capture", "--generative", "--model", "m", "-o", str(base)]) == 0
    )
    capsys.readouterr()
    code = main(["drift", "run", str(root), "--baseline", str(base), "--engine", "spark"])
    err = capsys.readouterr().err
    assert code == 2
    assert "generative features, which the Spark engine does not read yet" in err


def _vectors(shift: float, seed: int) -> np.ndarray[Any, Any]:
    return (np.random.default_rng(seed).normal(size=(81, 8)) + shift).astype(np.float32)


@pytest.mark.parametrize("shift", [0.0, 0.8])
def test_embeddings_get_the_mmd_test_against_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shift: float
) -> None:
    root = tmp_path / "cap"
    ref, cur = _vectors(0.0, 1), _vectors(shift, 2)
    _capture(root, "ref", completion=40, t0_us=capture.T0_US, seed=1, vectors=ref)
    _capture(root, "cur", completion=40, t0_us=capture.T0_US + HOUR, seed=3, vectors=cur)
    code, doc = _run(root, tmp_path, capsys, 1, "--drift-share", "0.1")
    kept = json.loads((tmp_path / "base.json").read_text())["embeddings"]["output.embedding"]
    assert (kept["n_vectors"], kept["dimensions"], kept["max_vectors"]) == (81, 8, generative.BASELINE_VECTORS)
    emb = {f["name"]: f for f in doc["features"]}["embeddings"]
    assert (emb["column"], emb["test"], emb["kind"]) == ("output.embedding", "mmd", "embedding")
    assert emb["detail"]["citation"].startswith("Gretton")
    assert (emb["n_reference"], emb["n_current"]) == (81, 81)
    assert emb["drifted"] == (shift > 0) == (emb["score"] < emb["threshold"])
    assert (code, doc["dataset_drift"]) == ((1, True) if shift else (0, False))  # it enters the decision
    score, evidently_drifted = _evidently_mmd(ref, cur)  # the same statistic and rule as Evidently's mmd()
    assert emb["statistic"] == pytest.approx(score, rel=1e-6, abs=1e-9)
    assert emb["detail"]["evidently_drifted"] == evidently_drifted == (shift > 0)
    assert 'feature="embeddings"' in (tmp_path / "drift.prom").read_text()
    assert "mmd p=" in (tmp_path / "report.html").read_text()


def test_a_baseline_without_vectors_still_loads_and_says_why_embeddings_are_not_tested(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cap"
    _capture(root, "ref", completion=40, t0_us=capture.T0_US, seed=1, vectors=_vectors(0.0, 1))
    _capture(root, "cur", completion=40, t0_us=capture.T0_US + HOUR, seed=3, vectors=_vectors(0.8, 2))
    base = tmp_path / "old.json"
    assert main(["drift", "baseline", str(root), "--from-capture", "--generative", "--model", "m", "-o", str(base),
                 "--start", _iso(0), "--end", _iso(1)]) == 0  # fmt: skip
    doc = json.loads(base.read_text())
    del doc["embeddings"]  # as written before reference vectors were kept
    doc["id"] = baseline_file._fingerprint(doc)
    base.write_text(json.dumps(doc))
    capsys.readouterr()
    code = main(["drift", "run", str(root), "--baseline", str(base), "--start", _iso(1), "--end", _iso(2)])
    out, err = capsys.readouterr()
    verdict = json.loads(out)
    assert code == 0, err
    assert "embeddings" not in {f["name"] for f in verdict["features"]}
    [skip] = verdict["skipped"]
    assert (skip["name"], skip["column"]) == ("embeddings", "output.embedding")
    assert "keeps no reference embedding vectors" in skip["reason"]


def test_a_damaged_vector_sample_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cap"
    _capture(root, "ref", completion=40, t0_us=capture.T0_US, seed=1, vectors=_vectors(0.0, 1))
    base = tmp_path / "b.json"
    argv = ["drift", "baseline", str(root), "--from-capture", "--generative", "--model", "m", "-o", str(base)]
    assert main(argv) == 0
    doc = json.loads(base.read_text())
    doc["embeddings"]["output.embedding"]["n_vectors"] = 99
    doc["id"] = baseline_file._fingerprint(doc)
    base.write_text(json.dumps(doc))
    capsys.readouterr()
    code = main(["drift", "run", str(root), "--baseline", str(base)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "reference embeddings of 'output.embedding' are malformed" in err


def test_the_vector_reservoir_is_bounded_seeded_and_leaves_out_nonfinite_vectors() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(300, 4)) for _ in range(5)]
    batches[2][7, 1] = np.nan
    samples = []
    for _ in range(2):
        res = generative.VectorReservoir(k=200, seed=5)
        for b in batches:
            res.add(b)
        samples.append(res.vectors())
    assert (res.seen, res.nonfinite) == (1499, 1)
    assert samples[0].shape == (200, 4)
    assert np.isfinite(samples[0]).all()
    np.testing.assert_array_equal(samples[0], samples[1])
    # uniform over everything added: about 200 / 5 from each batch
    origin = [sum(np.isclose(v, b.astype(np.float32)).all(axis=1).any() for v in samples[0]) for b in batches]
    assert min(origin) >= 20
