"""Malformed records (a tensor whose instances are not as wide as the column's others, or whose data does not fill
its shape) are skipped, counted and named in the verdict; the run fails only past ``max_malformed_share``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.errors import DataError
from infertap.drift.evaluate import DriftConfig
from infertap.drift.features import FeatureSpec
from infertap.drift.job import run_window
from infertap.logger.cli import main
from tests.unit.drift import capture

SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)]


def _baseline() -> Baseline:
    ref = np.random.default_rng(0).normal(size=(2000, 3))
    return build_baseline({f"f{i}": ref[:, i] for i in range(3)}, SPECS, model_name="m", model_version="1")


def _with_rows(tbl: pa.Table, rows: dict[int, tuple[list[int], list[float]]]) -> pa.Table:
    """``tbl`` with the ``input.x`` tensor of some rows replaced by ``(shape, data)``."""
    col = tbl.column("input.x").combine_chunks()
    values = col.to_pylist()
    for i, (shape, data) in rows.items():
        values[i] = {"shape": shape, "data": data}
    return tbl.set_column(
        tbl.schema.get_field_index("input.x"), tbl.schema.field("input.x"), pa.array(values, col.type)
    )


def test_a_narrow_record_among_width_3_is_skipped_and_named(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(1000, 3))
    tbl = _with_rows(capture.table(x), {17: ([1, 2], [1.0, 2.0]), 400: ([2, 3], [1.0, 2.0, 3.0])})
    capture.write(tmp_path, tbl)
    v = run_window(_baseline(), str(tmp_path))
    assert v["malformed"]["records"] == 2
    assert v["malformed"]["columns"] == {"input.x": 2}
    assert sorted(v["malformed"]["request_ids"]) == ["r1-17", "r1-400"]
    assert v["malformed"]["share"] == pytest.approx(0.002)
    assert v["window"]["records"] == 1000
    assert {f["n_current"] for f in v["features"]} == {998}
    assert v["verdict"] == "no_drift"


def test_past_the_share_the_run_fails_naming_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(2).normal(size=(1000, 3))
    bad = {i: ([1, 2], [0.0, 0.0]) for i in range(0, 1000, 50)}  # 20 records: 2 %
    capture.write(tmp_path / "cap", _with_rows(capture.table(x), bad))
    with pytest.raises(DataError, match=r"20 of 1000 records in the window are malformed .*'r1-0', 'r1-50'"):
        run_window(_baseline(), str(tmp_path / "cap"))
    ok = run_window(_baseline(), str(tmp_path / "cap"), config=DriftConfig(max_malformed_share=0.05))
    assert ok["malformed"]["records"] == 20
    assert len(ok["malformed"]["request_ids"]) == 20
    b = _baseline().save(tmp_path / "b.json")
    rc = main(["drift", "run", str(tmp_path / "cap"), "--baseline", str(b)])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert "malformed" in err
    out = tmp_path / "v.json"
    rc = main(
        ["drift", "run", str(tmp_path / "cap"), "--baseline", str(b), "--max-malformed-share", "0.05", "-o", str(out)]
    )
    assert rc == 0
    assert json.loads(out.read_text())["malformed"]["records"] == 20


def test_the_majority_width_wins_whatever_the_file_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    narrow = capture.table(rng.normal(size=(5, 2)), t0_us=capture.T0_US)  # a whole file of width 2 first
    capture.write(tmp_path, narrow, "a.parquet")
    capture.write(tmp_path, capture.table(rng.normal(size=(900, 3)), t0_us=capture.T0_US + 10), "b.parquet")
    v = run_window(_baseline(), str(tmp_path))
    assert v["malformed"]["records"] == 5
    assert {f["n_current"] for f in v["features"]} == {900}


def test_data_not_filling_its_shape_is_malformed(tmp_path: Path) -> None:
    x = np.random.default_rng(4).normal(size=(600, 3))
    capture.write(tmp_path, _with_rows(capture.table(x), {3: ([1, 3], [1.0, 2.0])}))
    v = run_window(_baseline(), str(tmp_path))
    assert v["malformed"]["request_ids"] == ["r1-3"]


def test_canary_skips_and_counts_malformed_records(tmp_path: Path) -> None:
    from infertap.drift.canary import compare

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 3))
    stable = _with_rows(capture.table(x[:1000], x[:1000, 0], revision="s"), {5: ([1, 2], [1.0, 2.0])})
    capture.write(tmp_path, stable, "s.parquet")
    canary = capture.table(x[1000:], x[1000:, 0], revision="c", t0_us=capture.T0_US + 5000)
    capture.write(tmp_path, canary, "c.parquet")
    out = compare(str(tmp_path), "m", stable="s", canary="c")
    assert out["stable"]["malformed"] == {"input.x": 1}
    assert out["canary"]["malformed"] == {}
    assert out["stable"]["requests"] == 1000
    inputs = {f["name"]: f["n_reference"] for f in out["distributions"]["input"]["features"]}
    assert set(inputs.values()) == {999}
    assert out["verdict"] == "Pass"
