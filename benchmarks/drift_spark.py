"""The drift job on both engines over one capture: wall time, CPU, peak memory, identical verdicts.

Writes ``--rows`` captured records (record schema, a 20-element FP64 input tensor, 5 elements shifted; 500,000-row
files over hourly partitions of one model) and a baseline from a reference of 1,000,000 rows; then runs
``drift_window`` (local engine) and ``drift_window_spark`` (pyspark ``local[2]``), each in its own subprocess.
Reports rows per second per core, whether the two verdict documents agree (``verdicts_identical``: counts,
histograms, tests and decisions equal, statistics within 1e-12), and an extrapolation to 1e9 rows on N executors:
``cost_per_row_core_s`` = the Spark job's wall time after start-up times its 2 cores, per row; 1e9 rows on N
executors of C cores take about ``1e9 * cost_per_row_core_s / (N * C)`` seconds plus the driver's fixed start-up
(``spark_startup_s``), assuming reading scales with cores (no shared bottleneck such as one S3 prefix's request
rate). On a busy machine the wall time, hence the cost, is inflated by other processes' share of the cores.

Writes ``benchmarks/results/drift_spark.json``.
Run: ``.venv/bin/python benchmarks/drift_spark.py [--rows 4000000] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "drift_spark.json"
FEATURES = 20
PER_FILE = 500_000
HOUR = 3_600_000_000


def write(root: Path, rows: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from infertap.drift.baseline import build_baseline
    from infertap.drift.features import FeatureSpec
    from tests.unit.drift import capture

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1_000_000, FEATURES))
    specs = [FeatureSpec(f"f{i}", "input.x", i) for i in range(FEATURES)]
    base = build_baseline({s.name: ref[:, i] for i, s in enumerate(specs)}, specs, model_name="m", model_version="1")
    base.save(root / "baseline.json.gz")
    for k, i in enumerate(range(0, rows, PER_FILE)):
        n = min(PER_FILE, rows - i)
        x = rng.normal(size=(n, FEATURES))
        x[:, :5] += 0.3
        t0 = capture.T0_US + (k % 24) * HOUR + k
        capture.write(root / "cap", capture.table(x, t0_us=t0), f"part-{k:05d}.parquet")


def worker(engine: str, root: str) -> dict[str, Any]:
    from infertap.drift.baseline import load_baseline

    base = load_baseline(Path(root) / "baseline.json.gz")
    t0, c0 = time.perf_counter(), time.process_time()
    startup = 0.0
    if engine == "local":
        from infertap.drift.job import drift_window

        v = drift_window(base, f"{root}/cap", progress=False)
    else:
        from infertap.drift.spark import drift_window_spark, session

        spark = session("local[2]")
        startup = time.perf_counter() - t0
        v = drift_window_spark(base, f"{root}/cap", spark=spark)
        spark.stop()
    wall = time.perf_counter() - t0
    doc = v.to_json()
    return {
        "wall_s": wall,
        "cpu_s": time.process_time() - c0,  # this process only: Spark's JVM and Python workers are not included
        "startup_s": startup,
        "peak_rss_mb": _peak_rss_mb(),
        "doc": {k: doc[k] for k in ("window", "n_features", "n_drifted", "dataset_drift", "malformed", "features")},
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``; ``ru_maxrss`` would carry the parent's over ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if any(a[k] != b[k] for k in ("window", "n_features", "n_drifted", "dataset_drift", "malformed")):
        return False
    for fa, fb in zip(a["features"], b["features"], strict=True):
        if any(fa[k] != fb[k] for k in ("name", "test", "drifted", "n_reference", "n_current", "histogram")):
            return False
        for k in ("statistic", "score"):
            if not np.isclose(fa[k], fb[k], rtol=1e-12, atol=1e-12):
                return False
    return True


def run(engine: str, root: Path) -> dict[str, Any]:
    p = subprocess.run([sys.executable, __file__, "--worker", engine, str(root)], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{engine} worker failed:\n{p.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--dir", type=Path, help="where to write the capture (default: a temporary directory)")
    ap.add_argument("--worker", nargs=2)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(*a.worker)))
        return 0
    root = a.dir or Path(tempfile.mkdtemp(prefix="drift-spark-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        write(root, a.rows)
        write_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in (root / "cap").rglob("*.parquet"))
        local, spark = run("local", root), run("spark", root)
    finally:
        if a.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    cores = os.cpu_count() or 1
    rows = local["doc"]["window"]["records"]
    result: dict[str, Any] = {
        "rows": rows,
        "features": FEATURES,
        "capture_bytes": size,
        "write_s": write_s,
        "verdicts_identical": same(local["doc"], spark["doc"]),
        "n_drifted": local["doc"]["n_drifted"],
    }
    used = min(2, cores)  # the local engine's thread pool and Spark's local[2] both use 2 cores
    result["local_wall_s"] = local["wall_s"]
    result["local_cpu_s"] = local["cpu_s"]
    result["local_peak_rss_mb"] = local["peak_rss_mb"]
    result["local_rows_per_s_per_core"] = rows / local["wall_s"] / used
    result["spark_wall_s"] = spark["wall_s"]
    result["spark_startup_s"] = spark["startup_s"]
    result["spark_driver_peak_rss_mb"] = spark["peak_rss_mb"]  # the Python driver; the JVM is not included
    result["spark_rows_per_s_per_core"] = rows / (spark["wall_s"] - spark["startup_s"]) / used
    # core-seconds per row of the Spark job after start-up, from wall time on `used` cores (on a busy machine this
    # overstates the cost by the share of the cores other processes took: see machine.load_average_1m)
    result["cost_per_row_core_s"] = (spark["wall_s"] - spark["startup_s"]) * used / rows
    result["extrapolation_1e9_rows_s"] = {
        f"{n}x4cores": 1e9 * result["cost_per_row_core_s"] / (n * 4) + spark["startup_s"] for n in (10, 50, 100)
    }
    result["machine"] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": cores,
        "load_average_1m": os.getloadavg()[0],
    }
    result["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k:28} {v:.4g}" if isinstance(v, float) else f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
