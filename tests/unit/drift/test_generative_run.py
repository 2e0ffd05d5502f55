"""``infertap drift baseline --generative`` and ``drift run`` on captured generative records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from infertap.logger.cli import main
from tests.unit.drift import capture
from tests.unit.drift.test_generative import calls

HOUR = 3_600_000_000


def _capture(root: Path, name: str, *, completion: float, t0_us: int, seed: int) -> None:
    gen = calls(80, completion=completion, ttft=0.05, length_share=0.1, tokens=False, seed=seed)
    tbl = capture.table(np.zeros((gen.num_rows, 1)), t0_us=t0_us)
    for col in gen.column_names:
        tbl = tbl.set_column(tbl.schema.get_field_index(col), col, gen.column(col))
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
