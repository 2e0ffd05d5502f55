"""What the sidecar adds to a streamed LLM answer: time to first byte, and how long it holds each event.

Setup, all on loopback:
- upstream: a fixed-cadence event-stream server (this script with ``--serve``, its own process): every
  ``POST /v1/chat/completions`` is answered ``200 text/event-stream`` (chunked) with ``--events`` OpenAI
  chat-completion chunks, one every ``--period-ms``, then ``data: [DONE]``; each event carries the server's
  ``time.monotonic_ns()`` at the moment it was written, so the model's speed cannot blur the figures;
- direct: the client talks to the upstream;
- sidecar: ``infertap proxy`` (capture on: event-stream decoding, generative columns, local Parquet) pinned to
  CPU 1, in front of the upstream.

For each stream the client (asyncio, one connection per stream) measures the time to first byte (request sent ->
first event received) and, per event, the delay from the server writing it to the client reading it
(``CLOCK_MONOTONIC`` is one clock for every process of the machine). Direct and sidecar streams alternate, so load
drift on the shared machine hits both alike; the added figures are differences of percentiles measured in one run:

- ``added_ttfb_p50_ms`` / ``added_ttfb_p99_ms``: percentiles of the time to first byte, sidecar minus direct;
- ``event_hold_p99_ms``: p99 of the per-event delay, sidecar minus direct: how long the sidecar holds an event;
- ``requests_sent`` / ``records_written``: streams sent through the sidecar, records in its Parquet output (read
  after a SIGTERM drain), each checked to hold all the stream's events.

Targets (issue 13): added TTFB p50 <= 0.3 ms and p99 <= 1 ms, no event held longer than 1 ms at p99, no record lost.
Writes ``benchmarks/results/genai_stream.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=300, help="streams each way (direct, sidecar)")
    parser.add_argument("--events", type=int, default=32, help="content events per stream")
    parser.add_argument("--period-ms", type=float, default=5.0, help="time between events")
    parser.add_argument("--concurrency", type=int, default=4, help="streams open at once")
    parser.add_argument("--output", type=Path, default=RESULTS / "genai_stream.json")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.events, args.period_ms / 1000.0))
        return 0

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
        argv = ["taskset", "-c", "1", sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING", "proxy"]
        car = ManagedProcess("sidecar", argv, work / "sidecar.log", env, cwd=ROOT)
        try:
            car.wait_http(f"http://127.0.0.1:{admin}/readyz", timeout_s=30)
            asyncio.run(run_load(up_port, port, 10, 2))  # warm-up (connections, imports, first Parquet file)
            load_before = round(os.getloadavg()[0], 2)
            started = time.time()
            result = asyncio.run(run_load(up_port, port, args.streams, args.concurrency))
            elapsed = time.time() - started
        finally:
            code = car.stop(timeout_s=60)
            upstream.stop()
        rows = []
        for f in (work / "data").rglob("*.parquet"):
            rows += pq.read_table(f, columns=["gen_api", "gen_events", "status_code"]).to_pylist()
        complete = sum(1 for r in rows if r["gen_events"] == args.events + 1 and r["status_code"] == 200)

    s = result["samples"]
    sent = result["counts"]["sidecar"] + 10  # the warm-up streams are captured too
    figures = {
        "added_ttfb_p50_ms": round(pct_ms(s["sidecar"]["ttfb"], 50) - pct_ms(s["direct"]["ttfb"], 50), 3),
        "added_ttfb_p99_ms": round(pct_ms(s["sidecar"]["ttfb"], 99) - pct_ms(s["direct"]["ttfb"], 99), 3),
        "event_hold_p99_ms": round(pct_ms(s["sidecar"]["delay"], 99) - pct_ms(s["direct"]["delay"], 99), 3),
        "event_hold_p50_ms": round(pct_ms(s["sidecar"]["delay"], 50) - pct_ms(s["direct"]["delay"], 50), 3),
        "requests_sent": sent,
        "records_written": len(rows),
        "records_with_every_event": complete,
    }
    detail = {
        kind: {
            "ttfb_p50_ms": round(pct_ms(s[kind]["ttfb"], 50), 3),
            "ttfb_p99_ms": round(pct_ms(s[kind]["ttfb"], 99), 3),
            "event_delay_p50_ms": round(pct_ms(s[kind]["delay"], 50), 3),
            "event_delay_p99_ms": round(pct_ms(s[kind]["delay"], 99), 3),
            "streams": len(s[kind]["ttfb"]),
            "events": len(s[kind]["delay"]),
        }
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
        "detail": detail,
        "setup": {
            "streams_each_way": args.streams, "events_per_stream": args.events, "period_ms": args.period_ms,
            "concurrency": args.concurrency, "elapsed_s": round(elapsed, 1), "sidecar_exit_code": code,
            "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
            "load_average_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    table = Table(title="streamed answers through the sidecar (added = sidecar - direct)")
    for col in ("figure", "value", "target"):
        table.add_column(col)
    for key, target in (("added_ttfb_p50_ms", "<= 0.3"), ("added_ttfb_p99_ms", "<= 1"), ("event_hold_p99_ms", "<= 1")):
        table.add_row(key, f"{figures[key]:.3f}", target)
    table.add_row("records written / sent", f"{len(rows)} / {sent} ({complete} with every event)", "all")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
