"""Instructions per proxied request, counted by valgrind's callgrind: deterministic where seconds swing.

Setup, on loopback: nginx answers every POST with a fixed 1 KB Open Inference Protocol (V2) response (as in
``proxy_overhead.py``). Each configuration below runs as its own process under
``valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no`` in front of it: started and warmed up
uninstrumented, then instrumentation is switched on (``callgrind_control -i on``), a client in this process sends
``--requests`` 1 KB V2 requests round-robin over ``--connections`` keep-alive connections, one at a time (each
answer read before the next request goes out, so no two requests share a read), waits until the sidecar's threads
are idle (the capture worker or framer done with the last batch), switches instrumentation off and dumps
(``callgrind_control -d``). Ir (instructions executed) / requests, per thread.

Configurations (stage deltas by ablation):

- ``relay``: the proxy with a consumer that drops every exchange and no request metrics: forwarding alone;
- ``relay+metrics``: the same plus the request metrics (``ProxyMetrics.observe_request``);
- ``forward``: ``python -m infertap.logger.forward`` shipping to an ``infertap collector`` (not measured);
- ``local``: ``infertap proxy``, capture on (decode + Parquet under a temporary directory);
- ``nginx-proxy``: nginx as reverse proxy (``master_process off``: one process), the C reference.

For the event-loop thread the inclusive cost of named C functions (llhttp's parser, the socket system calls,
the Python allocator ...) is read from the dump with ``callgrind_annotate --inclusive=yes``.

Writes ``benchmarks/results/proxy_instructions.json`` and prints a table. Needs valgrind (Debian package
``valgrind``) and nginx.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
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

from benchmarks.proxy_overhead import (  # noqa: E402
    nginx_conf,
    proxy_server,
    sidecar_env,
    start_collector,
    upstream_server,
    v2_body,
)
from infertap.demo.processes import ManagedProcess, free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODEL = "bench"
PATH = f"/v2/models/{MODEL}/infer"
CONFIGS = ("relay", "relay+metrics", "forward", "local", "nginx-proxy")
#: Components of the exclusive Ir (where the instructions are executed), by the source file callgrind names.
COMPONENTS = (
    ("llhttp (HTTP parsing, C)", ("/llhttp/",)),
    ("httptools (Cython glue)", ("httptools/",)),
    ("libuv (C)", ("libuv",)),
    ("uvloop (Cython)", ("uvloop/",)),
    ("CPython interpreter (bytecode)", ("Python/ceval.c", "pycore_ceval.h", "pycore_frame.h", "Python/frame.c")),
    ("CPython allocator (obmalloc)", ("obmalloc.c",)),
    ("CPython objects (bytes, dict, list, tuple ...)", ("/Objects/", "/Include/")),
    ("CPython modules (asyncio C, time, locks ...)", ("/Modules/", "/Python/")),
    ("libc (malloc, memcpy, syscall wrappers)", ("libc.so", "/string/", "/malloc/", "sysdeps", "nptl")),
    ("msgpack", ("msgpack",)),
    ("pyarrow / Arrow / Parquet", ("arrow", "parquet")),
    ("NumPy", ("numpy",)),
    ("nginx", ("nginx",)),
)
#: Functions whose inclusive Ir (with what they call) is reported per thread, callgrind names.
FUNCTIONS = {
    "httptools feed_data (llhttp + Python callbacks)": "__pyx_pw_9httptools_6parser_6parser_10HttpParser_13feed_data",
    "lock acquire (PyThread_acquire_lock_timed)": "PyThread_acquire_lock_timed",
    "os.urandom (uuid4)": "_PyOS_URandom",
    "clock_gettime": "clock_gettime",
    "garbage collector (gc_collect_main)": "gc_collect_main",
}


def request_bytes(body: bytes) -> bytes:
    """A keep-alive 1 KB V2 POST as an HTTP client library writes it."""
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n"
        f"Accept-Encoding: gzip, deflate\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_answer(sock: socket.socket, buf: bytearray) -> int:
    """Read one answer with ``Content-Length`` from ``sock`` (leftover bytes kept in ``buf``); its status."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        buf += data
    head_end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:head_end])
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(buf) < head_end + length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        buf += data
    del buf[: head_end + length]
    return int(head.split(b" ", 2)[1])


def send_requests(port: int, n: int, connections: int, body: bytes) -> int:
    """Send ``n`` requests round-robin over ``connections`` keep-alive connections, one at a time; non-200s."""
    payload = request_bytes(body)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    bufs = [bytearray() for _ in socks]
    bad = 0
    try:
        for i in range(n):
            k = i % connections
            socks[k].sendall(payload)
            bad += read_answer(socks[k], bufs[k]) != 200
    finally:
        for s in socks:
            s.close()
    return bad


def thread_ticks(pid: int) -> dict[int, int]:
    """CPU ticks (user + system) of every thread of ``pid``."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = int(fields[11]) + int(fields[12])
    return out


def wait_idle(pid: int, quiet_s: float = 1.5, timeout_s: float = 120.0) -> None:
    """Return once no thread of ``pid`` used CPU for ``quiet_s`` (the last batch framed, encoded or written)."""
    deadline = time.monotonic() + timeout_s
    last = thread_ticks(pid)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = thread_ticks(pid)
        busy = sum(now.get(t, 0) - last.get(t, 0) for t in now)
        last = now
        if busy > 0:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def dump_files(base: Path) -> dict[int, Path]:
    """The dump's per-thread files (``base.1-01``, ``base.1-02`` ...) by thread number (1: the main thread)."""
    out: dict[int, Path] = {}
    for f in base.parent.glob(base.name + ".1-*"):
        out[int(f.name.rsplit("-", 1)[1])] = f
    return out


def total_ir(path: Path) -> int:
    text = path.read_text(errors="replace")
    m = re.search(r"^totals:\s*(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


_LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(.*?):([^\s:']+)(?:'\d+)?(?: \[(.*)\])?$")


def annotate(path: Path, inclusive: bool) -> list[tuple[int, str, str, str]]:
    """``callgrind_annotate`` of one thread's dump: (Ir, source file, function, object) rows, largest first."""
    out = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        m = _LINE.match(line)
        if m and "PROGRAM TOTALS" not in line:
            rows.append((int(m.group(1).replace(",", "")), m.group(2), m.group(3), m.group(4) or ""))
    return rows


def breakdown(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Exclusive Ir by component (:data:`COMPONENTS`, the rest ``other``) and inclusive Ir of :data:`FUNCTIONS`."""
    components: dict[str, int] = dict.fromkeys([c for c, _ in COMPONENTS] + ["other"], 0)
    for ir, source, _, obj in annotate(path, inclusive=False):
        where = f"{source} {obj}"
        name = next((c for c, needles in COMPONENTS if any(n in where for n in needles)), "other")
        components[name] += ir
    inclusive: dict[str, int] = {}
    for ir, _, fn, _ in annotate(path, inclusive=True):
        inclusive.setdefault(fn, ir)  # the first row of a (possibly recursive) function is its outermost cost
    return components, {label: inclusive.get(fn, 0) for label, fn in FUNCTIONS.items()}


def strace_counts(path: Path) -> dict[str, int]:
    """System calls by name from ``strace -c`` output."""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            try:
                counts[parts[-1]] = int(parts[3])
            except ValueError:
                continue
    return counts


def start(
    config: str, upstream_port: int, out: Path, collector_url: str, tool: list[str]
) -> tuple[ManagedProcess, int]:
    """Start one configuration (under ``tool``, e.g. valgrind) and wait until it serves; the process and its port.

    A start that fails (a free port taken by another process meanwhile) is tried again on other ports, twice.
    """
    for attempt in range(3):
        port, admin = free_port(), free_port()
        env = sidecar_env(upstream_port, port, admin, out, "bench", collector_url if config == "forward" else "")
        if config == "local":
            argv = [sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING", "proxy"]
        elif config == "forward":
            argv = [sys.executable, "-m", "infertap.logger.forward"]
        elif config == "nginx-proxy":
            conf = nginx_conf(out, "proxy", "1", proxy_server(port, upstream_port))
            conf.write_text("master_process off;\n" + conf.read_text().replace("worker_cpu_affinity 1;", ""))
            argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf)]
        else:
            argv = [sys.executable, __file__, "--serve", config]
        proc = ManagedProcess(config, tool + argv, out / f"{config}.log", env, cwd=ROOT)
        ready = f"http://127.0.0.1:{port}/" if config == "nginx-proxy" else f"http://127.0.0.1:{admin}/readyz"
        try:
            proc.wait_http(ready, timeout_s=600)
        except RuntimeError:
            proc.stop()
            if attempt == 2:
                raise
            continue
        except BaseException:
            proc.stop()
            raise
        return proc, port
    raise AssertionError("unreachable")


def syscalls(
    config: str, upstream_port: int, out: Path, collector_url: str, n: int, conns: int, body: bytes
) -> dict[str, float]:
    """System calls per request by name, all threads (``strace -c -f``), the configuration running natively
    (valgrind adds its own: a pipe lock per thread switch, clock_gettime without the vDSO)."""
    if shutil.which("strace") is None:
        return {}
    proc, port = start(config, upstream_port, out, collector_url, [])
    trace = out / "strace.txt"
    try:
        send_requests(port, 300, conns, body)
        wait_idle(proc.proc.pid, quiet_s=0.5)
        strace = subprocess.Popen(["strace", "-c", "-f", "-o", str(trace), "-p", str(proc.proc.pid)],
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(1.0)  # attached to every thread
        send_requests(port, n, conns, body)
        wait_idle(proc.proc.pid, quiet_s=0.5)
        strace.send_signal(signal.SIGINT)
        strace.wait(60)
    finally:
        proc.stop()
    counts = strace_counts(trace)
    return {k: round(v / n, 2) for k, v in sorted(counts.items()) if v >= n / 100}


def measure(
    config: str, upstream_port: int, work: Path, collector_url: str, n: int, connections: int, body: bytes
) -> dict[str, Any]:
    """One configuration under callgrind: Ir per request by thread, the event loop's breakdown; its system calls."""
    out = work / config.replace("+", "-")
    out.mkdir()
    base = out / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--instr-atstart=no", "--dump-instr=no",
                f"--callgrind-out-file={base}"]  # fmt: skip
    proc, port = start(config, upstream_port, out, collector_url, valgrind)
    try:
        send_requests(port, 300, connections, body)  # warm-up: connections, lazy imports, caches
        wait_idle(proc.proc.pid)
        callgrind(proc.proc.pid, "-i", "on")
        bad = send_requests(port, n, connections, body)
        wait_idle(proc.proc.pid)
        callgrind(proc.proc.pid, "-i", "off")
        callgrind(proc.proc.pid, "-d")
        files = dump_files(base)
        if not files:
            raise RuntimeError(f"{config}: callgrind wrote no dump:\n{proc.tail()}")
        per_thread = {t: total_ir(f) for t, f in sorted(files.items())}
        loop_thread = min(per_thread)
        total = sum(per_thread.values())
        components, functions = breakdown(files[loop_thread])
        result: dict[str, Any] = {
            "requests": n,
            "non_200": bad,
            "ir_per_request": round(total / n),
            "event_loop_ir_per_request": round(per_thread[loop_thread] / n),
            "other_threads_ir_per_request": round((total - per_thread[loop_thread]) / n),
            "threads_ir_per_request": {str(t): round(v / n) for t, v in per_thread.items() if v},
            "event_loop_components_ir_per_request": {k: round(v / n) for k, v in components.items() if v},
            "event_loop_functions_ir_per_request": {k: round(v / n) for k, v in functions.items()},
        }
    finally:
        proc.stop(timeout_s=120)
        if not os.environ.get("KEEP_CALLGRIND"):
            for f in out.glob("callgrind.out*"):
                f.unlink()
    result["syscalls_per_request"] = syscalls(config, upstream_port, out, collector_url, n, connections, body)
    return result


def serve(config: str) -> int:
    """A sidecar front with a consumer that drops every exchange (``relay``; ``relay+metrics`` keeps the metrics)."""
    import uvloop

    from infertap.logger.config import ProxySettings
    from infertap.logger.exchange import Exchange
    from infertap.logger.frontend import Frontend, tune_gc, until_signal
    from infertap.logger.metrics import ProxyMetrics

    class Drop:
        def offer(self, exchange: Exchange) -> bool:
            return True

    async def main() -> int:
        metrics = ProxyMetrics()
        if config == "relay":
            metrics.observe_request = lambda *args: None  # type: ignore[method-assign]
        front = Frontend(ProxySettings(), Drop(), metrics)
        await front.start()
        tune_gc()
        await until_signal()
        await front.stop(5.0)
        return 0

    sys.setswitchinterval(0.001)
    return uvloop.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests counted per configuration")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections, used round-robin")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {CONFIGS}")
    parser.add_argument("--label", default="after", help="key of this run in the results file (before, after ...)")
    parser.add_argument("--serve", choices=("relay", "relay+metrics"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        print(f"proxy_instructions: unknown configuration {sorted(unknown)}; known: {', '.join(CONFIGS)}")
        return 2
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install valgrind")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    RESULTS.mkdir(parents=True, exist_ok=True)
    request, response = v2_body(1024, "inputs"), v2_body(1024, "outputs")
    work = Path(tempfile.mkdtemp(prefix="infertap-instr-"))
    upstream_port = free_port()
    nginx = ManagedProcess(
        "nginx-upstream",
        [nginx_bin, "-c", str(nginx_conf(work, "upstream", "01", upstream_server(upstream_port, response)))],
        work / "nginx-upstream.log",
    )
    collector = None
    results: dict[str, Any] = {}
    try:
        nginx.wait_http(f"http://127.0.0.1:{upstream_port}/", timeout_s=10)
        collector_url = ""
        if "forward" in configs:
            collector, collector_url = start_collector(work / "collected", work)
        for config in configs:
            t0 = time.perf_counter()
            results[config] = measure(config, upstream_port, work, collector_url, args.requests, args.connections,
                                      request)  # fmt: skip
            results[config]["wall_s"] = round(time.perf_counter() - t0, 1)
    finally:
        for proc in (collector, nginx):
            if proc is not None:
                proc.stop()
        if not os.environ.get("KEEP_CALLGRIND"):
            shutil.rmtree(work, ignore_errors=True)
    stages: dict[str, int] = {}
    if "relay" in results and "relay+metrics" in results:
        stages["request metrics (relay+metrics - relay), event loop"] = (
            results["relay+metrics"]["event_loop_ir_per_request"] - results["relay"]["event_loop_ir_per_request"]
        )
    for mode in ("forward", "local"):
        if mode in results and "relay+metrics" in results:
            stages[f"{mode}: hand-off on the event loop ({mode} - relay+metrics)"] = (
                results[mode]["event_loop_ir_per_request"] - results["relay+metrics"]["event_loop_ir_per_request"]
            )
            stages[f"{mode}: other threads (framing/capture)"] = results[mode]["other_threads_ir_per_request"]
    if "nginx-proxy" in results:
        ref = results["nginx-proxy"]["ir_per_request"]
        for config in configs:
            if config != "nginx-proxy" and ref:
                results[config]["ratio_to_nginx"] = round(results[config]["ir_per_request"] / ref, 1)
    path = RESULTS / "proxy_instructions.json"
    stored: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    stored[args.label] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} vCPU, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "requests_per_config": args.requests,
        "connections": args.connections,
        "request_bytes": len(request),
        "response_bytes": len(response),
        "configs": results,
        "stages_ir_per_request": stages,
    }
    path.write_text(json.dumps(stored, indent=2) + "\n")
    table = Table(title=f"instructions per request ({args.label}; callgrind, {args.requests} 1 KB V2 requests)")
    for col in ("configuration", "total Ir/req", "event loop", "other threads", "x nginx"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    for config, r in results.items():
        table.add_row(config, f"{r['ir_per_request']:,}", f"{r['event_loop_ir_per_request']:,}",
                      f"{r['other_threads_ir_per_request']:,}", str(r.get("ratio_to_nginx", "")))  # fmt: skip
    console = Console()
    console.print(table)
    if stages:
        st = Table(title="stage deltas (Ir per request)")
        st.add_column("stage")
        st.add_column("Ir/req", justify="right")
        for k, v in stages.items():
            st.add_row(k, f"{v:,}")
        console.print(st)
    for key, title in (
        ("event_loop_components_ir_per_request", "event loop: exclusive Ir per request by component"),
        ("event_loop_functions_ir_per_request", "event loop: inclusive Ir per request of named functions"),
        ("syscalls_per_request", "system calls per request (strace -c, all threads, without valgrind)"),
    ):
        ct = Table(title=title)
        ct.add_column("")
        for config in results:
            ct.add_column(config, justify="right")
        names = sorted(
            {k for r in results.values() for k in r[key]},
            key=lambda k: -max(r[key].get(k, 0) for r in results.values()),
        )
        for name in names:
            ct.add_row(name, *(f"{r[key].get(name, 0):,}" for r in results.values()))
        console.print(ct)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
