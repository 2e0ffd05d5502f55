"""Every exit code of every ``infertap drift`` subcommand: 0 / 1 (drift only) / 2 (any failure, one line on stderr)
for ``baseline`` and ``run``, 0 / 3 / 1 / 2 for ``canary``; a failing webhook does not mask the verdict's code; an
edited baseline is refused."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.features import FeatureSpec
from infertap.logger.cli import main
from tests.unit.drift import capture

SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)] + [FeatureSpec("pred", "output.y", 0)]
DEAD_URL = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there on loopback


def _baseline() -> Baseline:
    ref = np.random.default_rng(0).normal(size=(2000, 3))
    cols = {"f0": ref[:, 0], "f1": ref[:, 1], "f2": ref[:, 2], "pred": 2 * ref[:, 0]}
    return build_baseline(cols, SPECS, model_name="m", model_version="1")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["drift", *args])
    return rc, capsys.readouterr().err


def _one_error_line(err: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("infertap drift: error: ")
    assert "Traceback" not in err


@pytest.fixture
def calm(tmp_path: Path) -> Path:
    x = np.random.default_rng(1).normal(size=(1500, 3))
    capture.write(tmp_path / "calm", capture.table(x, 2 * x[:, 0]))
    return tmp_path / "calm"


@pytest.fixture
def drifted(tmp_path: Path) -> Path:
    x = np.random.default_rng(2).normal(size=(1500, 3)) + 1.5
    capture.write(tmp_path / "drifted", capture.table(x, 2 * x[:, 0]))
    return tmp_path / "drifted"


@pytest.fixture
def bpath(tmp_path: Path) -> Path:
    return _baseline().save(tmp_path / "b.json.gz")


# --- drift baseline ----------------------------------------------------------------------------------------------


def test_baseline_exit_0_and_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    pq.write_table(pa.table({"a": rng.normal(size=300), "b": rng.normal(size=300)}), tmp_path / "t.parquet")
    rc, _ = _cli(capsys, "baseline", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "b.json"), "--model", "m")
    assert rc == 0
    raw = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(raw[: len(raw) // 2])  # a truncated table
    rc, err = _cli(capsys, "baseline", str(tmp_path / "cut.parquet"), "-o", str(tmp_path / "c.json"), "--model", "m")
    assert rc == 2
    _one_error_line(err)
    assert "cut.parquet" in err
    rc, err = _cli(capsys, "baseline", str(tmp_path / "absent.csv"), "-o", str(tmp_path / "c.json"), "--model", "m")
    assert rc == 2
    _one_error_line(err)
    assert not (tmp_path / "c.json").exists()


# --- drift run ---------------------------------------------------------------------------------------------------


def test_run_exit_0_no_drift_1_drift(
    calm: Path, drifted: Path, bpath: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(capsys, "run", str(calm), "--baseline", str(bpath), "--no-progress")[0] == 0
    assert _cli(capsys, "run", str(drifted), "--baseline", str(bpath), "--no-progress")[0] == 1


def test_run_truncated_gzip_baseline_exits_2(calm: Path, bpath: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = bpath.read_bytes()
    bpath.write_bytes(raw[: len(raw) - 40])
    rc, err = _cli(capsys, "run", str(calm), "--baseline", str(bpath))
    assert rc == 2
    _one_error_line(err)
    assert f"cannot read baseline {bpath}" in err


def test_run_truncated_capture_parquet_exits_2(calm: Path, bpath: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (f,) = calm.rglob("*.parquet")
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    rc, err = _cli(capsys, "run", str(calm), "--baseline", str(bpath))
    assert rc == 2
    _one_error_line(err)
    assert f.name in err


def test_run_truncated_row_group_exits_2(tmp_path: Path, bpath: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(4).normal(size=(3000, 3))
    f = capture.write(tmp_path / "cap", capture.table(x, 2 * x[:, 0]))
    pq.write_table(capture.table(x, 2 * x[:, 0]), f, row_group_size=500)
    raw = bytearray(f.read_bytes())
    meta = pq.ParquetFile(f).metadata
    col = meta.row_group(3).column(meta.num_columns - 1)  # corrupt one data page, keep the footer
    start = col.data_page_offset
    raw[start : start + 64] = b"\xff" * 64
    f.write_bytes(bytes(raw))
    rc, err = _cli(capsys, "run", str(tmp_path / "cap"), "--baseline", str(bpath))
    assert rc == 2
    _one_error_line(err)


def test_run_edited_baseline_is_refused(calm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _baseline().to_json()
    doc["features"][0]["summary"]["counts"][5] += 100  # edited content, old id
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    rc, err = _cli(capsys, "run", str(calm), "--baseline", str(tmp_path / "edited.json"))
    assert rc == 2
    _one_error_line(err)
    assert doc["id"] in err
    assert "content" in err
    (tmp_path / "edited.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    assert _cli(capsys, "run", str(calm), "--baseline", str(tmp_path / "edited.json.gz"))[0] == 2


def test_run_failing_webhook_keeps_the_verdicts_code(
    calm: Path, drifted: Path, bpath: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v.json"
    args = ["--baseline", str(bpath), "--webhook", DEAD_URL, "-o", str(out), "--no-progress"]
    rc, err = _cli(capsys, "run", str(drifted), *args)
    assert rc == 1
    assert json.loads(out.read_text())["dataset_drift"] is True
    assert "alert webhook" in err
    rc, err = _cli(capsys, "run", str(calm), *args)
    assert rc == 0
    assert "alert webhook" in err


def test_run_bad_options_exit_2(calm: Path, bpath: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _cli(capsys, "run", str(calm), "--baseline", str(bpath), "--test", "nope")
    assert rc == 2
    _one_error_line(err)
    rc, err = _cli(capsys, "run", str(calm), "--baseline", str(bpath), "--start", "yesterday")
    assert rc == 2
    _one_error_line(err)


# --- drift canary ------------------------------------------------------------------------------------------------


def _arms(root: Path, *, shift: float = 0.0, tail: bool = False) -> str:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4000, 3))
    lat = rng.gamma(4.0, 0.005, 4000)
    cl = lat[2000:].copy()
    if tail:
        cl[rng.random(2000) < 0.03] *= 4
    capture.write(root, capture.table(x[:2000], x[:2000, 0], revision="s", latency_s=lat[:2000]), "s.parquet")
    c = capture.table(x[2000:], x[2000:, 0] + shift, revision="c", latency_s=cl, t0_us=capture.T0_US + 9000)
    capture.write(root, c, "c.parquet")
    return str(root)


def test_canary_every_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--model", "m", "--stable", "s", "--canary", "c", "-o", str(tmp_path / "v.json")]
    assert _cli(capsys, "canary", _arms(tmp_path / "same"), *base)[0] == 0
    assert _cli(capsys, "canary", _arms(tmp_path / "tail", tail=True), *base)[0] == 3
    assert _cli(capsys, "canary", _arms(tmp_path / "bad", shift=2.0), *base)[0] == 1
    rc, err = _cli(capsys, "canary", str(tmp_path / "same"), "--model", "m", "--stable", "s", "--canary", "x")
    assert rc == 2
    _one_error_line(err)
    rc, err = _cli(capsys, "canary", str(tmp_path / "same"), "--stable", "s", "--canary", "c")
    assert rc == 2
    _one_error_line(err)
    # a failing webhook keeps Marginal's and Fail's codes
    assert _cli(capsys, "canary", str(tmp_path / "tail"), *base, "--webhook", DEAD_URL)[0] == 3
    rc, err = _cli(capsys, "canary", str(tmp_path / "bad"), *base, "--webhook", DEAD_URL)
    assert rc == 1
    assert "alert webhook" in err


def test_canary_truncated_capture_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _arms(tmp_path / "arms")
    f = next(Path(root).rglob("c.parquet"))
    f.write_bytes(f.read_bytes()[:300])
    rc, err = _cli(capsys, "canary", root, "--model", "m", "--stable", "s", "--canary", "c")
    assert rc == 2
    _one_error_line(err)
    assert "c.parquet" in err
