"""What the sidecar adds to a request: latency at a fixed rate, CPU, memory, and throughput on one core.

Setup, all on loopback:
- upstream: nginx answering every POST with a fixed 1 KB Open Inference Protocol (V2) response;
- direct: the load generator talks to the upstream;
- sidecar: ``infertap proxy`` (capture on: decode + local Parquet) pinned to CPU 1, in front of the upstream;
- forward: the same sidecar in forward mode (``python -m infertap.logger.forward``, pinned to CPU 1): it frames
  exchanges into its raw spool and ships them to an ``infertap collector`` process (not pinned), which decodes
  and writes Parquet (docs/forward-protocol.md);
- nginx-proxy: nginx as a reverse proxy (one worker, pinned to CPU 1), the C reference.

Latency: an open-loop generator (:func:`open_loop`: raw asyncio protocols on uvloop, requests pre-encoded, answers
parsed by httptools; pinned to CPU 0) sends a 1 KB V2 request at a fixed rate; each latency is measured from the
request's scheduled send time, so a stalled server cannot hide queueing (no coordinated omission). Debian's compiled
generators do not measure that way: ``h2load --rate`` opens connections at a fixed rate rather than sending requests
at one and reports no percentiles of its own per request, ``hey -q`` and ``wrk`` are closed loops timed from the
actual send, and ``httperf`` reports means only.
Phases of ``--phase-s`` seconds for direct / sidecar / forward / nginx-proxy are interleaved over ``--rounds``
rounds, so drift in the machine's load hits all four alike; the added latency is the difference of percentiles
measured in one run.

CPU: the sidecar process's user+system time (all threads, from /proc) during its phases, per 1000 requests/s; in
forward mode also the collector's, during the forward phases (``collector_vcpu_per_1000_rps``).
Throughput on one core: ``wrk`` (closed loop, pinned to CPU 0) against a fresh sidecar and against nginx-proxy,
each pinned to CPU 1.

Writes ``benchmarks/results/proxy_overhead.json`` (local mode at the top level, forward mode in ``forward``, same
keys plus ``collector_vcpu_per_1000_rps``, ``collector_rss_mb`` and ``parquet_files``) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
import numpy as np
import pyarrow.parquet as pq
import uvloop
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import scheduling  # noqa: E402
from benchmarks.scheduling import Isolation  # noqa: E402
from infertap.demo.processes import ManagedProcess, free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODEL = "bench"


def v2_body(target_bytes: int, key: str) -> bytes:
    """A V2 JSON body (``inputs`` or ``outputs``) of about ``target_bytes`` bytes, FP32 data."""
    n = 8
    while True:
        doc = {key: [{"name": "x", "shape": [1, n], "datatype": "FP32", "data": [round(0.1 * i, 1) for i in range(n)]}]}
        if key == "outputs":
            doc["model_name"] = MODEL
        body = json.dumps(doc, separators=(",", ":")).encode()
        if len(body) >= target_bytes:
            return body
        n += 4


def nginx_conf(workdir: Path, name: str, cpu_mask: str, server: str) -> Path:
    """An nginx configuration with one worker pinned by ``cpu_mask`` (``worker_cpu_affinity``) and ``server``."""
    conf = f"""
worker_processes 1;
worker_cpu_affinity {cpu_mask};
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/{name}-body;
    proxy_temp_path {workdir}/{name}-proxy;
    fastcgi_temp_path {workdir}/{name}-fastcgi;
    uwsgi_temp_path {workdir}/{name}-uwsgi;
    scgi_temp_path {workdir}/{name}-scgi;
    keepalive_requests 1000000;
    {server}
}}
"""
    path = workdir / f"{name}.conf"
    path.write_text(conf)
    return path


def upstream_server(port: int, response: bytes) -> str:
    """nginx ``server`` answering every request with ``response`` (JSON)."""
    body = response.decode().replace("'", "\\'")
    return f"server {{ listen 127.0.0.1:{port}; location / {{ default_type application/json; return 200 '{body}'; }} }}"


def proxy_server(port: int, upstream_port: int) -> str:
    """nginx ``server`` proxying to ``upstream_port`` over pooled keep-alive connections."""
    return (
        f"upstream predictor {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n"
        f"    server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://predictor; "
        'proxy_http_version 1.1; proxy_set_header Connection ""; } }'
    )


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all threads included."""
    return sum(cpu_split(pid))


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the sidecar's main thread (the event loop) and of its other threads (capture, spool)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "event loop" if int(task.name) == pid else "other threads (capture worker)"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, hwm / 1024


class _LoadConnection(asyncio.Protocol):
    """One keep-alive connection of :func:`open_loop`: one request at a time, the answer parsed by httptools."""

    def __init__(self, load: _OpenLoad) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.scheduled = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.load.failed(self)

    def on_message_complete(self) -> None:
        self.load.answered(self, self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy:
            self.load.failed(self)

    def send(self, scheduled: float) -> None:
        assert self.transport is not None
        self.scheduled, self.busy = scheduled, True
        self.transport.write(self.load.request)


class _OpenLoad:
    """The state of one :func:`open_loop` run: idle connections, requests waiting for one, results."""

    def __init__(self, host: str, port: int, request: bytes, total: int, max_connections: int) -> None:
        self.host, self.port, self.request, self.total = host, port, request, total
        self.max_connections = max_connections
        self.loop = asyncio.get_running_loop()
        self.idle: list[_LoadConnection] = []
        self.waiting: deque[float] = deque()  # scheduled times of requests with no free connection yet
        self.opened = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.finished = self.loop.create_future()

    async def connect(self, scheduled: float | None) -> None:
        self.opened += 1
        try:
            _, conn = await self.loop.create_connection(lambda: _LoadConnection(self), self.host, self.port)
        except OSError:
            self.opened -= 1
            if scheduled is not None:
                self._count_error()
            return
        if scheduled is not None:
            conn.send(scheduled)
        else:
            self._free(conn)

    def dispatch(self, scheduled: float) -> None:
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None:
                conn.send(scheduled)
                return
            self.opened -= 1
        if self.opened < self.max_connections:
            self.loop.create_task(self.connect(scheduled))
        else:
            self.waiting.append(scheduled)

    def answered(self, conn: _LoadConnection, status: int) -> None:
        conn.busy = False
        if status == 200:
            self.latencies.append(time.perf_counter() - conn.scheduled)
        else:
            self.errors += 1
        self._free(conn)
        self._check_done()

    def failed(self, conn: _LoadConnection) -> None:
        conn.busy = False
        self.opened -= 1
        if conn.transport is not None:
            conn.transport.abort()
        self._count_error()
        if self.waiting:
            self.dispatch(self.waiting.popleft())

    def _free(self, conn: _LoadConnection) -> None:
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    def _count_error(self) -> None:
        self.errors += 1
        self._check_done()

    def _check_done(self) -> None:
        if len(self.latencies) + self.errors >= self.total and not self.finished.done():
            self.finished.set_result(None)


async def open_loop(url: str, body: bytes, rate: float, duration_s: float) -> tuple[list[float], int]:
    """Send ``rate`` POSTs/s of ``body`` to ``url`` for ``duration_s``: latencies (s) from each request's scheduled
    time, and the count of errors (non-200 answers, broken connections).

    Open loop: a request is due at its scheduled time whatever the answers before it; it goes out on an idle
    keep-alive connection, on a new one (at most 256), or, when all are busy, as soon as one frees, its latency
    still counted from the scheduled time (no coordinated omission). Requests are pre-encoded and answers parsed by
    httptools on raw asyncio protocols (uvloop), so the generator's own cost per request is a few microseconds;
    its timers wake at most once per millisecond, so a request leaves up to ~1 ms after its scheduled time, the same
    for every target measured.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    n = int(rate * duration_s)
    load = _OpenLoad(host, port, request, n, max_connections=256)
    await asyncio.gather(*(load.connect(None) for _ in range(8)))  # warm connections, not timed
    start = time.perf_counter() + 0.01
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and start + i / rate <= now:
            load.dispatch(start + i / rate)
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    if n:
        await asyncio.wait_for(load.finished, timeout=60)
    for conn in load.idle:
        if conn.transport is not None:
            conn.transport.close()
    return load.latencies, load.errors


def run_load(url: str, body: bytes, rate: float, duration_s: float) -> tuple[list[float], int]:
    """:func:`open_loop` on a fresh uvloop event loop."""
    return uvloop.run(open_loop(url, body, rate, duration_s))


def wrk(url: str, body: bytes, duration_s: float, workdir: Path) -> tuple[float, int]:
    """Closed-loop saturation with wrk pinned to CPU 0: (requests/s, total requests)."""
    script = workdir / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{body.decode()}]]\n'
    )
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{duration_s:.0f}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, total


def sidecar_env(upstream_port: int, port: int, admin: int, out: Path, name: str, collector_url: str) -> dict[str, str]:
    """The sidecar's environment: proxy on ``port``, admin on ``admin``, Parquet (local mode) or the raw spool
    (forward mode, when ``collector_url`` is set) under ``out``."""
    env = {
        "INFERTAP_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
        "INFERTAP_LISTEN_HOST": "127.0.0.1",
        "INFERTAP_LISTEN_PORT": str(port),
        "INFERTAP_ADMIN_PORT": str(admin),
        "INFERTAP_OUTPUT_DIR": str(out),
        "INFERTAP_UPSTREAM_READY_PATH": "/",
        "INFERTAP_QUEUE_MAX_RECORDS": "100000",
        "INFERTAP_POD_NAME": name,
    }
    if collector_url:
        env |= {"INFERTAP_FORWARD_COLLECTOR_URL": collector_url, "INFERTAP_FORWARD_SPOOL_DIR": str(out / "spool")}
    return env


def start_sidecar(
    upstream_port: int,
    out: Path,
    logs: Path,
    name: str,
    collector_url: str = "",
    extra_env: dict[str, str] | None = None,
) -> tuple[ManagedProcess, int, int]:
    """A local-mode sidecar, or a forward-mode one shipping to ``collector_url`` (spool under ``out``); ``extra_env``
    is added to its environment (allocator settings, in ``benchmarks/sidecar_memory.py``)."""
    port, admin = free_port(), free_port()
    env = sidecar_env(upstream_port, port, admin, out, name, collector_url)
    argv = ["taskset", "-c", "1", sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING", "proxy"]
    if collector_url:
        argv = ["taskset", "-c", "1", sys.executable, "-m", "infertap.logger.forward"]
    env |= extra_env or {}
    proc = ManagedProcess(name, argv, logs / f"{name}.log", env, cwd=ROOT)
    proc.wait_http(f"http://127.0.0.1:{admin}/readyz", timeout_s=30)
    return proc, port, admin


def start_collector(out: Path, logs: Path) -> tuple[ManagedProcess, str]:
    """``infertap collector`` writing Parquet under ``out``; returns the process and its URL."""
    port, admin = free_port(), free_port()
    env = {
        "INFERTAP_COLLECTOR_LISTEN_HOST": "127.0.0.1",
        "INFERTAP_COLLECTOR_LISTEN_PORT": str(port),
        "INFERTAP_COLLECTOR_ADMIN_PORT": str(admin),
        "INFERTAP_COLLECTOR_OUTPUT_DIR": str(out),
        "INFERTAP_COLLECTOR_JOURNAL_DIR": str(out.parent / f"{out.name}-journal"),
        "INFERTAP_COLLECTOR_POD_NAME": "collector-0",
    }
    argv = [sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING", "collector"]
    proc = ManagedProcess("collector", argv, logs / f"collector-{out.name}.log", env, cwd=ROOT)
    proc.wait_http(f"http://127.0.0.1:{admin}/readyz", timeout_s=30)
    return proc, f"http://127.0.0.1:{port}"


def records_by_pod(out: Path) -> dict[str, int]:
    """Rows per ``pod`` column value (the forward-mode sidecars' names) in the Parquet under ``out``."""
    counts: dict[str, int] = {}
    for f in out.rglob("*.parquet"):
        for pod in pq.read_table(f, columns=["pod"]).column("pod").to_pylist():
            counts[pod] = counts.get(pod, 0) + 1
    return counts


def parquet_files(out: Path) -> int:
    return len(list(out.rglob("*.parquet")))


def profile(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """Sample the sidecar with py-spy (all threads, idle excluded) and sum the samples by where they are.

    Returns the share of samples by category (own code, aiohttp server / client, capture stages, Parquet) and the
    top self-time frames; the collapsed stacks are written to ``out``.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    subprocess.run(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250", "--format", "raw",
         "--threads", "--output", str(out), "--nonblocking"],
        capture_output=True, check=True,
    )  # fmt: skip
    categories = {
        "capture thread: decode (codecs)": "logger/codecs/",
        "capture thread: Arrow encoding (batching)": "logger/batching.py",
        "capture thread: Parquet writing (sinks/file)": "logger/sinks/file.py",
        "capture thread: capture stage": "logger/capture.py",
        "event loop: proxy (logger/proxy.py, including what it calls)": "logger/proxy.py",
        "event loop: upstream pool (logger/upstream.py)": "logger/upstream.py",
        "event loop: metrics (prometheus_client)": "prometheus_client",
    }
    totals: dict[str, int] = dict.fromkeys(categories, 0)
    self_time: dict[str, int] = {}
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        for name, needle in categories.items():
            if needle in stack:
                totals[name] += n
        leaf = stack.split(";")[-1]
        self_time[leaf] = self_time.get(leaf, 0) + n
    # C code (uvloop, httptools, the kernel's socket calls) is sampled as the innermost Python frame: the loop's run
    totals["event loop: uvloop, httptools and system calls (C, below Runner.run)"] = sum(
        n for leaf, n in self_time.items() if leaf.startswith("Runner.run")
    )
    top = sorted(self_time.items(), key=lambda kv: -kv[1])[:12]
    return {
        "samples": samples,
        "inclusive_share": {k: round(v / samples, 3) for k, v in totals.items()} if samples else {},
        "top_self": [{"frame": f, "share": round(n / samples, 3)} for f, n in top] if samples else [],
    }


def records_in(out: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in out.rglob("*.parquet"))


def pct_ms(values: list[float], q: float) -> float:
    """The ``q``-th percentile (NumPy's linear interpolation) of ``values`` (seconds), in milliseconds; NaN if
    empty."""
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


SCHEDULING_MEANING = {
    "isolated": "request path (load generator, nginx, the sidecars' event loop threads) SCHED_FIFO, the collector "
    "SCHED_IDLE, the sidecars' capture threads SCHED_OTHER: a node with spare cores (benchmarks/scheduling.py)",
    "shared": "every task SCHED_OTHER as started: on this machine's PREEMPT_NONE, HZ=250 kernel a request arriving "
    "while other work runs on its CPU can wait up to a 4 ms tick (benchmarks/scheduling.py)",
}


#: keys of the whole run (machine, load, nginx, every path's latency, scheduling), repeated in ``forward`` so that it
#: has every key local mode has; ``profile`` is local mode's alone (``{}`` there)
RUN_KEYS = (
    "machine", "date", "rate_rps", "request_bytes", "response_bytes", "nginx_added_p50_ms", "nginx_added_p99_ms",
    "latency_ms", "scheduling",
)  # fmt: skip


def with_run_keys(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with :data:`RUN_KEYS` (and an empty ``profile``) copied into ``result["forward"]``."""
    forward = {k: result[k] for k in RUN_KEYS if k in result} | {"profile": {}} | result["forward"]
    return result | {"forward": forward}


def added_by_mode(lat: dict[str, list[float]]) -> dict[str, float]:
    """Added p50/p99 (ms) of local mode, forward mode and nginx-proxy over direct, from one scheduling mode's
    pooled latencies."""
    out: dict[str, float] = {}
    for name, key in (("sidecar", "local"), ("forward", "forward"), ("nginx-proxy", "nginx")):
        for q in (50, 99):
            out[f"{key}_added_p{q}_ms"] = round(pct_ms(lat[name], q) - pct_ms(lat["direct"], q), 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s")
    parser.add_argument("--phase-s", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--wrk-s", type=float, default=5.0, help="seconds of each saturation run")
    scheduling.add_argument(parser)
    parser.add_argument("--profile", action="store_true", help="sample the sidecar with py-spy in an extra phase")
    parser.add_argument("--load-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        os.sched_setaffinity(0, {0})
        run_load(args.load_only, v2_body(1024, "inputs"), args.rate, args.phase_s)
        return 0
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None and not Path("/usr/sbin/nginx").exists():
            raise SystemExit(f"{tool} not found: apt-get install nginx-light wrk util-linux")
    os.sched_setaffinity(0, {0})
    RESULTS.mkdir(parents=True, exist_ok=True)
    request, response = v2_body(1024, "inputs"), v2_body(1024, "outputs")
    work = Path(tempfile.mkdtemp(prefix="infertap-bench-"))
    logs = work / "logs"
    upstream_port, nginx_proxy_port = free_port(), free_port()
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    work.joinpath("logs").mkdir()
    nginx = ManagedProcess(
        "nginx-upstream",
        [nginx_bin, "-c", str(nginx_conf(work, "upstream", "01", upstream_server(upstream_port, response)))],
        logs / "nginx-upstream.log",
    )
    nginx_proxy = ManagedProcess(
        "nginx-proxy",
        [nginx_bin, "-c", str(nginx_conf(work, "proxy", "10", proxy_server(nginx_proxy_port, upstream_port)))],
        logs / "nginx-proxy.log",
    )
    sidecar = saturated = forward = fwd_sat = collector = None
    try:
        nginx.wait_http(f"http://127.0.0.1:{upstream_port}/", timeout_s=10)
        nginx_proxy.wait_http(f"http://127.0.0.1:{nginx_proxy_port}/", timeout_s=10)
        data = work / "data"
        sidecar, port, _ = start_sidecar(upstream_port, data, logs, "sidecar")
        collector, collector_url = start_collector(work / "collected", logs)
        forward, fwd_port, _ = start_sidecar(upstream_port, work / "forward", logs, "forward", collector_url)
        path = f"/v2/models/{MODEL}/infer"
        targets = {
            "direct": f"http://127.0.0.1:{upstream_port}{path}",
            "sidecar": f"http://127.0.0.1:{port}{path}",
            "forward": f"http://127.0.0.1:{fwd_port}{path}",
            "nginx-proxy": f"http://127.0.0.1:{nginx_proxy_port}{path}",
        }
        run_load(targets["sidecar"], request, 200, 1.0)  # warm-up (connections, imports)
        run_load(targets["forward"], request, 200, 1.0)
        run_load(targets["direct"], request, 200, 1.0)
        isolation = Isolation(
            request_threads=[0, sidecar.proc.pid, forward.proc.pid],  # 0: this thread, the load generator
            request_processes=[nginx.proc.pid, nginx_proxy.proc.pid],
            background_processes=[collector.proc.pid],
        )
        modes = scheduling.modes(args.scheduling)
        lats: dict[str, dict[str, list[float]]] = {m: {k: [] for k in targets} for m in modes}
        rounds_by_mode: dict[str, list[dict[str, list[float]]]] = {m: [] for m in modes}
        errors: dict[str, int] = dict.fromkeys(targets, 0)
        sidecar_cpu = sidecar_wall = sidecar_sys = 0.0
        per_thread: dict[str, float] = {}
        fwd_cpu = fwd_wall = fwd_sys = collector_cpu = 0.0
        fwd_thread: dict[str, float] = {}
        for _, mode in ((r, m) for r in range(args.rounds) for m in modes):
            isolation.apply(mode)
            lat, per_round = lats[mode], rounds_by_mode[mode]
            per_round.append({})
            for name, url in targets.items():
                cpu0, t0 = cpu_seconds(sidecar.proc.pid), time.perf_counter()
                sys0 = cpu_split(sidecar.proc.pid)[1]
                threads0 = thread_cpu(sidecar.proc.pid)
                fcpu0, fsys0, fthreads0 = (
                    cpu_seconds(forward.proc.pid),
                    cpu_split(forward.proc.pid)[1],
                    thread_cpu(forward.proc.pid),
                )
                ccpu0 = cpu_seconds(collector.proc.pid)
                got, errs = run_load(url, request, args.rate, args.phase_s)
                if name == "forward":
                    fwd_cpu += cpu_seconds(forward.proc.pid) - fcpu0
                    fwd_sys += cpu_split(forward.proc.pid)[1] - fsys0
                    fwd_wall += time.perf_counter() - t0
                    collector_cpu += cpu_seconds(collector.proc.pid) - ccpu0
                    for thread, cpu in thread_cpu(forward.proc.pid).items():
                        fwd_thread[thread] = fwd_thread.get(thread, 0.0) + cpu - fthreads0.get(thread, 0.0)
                if name == "sidecar":
                    sidecar_cpu += cpu_seconds(sidecar.proc.pid) - cpu0
                    sidecar_sys += cpu_split(sidecar.proc.pid)[1] - sys0
                    sidecar_wall += time.perf_counter() - t0
                    for thread, cpu in thread_cpu(sidecar.proc.pid).items():
                        per_thread[thread] = per_thread.get(thread, 0.0) + cpu - threads0.get(thread, 0.0)
                lat[name] += got
                per_round[-1][name] = got
                errors[name] += errs
        isolation.share()  # before any process is started from this thread: children inherit its policy
        measured = modes[-1]  # isolated when it could be measured
        lat, per_round = lats[measured], rounds_by_mode[measured]
        sent_through_sidecar = sum(len(v["sidecar"]) for v in lats.values()) + errors["sidecar"] + 200  # + warm-up
        sent_through_forward = sum(len(v["forward"]) for v in lats.values()) + errors["forward"] + 200
        prof: dict[str, Any] = {}
        if args.profile:
            loop_task = subprocess.Popen(
                [sys.executable, __file__, "--load-only", targets["sidecar"], "--rate", str(args.rate),
                 "--phase-s", str(args.phase_s + 2)]
            )  # fmt: skip
            prof = profile(sidecar.proc.pid, args.phase_s, RESULTS / "proxy_profile.txt")
            loop_task.wait()
            sent_through_sidecar += int(args.rate * (args.phase_s + 2))
        rss_now, rss_peak = rss_mb(sidecar.proc.pid)
        fwd_rss_now, fwd_rss_peak = rss_mb(forward.proc.pid)
        collector_rss_now, collector_rss_peak = rss_mb(collector.proc.pid)
        sidecar.stop()
        forward.stop()  # drains: every frame delivered to the collector
        records = records_in(data)
        fwd_sat, fwd_sat_port, _ = start_sidecar(
            upstream_port, work / "forward-sat", logs, "forward-sat", collector_url
        )
        fwd_max_rps, fwd_sat_total = wrk(f"http://127.0.0.1:{fwd_sat_port}{path}", request, args.wrk_s, work)
        fwd_sat.stop()
        collector.stop()  # flushes: every record in a closed Parquet file
        fwd_records = records_by_pod(work / "collected")
        saturated, sat_port, _ = start_sidecar(upstream_port, work / "data-sat", logs, "sidecar-saturated")
        max_rps, sat_total = wrk(f"http://127.0.0.1:{sat_port}{path}", request, args.wrk_s, work)
        saturated.stop()
        nginx_rps, _ = wrk(targets["nginx-proxy"], request, args.wrk_s, work)
        sat_records = records_in(work / "data-sat")
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        for proc in (sidecar, saturated, forward, fwd_sat, collector, nginx_proxy, nginx):
            if proc is not None:
                proc.stop()
    achieved_rate = sum(len(v["sidecar"]) for v in lats.values()) / (len(modes) * args.rounds * args.phase_s)
    result: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} vCPU, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "rate_rps": args.rate,
        "request_bytes": len(request),
        "response_bytes": len(response),
        "added_p50_ms": round(pct_ms(lat["sidecar"], 50) - pct_ms(lat["direct"], 50), 3),
        "added_p99_ms": round(pct_ms(lat["sidecar"], 99) - pct_ms(lat["direct"], 99), 3),
        "added_ms_by_round": [
            {q: round(pct_ms(r["sidecar"], int(q[1:])) - pct_ms(r["direct"], int(q[1:])), 3) for q in ("p50", "p99")}
            for r in per_round
        ],
        "nginx_added_p50_ms": round(pct_ms(lat["nginx-proxy"], 50) - pct_ms(lat["direct"], 50), 3),
        "nginx_added_p99_ms": round(pct_ms(lat["nginx-proxy"], 99) - pct_ms(lat["direct"], 99), 3),
        "latency_ms": {k: {"p50": round(pct_ms(v, 50), 3), "p99": round(pct_ms(v, 99), 3)} for k, v in lat.items()},
        "errors": errors,
        "vcpu_per_1000_rps": round(sidecar_cpu / sidecar_wall / (achieved_rate / 1000.0), 3),
        "vcpu_per_1000_rps_kernel_share": round(sidecar_sys / sidecar_cpu, 3) if sidecar_cpu else None,
        "vcpu_per_1000_rps_by_thread": {
            k: round(v / sidecar_wall / (achieved_rate / 1000.0), 3) for k, v in sorted(per_thread.items()) if v > 0
        },
        "rss_mb": round(rss_now, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "max_rps_one_core": round(max_rps, 1),
        "nginx_max_rps_one_core": round(nginx_rps, 1),
        "saturation_requests": sat_total,
        "saturation_records_written": sat_records,
        "requests_sent": sent_through_sidecar,
        "records_written": records,
        "parquet_files": parquet_files(data),
        "profile": prof,
        "scheduling": {
            "measured": measured,
            "meaning": SCHEDULING_MEANING[measured],
            "by_mode": {m: added_by_mode(lats[m]) for m in modes},
        },
    }
    fwd_rate = sum(len(v["forward"]) for v in lats.values()) / (len(modes) * args.rounds * args.phase_s)
    result["forward"] = {
        "added_p50_ms": round(pct_ms(lat["forward"], 50) - pct_ms(lat["direct"], 50), 3),
        "added_p99_ms": round(pct_ms(lat["forward"], 99) - pct_ms(lat["direct"], 99), 3),
        "added_ms_by_round": [
            {q: round(pct_ms(r["forward"], int(q[1:])) - pct_ms(r["direct"], int(q[1:])), 3) for q in ("p50", "p99")}
            for r in per_round
        ],
        "errors": errors["forward"],
        "vcpu_per_1000_rps": round(fwd_cpu / fwd_wall / (fwd_rate / 1000.0), 3),
        "vcpu_per_1000_rps_kernel_share": round(fwd_sys / fwd_cpu, 3) if fwd_cpu else None,
        "vcpu_per_1000_rps_by_thread": {
            k: round(v / fwd_wall / (fwd_rate / 1000.0), 3) for k, v in sorted(fwd_thread.items()) if v > 0
        },
        "collector_vcpu_per_1000_rps": round(collector_cpu / fwd_wall / (fwd_rate / 1000.0), 3),
        "collector_rss_mb": round(collector_rss_now, 1),
        "collector_rss_peak_mb": round(collector_rss_peak, 1),
        "rss_mb": round(fwd_rss_now, 1),
        "rss_peak_mb": round(fwd_rss_peak, 1),
        "max_rps_one_core": round(fwd_max_rps, 1),
        "nginx_max_rps_one_core": round(nginx_rps, 1),
        "saturation_requests": fwd_sat_total,
        "requests_sent": sent_through_forward,
        "saturation_records_written": fwd_records.get("forward-sat", 0),
        "records_written": fwd_records.get("forward", 0),
        "parquet_files": parquet_files(work / "collected"),
    }
    result = with_run_keys(result)
    (RESULTS / "proxy_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"proxy overhead at {args.rate:.0f} rps (1 KB V2 request and response)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
