"""What the sidecar adds to a streamed LLM answer: time to first byte, and how long it holds each event.

Setup, all on loopback:
- upstream: a fixed-cadence event-stream server (this script with ``--serve``, its own process, CPU 0): every
  ``POST /v1/chat/completions`` is answered ``200 text/event-stream`` (chunked) with ``--events`` OpenAI
  chat-completion chunks, one every ``--period-ms``, then ``data: [DONE]``; each event carries the server's
  ``time.monotonic_ns()`` at the moment it was written, so neither the model's speed nor a timer waking late can
  blur the figures (a late timer only moves the write it fires; the next ones stay on the grid of the stream's
  start);
- direct: the client (the main process, CPU 0) talks to the upstream;
- sidecar: ``infertap proxy`` pinned to CPU 1, in front of the upstream, in one of two placements
  (``--placement``): ``local`` (default: the sidecar's capture worker thread decodes the event streams into the
  generative columns and writes Parquet, sharing the interpreter with the event loop) or ``forward`` (the sidecar
  only frames each exchange and ships it to an ``infertap collector`` process, which decodes and writes the
  Parquet: docs/forward-protocol.md). The collector runs on CPU 0 under ``SCHED_IDLE``: only while the client and
  the server both sleep, preempted by their every wake-up, and never taking turns with the sidecar on CPU 1 (a
  collector runs on a node of its own).

The client and the server are made as quiet as the load generator of ``benchmarks/proxy_overhead.py``, so that the
direct path's own percentiles are small next to the targets: raw asyncio protocols on uvloop, httptools parsing,
answers encoded once (only the send time is formatted per event), event send times read without a JSON parser,
and no cyclic garbage collection during the run (``gc.freeze()`` after start-up, ``gc.disable()``; the protocols
break their reference cycles themselves).

For each stream the client (one new connection per stream, opened before the clock starts) measures the time to
first byte (request sent -> first event received) and, per event, the delay from the server writing it to the
client reading it (``CLOCK_MONOTONIC`` is one clock for every process of the machine). Direct and sidecar streams
alternate, so load drift on the shared machine hits both alike; the added figures are differences of percentiles
measured in one run, the direct path's own percentiles are in ``detail``; the load is repeated ``--repeat`` times
against the same processes and the top-level figures are the medians of the repeats, with each repeat's figures in
``repeats`` and their range in ``spread``. Each repeat also records the share of CPU 0 and CPU 1 taken by other
processes of the machine and by the hypervisor (``cpuN_others_share``, ``cpuN_steal_share``, from ``/proc/stat``
less this benchmark's own processes): a CPU-bound job on CPU 1 delays the sidecar's wake-ups by up to a scheduler
tick (4 ms at ``HZ=250``), which the sidecar's code cannot change (docs/benchmarks.md):

- ``added_ttfb_p50_ms`` / ``added_ttfb_p99_ms``: percentiles of the time to first byte, sidecar minus direct;
- ``event_hold_p99_ms``: p99 of the per-event delay, sidecar minus direct: how long the sidecar holds an event;
- ``requests_sent`` / ``records_written``: streams sent through the sidecar over all repeats and the warm-up,
  records in the Parquet output (read after a SIGTERM drain of the sidecar, and of the collector in forward
  placement), each checked to hold all the stream's events.

Scheduling (``--scheduling``, benchmarks/scheduling.py): by default each repeat runs twice, interleaved: once with
every task as started (``shared``) and once with the client, the upstream server and the sidecar's event loop thread
under ``SCHED_FIFO`` (``isolated``), so that a wake-up never waits for the kernel's next tick behind other work on
its CPU; the sidecar's capture threads keep ``SCHED_OTHER`` and still compete for the GIL. The headline figures are
the isolated ones (``scheduling.measured``); ``scheduling.by_mode`` gives both.

Targets (issue 13): added TTFB p50 <= 0.3 ms and p99 <= 1 ms, no event held longer than 1 ms at p99, no record lost.
Writes ``benchmarks/results/genai_stream.json`` (``genai_stream_forward.json`` in forward placement; with
``--busy-neighbour``, a CPU-bound process on CPU 1 during the load, ``..._busy_neighbour.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import httptools
import pyarrow.parquet as pq
import uvloop
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import scheduling  # noqa: E402
from benchmarks.proxy_overhead import pct_ms  # noqa: E402
from benchmarks.scheduling import Isolation  # noqa: E402
from infertap.demo.processes import ManagedProcess, free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


# --- the fixed-cadence event-stream server (its own process) -------------------------------------------------------
class _Events:
    """The answer of every stream, encoded once: the response head, each event's chunk around its send time, and
    the ``[DONE]`` chunk with the chunked terminator."""

    HEAD = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )

    def __init__(self, events: int) -> None:
        self.count = events
        self.parts: list[tuple[bytes, bytes]] = []  # per event: the bytes before and after the send time
        for i in range(events + 1):
            delta: dict[str, Any] = {"role": "assistant"} if i == 0 else {"content": f"t{i} "}
            choice = {"index": 0, "delta": delta, "finish_reason": "length" if i == events else None}
            rest = json.dumps({"object": "chat.completion.chunk", "choices": [choice]}).encode()
            self.parts.append((b'data: {"sent_ns": ', b", " + rest[1:] + b"\n\n"))
        self.done = b"%x\r\n%s\r\n0\r\n\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n")

    def chunk(self, i: int) -> bytes:
        """Event ``i``'s chunk, stamped with ``time.monotonic_ns()`` now."""
        before, after = self.parts[i]
        data = b"%s%d%s" % (before, time.monotonic_ns(), after)
        return b"%x\r\n%s\r\n" % (len(data), data)


class _ServerConnection(asyncio.Protocol):
    """One client connection of the event-stream server: requests parsed by httptools; each POST answered with the
    head and the first event at once, then one event every ``period_s`` on timers anchored at the answer's start
    (a late timer delays that write, never the ones after it), then ``[DONE]``."""

    def __init__(self, events: _Events, period_s: float) -> None:
        self.events, self.period_s = events, period_s
        self.loop = asyncio.get_running_loop()
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.start = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.parser is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        assert self.transport is not None
        assert self.parser is not None
        if self.parser.get_method() == b"GET":  # readiness probe
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return
        self.start = self.loop.time()
        self.transport.write(self.events.HEAD + self.events.chunk(0))
        self.loop.call_at(self.start + self.period_s, self._write, 1)

    def _write(self, i: int) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if i <= self.events.count:
            self.transport.write(self.events.chunk(i))
            self.loop.call_at(self.start + (i + 1) * self.period_s, self._write, i + 1)
        else:
            self.transport.write(self.events.done)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport, self.parser = None, None  # the parser refers back to this protocol: no cycle left behind


def quiet_gc() -> None:
    """Move everything allocated so far to the permanent generation and stop the cyclic collector: no collection
    pauses a measured process (the protocols break their own reference cycles)."""
    gc.collect()
    gc.freeze()
    gc.disable()


def serve(port: int, events: int, period_s: float) -> None:
    """Run the event-stream server on 127.0.0.1:``port`` until killed (uvloop)."""

    async def run() -> None:
        answer = _Events(events)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _ServerConnection(answer, period_s), "127.0.0.1", port)
        quiet_gc()
        async with server:
            await server.serve_forever()

    uvloop.run(run())


# --- the client --------------------------------------------------------------------------------------------------
class _StreamClient(asyncio.Protocol):
    """One streamed request on its own connection: the answer parsed by httptools (chunked framing), the events
    split at blank lines and their send times read without a JSON parser. Times in ns of ``time.monotonic_ns()``:
    ``now`` is read once per ``data_received``, before any parsing."""

    SENT = b'"sent_ns":'

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.t0 = self.now = 0
        self.ttfb_ns = -1
        self.delays_ns: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.t0 = time.monotonic_ns()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.now = time.monotonic_ns()
        assert self.parser is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(exc)

    def on_body(self, body: bytes) -> None:
        buf = self.buf + body
        while (end := buf.find(b"\n\n")) >= 0:
            event, buf = buf[:end], buf[end + 2 :]
            at = event.find(self.SENT)
            if at < 0:  # data: [DONE]
                continue
            at += len(self.SENT)
            sent = int(event[at : event.index(b",", at)])
            if self.ttfb_ns < 0:
                self.ttfb_ns = self.now - self.t0
            self.delays_ns.append(self.now - sent)
        self.buf = buf

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self._finish(None if self.parser.get_status_code() == 200 else RuntimeError("status"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or ConnectionError("closed before the end of the answer"))

    def _finish(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()
        self.transport, self.parser = None, None  # break the parser <-> protocol cycle (no GC during the run)


async def run_load(direct: int, sidecar: int, streams: int, concurrency: int) -> dict[str, Any]:
    """``streams`` streamed requests each way (direct to port ``direct``, through the sidecar at ``sidecar``),
    alternating, ``concurrency`` open at once, each on a new connection opened before its clock starts.

    Returns ``{"samples": {kind: {"ttfb": [s], "delay": [s]}}, "counts": {kind: n}, "errors": n}``.
    """
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "go"}], "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    loop = asyncio.get_running_loop()
    ports = {"direct": direct, "sidecar": sidecar}
    ttfb: dict[str, list[int]] = {"direct": [], "sidecar": []}
    delay: dict[str, list[int]] = {"direct": [], "sidecar": []}
    order = deque(["direct", "sidecar"] * streams)
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while order:
            kind = order.popleft()
            try:
                _, client = await loop.create_connection(_StreamClient, "127.0.0.1", ports[kind])
                client.send(request)
                await client.done
            except (OSError, RuntimeError, httptools.HttpParserError):
                errors += 1
                continue
            ttfb[kind].append(client.ttfb_ns)
            delay[kind].extend(client.delays_ns)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples = {k: {"ttfb": [v / 1e9 for v in ttfb[k]], "delay": [v / 1e9 for v in delay[k]]} for k in ports}
    return {"samples": samples, "counts": {k: len(ttfb[k]) for k in ports}, "errors": errors}


def cpu_ticks() -> dict[int, tuple[int, int, int]]:
    """Per CPU of ``/proc/stat``: (busy, steal, total) in clock ticks (``USER_HZ``); busy excludes idle, iowait
    and steal."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                v = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal (proc(5))
                out[int(name[3:])] = (v[0] + v[1] + v[2] + v[5] + v[6], v[7], sum(v))
    return out


def process_ticks(pid: int) -> int:
    """User + system clock ticks of process ``pid`` (all its threads), fields 14 and 15 of ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def runqueue_wait(pid: int) -> tuple[int, int]:
    """(ns spent runnable but waiting for a CPU, times run) summed over the threads of ``pid``: fields 2 and 3 of
    ``/proc/PID/task/TID/schedstat`` (Linux ``Documentation/scheduler/sched-stats.rst``)."""
    wait = slices = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                _, w, n = (int(x) for x in f.read().split())
        except FileNotFoundError:  # a thread that ended
            continue
        wait, slices = wait + w, slices + n
    return wait, slices


def foreign_shares(before: dict[str, Any], after: dict[str, Any], ours: dict[int, list[str]]) -> dict[str, float]:
    """Share of each CPU's time taken by other processes (busy minus this benchmark's pinned processes) and by the
    hypervisor (steal) between two :func:`snapshot` readings: the scheduling noise a repeat ran under."""
    out = {}
    for cpu, names in ours.items():
        busy = after["cpu"][cpu][0] - before["cpu"][cpu][0]
        total = max(1, after["cpu"][cpu][2] - before["cpu"][cpu][2])
        own = sum(after["proc"][n] - before["proc"][n] for n in names)
        out[f"cpu{cpu}_others_share"] = round(max(0, busy - own) / total, 3)
        out[f"cpu{cpu}_steal_share"] = round((after["cpu"][cpu][1] - before["cpu"][cpu][1]) / total, 3)
    wait = after["sidecar_rq"][0] - before["sidecar_rq"][0]
    out["sidecar_runqueue_wait_ms"] = round(wait / 1e6, 1)
    out["sidecar_runqueue_wait_us_per_run"] = round(
        wait / 1e3 / max(1, after["sidecar_rq"][1] - before["sidecar_rq"][1]), 1
    )
    return out


def snapshot(pids: dict[str, int]) -> dict[str, Any]:
    """CPU tick counters now: per CPU (:func:`cpu_ticks`) and per named process (:func:`process_ticks`)."""
    return {
        "cpu": cpu_ticks(),
        "proc": {name: process_ticks(pid) for name, pid in pids.items()},
        "sidecar_rq": runqueue_wait(pids["sidecar"]),
    }


def figures_of(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """The added figures and each path's own percentiles of one load run."""
    s = samples
    out: dict[str, Any] = {
        "added_ttfb_p50_ms": round(pct_ms(s["sidecar"]["ttfb"], 50) - pct_ms(s["direct"]["ttfb"], 50), 3),
        "added_ttfb_p99_ms": round(pct_ms(s["sidecar"]["ttfb"], 99) - pct_ms(s["direct"]["ttfb"], 99), 3),
        "event_hold_p99_ms": round(pct_ms(s["sidecar"]["delay"], 99) - pct_ms(s["direct"]["delay"], 99), 3),
        "event_hold_p50_ms": round(pct_ms(s["sidecar"]["delay"], 50) - pct_ms(s["direct"]["delay"], 50), 3),
    }
    for kind in ("direct", "sidecar"):
        out[kind] = {
            "ttfb_p50_ms": round(pct_ms(s[kind]["ttfb"], 50), 3),
            "ttfb_p99_ms": round(pct_ms(s[kind]["ttfb"], 99), 3),
            "event_delay_p50_ms": round(pct_ms(s[kind]["delay"], 50), 3),
            "event_delay_p99_ms": round(pct_ms(s[kind]["delay"], 99), 3),
            "streams": len(s[kind]["ttfb"]),
            "events": len(s[kind]["delay"]),
        }
    return out


SCHEDULING_MEANING = {
    "isolated": "client, upstream server and the sidecar's event loop thread SCHED_FIFO, the collector SCHED_IDLE, "
    "the sidecar's capture threads SCHED_OTHER: a node with spare cores (benchmarks/scheduling.py)",
    "shared": "every task SCHED_OTHER (the collector SCHED_IDLE): on this machine's PREEMPT_NONE, HZ=250 kernel a "
    "wake-up while other work runs on the CPU can wait up to a 4 ms tick (benchmarks/scheduling.py)",
}

ADDED = ("added_ttfb_p50_ms", "added_ttfb_p99_ms", "event_hold_p99_ms", "event_hold_p50_ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=500, help="streams each way (direct, sidecar) per repeat")
    parser.add_argument("--repeat", type=int, default=3, help="load runs against the same processes (medians kept)")
    scheduling.add_argument(parser)
    parser.add_argument("--events", type=int, default=32, help="content events per stream")
    parser.add_argument("--period-ms", type=float, default=5.0, help="time between events")
    parser.add_argument("--concurrency", type=int, default=4, help="streams open at once")
    parser.add_argument("--placement", choices=("local", "forward"), default="local", help="where capture decodes")
    parser.add_argument(
        "--busy-neighbour",
        action="store_true",
        help="run a CPU-bound process on the sidecar's CPU during the load (shows the scheduler's share)",
    )
    parser.add_argument("--output", type=Path, help="result JSON (default: benchmarks/results/genai_stream*.json)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.events, args.period_ms / 1000.0)
        return 0
    os.sched_setaffinity(0, {0})  # the client shares CPU 0 with the upstream server
    suffix = ("" if args.placement == "local" else "_forward") + ("_busy_neighbour" if args.busy_neighbour else "")
    output = args.output or RESULTS / f"genai_stream{suffix}.json"

    with tempfile.TemporaryDirectory(prefix="infertap-genai-bench-") as tmp:
        work = Path(tmp)
        up_port, port, admin = free_port(), free_port(), free_port()
        upstream = ManagedProcess(
            "sse-upstream",
            ["taskset", "-c", "0", sys.executable, __file__, "--serve", str(up_port), "--events", str(args.events),
             "--period-ms", str(args.period_ms)],
            work / "upstream.log",
        )  # fmt: skip
        upstream.wait_http(f"http://127.0.0.1:{up_port}/", timeout_s=30)
        env = {
            "INFERTAP_UPSTREAM_URL": f"http://127.0.0.1:{up_port}",
            "INFERTAP_LISTEN_HOST": "127.0.0.1",
            "INFERTAP_LISTEN_PORT": str(port),
            "INFERTAP_ADMIN_PORT": str(admin),
            "INFERTAP_OUTPUT_DIR": str(work / "data"),
            "INFERTAP_UPSTREAM_READY_PATH": "/",
            "INFERTAP_QUEUE_MAX_RECORDS": "100000",
        }
        collector: ManagedProcess | None = None
        collector_code = None
        if args.placement == "forward":
            c_port, c_admin = free_port(), free_port()
            cenv = {
                "INFERTAP_COLLECTOR_LISTEN_HOST": "127.0.0.1", "INFERTAP_COLLECTOR_LISTEN_PORT": str(c_port),
                "INFERTAP_COLLECTOR_ADMIN_PORT": str(c_admin), "INFERTAP_COLLECTOR_OUTPUT_DIR": str(work / "data"),
                "INFERTAP_COLLECTOR_JOURNAL_DIR": str(work / "journal"), "INFERTAP_COLLECTOR_POD_NAME": "collector-0",
            }  # fmt: skip
            # CPU 0 at SCHED_IDLE: it runs only while the client and the upstream server both sleep (most of the
            # time), and their every wake-up preempts it; on CPU 1 it would take turns with the sidecar, which it
            # does not do where a collector runs on a node of its own.
            argv = ["taskset", "-c", "0", "chrt", "--idle", "0", sys.executable, "-m", "infertap.logger.cli",
                    "--log-level", "WARNING", "collector"]  # fmt: skip
            collector = ManagedProcess("collector", argv, work / "collector.log", cenv, cwd=ROOT)
            collector.wait_http(f"http://127.0.0.1:{c_admin}/readyz", timeout_s=60)
            env |= {"INFERTAP_CAPTURE_PLACEMENT": "forward", "INFERTAP_FORWARD_COLLECTOR_URL": f"http://127.0.0.1:{c_port}",
                    "INFERTAP_FORWARD_SPOOL_DIR": str(work / "forward-spool")}  # fmt: skip
        argv = ["taskset", "-c", "1", sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING", "proxy"]
        car = ManagedProcess("sidecar", argv, work / "sidecar.log", env, cwd=ROOT)
        runs_by_mode: dict[str, list[dict[str, Any]]] = {"shared": [], "isolated": []}
        modes = ["shared"]
        try:
            car.wait_http(f"http://127.0.0.1:{admin}/readyz", timeout_s=30)
            uvloop.run(run_load(up_port, port, 10, 2))  # warm-up (connections, imports, first Parquet file)
            load_before = round(os.getloadavg()[0], 2)
            started = time.time()
            pids = {"client": os.getpid(), "server": upstream.proc.pid, "sidecar": car.proc.pid}
            ours = {0: ["client", "server"], 1: ["sidecar"]}
            if collector is not None:
                pids["collector"] = collector.proc.pid
                ours[0].append("collector")
            neighbour = None
            if args.busy_neighbour:
                spin = ["taskset", "-c", "1", sys.executable, "-c", "while True: pass"]
                neighbour = ManagedProcess("busy-neighbour", spin, work / "neighbour.log")
            isolation = Isolation([0, car.proc.pid], [upstream.proc.pid], [])  # client, sidecar's loop, server
            modes = scheduling.modes(args.scheduling)
            quiet_gc()
            try:
                for mode in (m for _ in range(args.repeat) for m in modes):
                    isolation.apply(mode)
                    before = snapshot(pids)
                    runs_by_mode[mode].append(uvloop.run(run_load(up_port, port, args.streams, args.concurrency)))
                    runs_by_mode[mode][-1]["noise"] = foreign_shares(before, snapshot(pids), ours)
            finally:
                isolation.share()
                gc.enable()
                if neighbour is not None:
                    neighbour.stop()
            elapsed = time.time() - started
        finally:
            code = car.stop(timeout_s=60)  # SIGTERM: drains the capture queue (forward: ships the spool)
            if collector is not None:
                collector_code = collector.stop(timeout_s=60)
            upstream.stop()
        rows = []
        for f in (work / "data").rglob("*.parquet"):
            rows += pq.read_table(f, columns=["gen_api", "gen_events", "status_code"]).to_pylist()
        complete = sum(1 for r in rows if r["gen_events"] == args.events + 1 and r["status_code"] == 200)

    measured = modes[-1]  # isolated when it could be measured
    runs = runs_by_mode[measured]
    per_run = [figures_of(r["samples"]) | r["noise"] for r in runs]
    by_mode = {
        m: {k: round(statistics.median(figures_of(r["samples"])[k] for r in runs_by_mode[m]), 3) for k in ADDED}
        for m in modes
    }
    sent = args.streams * args.repeat * len(modes) + 10  # the warm-up streams are captured too
    figures: dict[str, Any] = {k: round(statistics.median(f[k] for f in per_run), 3) for k in ADDED}
    figures |= {"requests_sent": sent, "records_written": len(rows), "records_with_every_event": complete,
                "stream_errors": sum(r["errors"] for m in modes for r in runs_by_mode[m])}  # fmt: skip
    detail = {
        kind: {k: round(statistics.median(f[kind][k] for f in per_run), 3) for k in per_run[0][kind]}
        for kind in ("direct", "sidecar")
    }
    targets = {
        "added_ttfb_p50_ms": figures["added_ttfb_p50_ms"] <= 0.3,
        "added_ttfb_p99_ms": figures["added_ttfb_p99_ms"] <= 1.0,
        "event_hold_p99_ms": figures["event_hold_p99_ms"] <= 1.0,
        "no_record_lost": figures["records_written"] == sent and complete == sent,
    }
    doc = {
        **figures,
        "targets_met": targets,
        "placement": args.placement,
        "detail": detail,
        "spread": {k: [min(f[k] for f in per_run), max(f[k] for f in per_run)] for k in ADDED},
        "repeats": per_run,
        "scheduling": {"measured": measured, "by_mode": by_mode, "meaning": SCHEDULING_MEANING[measured]},
        "setup": {
            "streams_each_way": args.streams, "repeats": args.repeat, "events_per_stream": args.events,
            "period_ms": args.period_ms, "concurrency": args.concurrency, "elapsed_s": round(elapsed, 1),
            "busy_neighbour": args.busy_neighbour,
            "sidecar_exit_code": code, "collector_exit_code": collector_code,
            "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
            "load_average_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=2) + "\n")
    table = Table(title=f"streamed answers through the sidecar, {args.placement} placement (added = sidecar - direct; "
                  f"median of {args.repeat} repeats \\[min, max])")  # fmt: skip
    for col in ("figure", "value", "target", "direct path alone"):
        table.add_column(col)
    alone = {"added_ttfb_p50_ms": "ttfb_p50_ms", "added_ttfb_p99_ms": "ttfb_p99_ms",
             "event_hold_p99_ms": "event_delay_p99_ms"}  # fmt: skip
    for key, target in (("added_ttfb_p50_ms", "<= 0.3"), ("added_ttfb_p99_ms", "<= 1"), ("event_hold_p99_ms", "<= 1")):
        lo, hi = doc["spread"][key]
        table.add_row(key, f"{figures[key]:.3f} [{lo:.3f}, {hi:.3f}]", target, f"{detail['direct'][alone[key]]:.3f}")
    table.add_row("records written / sent", f"{len(rows)} / {sent} ({complete} with every event)", "all", "")
    Console().print(table)
    waits = [(f["sidecar_runqueue_wait_ms"], f["sidecar_runqueue_wait_us_per_run"]) for f in per_run]
    print(f"sidecar's run-queue wait per repeat (ms in all, µs per run): {waits}")
    for cpu, who in ((0, "client, server"), (1, "sidecar")):
        others = [f[f"cpu{cpu}_others_share"] for f in per_run]
        steal = [f[f"cpu{cpu}_steal_share"] for f in per_run]
        print(f"CPU {cpu} ({who}): share taken by other processes per repeat {others}, by the hypervisor {steal}")
    print(f"load average (1 min) before / after: {doc['setup']['load_average_1m_before_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
