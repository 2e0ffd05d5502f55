"""Where the sidecar's memory goes, in both capture placements: import by import, then in the running process.

1. Imports. ``python -X importtime`` lists what the entry point of each placement loads (local:
   ``infertap proxy``; forward: ``python -m infertap.logger.forward``). A fresh interpreter then imports, one step
   at a time, the standard-library modules of that list, each third-party package in the order the entry point
   first loads it, and the entry point itself (infertap's own modules); the resident set size (RSS, with its
   anonymous and file-backed parts from ``/proc/self/status``) is read after each step. A step's figure is what
   it adds on top of the steps before it.
2. Running. The real process (the same command line as in a pod) serves ``--rate`` requests/s of the 1 KB V2
   request of ``benchmarks/proxy_overhead.py`` for ``--seconds`` in front of nginx; its RSS is read after start-up
   and after the load, and ``/proc/<pid>/smaps`` is summed by mapping: shared libraries by package, the heap, the
   thread stacks, and the other anonymous mappings (pymalloc arenas, glibc per-thread malloc arenas, Arrow's
   memory pool, NumPy buffers).

Writes ``benchmarks/results/sidecar_memory.json`` and prints a table per placement.
"""

from __future__ import annotations

import argparse
import itertools
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import proxy_overhead as po  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

#: The modules each placement's command line loads before serving (its entry point, then what it imports lazily).
ENTRY_POINTS = {
    "local": ["infertap.logger.cli", "infertap.logger.commands", "infertap.logger.server"],
    "forward": ["infertap.logger.forward.__main__", "infertap.logger.forward.sidecar"],
}

_CHILD = r"""
import importlib, json, re, sys
def status():
    text = open("/proc/self/status").read()
    get = lambda key: int(re.search(key + r":\s+(\d+)", text).group(1)) / 1024
    return {"rss_mb": get("VmRSS"), "anon_mb": get("RssAnon"), "file_mb": get("RssFile")}
print(json.dumps({"step": "interpreter", **status(), "modules": len(sys.modules)}), flush=True)
for step in json.loads(sys.argv[1]):
    before = len(sys.modules)
    for name in step["modules"]:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    print(json.dumps({"step": step["name"], **status(), "modules": len(sys.modules) - before}), flush=True)
"""


def import_order(entries: list[str]) -> list[str]:
    """Top-level module names in the order ``entries`` first load them (``python -X importtime``)."""
    code = "import importlib\nfor m in " + repr(entries) + ": importlib.import_module(m)"
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stderr
    seen: list[str] = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if not m:
            continue
        parts = m.group(1).split(".")
        # pyarrow's submodules load libraries of their own (libparquet, libarrow_compute ...): a step each
        name = (
            ".".join(parts[:2])
            if parts[0] == "pyarrow" and len(parts) > 1 and not parts[1].startswith("_")
            else parts[0]
        )
        if name not in seen:
            seen.append(name)
    return seen


def import_steps(placement: str) -> list[dict[str, Any]]:
    """RSS after each import step of ``placement``: stdlib, each third-party package, then infertap."""
    order = import_order(ENTRY_POINTS[placement])
    stdlib = [m for m in order if m.split(".")[0] in sys.stdlib_module_names or m.startswith("_")]
    third = [m for m in order if m not in stdlib and m != "infertap" and not m.startswith("__editable__")]
    steps = [{"name": "standard library (what the entry point uses)", "modules": stdlib}]
    steps += [{"name": m, "modules": [m]} for m in third]
    steps.append({"name": "infertap (own modules)", "modules": ENTRY_POINTS[placement]})
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(steps)], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    rows = [{"step": "interpreter", "rss_mb": 0.0, "anon_mb": 0.0, "file_mb": 0.0, "modules": 0}]
    rows += [json.loads(line) for line in out.splitlines()]
    return [
        {
            "step": row["step"],
            "added_rss_mb": round(row["rss_mb"] - prev["rss_mb"], 1),
            "added_anon_mb": round(row["anon_mb"] - prev["anon_mb"], 1),
            "added_file_mb": round(row["file_mb"] - prev["file_mb"], 1),
            "modules_loaded": row["modules"],
        }
        for prev, row in itertools.pairwise(rows)
        if row["modules"] or row["step"] == "interpreter"  # a step with no new module was loaded by an earlier one
    ]


def status_mb(pid: int) -> dict[str, float]:
    """RSS, its anonymous and file-backed parts, and the peak RSS of ``pid`` (MiB)."""
    text = Path(f"/proc/{pid}/status").read_text()

    def get(key: str) -> float:
        return round(int(re.search(key + r":\s+(\d+)", text).group(1)) / 1024, 1)  # type: ignore[union-attr]

    return {"rss_mb": get("VmRSS"), "anon_mb": get("RssAnon"), "file_mb": get("RssFile"), "peak_mb": get("VmHWM")}


def mapping_kind(path: str, size_kb: int) -> str:
    """The group a mapping of ``/proc/<pid>/smaps`` is summed into."""
    if path == "[heap]":
        return "heap (brk: the main thread's malloc arena)"
    if path.startswith("[stack"):
        return "main thread stack"
    if path.startswith("["):
        return "kernel ([vdso], [vvar])"
    if not path:
        if size_kb in (8192, 8196, 8200):
            return "anonymous: 8 MiB mappings (thread stacks)"
        if size_kb in (65536, 65532, 131072):
            return "anonymous: 64 MiB reservations (glibc per-thread malloc arenas)"
        return "anonymous: other (pymalloc arenas, Arrow's pool, NumPy buffers, large mallocs)"
    if "site-packages/" in path:
        return "library: " + path.split("site-packages/", 1)[1].split("/", 1)[0].split(".libs")[0]
    if "/python3" in path or "libpython" in path:
        return "library: Python (interpreter, stdlib extension modules)"
    return "library: system (" + Path(path).name.split(".so")[0] + ")"


def smaps_groups(pid: int) -> dict[str, float]:
    """Resident MiB of ``pid`` summed by :func:`mapping_kind`, largest first (groups under 0.1 MiB dropped)."""
    groups: dict[str, int] = {}
    path, size = "", 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            path = head[5] if len(head) > 5 else ""
        elif head[0] == "Size:":
            size = int(head[1])
        elif head[0] == "Rss:":
            kind = mapping_kind(path, size)
            groups[kind] = groups.get(kind, 0) + int(head[1])
    ordered = sorted(groups.items(), key=lambda kv: -kv[1])
    return {k: round(v / 1024, 1) for k, v in ordered if v >= 100}


def running(
    placement: str, rate: float, seconds: float, work: Path, upstream_port: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The process of ``placement`` (with ``env`` added) after start-up and after ``seconds`` of ``rate`` requests/s."""
    logs = work / "logs"
    collector = None
    out = work / f"{placement}-{len(list(work.iterdir()))}"
    if placement == "forward":
        collector, url = po.start_collector(work / "collected", logs)
        proc, port, _ = po.start_sidecar(upstream_port, out, logs, placement, url, extra_env=env)
    else:
        proc, port, _ = po.start_sidecar(upstream_port, out, logs, placement, extra_env=env)
    try:
        pid = proc.proc.pid
        idle = status_mb(pid)
        request = po.v2_body(1024, "inputs")
        target = f"http://127.0.0.1:{port}/v2/models/{po.MODEL}/infer"
        latencies, errors = po.run_load(target, request, rate, seconds)
        time.sleep(1.5)  # the last batch leaves the capture queue (batch_max_delay_s = 1 s)
        loaded = status_mb(pid)
        groups = smaps_groups(pid)
        threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
    finally:
        proc.stop()
        if collector is not None:
            collector.stop()
    return {
        "after_start": idle,
        "after_load": loaded,
        "requests": len(latencies) + errors,
        "threads": threads,
        "resident_by_mapping_mb": groups,
    }


def print_tables(result: dict[str, Any]) -> None:
    console = Console()
    for placement, data in result["placements"].items():
        table = Table(title=f"{placement} sidecar: RSS added by each import step (MiB)")
        for col in ("step", "RSS", "anon", "file", "modules"):
            table.add_column(col, justify="left" if col == "step" else "right")
        for row in data["imports"]:  # (none for a variant: the same imports as local)
            table.add_row(
                row["step"], f"{row['added_rss_mb']:.1f}", f"{row['added_anon_mb']:.1f}",
                f"{row['added_file_mb']:.1f}", str(row["modules_loaded"]),
            )  # fmt: skip
        if data["imports"]:
            console.print(table)
        run = data.get("running")
        if run:
            table = Table(
                title=f"{placement} sidecar running: resident MiB by mapping after {run['requests']} requests"
            )
            table.add_column("mapping")
            table.add_column("MiB", justify="right")
            for kind, mb in run["resident_by_mapping_mb"].items():
                table.add_row(kind, f"{mb:.1f}")
            for when in ("after_start", "after_load"):
                s = run[when]
                figures = f"{s['rss_mb']:.1f} ({s['anon_mb']:.1f} / {s['file_mb']:.1f} / {s['peak_mb']:.1f})"
                table.add_row(f"total {when.replace('_', ' ')} (anon / file / peak)", figures)
            console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s while running")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load before reading smaps")
    parser.add_argument("--imports-only", action="store_true", help="skip the running processes (no nginx needed)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE[,VAR=VALUE]",
        help="also run the local sidecar with these environment variables (e.g. an allocator setting); repeatable",
    )
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} vCPU, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "placements": {p: {"imports": import_steps(p)} for p in ENTRY_POINTS},
    }
    if not args.imports_only:
        work = Path(tempfile.mkdtemp(prefix="infertap-mem-"))
        (work / "logs").mkdir()
        upstream_port = po.free_port()
        nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = po.nginx_conf(work, "upstream", "01", po.upstream_server(upstream_port, po.v2_body(1024, "outputs")))
        nginx = po.ManagedProcess("nginx-upstream", [nginx_bin, "-c", str(conf)], work / "logs" / "nginx.log")
        try:
            nginx.wait_http(f"http://127.0.0.1:{upstream_port}/", timeout_s=10)
            for placement in ENTRY_POINTS:
                result["placements"][placement]["running"] = running(
                    placement, args.rate, args.seconds, work, upstream_port
                )
            for variant in args.variant:
                name, _, assignments = variant.partition(":")
                env = dict(a.split("=", 1) for a in assignments.split(",") if a)
                result["placements"][f"local, {name}"] = {
                    "imports": [],
                    "env": env,
                    "running": running("local", args.rate, args.seconds, work, upstream_port, env),
                }
        finally:
            nginx.stop()
            shutil.rmtree(work, ignore_errors=True)
        result["rate_rps"], result["load_seconds"] = args.rate, args.seconds
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sidecar_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print_tables(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
