"""The Spark engine (pyspark, ``local[2]``) gives the local engine's verdict on one capture: counts equal exactly,
statistics within 1e-12; partitions are pruned by model, date and hour; the CLI takes ``--engine spark``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.features import FeatureSpec
from infertap.drift.job import drift_window
from infertap.drift.reader import Window
from infertap.logger.cli import main
from tests.unit.drift import capture

pyspark = pytest.importorskip("pyspark", reason="the Spark engine's tests need pyspark (make test installs it)")

pytestmark = pytest.mark.integration
HOUR = 3_600_000_000
SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)] + [FeatureSpec("pred", "output.y", 0)]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from infertap.drift.spark import session

    s = session("local[2]")
    yield s
    s.stop()


def _baseline() -> Baseline:
    ref = np.random.default_rng(0).normal(size=(5000, 3))
    cols = {"f0": ref[:, 0], "f1": ref[:, 1], "f2": ref[:, 2], "pred": 2 * ref[:, 0]}
    return build_baseline(cols, SPECS, model_name="m", model_version="1")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cap")
    rng = np.random.default_rng(1)
    for h in range(4):  # 4 hours, 2 files each; hours 2-3 shifted
        for part in range(2):
            x = rng.normal(size=(3000, 3)) + (np.array([0.8, 0.0, 0.3]) if h >= 2 else 0.0)
            t0 = capture.T0_US + h * HOUR + part * 5000
            capture.write(root, capture.table(x, 2 * x[:, 0], t0_us=t0), f"part-{part}.parquet")
    other = rng.normal(size=(500, 3)) + 5  # another model: pruned by partition
    capture.write(root, capture.table(other, other[:, 0], model="other"), "part-0.parquet")
    x = rng.normal(size=(200, 3))  # another version: filtered out
    capture.write(root, capture.table(x, x[:, 0], version="2", t0_us=capture.T0_US + 7000), "v2.parquet")
    return root


def _t(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC)


def _same(local: dict[str, Any], remote: dict[str, Any]) -> None:
    for key in ("window", "dataset_drift", "n_features", "n_drifted", "drifted_share", "malformed", "verdict"):
        assert remote[key] == local[key], key
    for a, b in zip(local["features"], remote["features"], strict=True):
        for key in ("name", "test", "drifted", "n_reference", "n_current", "n_nonfinite", "histogram"):
            assert b[key] == a[key], (a["name"], key)
        for key in ("statistic", "score"):
            assert b[key] == pytest.approx(a[key], rel=1e-12, abs=1e-12), (a["name"], key)


@pytest.mark.parametrize(
    "window",
    [Window(), Window(_t(capture.T0_US + 2 * HOUR), None), Window(None, _t(capture.T0_US + 2 * HOUR))],
    ids=["all", "late-hours", "early-hours"],
)
def test_same_verdict_on_both_engines(root: Path, spark: Any, window: Window) -> None:
    from infertap.drift.spark import drift_window_spark

    base = _baseline()
    local = drift_window(base, str(root), window=window, progress=False).to_json()
    remote = drift_window_spark(base, str(root), window=window, spark=spark).to_json()
    _same(local, remote)
    expected = {"all": 24000, "late-hours": 12000, "early-hours": 12000}
    assert local["window"]["records"] in expected.values()


def test_partitions_are_pruned(spark: Any, tmp_path: Path) -> None:
    from infertap.drift.spark import drift_window_spark, spark_path, window_frame

    rng = np.random.default_rng(3)
    early = capture.write(tmp_path, capture.table(rng.normal(size=(2000, 3)), rng.normal(size=2000)), "a.parquet")
    late = capture.table(rng.normal(size=(1000, 3)), rng.normal(size=1000), t0_us=capture.T0_US + 3 * HOUR)
    capture.write(tmp_path, late, "b.parquet")
    raw = bytearray(early.read_bytes())  # the early hour's data pages are garbage; its footer stays readable
    meta = pq.ParquetFile(early).metadata
    for rg in range(meta.num_rows and meta.num_row_groups):
        for c in range(meta.num_columns):
            off = meta.row_group(rg).column(c).data_page_offset
            raw[off : off + 16] = b"\xff" * 16
    early.write_bytes(bytes(raw))
    window = Window(_t(capture.T0_US + 3 * HOUR), None)
    df = window_frame(spark, spark_path(str(tmp_path), spark), "m", window, "1")
    assert "PartitionFilters: [isnotnull(model" in df._jdf.queryExecution().executedPlan().toString()
    v = drift_window_spark(_baseline(), str(tmp_path), window=window, spark=spark).to_json()
    assert v["window"]["records"] == 1000  # the garbage hour was never read
    with pytest.raises(Exception, match=r"(?i)parquet|page|thrift|decompress|corrupt"):
        drift_window_spark(_baseline(), str(tmp_path), spark=spark)


def test_cli_engine_spark(root: Path, spark: Any, tmp_path: Path) -> None:
    b = _baseline().save(tmp_path / "b.json")
    out_l, out_s = tmp_path / "l.json", tmp_path / "s.json"
    assert main(["drift", "run", str(root), "--baseline", str(b), "-o", str(out_l), "--no-progress"]) == 1
    args = ["drift", "run", str(root), "--baseline", str(b), "-o", str(out_s), "--engine", "spark"]
    assert main([*args, "--spark-master", "local[2]"]) == 1
    _same(json.loads(out_l.read_text()), json.loads(out_s.read_text()))
