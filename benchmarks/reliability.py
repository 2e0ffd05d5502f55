"""Reliability of the sidecar's capture path: sink outage, crash and overload, through real processes.

Setup, all on loopback: nginx answers every POST with a fixed ~1 KB Open Inference Protocol (V2) response;
``infertap proxy`` runs in front of it as its own process with a network sink behind the disk spool; the sink is
moto's S3 server or librdkafka's mock Kafka cluster, run with TCP relays in their own process
(``benchmarks/reliability_components.py``): cutting the relays is the sink outage. An asyncio open-loop
generator sends ~1 KB V2 requests (random FP32 data, so segments do not compress to nothing), each with a unique
``X-Request-Id``; latency is measured from each request's scheduled send time. Afterwards the records that
reached the destination are read back and compared, request id by request id, with the requests answered 200.

Scenarios:

* **outage** (per sink, S3 and Kafka): steady load; the relays are cut for the outage and restored; failed
  inferences, p99 before / during / after, lost and duplicate records.
* **crash**: S3 sink; SIGKILL the sidecar under load, restart it on the same spool directory and ports, keep the
  load going; lost records against the documented allowance (capture queue at the kill + ``batch_max_delay_s``
  of records). Then the same with SIGTERM: nothing may be lost.
* **overload**: S3 down from the start, a 2 MB spool, load until far past the bound; peak RSS (``VmHWM``),
  failed inferences; after the sink returns, the drops the sidecar counted (``infertap_spool_dropped_records``
  + ``infertap_capture_dropped``) against the drops that happened (answered requests - records delivered).

* **collector** (forward mode, docs/forward-protocol.md): a forward-mode sidecar ships to an ``infertap collector``
  process; under steady load the collector is SIGKILLed (a crash), stays down for the outage and is restarted on
  its journal; failed inferences, p99 before / during / after, lost and duplicate records read back from the
  collector's Parquet.

Writes ``benchmarks/results/reliability.json`` and ``docs/reliability.md``. ``--quick`` shortens every phase
for a smoke run (its figures are not the recorded ones).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from proxy_overhead import nginx_conf, rss_mb, upstream_server, v2_body  # noqa: E402

from infertap.demo.processes import ManagedProcess, free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
DOC = ROOT / "docs" / "reliability.md"
MODEL = "bench"
BUCKET = "infertap-reliability"
BATCH_MAX_DELAY_S = 1.0
OVERLOAD_SPOOL_BYTES = 2_000_000


@dataclass(frozen=True)
class Plan:
    """Durations (seconds) and rates (requests/s) of one run."""

    rate: float = 200.0
    outage_load_s: float = 60.0
    outage_cut_at_s: float = 15.0
    outage_s: float = 30.0
    crash_load_s: float = 40.0
    crash_kill_at_s: float = 15.0
    crash_down_s: float = 2.0
    overload_rate: float = 300.0
    overload_load_s: float = 40.0
    drain_timeout_s: float = 150.0
    segment_max_age_s: float = 10.0


QUICK = Plan(outage_load_s=10.0, outage_cut_at_s=2.5, outage_s=5.0, crash_load_s=10.0, crash_kill_at_s=4.0,
             overload_load_s=12.0, drain_timeout_s=90.0, segment_max_age_s=2.0)  # fmt: skip


# --- processes -----------------------------------------------------------------------------------------------
class Components:
    """The sink and its relays in a child process (``reliability_components.py``), driven over stdin/stdout."""

    def __init__(self, kind: str, log_path: Path) -> None:
        self.kind = kind
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "reliability_components.py"), kind],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{kind} components did not start; see {log_path}")
        self.info: dict[str, str] = json.loads(line)

    def command(self, cmd: str) -> dict[str, Any]:
        """Send ``cut`` / ``restore``; the child's answer."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        """Stop the child."""
        with contextlib.suppress(OSError, ValueError):
            self.command("quit")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start_nginx(workdir: Path, response: bytes) -> tuple[ManagedProcess, int]:
    """nginx answering every request with ``response``: (process, port)."""
    port = free_port()
    conf = nginx_conf(workdir, "upstream", "11", upstream_server(port, response))
    nginx = "nginx" if subprocess.run(["which", "nginx"], capture_output=True).returncode == 0 else "/usr/sbin/nginx"
    proc = ManagedProcess("nginx", [nginx, "-c", str(conf)], workdir / "nginx.log")
    proc.wait_http(f"http://127.0.0.1:{port}/", timeout_s=15)
    return proc, port


@dataclass
class Sidecar:
    """One ``infertap proxy`` process; restartable on the same ports and spool directory."""

    name: str
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    proc: ManagedProcess | None = None
    starts: int = 0

    def start(self) -> None:
        """Start (or restart) the process and wait until ``/livez`` answers."""
        self.starts += 1
        env = {**self.env, "INFERTAP_LISTEN_PORT": str(self.port), "INFERTAP_ADMIN_PORT": str(self.admin)}
        argv = [sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING", "proxy"]
        log = self.workdir / f"{self.name}-{self.starts}.log"
        self.proc = ManagedProcess(self.name, argv, log, env, cwd=ROOT)
        self.proc.wait_http(f"http://127.0.0.1:{self.admin}/livez", timeout_s=60)

    @property
    def url(self) -> str:
        """The inference URL through the sidecar."""
        return f"http://127.0.0.1:{self.port}/v2/models/{MODEL}/infer"

    def kill(self) -> None:
        """SIGKILL the process (no drain)."""
        assert self.proc is not None
        os.killpg(self.proc.proc.pid, signal.SIGKILL)
        self.proc.proc.wait()
        self.proc.stop()

    def terminate(self) -> int:
        """SIGTERM and wait for the graceful drain; the exit code."""
        assert self.proc is not None
        return self.proc.stop(timeout_s=120)

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as {sample name: value summed over labels}."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[s.name] = out.get(s.name, 0.0) + float(s.value)
        return out

    def peak_rss_mb(self) -> tuple[float, float]:
        """(current, peak) RSS of the sidecar process, MiB."""
        assert self.proc is not None
        return rss_mb(self.proc.proc.pid)


def sidecar_env(plan: Plan, upstream_port: int, spool_dir: Path, sink: str, extra: dict[str, str]) -> dict[str, str]:
    """Environment of a sidecar in front of the nginx upstream, with network sink ``sink`` behind the spool."""
    return {
        "INFERTAP_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
        "INFERTAP_UPSTREAM_READY_PATH": "/",
        "INFERTAP_LISTEN_HOST": "127.0.0.1",
        "INFERTAP_SINK": sink,
        "INFERTAP_POD_NAME": "reliability-pod",
        "INFERTAP_BATCH_MAX_DELAY_S": str(BATCH_MAX_DELAY_S),
        "INFERTAP_SPOOL_DIR": str(spool_dir),
        "INFERTAP_SPOOL_SEGMENT_MAX_AGE_S": str(plan.segment_max_age_s),
        **extra,
    }


def s3_env(relay_url: str, prefix: str) -> dict[str, str]:
    """Settings of the S3 sink pointed at the relay in front of moto."""
    return {
        "INFERTAP_S3_BUCKET": BUCKET,
        "INFERTAP_S3_PREFIX": prefix,
        "INFERTAP_S3_ENDPOINT_URL": relay_url,
        "INFERTAP_S3_REGION": "us-east-1",
        "INFERTAP_S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


# --- load ----------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Sent:
    """One request of the load: its id, scheduled time (s from the start), latency (s) and outcome."""

    rid: str
    at_s: float
    latency_s: float
    ok: bool


class Bodies:
    """V2 requests of about 1 KB with random FP32 data (so that spooled segments do not compress to nothing)."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)
        self.n = 200

    def next(self) -> bytes:
        """A new request body."""
        data = ",".join(f"{x:.5f}" for x in self.rng.random(self.n))
        head = '{"inputs":[{"name":"x","shape":[1,' + str(self.n) + '],"datatype":"FP32","data":['
        return (head + data + "]}]}").encode()


Action = tuple[float, Callable[[], Awaitable[None]]]


async def open_loop(
    url: Callable[[], str], rate: float, duration_s: float, prefix: str, actions: list[Action] | None = None
) -> list[Sent]:
    """Send ``rate`` requests/s for ``duration_s`` with ids ``<prefix>-<n>``; run each action at its offset.

    Latency runs from each request's scheduled time (no coordinated omission). ``url`` is called per request, so
    a restarted sidecar is picked up. Returns every request, failed ones included.
    """
    bodies = Bodies()
    sent: list[Sent] = []
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512), timeout=timeout) as session:
        start = time.perf_counter() + 0.05

        async def one(i: int, scheduled: float, body: bytes) -> None:
            rid = f"{prefix}-{i:07d}"
            ok = False
            try:
                async with session.post(url(), data=body, headers={**headers, "X-Request-Id": rid}) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            sent.append(Sent(rid, scheduled - start, time.perf_counter() - scheduled, ok))

        async def act(offset: float, fn: Callable[[], Awaitable[None]]) -> None:
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
            await fn()

        side = [asyncio.create_task(act(o, fn)) for o, fn in actions or []]
        tasks = []
        for i in range(int(rate * duration_s)):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled, bodies.next())))
        await asyncio.gather(*tasks, *side)
    return sorted(sent, key=lambda s: s.at_s)


def p99_ms(sent: list[Sent], lo_s: float, hi_s: float) -> float:
    """p99 latency (ms) of the successful requests scheduled in [lo_s, hi_s)."""
    lat = [s.latency_s for s in sent if s.ok and lo_s <= s.at_s < hi_s]
    return round(float(np.percentile(np.asarray(lat) * 1000, 99)), 2) if lat else float("nan")


# --- destinations --------------------------------------------------------------------------------------------
def s3_client(url: str) -> Any:
    """A boto3 S3 client for moto (read straight, not through the relay)."""
    import boto3  # type: ignore[import-untyped]

    return boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")  # fmt: skip


def s3_request_ids(url: str, prefix: str) -> list[str]:
    """Every ``request_id`` in the Parquet objects under ``prefix`` (duplicates kept)."""
    import pyarrow.parquet as pq

    client = s3_client(url)
    ids: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            ids += pq.read_table(io.BytesIO(body), columns=["request_id"]).column(0).to_pylist()
    return ids


def tally(sent: list[Sent], delivered: list[str]) -> dict[str, int]:
    """Compare answered requests with delivered record ids."""
    ok = {s.rid for s in sent if s.ok}
    counts = Counter(delivered)
    got = set(counts)
    return {
        "requests_sent": len(sent),
        "requests_ok": len(ok),
        "failed_inferences": len(sent) - len(ok),
        "records_delivered": len(delivered),
        "lost_records": len(ok - got),
        "duplicate_records": sum(n - 1 for n in counts.values() if n > 1),
        "records_of_failed_requests": len(got - ok),
    }


def wait_drained(car: Sidecar, timeout_s: float) -> tuple[float, dict[str, float]]:
    """Wait until the sidecar holds nothing: capture queue empty, every captured record appended to the spool or
    dropped, spool empty — twice in a row, 1 s apart (longer than ``batch_max_delay_s``).

    Returns (seconds waited, last metrics); gives up after ``timeout_s`` (SIGTERM then drains what is left).
    """
    t0 = time.monotonic()
    m: dict[str, float] = {}
    calm = 0
    while time.monotonic() - t0 < timeout_s:
        m = car.metrics()
        handed = m.get("infertap_spool_appended_records_total", 0) + m.get("infertap_spool_dropped_records_total", 0)
        empty = m.get("infertap_capture_queue_depth", 0) == 0 and m.get("infertap_spool_records", 0) == 0
        calm = calm + 1 if empty and handed >= m.get("infertap_capture_records_total", 0) else 0
        if calm >= 2:
            break
        time.sleep(1.0 if calm else 0.5)
    return round(time.monotonic() - t0, 1), m


def dropped_counted(m: dict[str, float]) -> int:
    """Records the sidecar says it dropped: capture queue / encode / sink errors plus spool drops."""
    return int(m.get("infertap_capture_dropped_total", 0) + m.get("infertap_spool_dropped_records_total", 0))


# --- scenarios -----------------------------------------------------------------------------------------------
@dataclass
class Env:
    """What every scenario shares: plan, work directory, upstream port, S3 and Kafka components."""

    plan: Plan
    workdir: Path
    upstream_port: int
    s3: Components
    kafka: Components


async def to_thread(fn: Callable[[], Any]) -> None:
    """Run a blocking call off the load generator's event loop."""
    await asyncio.to_thread(fn)


def outage(env: Env, kind: str) -> dict[str, Any]:
    """Steady load; the sink's relays are cut for ``outage_s`` and restored."""
    p, comp = env.plan, env.s3 if kind == "s3" else env.kafka
    name = f"outage-{kind}-{uuid.uuid4().hex[:6]}"
    extra = s3_env(comp.info["relay_url"], name) if kind == "s3" else {
        "INFERTAP_KAFKA_BOOTSTRAP_SERVERS": comp.info["bootstrap"], "INFERTAP_KAFKA_TOPIC": name,
        "INFERTAP_KAFKA_KEY": "request_id"}  # fmt: skip
    if kind == "kafka":
        comp.command(f"read {name}")  # creates the topic; the mock trims old messages: read them as they come
    car = Sidecar(name, sidecar_env(env.plan, env.upstream_port, env.workdir / name, kind, extra), env.workdir)
    car.start()
    cut, back = p.outage_cut_at_s, p.outage_cut_at_s + p.outage_s
    seen: dict[str, Any] = {}

    def cut_relays() -> None:
        seen["relay_connections_before_cut"] = comp.command("cut")["connections"]

    def restore_relays() -> None:
        m = car.metrics()  # the sidecar's view at the end of the outage
        seen["at_restore"] = {"spool_records": int(m.get("infertap_spool_records", 0)),
                              "sink_up": int(m.get("infertap_sink_up", 0)),
                              "delivery_errors": int(m.get("infertap_delivery_errors_total", 0))}  # fmt: skip
        comp.command("restore")

    sent = asyncio.run(open_loop(lambda: car.url, p.rate, p.outage_load_s, name, [
        (cut, lambda: to_thread(cut_relays)), (back, lambda: to_thread(restore_relays))]))  # fmt: skip
    waited, m = wait_drained(car, p.drain_timeout_s)
    code = car.terminate()
    if kind == "s3":
        delivered = s3_request_ids(comp.info["direct_url"], name)
    else:
        time.sleep(5.0)  # let the reader catch up with the last messages
        read = comp.command(f"ids {name}")
        delivered, seen["verification_trimmed_unread"] = read["ids"], read["trimmed_unread"]
    warm = min(2.0, cut / 2)
    return {
        **tally(sent, delivered),
        "p99_ms": {
            "before": p99_ms(sent, warm, cut),
            "during": p99_ms(sent, cut, back),
            "after": p99_ms(sent, back, p.outage_load_s),
        },
        **seen,
        "relay_connections_total": comp.command("status")["connections"],
        "drain_wait_s": waited,
        "sidecar_exit_code": code,
        "dropped_counted": dropped_counted(m),
        "delivery_errors": int(m.get("infertap_delivery_errors_total", 0)),
    }


def crash(env: Env, sig: signal.Signals) -> dict[str, Any]:
    """S3 sink up; kill the sidecar with ``sig`` under load, restart it on the same spool and ports."""
    p, comp = env.plan, env.s3
    name = f"crash-{sig.name.lower()}-{uuid.uuid4().hex[:6]}"
    car = Sidecar(name, sidecar_env(env.plan, env.upstream_port, env.workdir / name, "s3",
                                    s3_env(comp.info["relay_url"], name)), env.workdir)  # fmt: skip
    car.start()
    at_kill: dict[str, Any] = {}

    def kill_and_restart() -> None:
        t_scrape = time.monotonic()
        m = car.metrics()
        if sig is signal.SIGKILL:
            car.kill()
        else:
            at_kill["exit_code"] = car.terminate()
        t_killed = time.monotonic()
        at_kill.update(queue_depth=int(m.get("infertap_capture_queue_depth", 0)),
                       scrape_to_kill_s=round(t_killed - t_scrape, 3) if sig is signal.SIGKILL else 0.0)  # fmt: skip
        time.sleep(p.crash_down_s)
        car.start()
        at_kill["down_s"] = round(time.monotonic() - t_killed, 2)

    sent = asyncio.run(open_loop(lambda: car.url, p.rate, p.crash_load_s, name,
                                 [(p.crash_kill_at_s, lambda: to_thread(kill_and_restart))]))  # fmt: skip
    waited, m = wait_drained(car, p.drain_timeout_s)
    code = car.terminate()
    delivered = s3_request_ids(comp.info["direct_url"], name)
    kill_at = p.crash_kill_at_s + at_kill["scrape_to_kill_s"]
    got = set(delivered)
    lost_at = [round(x.at_s - kill_at, 3) for x in sent if x.ok and x.rid not in got]
    result = {**tally(sent, delivered), **at_kill,
              "lost_sent_relative_to_kill_s": [min(lost_at), max(lost_at)] if lost_at else [],
              "drain_wait_s": waited, "final_exit_code": code,
              "salvaged_segments": int(m.get("infertap_spool_salvaged_segments_total", 0)),
              "replayed_segments": int(m.get("infertap_spool_replayed_segments_total", 0))}  # fmt: skip
    if sig is signal.SIGKILL:
        # documented: a process crash loses the capture queue and the batch being built (<= batch_max_delay_s)
        window = BATCH_MAX_DELAY_S + result["scrape_to_kill_s"]
        result["allowed_loss"] = result["queue_depth"] + math.ceil(p.rate * window)
    return result


def overload(env: Env) -> dict[str, Any]:
    """S3 down from the start, a small spool, load far past its bound; then the sink returns."""
    p, comp = env.plan, env.s3
    name = f"overload-{uuid.uuid4().hex[:6]}"
    extra = {**s3_env(comp.info["relay_url"], name), "INFERTAP_SPOOL_MAX_BYTES": str(OVERLOAD_SPOOL_BYTES)}
    comp.command("cut")
    car = Sidecar(name, sidecar_env(env.plan, env.upstream_port, env.workdir / name, "s3", extra), env.workdir)
    car.start()
    rss_idle = car.peak_rss_mb()[0]
    samples: list[float] = []

    async def sample_rss() -> None:
        for _ in range(int(p.overload_load_s)):
            samples.append(car.peak_rss_mb()[0])
            await asyncio.sleep(1.0)

    sent = asyncio.run(open_loop(lambda: car.url, p.overload_rate, p.overload_load_s, name,
                                 [(0.0, sample_rss)]))  # fmt: skip
    during = car.metrics()
    rss_now, rss_peak = car.peak_rss_mb()
    comp.command("restore")
    waited, m = wait_drained(car, p.drain_timeout_s)
    code = car.terminate()
    t = tally(sent, s3_request_ids(comp.info["direct_url"], name))
    return {
        **t,
        "spool_max_bytes": OVERLOAD_SPOOL_BYTES,
        "spool_bytes_at_end_of_load": int(during.get("infertap_spool_bytes", 0)),
        "rss_idle_mb": round(rss_idle, 1),
        "rss_end_of_load_mb": round(rss_now, 1),
        "peak_rss_mb": round(rss_peak, 1),
        "rss_samples_mb": [round(x, 1) for x in samples],
        "drops_counted": dropped_counted(m),
        "spool_dropped": int(m.get("infertap_spool_dropped_records_total", 0)),
        "capture_dropped": int(m.get("infertap_capture_dropped_total", 0)),
        "drops_actual": t["lost_records"],
        "p99_ms": p99_ms(sent, 2.0, p.overload_load_s),
        "drain_wait_s": waited,
        "sidecar_exit_code": code,
    }


# --- report --------------------------------------------------------------------------------------------------
def collector(env: Env) -> dict[str, Any]:
    """Forward mode: the collector crashes (SIGKILL) under load, stays down ``outage_s``, restarts on its journal."""
    import pyarrow.parquet as pq

    p = env.plan
    name = f"collector-{uuid.uuid4().hex[:6]}"
    base = env.workdir / name
    port, admin = free_port(), free_port()
    cenv = {
        "INFERTAP_COLLECTOR_LISTEN_HOST": "127.0.0.1",
        "INFERTAP_COLLECTOR_LISTEN_PORT": str(port),
        "INFERTAP_COLLECTOR_ADMIN_PORT": str(admin),
        "INFERTAP_COLLECTOR_OUTPUT_DIR": str(base / "data"),
        "INFERTAP_COLLECTOR_JOURNAL_DIR": str(base / "journal"),
        "INFERTAP_COLLECTOR_POD_NAME": "collector-0",
    }
    procs: list[ManagedProcess] = []

    def start_collector() -> None:
        argv = [sys.executable, "-m", "infertap.logger.cli", "--log-level", "WARNING", "collector"]
        proc = ManagedProcess("collector", argv, base / f"collector-{len(procs) + 1}.log", cenv, cwd=ROOT)
        proc.wait_http(f"http://127.0.0.1:{admin}/readyz", timeout_s=60)
        procs.append(proc)

    def kill_collector() -> None:
        os.killpg(procs[-1].proc.pid, signal.SIGKILL)
        procs[-1].proc.wait()
        procs[-1].stop()

    start_collector()
    extra = {"INFERTAP_CAPTURE_PLACEMENT": "forward", "INFERTAP_FORWARD_COLLECTOR_URL": f"http://127.0.0.1:{port}",
             "INFERTAP_FORWARD_SPOOL_DIR": str(base / "forward-spool")}  # fmt: skip
    car = Sidecar(name, sidecar_env(p, env.upstream_port, base / "spool", "file", extra), env.workdir)
    car.start()
    cut, back = p.outage_cut_at_s, p.outage_cut_at_s + p.outage_s
    seen: dict[str, Any] = {}

    def restart() -> None:
        seen["spool_frames_at_restart"] = int(car.metrics().get("infertap_forward_spool_frames", 0))
        start_collector()

    sent = asyncio.run(open_loop(lambda: car.url, p.rate, p.outage_load_s, name, [
        (cut, lambda: to_thread(kill_collector)), (back, lambda: to_thread(restart))]))  # fmt: skip
    t0 = time.monotonic()
    while time.monotonic() - t0 < p.drain_timeout_s:
        m = car.metrics()
        if m.get("infertap_forward_spool_frames", 0) == 0 and m.get("infertap_capture_queue_depth", 0) == 0:
            break
        time.sleep(0.5)
    waited = round(time.monotonic() - t0, 1)
    code = car.terminate()
    collector_code = procs[-1].stop(timeout_s=120)
    delivered = [str(x) for f in (base / "data").rglob("*.parquet")
                 for x in pq.read_table(f, columns=["request_id"]).column("request_id").to_pylist()]  # fmt: skip
    warm = min(2.0, cut / 2)
    return {
        **tally(sent, delivered),
        "p99_ms": {
            "before": p99_ms(sent, warm, cut),
            "during": p99_ms(sent, cut, back),
            "after": p99_ms(sent, back, p.outage_load_s),
        },
        **seen,
        "drain_wait_s": waited,
        "sidecar_exit_code": code,
        "collector_exit_code": collector_code,
        "dropped_counted": int(m.get("infertap_capture_dropped_total", 0)),
    }


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    mem = Path("/proc/meminfo").read_text().split()[1]
    return {"host": platform.node(), "arch": platform.machine(), "cpus": os.cpu_count(),
            "mem_gib": round(int(mem) / 2**20, 1), "kernel": platform.release(), "python": platform.python_version(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def summarize(plan: Plan, quick: bool, out: dict[str, Any], started: str, elapsed_s: float) -> dict[str, Any]:
    """The JSON document: headline keys first, details after."""
    o, c, v = out["outage"], out["crash"], out["overload"]
    return {
        "outage_failed_inferences": {k: o[k]["failed_inferences"] for k in o},
        "outage_lost_records": {k: o[k]["lost_records"] for k in o},
        "outage_duplicate_records": {k: o[k]["duplicate_records"] for k in o},
        "outage_p99_before_ms": {k: o[k]["p99_ms"]["before"] for k in o},
        "outage_p99_during_ms": {k: o[k]["p99_ms"]["during"] for k in o},
        "sigkill_lost_records": c["sigkill"]["lost_records"],
        "sigkill_allowed_loss": c["sigkill"]["allowed_loss"],
        "sigterm_lost_records": c["sigterm"]["lost_records"],
        "overload_peak_rss_mb": v["peak_rss_mb"],
        "overload_failed_inferences": v["failed_inferences"],
        "overload_drops_counted": v["drops_counted"],
        "overload_drops_actual": v["drops_actual"],
        **(
            {
                "collector_failed_inferences": out["collector"]["failed_inferences"],
                "collector_lost_records": out["collector"]["lost_records"],
                "collector_duplicate_records": out["collector"]["duplicate_records"],
            }
            if "collector" in out
            else {}
        ),
        "details": out,
        "plan": asdict(plan),
        "quick": quick,
        "machine": machine(),
        "date": started,
        "elapsed_s": round(elapsed_s, 1),
        "command": "make reliability (= .venv/bin/python benchmarks/reliability.py)" + (" --quick" if quick else ""),
    }


SCENARIOS = ("outage", "crash", "overload", "collector")


def main() -> int:
    """Run every scenario, write the JSON and the Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases, for a smoke run")
    parser.add_argument("--only", choices=[*SCENARIOS], action="append", help="run only these")
    parser.add_argument("--no-write", action="store_true", help="print the JSON, do not write results")
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown from the existing JSON")
    args = parser.parse_args()
    if args.render:
        DOC.write_text(render(json.loads(RESULTS.read_text())))
        return 0
    plan = QUICK if args.quick else Plan()
    only = set(args.only or SCENARIOS)
    started, t0 = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="infertap-reliability-"))
    print(f"work directory (logs, spools): {workdir}", flush=True)
    nginx, up_port = start_nginx(workdir, v2_body(1024, "outputs"))
    s3, kafka = Components("s3", workdir / "s3.log"), Components("kafka", workdir / "kafka.log")
    s3_client(s3.info["direct_url"]).create_bucket(Bucket=BUCKET)
    env = Env(plan, workdir, up_port, s3, kafka)
    out: dict[str, Any] = {}
    try:
        if "outage" in only:
            out["outage"] = {k: step(f"outage {k}", partial(outage, env, k)) for k in ("s3", "kafka")}
        if "crash" in only:
            out["crash"] = {s.name.lower(): step(f"crash {s.name}", partial(crash, env, s))
                            for s in (signal.SIGKILL, signal.SIGTERM)}  # fmt: skip
        if "overload" in only:
            out["overload"] = step("overload", partial(overload, env))
        if "collector" in only:
            out["collector"] = step("collector", partial(collector, env))
    finally:
        s3.close()
        kafka.close()
        nginx.stop()
    if args.no_write:
        print(json.dumps(out, indent=2))
        return 0
    if only != set(SCENARIOS):  # a partial rerun replaces its scenarios in the last results
        out = {**json.loads(RESULTS.read_text())["details"], **out}
        started += " (scenarios " + ", ".join(sorted(only)) + " rerun at this time)"
    doc = summarize(plan, args.quick, out, started, time.monotonic() - t0)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    DOC.write_text(render(doc))
    print(json.dumps({k: v for k, v in doc.items() if k != "details"}, indent=2))
    return 0


# --- Markdown ------------------------------------------------------------------------------------------------
def render(doc: dict[str, Any]) -> str:
    """``docs/reliability.md`` from the JSON document."""
    d, p, mach = doc["details"], doc["plan"], doc["machine"]
    parts = [
        _header(doc, p, mach),
        _outage_section(d["outage"], p),
        _crash_section(d["crash"], p),
        _overload_section(d["overload"], p),
        _collector_section(d["collector"], p) if "collector" in d else "",
        _disk_faults_section(),
        _method_section(p),
    ]
    return "\n".join(parts)


def _collector_section(c: dict[str, Any], p: dict[str, Any]) -> str:
    rows = [[k, c[k]] for k in ("requests_sent", "requests_ok", "failed_inferences", "records_delivered",
                                "lost_records", "duplicate_records", "spool_frames_at_restart", "drain_wait_s",
                                "sidecar_exit_code", "collector_exit_code", "dropped_counted")]  # fmt: skip
    rows.append(["p99 before / during / after (ms)", " / ".join(str(c["p99_ms"][k]) for k in ("before", "during",
                                                                                            "after"))])  # fmt: skip
    return f"""## Collector crash and outage (forward mode)

A forward-mode sidecar (`INFERTAP_CAPTURE_PLACEMENT=forward`, docs/forward-protocol.md) ships to an `infertap
collector` process under {p["rate"]:.0f} requests/s for {p["outage_load_s"]:.0f} s; at {p["outage_cut_at_s"]:.0f} s
the collector is SIGKILLed, {p["outage_s"]:.0f} s later it is started again on its journal. Frames wait in the
sidecar's raw spool meanwhile; afterwards every record in the collector's Parquet is matched, id by id, with the
requests answered 200.

{_table(["key", "value"], rows)}
"""


DISK_RESULTS = ROOT / "benchmarks" / "results" / "reliability_disk_faults.json"


def _disk_faults_section() -> str:
    """The "Disk faults" table, from ``benchmarks/reliability_disk_faults.py``'s results (if they exist)."""
    if not DISK_RESULTS.exists():
        return "\n## Disk faults\n\nNot measured yet: `make disk-faults`.\n"
    doc = json.loads(DISK_RESULTS.read_text())
    head = ["scenario", "fault", "appended", "delivered", "spooled", "dropped", "dropped by reason", "unaccounted"]
    rows = []
    for name, t in doc["scenarios"].items():
        if "skipped" in t:
            rows.append([name, "skipped: " + t["skipped"], "", "", "", "", "", ""])
            continue
        reasons = ", ".join(f"{k} {v}" for k, v in t["dropped_by_reason"].items()) or "—"
        rows.append([t["scenario"], t["fault"], t["appended"], t["delivered"], t["spooled"], t["dropped"], reasons,
                     t["unaccounted"]])  # fmt: skip
    return f"""
## Disk faults

The spool's invariant: every record the capture stage hands to the spool ends **delivered**, **still spooled**
(`infertap_spool_records`, reported at shutdown) or **dropped with a reason**
(`infertap_spool_dropped_records_total{{reason}}`). Measured by `benchmarks/reliability_disk_faults.py`
(`make disk-faults`, run as root for the tmpfs scenarios; {doc["date"]}, Linux {doc["machine"]["kernel"]}),
which runs the scenarios of `tests/integration/sinks/disk_faults.py` — the same ones
`tests/integration/sinks/test_spool_disk_faults.py` asserts exact counts on in `make test`. Each hands numbered
records of 50 to a real spool, injects the fault, delivers to the local Parquet sink on another file system and
reads every record back by request id (no duplicate in any scenario).

{_table(head, rows)}

- **Full disk**: a 384 KiB tmpfs (`mount -t tmpfs -o size=393216`), the sink away until the disk is full; each
  write that hits `ENOSPC` is dropped and counted, and the segment it went to is retired and cut back to its
  complete batches. The failed writes, by kind, are in the JSON's `notes`: `failed_first_writes` (a new
  segment's first batch with its schema header: the case that used to leave a headerless segment taking appends)
  and `failed_later_writes` (a segment already holding records, which are kept and delivered); the 1 MiB-segment
  run has both. After the sink takes what was kept, appends succeed again and no segment was quarantined.
- **Read-only remount**: `mount -o remount,ro` with sealed segments waiting (Linux refuses a read-only remount
  while a file is open for writing, so it meets the spool between segments): the 5 batches appended meanwhile
  are dropped (`disk_error`), the waiting segments are delivered and their files deleted once it is read-write.
- **Deleted directory**: `rm -r` of the spool directory with a sealed, undelivered segment (lost with it:
  `lost`) and an open one (written out again from its open descriptor into the recreated directory: nothing
  lost); then deleted again with a file put in its place, so it cannot be recreated: 3 batches dropped
  (`disk_error`) and `infertap_spool_up` 0 until the file goes.
- **Corrupt files**: garbage in `state.json` (quarantined, new instance id), in a sealed segment (quarantined,
  `corrupt`) and in an open segment (quarantined, `corrupt`, counted from its `.count-*` file), and an open
  segment whose last batch is cut in half (the complete batches salvaged, the torn one counted `corrupt`).
- **SIGKILL during a seal**: a child process kills itself in its third seal, before the segment's fsync, before
  its rename, or after the rename before the directory's fsync; the next open replays and salvages every record.
"""


def _header(doc: dict[str, Any], p: dict[str, Any], mach: dict[str, Any]) -> str:
    ok = {
        "outage": all(v == 0 for k in ("outage_failed_inferences", "outage_lost_records") for v in doc[k].values())
        and doc["outage_duplicate_records"]["s3"] == 0,
        "crash": doc["sigkill_lost_records"] <= doc["sigkill_allowed_loss"] and doc["sigterm_lost_records"] == 0,
        "overload": doc["overload_failed_inferences"] == 0
        and doc["overload_drops_counted"] == doc["overload_drops_actual"],
    }
    verdict = {k: "met" if v else "**not met**" for k, v in ok.items()}
    o = doc
    return f"""# Reliability of the capture path

Figures written by `benchmarks/reliability.py` (`make reliability`); the raw numbers are in
`benchmarks/results/reliability.json`. This page is generated by the same script — edit the script, not the page.

Machine: `{mach["host"]}`, {mach["arch"]}, {mach["cpus"]} vCPU, {mach["mem_gib"]} GiB, Linux {mach["kernel"]},
Python {mach["python"]} (shared with other jobs; load average at start {mach["load_avg_at_start"]}).
Date: {doc["date"]}. Command: `{doc["command"]}`{" (a smoke run: short phases)" if doc["quick"] else ""}.
Run time {doc["elapsed_s"]:.0f} s.

Every scenario runs a real `infertap proxy` process in front of nginx (fixed ~1 KB V2 response), with a network
sink behind the disk spool: moto's S3 server or librdkafka's mock Kafka cluster, each behind TCP relays that the
benchmark cuts to take the sink away. Load is open loop with a unique `X-Request-Id` per request; afterwards every
record at the destination is read back and matched, id by id, with the requests that were answered 200.

{_headline_tables(o, verdict)}
"""


def _row(*cells: object) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    return "\n".join([_row(*head), _row(*["---"] * len(head)), *(_row(*r) for r in rows)])


def _headline_tables(o: dict[str, Any], verdict: dict[str, str]) -> str:
    fi, lo, du = o["outage_failed_inferences"], o["outage_lost_records"], o["outage_duplicate_records"]
    b, d = o["outage_p99_before_ms"], o["outage_p99_during_ms"]
    sinks = _table(["key", "S3", "Kafka", "requirement", ""], [
        ["`outage_failed_inferences`", fi["s3"], fi["kafka"], "0", verdict["outage"]],
        ["`outage_lost_records`", lo["s3"], lo["kafka"], "0", ""],
        ["`outage_duplicate_records`", du["s3"], du["kafka"], "S3: 0", ""],
        ["p99 before / during the outage (ms)", f"{b['s3']} / {d['s3']}", f"{b['kafka']} / {d['kafka']}",
         "unchanged within noise", ""],
    ])  # fmt: skip
    rest = _table(["key", "value", "requirement", ""], [
        ["`sigkill_lost_records`", o["sigkill_lost_records"], "<= `sigkill_allowed_loss`", verdict["crash"]],
        ["`sigkill_allowed_loss`", o["sigkill_allowed_loss"], "documented policy (below)", ""],
        ["`sigterm_lost_records`", o["sigterm_lost_records"], "0", ""],
        ["`overload_peak_rss_mb`", o["overload_peak_rss_mb"], "bounded", verdict["overload"]],
        ["`overload_failed_inferences`", o["overload_failed_inferences"], "0", ""],
        ["`overload_drops_counted`", o["overload_drops_counted"], "= actual", ""],
        ["`overload_drops_actual`", o["overload_drops_actual"], "", ""],
    ])  # fmt: skip
    return sinks + "\n\n" + rest


def _outage_section(o: dict[str, Any], p: dict[str, Any]) -> str:
    head = ["sink", "requests", "failed", "p99 before (ms)", "p99 during", "p99 after", "spool at restore (records)",
            "failed deliveries", "records delivered", "lost", "duplicates", "drain after load (s)"]  # fmt: skip
    rows: list[list[object]] = [
        [k, r["requests_sent"], r["failed_inferences"], r["p99_ms"]["before"], r["p99_ms"]["during"],
         r["p99_ms"]["after"], r.get("at_restore", {}).get("spool_records", "—"), r["delivery_errors"],
         r["records_delivered"], r["lost_records"], r["duplicate_records"], r["drain_wait_s"]]
        for k, r in o.items()
    ]  # fmt: skip
    notes = []
    if o.get("kafka", {}).get("duplicate_records"):
        notes.append(
            "Kafka shows duplicates: delivery from the spool is at least once. A segment whose send was cut part-way "
            "is resent whole from the spool, and the messages the brokers had already taken arrive twice. "
            "Consumers deduplicate on the CloudEvents `ce_id` header (the request id), as docs/sinks.md says."
        )
    if any(r["delivery_errors"] == 0 for r in o.values()):
        quiet = ", ".join(k for k, r in o.items() if r["delivery_errors"] == 0)
        notes.append(
            f"No failed delivery was counted for {quiet}: the sink's client waited through the outage inside one "
            "delivery attempt (the Kafka producer buffers and reconnects within `flush_timeout_s`), so the "
            "records waited in the spool and in the producer's buffer and went out when the relays came back."
        )
    for k, r in o.items():
        trimmed = r.get("verification_trimmed_unread", 0)
        if r["lost_records"] and trimmed:
            notes.append(
                f"**{k}: {r['lost_records']} records counted as lost, and {trimmed} of them were never readable.** "
                "librdkafka's mock cluster keeps only about 5 MB per partition and trims older messages; after the "
                "outage the sidecar sent its backlog faster than the verifying consumer (reconnecting through the "
                f"restored relays) read it, so {trimmed} offsets were trimmed before they were read. Read ids + "
                f"trimmed offsets = {r['records_delivered']} + {trimmed} = {r['records_delivered'] + trimmed} "
                f"messages in the log for {r['requests_ok']} answered requests, with no duplicate among the ids "
                "read: the broker's offsets account for every record, but id-by-id proof is incomplete for Kafka "
                "in this run (a real cluster, or a mock with a larger retention, would close the gap)."
            )
        elif r["lost_records"]:
            notes.append(f"**{k} lost {r['lost_records']} records**: see the sidecar logs of the run.")
    return f"""
## Sink outage

{p["rate"]:.0f} requests/s for {p["outage_load_s"]:.0f} s; the relays in front of the sink are cut at
{p["outage_cut_at_s"]:.0f} s for {p["outage_s"]:.0f} s (listeners closed, open connections reset: connections are
refused) and restored. p99 is measured from each request's scheduled time over the requests scheduled in each
phase ("before" skips the first seconds of warm-up). "Spool at restore" is `infertap_spool_records` scraped just
before the relays came back. After the load the benchmark waits until the spool is empty, then SIGTERMs the sidecar.

{_table(head, rows)}

{chr(10).join("- " + n for n in notes)}
"""


def _crash_section(c: dict[str, Any], p: dict[str, Any]) -> str:
    k, t = c["sigkill"], c["sigterm"]
    return f"""
## Crash (S3 sink)

{p["rate"]:.0f} requests/s for {p["crash_load_s"]:.0f} s; at {p["crash_kill_at_s"]:.0f} s the sidecar is sent
SIGKILL (then, in a second run, SIGTERM), restarted {p["crash_down_s"]:.0f} s later on the same spool directory
and ports, and the load goes on. Requests sent while no sidecar listened fail (connection refused) — these are the
"failed" below, a property of the restart and not of capture; they are not expected at the destination.

{_crash_table(k, t)}

**Allowance.** docs/sinks.md and `logger/sinks/segments.py` document that a process crash loses no batch already
appended to the spool (the page cache survives the process, and the next start salvages the open segment), only what the
capture pipeline had not handed to the spool: its in-memory queue and the batch it was building, at most
`batch_max_delay_s` ({BATCH_MAX_DELAY_S:g} s) of records. The benchmark scrapes `infertap_capture_queue_depth`
just before the kill ({k["queue_depth"]} exchanges, {k["scrape_to_kill_s"]} s before it), so
`sigkill_allowed_loss` = queue depth + rate x (`batch_max_delay_s` + scrape-to-kill time) =
{k["queue_depth"]} + ceil({p["rate"]:.0f} x {BATCH_MAX_DELAY_S + k["scrape_to_kill_s"]:.3f}) = {k["allowed_loss"]}.
{_lost_window(k)}
"""


def _lost_window(k: dict[str, Any]) -> str:
    w = k["lost_sent_relative_to_kill_s"]
    if not w:
        return "No record was lost."
    return (f"The lost requests were all sent between {-w[0]:.2f} s and {-w[1]:.2f} s before the kill (scheduled "
            f"times), i.e. they were still in the capture queue or the batch being built; {k['salvaged_segments']} "
            "open segment(s) were salvaged on restart and delivered, so nothing already appended to the spool was "
            "lost.")  # fmt: skip


def _crash_table(k: dict[str, Any], t: dict[str, Any]) -> str:
    head = ["signal", "requests", "answered 200", "failed while down", "down (s)", "records delivered", "lost",
            "duplicates", "allowed loss", "salvaged / replayed segments"]  # fmt: skip
    rows = [
        [name, r["requests_sent"], r["requests_ok"], r["failed_inferences"], r["down_s"], r["records_delivered"],
         r["lost_records"], r["duplicate_records"], allowed, f"{r['salvaged_segments']} / {r['replayed_segments']}"]
        for name, r, allowed in (("SIGKILL", k, k["allowed_loss"]), ("SIGTERM", t, 0))
    ]  # fmt: skip
    return _table(head, rows)


def _overload_section(v: dict[str, Any], p: dict[str, Any]) -> str:
    return f"""
## Overload (S3 sink down, {v["spool_max_bytes"] / 1e6:g} MB spool)

The relay in front of S3 is cut before the sidecar starts (`INFERTAP_SPOOL_MAX_BYTES={v["spool_max_bytes"]}`,
overflow policy `drop_newest`); {p["overload_rate"]:.0f} requests/s for {p["overload_load_s"]:.0f} s, far beyond
what the spool holds. Then the relay is restored, the spool drains, and the records at the destination are counted.

{_overload_table(v)}

RSS once a second during the load (MiB): {", ".join(str(x) for x in v["rss_samples_mb"])}. Peak RSS is `VmHWM`
from `/proc`. The spool's bound is checked against the bytes on disk plus the in-memory size of the batch being
appended, so the spool stays under its bound and whole batches are dropped; memory holds at most the capture queue
(`INFERTAP_QUEUE_MAX_RECORDS`) and one batch, whatever the sink does.
"""


def _overload_table(v: dict[str, Any]) -> str:
    head = ["requests", "failed", "p99 (ms)", "spool bytes at end of load", "RSS idle / end of load / peak (MiB)",
            "drops counted (spool + capture)", "drops actual (answered - delivered)", "records delivered",
            "duplicates"]  # fmt: skip
    row = [v["requests_sent"], v["failed_inferences"], v["p99_ms"], v["spool_bytes_at_end_of_load"],
           f"{v['rss_idle_mb']} / {v['rss_end_of_load_mb']} / {v['peak_rss_mb']}",
           f"{v['drops_counted']} ({v['spool_dropped']} + {v['capture_dropped']})", v["drops_actual"],
           v["records_delivered"], v["duplicate_records"]]  # fmt: skip
    return _table(head, [row])


def _method_section(p: dict[str, Any]) -> str:
    return f"""
## How it is measured

- Components (`benchmarks/reliability_components.py`, its own process so that neither moto nor the relays share
  the load generator's event loop): moto `ThreadedMotoServer` behind one asyncio TCP relay; librdkafka's mock
  cluster (3 brokers), created through `ctypes` on the `librdkafka` that `confluent_kafka` ships, with one relay
  per broker and each broker told to advertise its relay (`rd_kafka_mock_broker_set_host_port`) — Kafka clients
  learn broker addresses from metadata, so relaying only the bootstrap address would not cut anything.
- Sidecar settings: defaults except `INFERTAP_BATCH_MAX_DELAY_S={BATCH_MAX_DELAY_S:g}` (the default),
  `INFERTAP_SPOOL_SEGMENT_MAX_AGE_S={p["segment_max_age_s"]:g}` and, for overload, the spool bound. Retry backoff
  is the default (0.5 s doubling to 30 s, full jitter), so the spool can take up to 30 s to start draining after
  the sink returns.
- Requests: ~1 KB V2 JSON with 200 random FP32 values (random so that spooled segments do not compress to
  nothing); nginx answers a fixed ~1 KB V2 response.
- Delivered ids: S3 objects are listed and read straight from moto (not through the relay); Kafka messages are
  consumed from the beginning of the topic, while the scenario runs, and identified by their `ce_id` header. The
  mock cluster keeps only about 5 MB per partition, so the topic is created with 16 partitions and this scenario
  sets `INFERTAP_KAFKA_KEY=request_id` (the default key, the pod, would put every record in one partition, whose
  oldest messages the mock would trim before they could be read; a real broker keeps them).
- "Lost" = answered 200 but not at the destination; "duplicates" = deliveries beyond the first of an id.
- Results of `--quick` (short phases, 2 s segments) are smoke runs only.
"""


def step(label: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one scenario, printing its label, duration and result."""
    print(f"== {label} ...", flush=True)
    t = time.monotonic()
    result = fn()
    print(f"   {time.monotonic() - t:.0f} s: {json.dumps({k: v for k, v in result.items() if k != 'rss_samples_mb'})}",
          flush=True)  # fmt: skip
    return result


if __name__ == "__main__":
    sys.exit(main())
