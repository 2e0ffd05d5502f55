"""What the sidecar adds to a streamed LLM answer: time to first byte, and how long it holds each event.

Setup, all on loopback:
- upstream: a fixed-cadence event-stream server (this script with ``--serve``, its own process): every
  ``POST /v1/chat/completions`` is answered ``200 text/event-stream`` (chunked) with ``--events`` OpenAI
  chat-completion chunks, one every ``--period-ms``, then ``data: [DONE]``; each event carries the server's
  ``time.monotonic_ns()`` at the moment it was written, so the model's speed cannot blur the figures;
- direct: the client talks to the upstream;
- sidecar: ``infertap proxy`` pinned to CPU 1, in front of the upstream, in one of two placements
  (``--placement``): ``local`` (default: the sidecar's capture worker thread decodes the event streams into the
  generative columns and writes Parquet, sharing the interpreter with the event loop) or ``forward`` (the sidecar
  only frames each exchange and ships it to an ``infertap collector`` process pinned to CPU 0, which decodes and
  writes the Parquet: docs/forward-protocol.md).

For each stream the client (asyncio, one connection per stream) measures the time to first byte (request sent ->
first event received) and, per event, the delay from the server writing it to the client reading it
(``CLOCK_MONOTONIC`` is one clock for every process of the machine). Direct and sidecar streams alternate, so load
drift on the shared machine hits both alike; the added figures are differences of percentiles measured in one run
(the direct path's own percentiles are in ``detail``: on a shared 2-CPU machine its p99 alone is often larger than
the 1 ms target, which is why the load is repeated ``--repeat`` times against the same processes and the top-level
figures are the medians of the repeats, with each repeat's figures in ``repeats`` and their range in ``spread``):

- ``added_ttfb_p50_ms`` / ``added_ttfb_p99_ms``: percentiles of the time to first byte, sidecar minus direct;
- ``event_hold_p99_ms``: p99 of the per-event delay, sidecar minus direct: how long the sidecar holds an event;
- ``requests_sent`` / ``records_written``: streams sent through the sidecar over all repeats and the warm-up,
  records in the Parquet output (read after a SIGTERM drain of the sidecar, and of the collector in forward
  placement), each checked to hold all the stream's events.

Targets (issue 13): added TTFB p50 <= 0.3 ms and p99 <= 1 ms, no event held longer than 1 ms at p99, no record lost.
Writes ``benchmarks/results/genai_stream.json`` (``genai_stream_forward.json`` in forward placement) and prints a
table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infertap.demo.processes import ManagedProcess, free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


# --- the fixed-cadence event-stream server (its own process) -------------------------------------------------------
async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, events: int, period_s: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET"):  # readiness probe
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                continue
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(events + 2):
                delay = start + i * period_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the cadence
                if i == 0:
                    delta: dict[str, Any] = {"role": "assistant"}
                elif i <= events:
                    delta = {"content": f"t{i} "}
                if i <= events:
                    finish = "length" if i == events else None
                    choice = {"index": 0, "delta": delta, "finish_reason": finish}
                    doc = {"object": "chat.completion.chunk", "sent_ns": time.monotonic_ns(), "choices": [choice]}
                    data = b"data: " + json.dumps(doc).encode() + b"\n\n"
                else:
                    data = b"data: [DONE]\n\n"
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(port: int, events: int, period_s: float) -> None:
    server = await asyncio.start_server(lambda r, w: _serve_one(r, w, events, period_s), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# --- the client --------------------------------------------------------------------------------------------------
async def stream_once(port: int, body: bytes) -> tuple[float, list[float], int]:
    """One streamed request: (time to first event in s, per-event server-to-client delays in s, events read)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    t0 = time.monotonic_ns()
    writer.write(head + body)
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    ttfb = 0.0
    delays: list[float] = []
    events = 0
    buf = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.strip().split(b";")[0], 16)
        if size == 0:
            break
        data = await reader.readexactly(size + 2)
        now = time.monotonic_ns()
        buf += data[:-2]
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            payload = event[len(b"data: ") :]
            if payload == b"[DONE]":
                continue
            events += 1
            if events == 1:
                ttfb = (now - t0) / 1e9
            delays.append((now - json.loads(payload)["sent_ns"]) / 1e9)
    writer.close()
    return ttfb, delays, events


async def run_load(direct: int, sidecar: int, streams: int, concurrency: int) -> dict[str, Any]:
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "go"}], "stream": True}).encode()
    out: dict[str, dict[str, list[float]]] = {k: {"ttfb": [], "delay": []} for k in ("direct", "sidecar")}
    counts = {"direct": 0, "sidecar": 0}
    sem = asyncio.Semaphore(concurrency)

    async def one(kind: str, port: int) -> None:
        async with sem:
            ttfb, delays, _ = await stream_once(port, body)
            out[kind]["ttfb"].append(ttfb)
            out[kind]["delay"].extend(delays)
            counts[kind] += 1

    tasks = []
    for _ in range(streams):  # interleaved: direct, sidecar, direct, sidecar ...
        tasks.append(asyncio.create_task(one("direct", direct)))
        tasks.append(asyncio.create_task(one("sidecar", sidecar)))
    await asyncio.gather(*tasks)
    return {"samples": out, "counts": counts}


def pct_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


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


ADDED = ("added_ttfb_p50_ms", "added_ttfb_p99_ms", "event_hold_p99_ms", "event_hold_p50_ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=300, help="streams each way (direct, sidecar) per repeat")
    parser.add_argument("--repeat", type=int, default=3, help="load runs against the same processes (medians kept)")
    parser.add_argument("--events", type=int, default=32, help="content events per stream")
    parser.add_argument("--period-ms", type=float, default=5.0, help="time between events")
    parser.add_argument("--concurrency", type=int, default=4, help="streams open at once")
    parser.add_argument("--placement", choices=("local", "forward"), default="local", help="where capture decodes")
    parser.add_argument("--output", type=Path, help="result JSON (default: benchmarks/results/genai_stream*.json)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.events, args.period_ms / 1000.0))
        return 0
    suffix = "" if args.placement == "local" else "_forward"
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
            argv = ["taskset", "-c", "0", sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING",
                    "collector"]  # fmt: skip
            collector = ManagedProcess("collector", argv, work / "collector.log", cenv, cwd=ROOT)
            collector.wait_http(f"http://127.0.0.1:{c_admin}/readyz", timeout_s=60)
            env |= {"INFERTAP_CAPTURE_PLACEMENT": "forward", "INFERTAP_FORWARD_COLLECTOR_URL": f"http://127.0.0.1:{c_port}",
                    "INFERTAP_FORWARD_SPOOL_DIR": str(work / "forward-spool")}  # fmt: skip
        argv = ["taskset", "-c", "1", sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING", "proxy"]
        car = ManagedProcess("sidecar", argv, work / "sidecar.log", env, cwd=ROOT)
        runs: list[dict[str, Any]] = []
        try:
            car.wait_http(f"http://127.0.0.1:{admin}/readyz", timeout_s=30)
            asyncio.run(run_load(up_port, port, 10, 2))  # warm-up (connections, imports, first Parquet file)
            load_before = round(os.getloadavg()[0], 2)
            started = time.time()
            for _ in range(args.repeat):
                runs.append(asyncio.run(run_load(up_port, port, args.streams, args.concurrency)))
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

    per_run = [figures_of(r["samples"]) for r in runs]
    sent = sum(r["counts"]["sidecar"] for r in runs) + 10  # the warm-up streams are captured too
    figures: dict[str, Any] = {k: round(statistics.median(f[k] for f in per_run), 3) for k in ADDED}
    figures |= {"requests_sent": sent, "records_written": len(rows), "records_with_every_event": complete}
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
        "setup": {
            "streams_each_way": args.streams, "repeats": args.repeat, "events_per_stream": args.events,
            "period_ms": args.period_ms, "concurrency": args.concurrency, "elapsed_s": round(elapsed, 1),
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
    print(f"load average (1 min) before / after: {doc['setup']['load_average_1m_before_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
