"""Throughput of ``infertap collector`` on this machine: KServe logger events per second, HTTP and Kafka.

HTTP: a collector process (local Parquet sink, journal without fsync: the defaults) receives binary-mode CloudEvents
built as KServe's agent builds them (V2 JSON, one FP32 [1, 4] input, one INT64 [1] output; a request and a
response event per exchange) from ``--connections`` keep-alive aiohttp connections for ``--duration-s`` seconds,
closed loop (each connection sends its next event when the previous one was answered). Reported: events answered
200 per second, the latency of those answers (p50 / p99), and the records written once the collector drained
(every pair joined, every record in Parquet, counted in the files).

Kafka: ``--kafka-events`` events are produced to librdkafka's mock cluster first, then a collector consumes them
(one consumer group member); reported: events per second from its start to the last one in the journal.

Client, collector and the mock brokers share the machine's cores, so the rates are lower bounds for the collector;
``collector_cpu_ms_per_event`` (the collector process's CPU time over the events it took) is the cost that does
not depend on what else runs.
Writes ``benchmarks/results/collector_throughput.json``.

Run: ``.venv/bin/python benchmarks/collector_throughput.py``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import pyarrow.parquet as pq
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from prometheus_client.parser import text_string_to_metric_families

OUT = Path(__file__).parent / "results" / "collector_throughput.json"
REQUEST, RESPONSE = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(ce_type: str, rid: str, body: bytes) -> CloudEvent:
    return CloudEvent(
        attributes={
            "id": rid, "type": ce_type, "source": "http://localhost:9081/", "specversion": "1.0",
            "time": dt.datetime.now(dt.UTC), "datacontenttype": "application/json",
            "inferenceservicename": "iris", "namespace": "models", "component": "predictor", "endpoint": "default",
            "metadata": "{}",
        },
        data=body,
    )  # fmt: skip


def _bodies(i: int) -> tuple[bytes, bytes]:
    x = [float(v) for v in np.random.default_rng(i).normal(size=4).astype(np.float32)]
    req = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x}]})
    resp = orjson.dumps({"model_name": "iris", "outputs": [{"name": "label", "shape": [1], "datatype": "INT64",
                                                            "data": [i % 3]}]})  # fmt: skip
    return req, resp


class Collector:
    """``infertap collector`` in a subprocess, ready when ``/readyz`` answers 200."""

    def __init__(self, work: Path, **settings: Any) -> None:
        self.port, self.admin = _free_port(), _free_port()
        self.out = work / "data"
        conf = {"listen_host": "127.0.0.1", "listen_port": self.port, "admin_port": self.admin,
                "output_dir": self.out, "journal_dir": work / "journal", "pod_name": "bench", **settings}  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERTAP_")}
        env.update({f"INFERTAP_COLLECTOR_{k.upper()}": str(v) for k, v in conf.items()})
        with (work / "collector.log").open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "infertap.logger.cli", "collector"], env=env,
                                         stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not start: {(work / 'collector.log').read_text()}")
            time.sleep(0.05)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the collector process used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)

    def records(self) -> int:
        return sum(pq.read_metadata(f).num_rows for f in self.out.rglob("*.parquet"))


async def _http_load(port: int, events: list[tuple[dict[str, str], bytes]], connections: int, duration_s: float
                     ) -> tuple[int, int, list[float]]:  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    ok = refused = 0
    latencies: list[float] = []
    next_event = 0
    deadline = time.monotonic() + duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok, refused, next_event
        while time.monotonic() < deadline and next_event < len(events):
            headers, body = events[next_event]
            next_event += 1
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status == 200:
                    ok += 1
                    latencies.append(time.perf_counter() - t0)
                else:
                    refused += 1

    conn = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    return ok, refused, latencies


def bench_http(connections: int, duration_s: float, exchanges: int) -> dict[str, Any]:
    fmt = JSONFormat()
    events = []
    for i in range(exchanges):  # request then response, as the agent queues them
        req, resp = _bodies(i)
        for ce_type, body in ((REQUEST, req), (RESPONSE, resp)):
            msg = ce_http.to_binary(_event(ce_type, f"r{i}", body), fmt)
            events.append((msg.headers, msg.body))
    with tempfile.TemporaryDirectory() as tmp:
        c = Collector(Path(tmp))
        cpu0 = c.cpu_s()
        t0 = time.monotonic()
        ok, refused, lat = asyncio.run(_http_load(c.port, events, connections, duration_s))
        elapsed = time.monotonic() - t0
        cpu = c.cpu_s() - cpu0
        joined = c.metric("infertap_collector_pairs_joined_total")
        t1 = time.monotonic()
        code = c.stop()
        drain_s = time.monotonic() - t1
        records = c.records()
    return {
        "connections": connections,
        "duration_s": round(elapsed, 2),
        "events_accepted": ok,
        "events_refused": refused,
        "events_per_s": round(ok / elapsed, 1),
        "collector_cpu_ms_per_event": round(cpu / ok * 1e3, 3),
        "events_per_collector_cpu_s": round(ok / cpu, 1),
        "answer_latency_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
        "answer_latency_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 2),
        "pairs_joined": int(joined),
        "records_written": records,
        "drain_on_sigterm_s": round(drain_s, 2),
        "exit_code": code,
    }


def bench_kafka(n_events: int) -> dict[str, Any]:
    import confluent_kafka

    cluster = confluent_kafka.Producer({"test.mock.num.brokers": 3, "bootstrap.servers": "", "log_level": 3})
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in cluster.list_topics(timeout=30).brokers.values())
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "log_level": 3, "linger.ms": 20})
    fmt = JSONFormat()
    for i in range(n_events // 2):
        req, resp = _bodies(i)
        for ce_type, body in ((REQUEST, req), (RESPONSE, resp)):
            msg = ce_kafka.to_binary(_event(ce_type, f"k{i}", body), fmt, key_mapper=lambda _: None)
            while True:
                try:
                    producer.produce("inference-log", msg.value, headers=list(msg.headers.items()))
                    break
                except BufferError:
                    producer.poll(0.1)
    producer.flush(60)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        c = Collector(Path(tmp), kafka_source_bootstrap_servers=bootstrap, kafka_source_topic="inference-log",
                      kafka_source_group_id="bench")  # fmt: skip
        cpu0 = c.cpu_s()
        while c.metric("infertap_collector_events_received_total") < n_events:
            if time.monotonic() - t0 > 600:
                raise RuntimeError("kafka benchmark timed out")
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        cpu = c.cpu_s() - cpu0
        code = c.stop()
        records = c.records()
    del cluster
    return {
        "events": n_events,
        "seconds_from_start": round(elapsed, 2),
        "events_per_s": round(n_events / elapsed, 1),
        "collector_cpu_ms_per_event": round(cpu / n_events * 1e3, 3),
        "records_written": records,
        "exit_code": code,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration-s", type=float, default=15.0)
    p.add_argument("--kafka-events", type=int, default=20_000)
    args = p.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/collector_throughput.py " + " ".join(sys.argv[1:]),
        "http": bench_http(args.connections, args.duration_s, exchanges=200_000),
        "kafka": bench_kafka(args.kafka_events),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
