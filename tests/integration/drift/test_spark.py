"""The Spark engine (pyspark, ``local[2]``) gives the local engine's documents on one capture -- ``drift run``,
``drift baseline --from-capture`` and ``drift canary``, from a directory and from S3 (moto): counts equal exactly,
statistics within 1e-12; pruned hours are never read; the CLI takes ``--engine spark``."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.canary import compare
from infertap.drift.errors import DataError
from infertap.drift.features import FeatureSpec
from infertap.drift.job import drift_window
from infertap.drift.reader import Window
from infertap.logger.cli import main
from tests.integration.sinks.components import S3Endpoint, s3_endpoint
from tests.unit.drift import capture

pyspark = pytest.importorskip("pyspark", reason="the Spark engine's tests need pyspark (make test installs it)")

__all__ = ["s3_endpoint"]
pytestmark = pytest.mark.integration
HOUR = 3_600_000_000
SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)] + [FeatureSpec("pred", "output.y", 0)]
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="module")
def spark(s3_endpoint: S3Endpoint) -> Iterator[Any]:
    """One ``local[2]`` session for the module; its executors take their S3 credentials from the environment
    (the AWS default chain), set before the session starts."""
    from infertap.drift.spark import session

    saved = {k: os.environ.get(k) for k in AWS}
    os.environ.update(
        dict(zip(AWS, (s3_endpoint.access_key_id, s3_endpoint.secret_access_key, s3_endpoint.region), strict=True))
    )
    s = session("local[2]")
    yield s
    s.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def engine(spark: Any) -> Any:
    from infertap.drift.spark import spark_files

    return spark_files(spark)


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


def _same(local: Any, remote: Any, path: str = "") -> None:
    """Equal documents: every count, string and flag equal, every float within 1e-12 (relative or absolute)."""
    if isinstance(local, dict):
        assert isinstance(remote, dict), path
        assert sorted(remote) == sorted(local), path
        for k in local:
            if k not in ("generated_at", "duration_s", "created_at", "id"):
                _same(local[k], remote[k], f"{path}.{k}")
    elif isinstance(local, list):
        assert isinstance(remote, list), path
        assert len(remote) == len(local), path
        for i, (a, b) in enumerate(zip(local, remote, strict=True)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(local, float) and not isinstance(remote, bool):
        assert remote == pytest.approx(local, rel=1e-12, abs=1e-12, nan_ok=True), path
    else:
        assert remote == local, path


@pytest.mark.parametrize(
    ("window", "records", "drift"),
    [
        (Window(), 24000, True),
        (Window(_t(capture.T0_US + 2 * HOUR), None), 12000, True),
        (Window(None, _t(capture.T0_US + 2 * HOUR)), 12000, False),
    ],
    ids=["all", "late-hours", "early-hours"],
)
def test_same_verdict_on_both_engines(root: Path, engine: Any, window: Window, records: int, drift: bool) -> None:
    base = _baseline()
    local = drift_window(base, str(root), window=window, progress=False).to_json()
    remote = drift_window(base, str(root), window=window, map_files=engine).to_json()
    _same(local, remote)
    assert (local["window"]["records"], local["dataset_drift"]) == (records, drift)


def test_one_task_per_file_or_fewer_tasks_same_verdict(root: Path, spark: Any) -> None:
    from infertap.drift.spark import spark_files

    base = _baseline()
    one = drift_window(base, str(root), map_files=spark_files(spark, tasks=1)).to_json()
    many = drift_window(base, str(root), map_files=spark_files(spark, tasks=64)).to_json()
    _same(one, many)


def test_pruned_hours_are_never_read(engine: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
    v = drift_window(_baseline(), str(tmp_path), window=window, map_files=engine).to_json()
    assert v["window"]["records"] == 1000  # the garbage hour was never read
    with pytest.raises(DataError, match=r"^cannot read \S*/a\.parquet: "):  # the task's error, on the driver
        drift_window(_baseline(), str(tmp_path), map_files=engine)
    b = _baseline().save(tmp_path / "b.json")
    capsys.readouterr()
    assert main(["drift", "run", str(tmp_path), "--baseline", str(b), "--engine", "spark"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"infertap drift: error: cannot read {early}: ")
    assert err.count("\n") == 1


def test_cli_run_engine_spark(root: Path, spark: Any, tmp_path: Path) -> None:
    b = _baseline().save(tmp_path / "b.json")
    out_l, out_s = tmp_path / "l.json", tmp_path / "s.json"
    assert main(["drift", "run", str(root), "--baseline", str(b), "-o", str(out_l), "--no-progress"]) == 1
    args = ["drift", "run", str(root), "--baseline", str(b), "-o", str(out_s), "--engine", "spark"]
    assert main([*args, "--spark-master", "local[2]"]) == 1
    _same(json.loads(out_l.read_text()), json.loads(out_s.read_text()))


def test_cli_baseline_from_capture_engine_spark(root: Path, spark: Any, tmp_path: Path) -> None:
    fmap = tmp_path / "map.json"
    fmap.write_text(json.dumps({"features": [s.to_json() for s in SPECS]}))
    args = ["drift", "baseline", str(root), "--from-capture", "--model", "m", "--feature-map", str(fmap)]
    args += ["--end", _t(capture.T0_US + 2 * HOUR).isoformat()]
    assert main([*args, "-o", str(tmp_path / "l.json")]) == 0
    assert main([*args, "-o", str(tmp_path / "s.json"), "--engine", "spark", "--spark-master", "local[2]"]) == 0
    local, remote = (json.loads((tmp_path / n).read_text()) for n in ("l.json", "s.json"))
    assert local["n_rows"] == 12200  # 2 hours of model m (both versions)
    _same(local, remote)
    assert remote["features"] == local["features"]  # the same values: the same bins, counts and statistics
    assert remote["sample"] == local["sample"]  # the same rows in the same order


def test_cli_baseline_engine_spark_needs_a_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["drift", "baseline", str(tmp_path / "t.csv"), "--model", "m", "-o", str(tmp_path / "b.json")]
    assert main([*args, "--engine", "spark"]) == 2
    assert capsys.readouterr().err.strip() == (
        "infertap drift: error: --engine spark reads a captured window: add --from-capture"
    )


def _arms(root: Path) -> str:
    rng = np.random.default_rng(5)
    for h in range(3):  # stable and canary in every hour, the canary's outputs shifted and slower
        x = rng.normal(size=(4000, 3))
        lat = rng.lognormal(-4, 0.3, size=4000)
        t0 = capture.T0_US + h * HOUR
        s = capture.table(x[:2000], x[:2000, 0], revision="s", latency_s=lat[:2000], t0_us=t0)
        status = np.where(rng.random(2000) < 0.01, 500, 200)
        c = capture.table(
            x[2000:], x[2000:, 0] + 0.3, revision="c", latency_s=lat[2000:] * 1.05, status=status, t0_us=t0 + 9000
        )
        capture.write(root, s, "s.parquet")
        capture.write(root, c, "c.parquet")
    return str(root)


def test_canary_same_document_on_both_engines(engine: Any, tmp_path: Path) -> None:
    src = _arms(tmp_path)
    local = compare(src, "m", stable="s", canary="c")
    remote = compare(src, "m", stable="s", canary="c", map_files=engine)
    _same(local, remote)
    assert local["verdict"] == "Fail"
    assert local["stable"]["requests"] == 6000


def test_cli_canary_engine_spark(spark: Any, tmp_path: Path) -> None:
    src = _arms(tmp_path / "cap")
    args = ["drift", "canary", src, "--model", "m", "--stable", "s", "--canary", "c"]
    assert main([*args, "-o", str(tmp_path / "l.json")]) == 1
    assert main([*args, "-o", str(tmp_path / "s.json"), "--engine", "spark"]) == 1
    _same(*(json.loads((tmp_path / n).read_text()) for n in ("l.json", "s.json")))


def test_s3_source_read_in_the_executors(root: Path, spark: Any, s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    client = s3_endpoint.client()
    bucket = "infertap-spark-drift"
    client.create_bucket(Bucket=bucket)
    for f in sorted(root.rglob("*.parquet")):
        client.upload_file(str(f), bucket, f"cap/{f.relative_to(root)}")
    b = _baseline().save(tmp_path / "b.json")
    src = f"s3://{bucket}/cap"
    args = ["drift", "run", src, "--baseline", str(b), "--s3-endpoint", s3_endpoint.url, "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "l.json")]) == 1
    assert main([*args, "-o", str(tmp_path / "s.json"), "--engine", "spark"]) == 1
    local, remote = (json.loads((tmp_path / n).read_text()) for n in ("l.json", "s.json"))
    _same(local, remote)
    assert remote["window"]["records"] == 24000
