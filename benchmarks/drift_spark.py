"""``infertap drift run`` on both engines over one large capture: wall time, peak memory, identical verdicts.

The capture: ``--distinct`` distinct records (record schema, a 20-element FP64 input tensor, 5 elements shifted;
500,000-record files) written once into the first hourly partitions of one model, then *hard-linked* into further
hourly partitions until ``--rows`` records are captured (no extra disk; the engines read every link as a file of its
own). The files then come from the page cache, so I/O is flattered: the figures are the CPU cost of reading and
reducing, which is what scales with cores. A baseline is built from 1,000,000 reference rows.

Each engine runs the command a user runs, ``infertap drift run CAPTURE --baseline B -o V.json`` (``--engine local``,
or ``--engine spark --spark-master local[2]``), in its own process, twice: on one file (its fixed cost: start-up,
listing, the Spark session) and on the whole capture. Peak memory is the largest summed resident set of the command's
process tree (the Spark driver, its JVM and Python workers), sampled every 0.2 s. Rows per second per core =
(rows - rows of one file) / (wall - wall on one file) / 2 cores. The two verdict documents must agree
(``verdicts_identical``: counts, histograms, tests and decisions equal, statistics within 1e-12).

Extrapolation to 1e9 rows on N executors of C cores: ``fixed_s + 1e9 * cost_per_row_core_s / (N * C)`` with
``cost_per_row_core_s = 2 / spark_rows_per_s`` (the marginal core-seconds per row measured here) -- assuming reading
scales with cores (no shared bottleneck such as one S3 prefix's request rate, and the files not in page cache cost
their read time on top) and the driver's listing and merge stay small (one partial per task).

Engines can run in separate processes of this script (``--engines local`` then ``--engines spark --keep``), each
merging its figures into the results file; ``--dir`` keeps the capture between them.

Writes ``benchmarks/results/drift_spark.json``.
Run: ``.venv/bin/python benchmarks/drift_spark.py [--rows 100000000] [--distinct 2000000] [--engines local,spark]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "drift_spark.json"
FEATURES = 20
PER_FILE = 500_000
HOUR = 3_600_000_000
CORES = 2  # the local engine's thread pool and Spark's local[2]
ENGINE_ARGS = {"local": ["--engine", "local"], "spark": ["--engine", "spark", "--spark-master", "local[2]"]}


def write(root: Path, rows: int, distinct: int) -> dict[str, Any]:
    """The baseline and the capture under ``root`` (see the module docstring); returns what was written."""
    sys.path.insert(0, str(ROOT))
    from infertap.drift.baseline import build_baseline
    from infertap.drift.features import FeatureSpec
    from infertap.logger.sinks.partitions import partition_dir
    from tests.unit.drift import capture

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1_000_000, FEATURES))
    specs = [FeatureSpec(f"f{i}", "input.x", i) for i in range(FEATURES)]
    base = build_baseline({s.name: ref[:, i] for i, s in enumerate(specs)}, specs, model_name="m", model_version="1")
    base.save(root / "baseline.json.gz")
    cap = root / "cap"
    originals: list[Path] = []
    for k, i in enumerate(range(0, distinct, PER_FILE)):
        n = min(PER_FILE, distinct - i)
        x = rng.normal(size=(n, FEATURES))
        x[:, :5] += 0.3
        originals.append(capture.write(cap, capture.table(x, t0_us=capture.T0_US + k), f"part-{k:05d}.parquet"))
    written = sum(f.stat().st_size for f in originals)
    per_copy = sum(_rows(f) for f in originals)
    copies = max(1, -(-rows // per_copy))
    for c in range(1, copies):  # hour c holds hard links to the distinct files
        d = cap / partition_dir("m", capture.T0_US - capture.T0_US % HOUR + c * HOUR)
        d.mkdir(parents=True, exist_ok=True)
        for f in originals:
            os.link(f, d / f.name)
    one = root / "one" / "cap" / originals[0].parent.relative_to(cap)  # one file alone: the fixed cost
    one.mkdir(parents=True, exist_ok=True)
    os.link(originals[0], one / originals[0].name)
    return {
        "rows": copies * per_copy,
        "distinct_rows": per_copy,
        "hard_linked_copies": copies,
        "files": copies * len(originals),
        "disk_bytes": written,
        "capture_bytes_as_read": copies * written,
        "one_file_rows": _rows(originals[0]),
    }


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _tree_rss_bytes(pid: int) -> int:
    """The summed resident set of ``pid`` and its descendants (``/proc``)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run_cli(engine: str, root: Path, capture: Path, out: Path) -> dict[str, Any]:
    """``infertap drift run`` with ``engine`` as a process: wall time, peak tree RSS, exit code, the verdict."""
    cmd = [str(Path(sys.executable).parent / "infertap"), "drift", "run", str(capture)]
    cmd += ["--baseline", str(root / "baseline.json.gz"), "-o", str(out), "--no-progress", *ENGINE_ARGS[engine]]
    peak = 0
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.2):
            peak = max(peak, _tree_rss_bytes(p.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = p.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if p.returncode not in (0, 1):
        raise SystemExit(f"{engine} failed ({p.returncode}): {err[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": peak / 2**20, "exit_code": p.returncode, "doc": json.loads(out.read_text())}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal verdicts: counts, histograms, tests and decisions equal, statistics within 1e-12."""
    if any(a[k] != b[k] for k in ("n_features", "n_drifted", "dataset_drift", "malformed")):
        return False
    if a["window"]["records"] != b["window"]["records"]:
        return False
    for fa, fb in zip(a["features"], b["features"], strict=True):
        if any(fa[k] != fb[k] for k in ("name", "test", "drifted", "n_reference", "n_current", "histogram")):
            return False
        for k in ("statistic", "score"):
            if not np.isclose(fa[k], fb[k], rtol=1e-12, atol=1e-12):
                return False
    return True


def measure(engine: str, root: Path, rows: int, one_rows: int) -> dict[str, Any]:
    small = run_cli(engine, root, root / "one" / "cap", root / f"{engine}-one.json")
    big = run_cli(engine, root, root / "cap", root / f"{engine}.json")
    assert big["doc"]["window"]["records"] == rows, big["doc"]["window"]
    marginal = (big["wall_s"] - small["wall_s"]) / (rows - one_rows) if rows > one_rows else big["wall_s"] / rows
    return {
        "wall_s": big["wall_s"],
        "fixed_s": small["wall_s"],
        "peak_rss_mb": big["peak_rss_mb"],
        "rows_per_s_per_core": 1 / marginal / CORES,
        "cost_per_row_core_s": marginal * CORES,
        "exit_code": big["exit_code"],
        "load_average_1m_after": os.getloadavg()[0],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--distinct", type=int, default=2_000_000, help="distinct records written (the rest hard links)")
    ap.add_argument("--engines", default="local,spark", help="comma-separated: local, spark")
    ap.add_argument("--dir", type=Path, help="where the capture is (written when absent; default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep --dir afterwards (for a run of the other engine)")
    a = ap.parse_args()
    root = a.dir or Path(tempfile.mkdtemp(prefix="drift-spark-"))
    result: dict[str, Any] = json.loads(OUT.read_text()) if OUT.exists() else {}
    try:
        if not (root / "written.json").exists():
            root.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            info = write(root, a.rows, a.distinct)
            info["write_s"] = time.perf_counter() - t
            (root / "written.json").write_text(json.dumps(info))
        info = json.loads((root / "written.json").read_text())
        if info["rows"] != result.get("rows"):
            result = {}  # another capture: earlier figures do not compare
        result.update({k: v for k, v in info.items() if k != "write_s"}, features=FEATURES, cores=CORES)
        result["data_note"] = (
            "distinct records hard-linked across hourly partitions: the files are read from the page cache, so "
            "I/O is flattered; the per-row figures are CPU"
        )
        for engine in a.engines.split(","):
            result[engine] = measure(engine, root, info["rows"], info["one_file_rows"])
            docs = [root / f"{e}.json" for e in ("local", "spark")]
            if all(d.exists() for d in docs):
                local, spark = (json.loads(d.read_text()) for d in docs)
                result["verdicts_identical"] = same(local, spark)
                result["n_drifted"] = local["n_drifted"]
    finally:
        if a.dir is None or not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    if "spark" in result:
        s = result["spark"]
        result["extrapolation_1e9_rows"] = {
            "method": "fixed_s + 1e9 * cost_per_row_core_s / (executors * cores_per_executor); cost measured "
            "on local[2] from the page cache (add the storage read time of cold files)",
            "seconds": {f"{n}x4cores": s["fixed_s"] + 1e9 * s["cost_per_row_core_s"] / (n * 4) for n in (10, 50, 100)},
            "core_hours": 1e9 * s["cost_per_row_core_s"] / 3600,
        }
    result["machine"] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }
    result["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
