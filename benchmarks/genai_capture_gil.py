"""How long the sidecar's event loop waits for the GIL while the capture worker decodes generative calls.

In local placement the capture worker thread (``logger/pipeline.py``) decodes streamed answers and builds Arrow
columns in the proxy's interpreter; the event loop, woken for an event or a new request, must take the GIL before
it can relay anything. This benchmark measures that wait in one process, the way the sidecar runs it:

- the event loop (main thread) reads timestamped datagrams from a pinger process (pinned to CPU 0, one every
  1-3 ms at random) and records, per datagram, the delay from send to the loop reading it;
- the capture worker thread runs the real capture stage (:class:`infertap.logger.capture.Capturer` on 33-event
  chat-completion streams, ``--streams-per-s`` of them, and :func:`infertap.logger.batching.to_batches` of the
  records every second, as the pipeline's batching does);
- both threads are pinned to CPU 1, as ``benchmarks/genai_stream.py`` pins the sidecar.

Variants of how the worker gives the GIL back take turns every 250 ms within one run, so load drift on the shared
machine hits each alike; each variant's delays are compared with the loop's delay while the worker is idle:

- ``one_piece``: decoding in one piece (no release; the interpreter forces a switch after ``sys.getswitchinterval()``,
  1 ms here: the sidecar's setting when ``benchmarks/results/genai_capture_gil.json`` was measured; the sidecar
  now uses ``SWITCH_INTERVAL_S``, 0.2 ms, ``logger/frontend.py``);
- ``sleep0_50us``, ``sleep0_200us``: :class:`~infertap.logger.genai.slices.Slicer` releasing with
  ``time.sleep(0)`` (:func:`~infertap.logger.genai.slices.release`) every 50 or 200 µs of work;
- ``yield_50us``: releasing with ``os.sched_yield()`` every 50 µs;
- ``switch_100us``: one piece, with the switch interval at 0.1 ms.

The sidecar's garbage collector settings are applied (:func:`infertap.logger.frontend.tune_gc`).

Writes ``benchmarks/results/genai_capture_gil.json`` and prints a table (delay percentiles per variant, and the
worker's wall time per stream decoded, which shows what the releases cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infertap.logger import batching  # noqa: E402
from infertap.logger.capture import Capturer  # noqa: E402
from infertap.logger.codecs.registry import route  # noqa: E402
from infertap.logger.config import CaptureMode, ServingIdentity  # noqa: E402
from infertap.logger.exchange import Exchange  # noqa: E402
from infertap.logger.frontend import tune_gc  # noqa: E402
from infertap.logger.genai import slices  # noqa: E402
from infertap.logger.metrics import ProxyMetrics  # noqa: E402
from infertap.logger.redact import HeaderFilter  # noqa: E402
from infertap.logger.sampling import Sampler  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("idle", "one_piece", "sleep0_50us", "sleep0_200us", "yield_50us", "switch_100us")
SWITCH = 0.001  # the switch interval of the recorded results (module docstring)


def exchange(events: int, rid: int) -> Exchange:
    """A streamed chat completion of ``events`` content events as the proxy hands it to capture."""
    chunks = []
    for i in range(events + 2):
        if i <= events:
            delta: dict[str, Any] = {"role": "assistant"} if i == 0 else {"content": f"t{i} "}
            choice = {"index": 0, "delta": delta, "finish_reason": "length" if i == events else None}
            doc = {"object": "chat.completion.chunk", "sent_ns": 1, "choices": [choice]}
            chunks.append(b"data: " + json.dumps(doc).encode() + b"\n\n")
        else:
            chunks.append(b"data: [DONE]\n\n")
    body = b"".join(chunks)
    req = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "go"}], "stream": True}).encode()
    return Exchange(
        request_id=f"r{rid}", start_unix_ns=1, end_unix_ns=2, upstream_s=0.1, total_s=0.1, method="POST",
        path="/v1/chat/completions", query="", status_code=200,
        request_headers=[(b"content-type", b"application/json")],
        response_headers=[(b"content-type", b"text/event-stream")], request_body=req, response_body=body,
        request_body_bytes=len(req), response_body_bytes=len(body), route=route("/v1/chat/completions", None, None),
        received_ns=0, chunk_arrivals_ns=[5_000_000 * (i + 1) for i in range(len(chunks))],
        chunk_sizes=[len(c) for c in chunks],
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the run")
    parser.add_argument("--streams-per-s", type=float, default=100.0, help="streams the worker decodes per second")
    parser.add_argument("--output", type=Path, default=RESULTS / "genai_capture_gil.json")
    args = parser.parse_args()

    metrics = ProxyMetrics()
    identity = ServingIdentity("isvc", "ns", "predictor", "rev-1", "default", "pod-0")
    capturer = Capturer(mode=CaptureMode.ALL, sampler=Sampler(1.0, seed=0), headers=HeaderFilter(()),
                        identity=identity, default_model="bench", keep_raw_bodies=False, metrics=metrics)  # fmt: skip
    pool = [exchange(32, i) for i in range(200)]
    state = {"variant": "idle", "stop": False}
    worker_wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    real_sleep = time.sleep
    sleep0 = slices.release

    def set_variant(v: str) -> None:
        state["variant"] = v
        slices.SLICE_NS = {"sleep0_50us": 50_000, "sleep0_200us": 200_000, "yield_50us": 50_000}.get(v, 10**18)
        slices.release = os.sched_yield if v == "yield_50us" else sleep0  # type: ignore[assignment]
        sys.setswitchinterval(0.0001 if v == "switch_100us" else SWITCH)

    def worker() -> None:
        period = 1.0 / args.streams_per_s
        recs = []
        k = 0
        last_batch = time.monotonic()
        while not state["stop"]:
            v = state["variant"]
            if v != "idle":
                t = time.perf_counter()
                rec = capturer.process(pool[k % len(pool)])
                k += 1
                if rec is not None:
                    recs.append(rec)
                if time.monotonic() - last_batch >= 1.0:
                    batching.to_batches(recs)
                    recs, last_batch = [], time.monotonic()
                worker_wall[v].append(time.perf_counter() - t)
            real_sleep(period)

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pid = os.fork()
    if pid == 0:  # the pinger
        os.sched_setaffinity(0, {0})
        a.close()
        rng = np.random.default_rng(1)
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            real_sleep(0.001 + 0.002 * rng.random())
            b.send(time.monotonic_ns().to_bytes(8, "little"))
        b.send(b"")
        os._exit(0)
    b.close()
    os.sched_setaffinity(0, {1})
    sys.setswitchinterval(SWITCH)
    tune_gc()
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    delays: dict[str, list[float]] = {v: [] for v in VARIANTS}

    async def loop() -> None:
        ev = asyncio.get_running_loop()
        a.setblocking(False)
        started = time.monotonic()
        while True:
            data = await ev.sock_recv(a, 64)
            now = time.monotonic_ns()
            if not data:
                return
            delays[state["variant"]].append((now - int.from_bytes(data, "little")) / 1e6)
            turn = int((time.monotonic() - started) / 0.25) % len(VARIANTS)
            if VARIANTS[turn] != state["variant"]:
                set_variant(VARIANTS[turn])

    load_before = round(os.getloadavg()[0], 2)
    asyncio.run(loop())
    state["stop"] = True
    thread.join()
    os.waitpid(pid, 0)
    rows = {}
    for v in VARIANTS:
        d = np.asarray(delays[v])
        w = np.asarray(worker_wall[v]) * 1e6
        rows[v] = {
            "samples": int(d.size),
            "delay_p50_ms": round(float(np.percentile(d, 50)), 3),
            "delay_p90_ms": round(float(np.percentile(d, 90)), 3),
            "delay_p99_ms": round(float(np.percentile(d, 99)), 3),
            "delay_p999_ms": round(float(np.percentile(d, 99.9)), 3),
            "worker_wall_per_stream_us_median": None if v == "idle" else round(float(np.median(w)), 1),
        }
    doc = {
        "variants": rows,
        "setup": {
            "seconds": args.seconds, "streams_per_s": args.streams_per_s, "events_per_stream": 33,
            "switch_interval_s": SWITCH,
            "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
            "load_average_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    table = Table(title="event loop wake-up delay while the capture worker decodes (ms)")
    for col in ("variant", "samples", "p50", "p90", "p99", "p99.9", "worker µs/stream"):
        table.add_column(col)
    for v, r in rows.items():
        table.add_row(v, str(r["samples"]), *(f"{r[k]:.3f}" for k in ("delay_p50_ms", "delay_p90_ms", "delay_p99_ms",
                      "delay_p999_ms")), str(r["worker_wall_per_stream_us_median"]))  # fmt: skip
    Console().print(table)
    print(f"load average (1 min) before / after: {doc['setup']['load_average_1m_before_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
