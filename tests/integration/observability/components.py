"""Real Prometheus, Alertmanager and Pushgateway (Debian's binaries) on loopback, and an aiohttp webhook receiver.

Each server gets its own configuration and data directory under the test's temporary directory and is polled for
readiness (``/-/ready``); nothing here sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from infertap.demo.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "helm" / "infertap" / "files" / "prometheus-rules.yaml"


def binary(name: str) -> str:
    """The path of a Debian binary that ``make test-deps`` installs."""
    path = shutil.which(name)
    assert path, f"{name} is missing: `make test-deps` installs it"
    return path


def ready(proc: ManagedProcess, url: str, timeout_s: float) -> None:
    """Wait until ``url`` answers 2xx; stop ``proc`` (closing its log) and re-raise if it does not."""
    try:
        proc.wait_http(url, timeout_s=timeout_s)
    except RuntimeError:
        proc.stop()
        raise


@dataclass
class Server:
    """A started server process and its loopback address (``127.0.0.1:port``)."""

    process: ManagedProcess
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_pushgateway(workdir: Path) -> Server:
    """Debian's ``prometheus-pushgateway`` on a free port, in memory only, ready.

    Debian builds it with ``--persistence.file=/var/lib/prometheus/pushgateway.data`` as the default: without the
    empty flag every Pushgateway on the machine would load (and write) the metrics of earlier runs.
    """
    port = free_port()
    argv = [binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="]
    proc = ManagedProcess("pushgateway", argv, workdir / "pushgateway.log")
    ready(proc, f"http://127.0.0.1:{port}/-/ready", 30)
    return Server(proc, port)


def alertmanager_config(receiver_url: str) -> dict[str, Any]:
    """Alertmanager routing as docs/runbooks.md describes it: ``trigger="retrain"`` to the retraining webhook,
    ``trigger="rollback"`` to the rollout webhook, everything else to on-call; waits shortened for a test."""

    def hook(path: str) -> list[dict[str, Any]]:
        return [{"url": f"{receiver_url}/{path}", "send_resolved": False}]

    return {
        "route": {
            "receiver": "on-call",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            "routes": [
                {"receiver": "retrain", "matchers": ['trigger="retrain"'], "group_by": ["alertname", "model"]},
                {"receiver": "rollback", "matchers": ['trigger="rollback"']},
            ],
        },
        "receivers": [
            {"name": "retrain", "webhook_configs": hook("retrain")},
            {"name": "rollback", "webhook_configs": hook("rollback")},
            {"name": "on-call", "webhook_configs": hook("on-call")},
        ],
    }


def start_alertmanager(workdir: Path, receiver_url: str) -> Server:
    """Debian's ``prometheus-alertmanager`` routing to ``receiver_url``; clustering off; ready."""
    port = free_port()
    config = workdir / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(receiver_url)))
    argv = [
        binary("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    proc = ManagedProcess("alertmanager", argv, workdir / "alertmanager.log")
    ready(proc, f"http://127.0.0.1:{port}/-/ready", 30)
    return Server(proc, port)


def fast_rules(dst: Path, for_: str = "1s") -> Path:
    """The shipped rules with every ``for:`` set to ``for_`` (the test's override), written to ``dst``."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = for_
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst


@dataclass(frozen=True)
class Target:
    """A scrape target: ``address`` (host:port), the labels the scrape attaches, and the job."""

    address: str
    labels: dict[str, str]
    job: str = "infertap-sidecar"


def start_prometheus(
    workdir: Path,
    targets: list[Target],
    pushgateway: str | None = None,
    alertmanager: str | None = None,
    rules: Path | None = None,
) -> Server:
    """Debian's ``prometheus`` scraping ``targets`` and the Pushgateway (honor_labels) every second, evaluating
    ``rules`` every second and sending alerts to ``alertmanager`` (each when given); ready."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        jobs.setdefault(t.job, []).append({"targets": [t.address], "labels": t.labels})
    scrapes: list[dict[str, Any]] = [{"job_name": job, "static_configs": cfgs} for job, cfgs in jobs.items()]
    if pushgateway:
        scrapes.append(
            {"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": [pushgateway]}]}
        )
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": scrapes,
    }
    if rules:
        config["rule_files"] = [str(rules)]
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    argv = [
        binary("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--rules.alert.resend-delay=1s",
    ]
    proc = ManagedProcess("prometheus", argv, workdir / "prometheus.log")
    ready(proc, f"http://127.0.0.1:{port}/-/ready", 60)
    return Server(proc, port)


class PrometheusAPI:
    """The HTTP API of a running Prometheus (``/api/v1``)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query ``expr`` at Unix time ``at`` (default now); the result vector (``[]`` when empty).

        Raises:
            urllib.error.HTTPError: Prometheus refused the expression (400 with the parse error).
        """
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("query", params)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else [data]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing)."""
        alerts: list[dict[str, Any]] = self._get("alerts")["alerts"]
        return alerts


def poll(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Call ``check`` until it returns something truthy (returned), or fail after ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)  # polling period, not synchronisation: the loop re-checks the condition


@dataclass
class Received:
    """One POST the receiver got: the path (``retrain``, ``rollback``, ``on-call``), headers, JSON body, and when
    (``time.monotonic()``)."""

    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Receiver:
    """An aiohttp server in a thread of its own that stands for a retraining trigger: it records every POST."""

    received: list[Received] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        with self._lock:
            self.received.append(Received(request.match_info["path"], dict(request.headers), body, time.monotonic()))
        return web.Response(status=200)

    def start(self) -> Receiver:
        """Serve on a free loopback port; returns once it listens."""
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/{path}", self._handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = self._runner.addresses[0][1]
            ready.set()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="receiver", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the receiver did not start"
        return self

    def stop(self) -> None:
        """Close the server and its loop."""
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def alert_notifications(self, alertname: str, **labels: str) -> list[Received]:
        """Alertmanager notifications carrying a firing ``alertname`` with ``labels`` (other tests on the machine may
        run servers too, so callers name what is theirs)."""

        def match(a: dict[str, Any]) -> bool:
            want = {"alertname": alertname, **labels}
            return a["status"] == "firing" and all(a["labels"].get(k) == v for k, v in want.items())

        return [
            r
            for r in self.snapshot()
            if isinstance(r.body, dict) and "alerts" in r.body and any(match(a) for a in r.body["alerts"])
        ]

    def cloudevents(self, event_type: str) -> list[Received]:
        """Structured-mode CloudEvents of ``event_type``."""
        return [r for r in self.snapshot() if isinstance(r.body, dict) and r.body.get("type") == event_type]
