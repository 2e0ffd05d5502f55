"""The two designs of the Spark engine on the same capture, rows per second per core on ``local[2]``.

- ``files`` (the engine now): the driver lists and prunes the files; Spark tasks read them with pyarrow and reduce
  them with the local engine's code (``infertap drift run --engine spark``).
- ``dataframe`` (the engine until commit be09472): ``spark.read.parquet`` reads and prunes the hive layout, each
  partition's rows reach the same reduce as Arrow batches through ``DataFrame.mapInArrow``. Its module is taken from
  git (``git show be09472:drift/spark.py``), so this script needs the repository's history.

Each design runs on one file (its fixed cost) and on the whole capture (``--rows`` records, 500,000 per file, the
capture of ``benchmarks/drift_spark.py``: ``--distinct`` records hard-linked across hours); rows per second per
core = (rows - rows of one file) / (wall - wall on one file) / 2. Both verdicts are compared with the local
engine's.

Writes ``benchmarks/results/drift_spark_designs.json``.
Run: ``.venv/bin/python benchmarks/drift_spark_designs.py [--rows 4000000] [--distinct 1000000]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import drift_spark as bench

OUT = bench.ROOT / "benchmarks" / "results" / "drift_spark_designs.json"
OLD = "be09472"


def dataframe_worker(module: str, root: str, capture: str, out: str) -> None:
    """Run the ``dataframe`` design's ``drift_window_spark`` (module file ``module``) and write its verdict."""
    spec = importlib.util.spec_from_file_location("spark_dataframe", module)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from infertap.drift.baseline import load_baseline

    base = load_baseline(Path(root) / "baseline.json.gz")
    v = mod.drift_window_spark(base, capture, master="local[2]")
    Path(out).write_text(json.dumps(v.to_json()))


def run_dataframe(module: Path, root: Path, capture: Path, out: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, __file__, "--worker", str(module), str(root), str(capture), str(out)],
        capture_output=True,
        text=True,
    )
    if p.returncode:
        raise SystemExit(f"dataframe design failed: {p.stderr[-3000:]}")
    return {"wall_s": time.perf_counter() - t0, "doc": json.loads(out.read_text())}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--distinct", type=int, default=1_000_000, help="distinct records written (the rest hard links)")
    ap.add_argument("--worker", nargs=4)
    a = ap.parse_args()
    if a.worker:
        dataframe_worker(*a.worker)
        return 0
    root = Path(tempfile.mkdtemp(prefix="drift-designs-"))
    try:
        old = root / "spark_dataframe.py"
        old.write_text(subprocess.run(["git", "show", f"{OLD}:drift/spark.py"], cwd=bench.ROOT, check=True,
                                      capture_output=True, text=True).stdout)  # fmt: skip
        info = bench.write(root, a.rows, a.distinct)
        rows, one_rows = info["rows"], info["one_file_rows"]
        local = bench.run_cli("local", root, root / "cap", root / "local.json")
        result: dict[str, Any] = {"rows": rows, "distinct_rows": info["distinct_rows"], "features": bench.FEATURES}
        result["one_file_rows"] = one_rows
        runs = {
            "files": lambda cap, out: bench.run_cli("spark", root, cap, out),
            "dataframe": lambda cap, out: run_dataframe(old, root, cap, out),
        }
        for design, run in runs.items():
            small = run(root / "one" / "cap", root / f"{design}-one.json")
            big = run(root / "cap", root / f"{design}.json")
            marginal = (big["wall_s"] - small["wall_s"]) / (rows - one_rows)
            result[design] = {
                "wall_s": big["wall_s"],
                "fixed_s": small["wall_s"],
                "rows_per_s_per_core": 1 / marginal / bench.CORES,
                "verdict_identical_to_local": bench.same(local["doc"], big["doc"]),
            }
        result["speedup_files_over_dataframe"] = (
            result["files"]["rows_per_s_per_core"] / result["dataframe"]["rows_per_s_per_core"]
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["machine"] = {"cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}
    result["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
