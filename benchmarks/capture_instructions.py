"""Instructions per record of local mode's capture worker, stage by stage, counted by valgrind's callgrind.

The exchanges are what ``proxy_overhead.py`` sends through a local-mode sidecar: a 1 KB Open Inference Protocol
(V2) FP32 request and a 1 KB V2 FP32 answer (``v2_body``), with the request and response headers of that run
(the client's and nginx's), routed as the proxy routes them. They go through the real capture path, the stages
cumulative, each configuration in a process of its own under ``valgrind --tool=callgrind``:

- ``decode``: the V2 codec alone on both bodies (``registry.decode``);
- ``capture``: the capture stage (``Capturer.process``: sampling, header allow-list, decoding, the record);
- ``arrow``: plus the Arrow encoding of every 1,000 records (``batching.to_batches``, as the worker batches them
  at 1000 rps);
- ``parquet``: plus the Parquet file sink (``FileSink.write`` of each batch, ``flush`` at the end: files closed
  and renamed);
- ``worker``: the capture pipeline as the sidecar runs it (``CapturePipeline``: the exchanges offered to its
  queue, its worker thread drains them, ``stop`` flushes), so the worker's own bookkeeping counts too.

Each configuration runs twice, with ``--small`` and ``--large`` exchanges (both processes build ``--large``
exchanges, import the same modules, warm up the same way and then apply the sidecar's garbage collector settings,
``frontend.tune_gc``): Ir per record is the difference of the two
processes' totals divided by the difference in records, which cancels start-up, imports and first-call costs.
Stage costs are the differences between consecutive configurations.

Writes ``benchmarks/results/capture_instructions.json`` (one entry per ``--label``) and prints a table.
``--native`` measures the same stages in this process with ``time.process_time`` instead (µs per record, noisy;
for a quick look). Needs valgrind (Debian package ``valgrind``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.proxy_overhead import MODEL, v2_body  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PATH = f"/v2/models/{MODEL}/infer"
STAGES = ("decode", "capture", "arrow", "parquet", "worker")
BATCH = 1000  # records per Arrow batch: what the worker gathers in its 1 s batch delay at 1000 rps


def exchanges(n: int) -> list[Any]:
    """``n`` exchanges of the proxy benchmark: 1 KB V2 request and answer, the headers its client and nginx send."""
    from infertap.logger.codecs.registry import route
    from infertap.logger.exchange import Exchange

    request, answer = v2_body(1024, "inputs"), v2_body(1024, "outputs")
    start = 1_796_000_000_000_000_000  # 2026-11-30 UTC, ns
    out = []
    for i in range(n):
        rid = f"{i:032x}"
        t0 = start + i * 1_000_000
        request_headers = [
            (b"Host", b"127.0.0.1"),
            (b"User-Agent", b"bench/1.0"),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"gzip, deflate"),
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(request)).encode()),
        ]
        response_headers = [
            (b"Server", b"nginx/1.22.1"),
            (b"Date", b"Mon, 30 Nov 2026 00:00:00 GMT"),
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(answer)).encode()),
            (b"Connection", b"keep-alive"),
            (b"X-Request-Id", rid.encode()),
        ]
        out.append(
            Exchange(
                request_id=rid, start_unix_ns=t0, end_unix_ns=t0 + 400_000, upstream_s=0.0003, total_s=0.0004,
                method="POST", path=PATH, query="", status_code=200, request_headers=request_headers,
                response_headers=response_headers, request_body=request, response_body=answer,
                request_body_bytes=len(request), response_body_bytes=len(answer), route=route(PATH),
            )
        )  # fmt: skip
    return out


def capturer() -> Any:
    """The capture stage with the sidecar's default settings (``ProxySettings``: sample rate 1, allow-list ...)."""
    from infertap.logger.config import ProxySettings
    from infertap.logger.metrics import ProxyMetrics
    from infertap.logger.server import build_pipeline
    from infertap.logger.sinks.memory import MemorySink

    settings = ProxySettings(upstream_url="http://127.0.0.1:1", model_name=MODEL)
    return build_pipeline(settings, MemorySink(), ProxyMetrics(), seed=0).capturer


def run_stage(stage: str, exs: list[Any], out: Path) -> None:
    """Put ``exs`` through the capture path up to ``stage`` (cumulative, see the module docs)."""
    from infertap.logger import batching
    from infertap.logger.codecs import registry
    from infertap.logger.metrics import ProxyMetrics
    from infertap.logger.pipeline import CapturePipeline
    from infertap.logger.sinks.file import FileSink

    if stage == "decode":
        for ex in exs:
            registry.decode("v2", ex.request_body, None, response=False)
            registry.decode("v2", ex.response_body, None, response=True)
        return
    cap = capturer()
    if stage == "worker":
        pipe = CapturePipeline(cap, FileSink(out, pod="bench"), ProxyMetrics(), queue_max=len(exs) + 1,
                               batch_max_records=BATCH, batch_max_delay_s=1.0, flush_interval_s=30.0)  # fmt: skip
        for ex in exs:
            pipe.offer(ex)
        pipe.start()
        left = pipe.stop(600.0)
        if left:
            raise RuntimeError(f"{left} exchanges left in the queue")
        return
    sink = FileSink(out, pod="bench") if stage == "parquet" else None
    if sink is not None:
        sink.start()
    for i in range(0, len(exs), BATCH):
        recs = [cap.process(ex) for ex in exs[i : i + BATCH]]
        if stage == "capture":
            continue
        batches = batching.to_batches(recs)
        if sink is not None:
            for b in batches:
                sink.write(b)
    if sink is not None:
        sink.flush()


def child(stage: str, records: int, build: int) -> int:
    """One measured process: build ``build`` exchanges, warm up on a batch, then run ``records`` through ``stage``."""
    from infertap.logger.frontend import tune_gc

    exs = exchanges(build)
    with tempfile.TemporaryDirectory(prefix="capture-ir-") as tmp:
        run_stage(stage, exchanges(BATCH), Path(tmp) / "warm")  # first-call costs, paid by both processes
        tune_gc()  # the sidecar's garbage collector settings, applied once started (logger/server.py)
        run_stage(stage, exs[:records], Path(tmp) / "data")
    return 0


def total_ir(base: Path) -> int:
    """Ir of every thread of a callgrind dump (``base`` and its per-thread files)."""
    total = 0
    for f in [base, *base.parent.glob(base.name + ".*")]:
        if f.exists():
            m = re.search(r"^(?:totals|summary):\s*(\d+)", f.read_text(errors="replace"), re.M)
            total += int(m.group(1)) if m else 0
    return total


def callgrind(stage: str, records: int, build: int, tmp: Path) -> int:
    """Total Ir of a child process running ``stage`` on ``records`` exchanges."""
    base = tmp / f"callgrind.{stage}.{records}"
    cmd = ["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={base}", sys.executable,
           __file__, "--child", stage, "--records", str(records), "--build", str(build)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return total_ir(base)


def native(stage: str, records: int) -> float:
    """µs of CPU (``time.process_time``, this process) per record for ``stage`` on ``records`` exchanges."""
    from infertap.logger.frontend import tune_gc

    exs = exchanges(records)
    with tempfile.TemporaryDirectory(prefix="capture-ir-") as tmp:
        run_stage(stage, exchanges(BATCH), Path(tmp) / "warm")
        tune_gc()
        t = time.process_time()
        run_stage(stage, exs, Path(tmp) / "data")
        return (time.process_time() - t) / records * 1e6


def stage_costs(stages: list[str], per_record: dict[str, float]) -> dict[str, int]:
    """Ir per record of each stage: a configuration's figure minus the one before it (``worker``: minus
    ``parquet``, the worker's own bookkeeping)."""
    out: dict[str, int] = {}
    prev = 0.0
    for stage in stages:
        if stage == "worker":
            if "parquet" in per_record:
                out["worker bookkeeping"] = round(per_record["worker"] - per_record["parquet"])
            continue
        out[stage] = round(per_record[stage] - prev)
        prev = per_record[stage]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="name of this run in the results file")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated configurations")
    parser.add_argument("--small", type=int, default=1000, help="records of the first process")
    parser.add_argument("--large", type=int, default=3000, help="records of the second process")
    parser.add_argument("--native", action="store_true", help="process_time in this process instead of callgrind")
    parser.add_argument("--output", type=Path, default=RESULTS / "capture_instructions.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.records, args.build)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if unknown := sorted(set(stages) - set(STAGES)):
        print(f"error: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    console = Console()
    if args.native:
        table = Table(title=f"capture path, µs of CPU per record ({args.large} records, process_time)")
        table.add_column("configuration")
        table.add_column("µs / record", justify="right")
        for stage in stages:
            table.add_row(stage, f"{native(stage, args.large):.1f}")
        console.print(table)
        return 0
    if shutil.which("valgrind") is None:
        print("error: valgrind is not installed (Debian package valgrind)", file=sys.stderr)
        return 2
    per_record: dict[str, float] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="capture-ir-") as tmp:
        for stage in stages:
            small = callgrind(stage, args.small, args.large, Path(tmp))
            large = callgrind(stage, args.large, args.large, Path(tmp))
            per_record[stage] = (large - small) / (args.large - args.small)
            console.print(f"{stage}: {per_record[stage]:,.0f} Ir per record")
    result = {
        "label": args.label,
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "node": platform.node(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "records": {"small": args.small, "large": args.large, "batch": BATCH},
        "ir_per_record": {k: round(v) for k, v in per_record.items()},
        "stage_ir_per_record": stage_costs(stages, per_record),
    }
    old = json.loads(args.output.read_text()) if args.output.exists() else {}
    old[args.label] = result
    args.output.write_text(json.dumps(old, indent=2) + "\n")
    costs = stage_costs(stages, per_record)
    table = Table(title=f"capture path, Ir per record ({args.label}; callgrind, {args.large} - {args.small} records)")
    table.add_column("configuration")
    table.add_column("Ir / record", justify="right")
    table.add_column("what it adds", justify="right")
    for stage in stages:
        added = costs.get("worker bookkeeping" if stage == "worker" else stage)
        table.add_row(stage, f"{per_record[stage]:,.0f}", "" if added is None else f"{added:,}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
