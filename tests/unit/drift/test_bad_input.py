"""Bad input gets a clear error naming what is wrong, never a silent pass: one test per case, and the CLI's exit
code 2 with the reason on stderr."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.errors import BaselineError, DataError, EmptyWindowError
from infertap.drift.features import FeatureSpec
from infertap.drift.job import run_window
from infertap.drift.reader import Window
from infertap.logger.cli import main
from tests.unit.drift import capture

SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)] + [FeatureSpec("pred", "output.y", 0)]
HOUR = 3_600_000_000


def _baseline(version: str | None = "1", model: str = "m") -> Baseline:
    ref = np.random.default_rng(0).normal(size=(2000, 3))
    cols = {"f0": ref[:, 0], "f1": ref[:, 1], "f2": ref[:, 2], "pred": 2 * ref[:, 0]}
    return build_baseline(cols, SPECS, model_name=model, model_version=version)


def _t(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    x = np.random.default_rng(1).normal(size=(1000, 3))
    capture.write(tmp_path / "cap", capture.table(x, 2 * x[:, 0]))
    return tmp_path / "cap"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = main(["drift", *args])
    return rc, capsys.readouterr().err


# --- reference data -------------------------------------------------------------------------------------------


def test_reference_missing_feature_column() -> None:
    with pytest.raises(DataError, match=r"reference data lacks feature columns \['b'\]"):
        build_baseline(
            {"a": np.ones(3)}, [FeatureSpec("a", "input.x", 0), FeatureSpec("b", "input.x", 1)], model_name="m"
        )


def test_reference_nan() -> None:
    with pytest.raises(DataError, match=r"^a: 2 NaN/inf values in the reference \(2 NaN, 0 inf\)") as exc:
        build_baseline({"a": np.array([1.0, np.nan, 2.0, np.nan])}, [FeatureSpec("a", "input.x", 0)], model_name="m")
    assert exc.value.feature == "a"


def test_reference_infinity() -> None:
    with pytest.raises(DataError, match=r"^a: 1 NaN/inf values in the reference \(0 NaN, 1 inf\)"):
        build_baseline({"a": np.array([1.0, -np.inf, 2.0])}, [FeatureSpec("a", "input.x", 0)], model_name="m")


def test_reference_nonfinite_allowed_is_counted() -> None:
    b = build_baseline(
        {"a": np.array([1.0, np.nan, np.inf, 2.0])},
        [FeatureSpec("a", "input.x", 0)],
        model_name="m",
        allow_nonfinite=True,
    )
    s = b.features[0].summary
    assert (s.n, s.n_nan, s.n_inf) == (2, 1, 1)  # type: ignore[union-attr]


def test_reference_all_nonfinite() -> None:
    with pytest.raises(DataError, match=r"^a: no finite reference values"):
        build_baseline(
            {"a": np.array([np.nan])}, [FeatureSpec("a", "input.x", 0)], model_name="m", allow_nonfinite=True
        )


def test_reference_not_numeric() -> None:
    with pytest.raises(DataError, match=r"^a: numeric feature has non-numeric values"):
        build_baseline({"a": np.array(["x", "y"])}, [FeatureSpec("a", "input.x", 0)], model_name="m")


def test_cli_reference_with_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(2).normal(size=(50, 2))
    x[3, 1] = np.nan
    np.savez(tmp_path / "t.npz", X=x)
    rc, err = _cli(capsys, "baseline", str(tmp_path / "t.npz"), "-o", str(tmp_path / "b.json"), "--model", "m")
    assert rc == 2
    assert "infertap drift: error: x1: 1 NaN/inf values in the reference (1 NaN, 0 inf)" in err
    assert not (tmp_path / "b.json").exists()


# --- windows ----------------------------------------------------------------------------------------------------


def test_window_missing_tensor_column(tmp_path: Path) -> None:
    x = np.random.default_rng(3).normal(size=(100, 3))
    capture.write(tmp_path, capture.table(x))  # no output.y column
    with pytest.raises(
        DataError, match=r"have no data in the window .*\['pred'\].*absent from every file: \['output\.y'\]"
    ):
        run_window(_baseline(), str(tmp_path))


def test_window_column_null_in_every_record(tmp_path: Path) -> None:
    import pyarrow as pa

    x = np.random.default_rng(4).normal(size=(100, 3))
    t = capture.table(x, x[:, 0])
    i = t.schema.get_field_index("output.y")
    t = t.set_column(i, t.schema.field(i), pa.nulls(t.num_rows, t.schema.field(i).type))
    capture.write(tmp_path, t)
    with pytest.raises(DataError, match=r"1 baseline features have no data in the window .*\['pred'\]"):
        run_window(_baseline(), str(tmp_path))


def test_window_none_of_the_columns(root: Path) -> None:
    base = build_baseline({"z": np.ones(10)}, [FeatureSpec("z", "input.zz", 0)], model_name="m", model_version="1")
    with pytest.raises(EmptyWindowError, match=r"none of the baseline's tensor columns \['input\.zz'\]"):
        run_window(base, str(root))


def test_window_nan_and_inf_flag_the_feature(tmp_path: Path) -> None:
    x = np.random.default_rng(5).normal(size=(1000, 3))
    x[:5, 1] = np.nan
    x[5:7, 1] = -np.inf
    capture.write(tmp_path, capture.table(x, 2 * x[:, 0]))
    out = run_window(_baseline(), str(tmp_path))
    f1 = next(f for f in out["features"] if f["name"] == "f1")
    assert f1["drifted"] is True
    assert f1["nonfinite"] is True
    assert f1["n_nonfinite"] == 7
    assert f1["n_current"] == 993
    assert f1["reason"].startswith("7 NaN/inf/missing values (0.70%) exceed the tolerated 0.00%")
    others = [f["drifted"] for f in out["features"] if f["name"] != "f1"]
    assert others == [False, False, False]


def test_window_all_nan_feature(tmp_path: Path) -> None:
    x = np.random.default_rng(6).normal(size=(200, 3))
    x[:, 2] = np.nan
    capture.write(tmp_path, capture.table(x, 2 * x[:, 0]))
    with pytest.raises(EmptyWindowError, match=r"^f2: no finite values in the window \(200 NaN/inf/missing\)"):
        run_window(_baseline(), str(tmp_path))


def test_window_empty_no_files_in_range(root: Path) -> None:
    w = Window(_t(capture.T0_US + 50 * HOUR), None)
    with pytest.raises(EmptyWindowError, match=r"no captured files for model 'm' in \{'start': '.*'end': None\}"):
        run_window(_baseline(), str(root), window=w)


def test_window_empty_no_rows_in_range(root: Path) -> None:
    w = Window(_t(capture.T0_US + 10_000_000), _t(capture.T0_US + 20_000_000))  # same hour, after the 1000 rows
    with pytest.raises(EmptyWindowError, match=r"^no records for model 'm' in window"):
        run_window(_baseline(), str(root), window=w)


def test_window_source_without_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyWindowError, match="no captured Parquet files under"):
        run_window(_baseline(), str(tmp_path / "empty"))


def test_window_source_of_another_scheme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bpath = _baseline().save(tmp_path / "b.json")
    for source in ("hdfs://namenode/cap", "gs://bucket/cap"):  # never read as a local path that happens not to exist
        rc, err = _cli(capsys, "run", source, "--baseline", str(bpath))
        assert rc == 2
        assert err.splitlines() == [
            f"infertap drift: error: {source}: unsupported source scheme {source.split(':')[0]!r}; "
            "use a directory or s3://bucket/prefix"
        ]


def test_window_source_as_file_url(root: Path) -> None:
    assert run_window(_baseline(), f"file://{root}")["window"]["records"] == 1000


def test_baseline_of_another_version(root: Path) -> None:
    with pytest.raises(BaselineError, match=r"^baseline is for model version '7'; the window holds versions \['1'\]$"):
        run_window(_baseline(version="7"), str(root))


def test_baseline_of_another_model(root: Path) -> None:
    with pytest.raises(BaselineError, match=r"^baseline is for model 'other', not 'm'$"):
        run_window(_baseline(model="other"), str(root), model="m")
    with pytest.raises(EmptyWindowError, match=r"no captured files for model 'other'"):
        run_window(_baseline(model="other"), str(root))


def test_baseline_file_of_another_format_version(tmp_path: Path) -> None:
    from infertap.drift.baseline import load_baseline

    doc = _baseline().to_json()
    doc["version"] = 2
    (tmp_path / "b.json").write_text(json.dumps(doc))
    with pytest.raises(BaselineError, match="is baseline format version 2, this reads 1"):
        load_baseline(tmp_path / "b.json")


# --- the CLI: exit code 2 and a readable message -----------------------------------------------------------------


def _saved(tmp_path: Path, **kw: Any) -> str:
    p = tmp_path / "b.json"
    _baseline(**kw).save(p)
    return str(p)


def test_cli_baseline_of_another_version(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _cli(capsys, "run", str(root), "--baseline", _saved(tmp_path, version="7"), "--no-progress")
    assert rc == 2
    assert err == "infertap drift: error: baseline is for model version '7'; the window holds versions ['1']\n"


def test_cli_baseline_of_another_model(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _cli(capsys, "run", str(root), "--model", "m", "--baseline", _saved(tmp_path, model="other"))
    assert rc == 2
    assert err == "infertap drift: error: baseline is for model 'other', not 'm'\n"


def test_cli_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture.write(tmp_path / "cap", capture.table(np.random.default_rng(7).normal(size=(100, 3))))
    b = _saved(tmp_path)
    rc, err = _cli(capsys, "run", str(tmp_path / "cap"), "--baseline", b, "-o", str(tmp_path / "v.json"))
    assert rc == 2
    assert err.startswith("infertap drift: error: 1 baseline features have no data in the window")
    assert "['pred']" in err
    assert "--allow-missing-columns" in err
    assert not (tmp_path / "v.json").exists()
    rc, err = _cli(
        capsys, "run", str(tmp_path / "cap"), "--baseline", b, "-o", str(tmp_path / "v.json"), "--allow-missing-columns"
    )
    assert rc in (0, 1), err  # a verdict, with the features that had data
    assert json.loads((tmp_path / "v.json").read_text())["missing_features"] == ["pred"]


def test_cli_empty_window(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = _t(capture.T0_US + 50 * HOUR).isoformat()
    rc, err = _cli(capsys, "run", str(root), "--baseline", _saved(tmp_path), "--start", start)
    assert rc == 2
    assert err.startswith("infertap drift: error: no captured files for model 'm' in {'start': ")


def test_cli_unreadable_baseline(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "b.json").write_text("{not json")
    rc, err = _cli(capsys, "run", str(root), "--baseline", str(tmp_path / "b.json"))
    assert rc == 2
    assert err.startswith(f"infertap drift: error: cannot read baseline {tmp_path / 'b.json'}:")
