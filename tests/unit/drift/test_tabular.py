"""Tabular inputs: a baseline from a table and a run on a current table (Parquet, CSV) give the verdict of the
same data captured as records; feature maps inferred for the usual payload layouts; a string column is never mapped
into a numeric tensor element."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from infertap.drift.baseline import load_baseline
from infertap.drift.errors import ConfigError, DataError
from infertap.drift.job import run_window
from infertap.drift.tables import default_table_specs
from infertap.logger import record
from infertap.logger.cli import main
from tests.unit.drift import capture


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["drift", *args])
    return rc, capsys.readouterr().err


def test_current_table_gives_the_captured_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=(4000, 3)), rng.normal(size=(3000, 3))
    cur[:, 1] += 0.5
    names = ["a", "b", "c"]
    pq.write_table(pa.table({n: ref[:, i] for i, n in enumerate(names)}), tmp_path / "ref.parquet")
    b = tmp_path / "b.json"
    rc, _ = _cli(capsys, "baseline", str(tmp_path / "ref.parquet"), "-o", str(b), "--model", "m", "--tensor", "x")
    assert rc == 0
    pq.write_table(pa.table({n: cur[:, i] for i, n in enumerate(names)}), tmp_path / "cur.parquet")
    pacsv.write_csv(pa.table({n: cur[:, i] for i, n in enumerate(names)}), tmp_path / "cur.csv")
    capture.write(tmp_path / "cap", capture.table(cur, version="x"))
    captured = run_window(load_baseline(b), str(tmp_path / "cap"))
    for table in ("cur.parquet", "cur.csv"):
        out = tmp_path / f"{table}.json"
        rc, err = _cli(capsys, "run", str(tmp_path / table), "--table", "--baseline", str(b), "-o", str(out))
        assert rc == 0, err
        v = json.loads(out.read_text())
        assert v["window"]["records"] == 3000
        assert (
            [f["drifted"] for f in v["features"]]
            == [f["drifted"] for f in captured["features"]]
            == [
                False,
                True,
                False,
            ]
        )
        for a, c in zip(v["features"], captured["features"], strict=True):
            assert a["n_current"] == c["n_current"]
            assert a["statistic"] == pytest.approx(c["statistic"], rel=1e-9)


def test_table_missing_features_lists_its_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    pq.write_table(pa.table({"a": rng.normal(size=500), "b": rng.normal(size=500)}), tmp_path / "ref.parquet")
    b = tmp_path / "b.json"
    assert _cli(capsys, "baseline", str(tmp_path / "ref.parquet"), "-o", str(b), "--model", "m")[0] == 0
    pq.write_table(pa.table({"a": rng.normal(size=100), "z": rng.normal(size=100)}), tmp_path / "cur.parquet")
    rc, err = _cli(capsys, "run", str(tmp_path / "cur.parquet"), "--table", "--baseline", str(b))
    assert rc == 2
    assert "['b']" in err
    assert "its columns: ['a', 'z']" in err


def test_feature_maps_for_the_usual_layouts() -> None:
    cols = {"x1": np.ones(3), "x2": np.zeros(3), "city": np.array(["a", "b", "c"], dtype=object)}
    num = default_table_specs(cols, ["x1", "x2"], layout="v1")
    assert [(s.column, s.index) for s in num] == [("input.instances", 0), ("input.instances", 1)]
    mls = default_table_specs({**cols, "p": np.ones(3)}, ["x1", "x2"], ["p"], output="predict")
    assert [(s.column, s.index) for s in mls] == [("input.input-0", 0), ("input.input-0", 1), ("output.predict", 0)]
    mixed = default_table_specs(cols, ["x1", "city", "x2"])  # auto: one tensor per column
    assert [(s.name, s.column, s.index, s.kind) for s in mixed] == [
        ("x1", "input.x1", 0, "numeric"),
        ("city", "input.city", 0, "categorical"),
        ("x2", "input.x2", 0, "numeric"),
    ]
    with pytest.raises(ConfigError, match=r"non-numeric columns \['city'\] and numeric columns \['x1', 'x2'\]"):
        default_table_specs(cols, ["x1", "city", "x2"], layout="positional")


def test_a_numeric_feature_is_never_read_from_a_string_tensor(tmp_path: Path) -> None:
    from infertap.drift.baseline import build_baseline
    from infertap.drift.features import FeatureSpec

    n = 300
    tbl = capture.table(np.random.default_rng(2).normal(size=(n, 1)))
    strings = pa.StructArray.from_arrays(
        [pa.array([[1, 1]] * n, pa.list_(pa.int64())), pa.array([[b"a"]] * n, pa.list_(pa.binary()))],
        names=["shape", "data"],
    )
    tbl = tbl.append_column(record.tensor_field("input", "city", "BYTES"), strings)
    capture.write(tmp_path, tbl)
    specs = [FeatureSpec("x", "input.x", 0), FeatureSpec("city", "input.city", 0)]  # city wrongly numeric
    base = build_baseline({"x": np.zeros(50), "city": np.arange(50.0)}, specs, model_name="m", model_version="1")
    with pytest.raises(DataError, match=r"numeric baseline features \['city \(input.city\)'\] are captured as strings"):
        run_window(base, str(tmp_path))
    with pytest.raises(DataError, match=r"'input.city': 'BYTES', 'input.x': 'FP64'"):
        run_window(base, str(tmp_path))
