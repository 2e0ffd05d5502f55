"""One observed deployment for the dashboard and alert tests, every component real and on loopback.

- two MLServer predictors of the demo's breast-cancer model: the stable revision (``...-00001``, version v1) and a
  defective canary (``...-00002``, version v2, its preprocessing lost);
- four ``infertap proxy`` sidecars: ``stable-0`` and ``canary-0`` write local Parquet, ``stable-1`` (a second
  stable pod) ships to an HTTP CloudEvents sink that is down, through a small spool, so that its sink, spool and
  drop metrics move; ``stable-2`` sends KServe-style CloudEvents to ``infertap collector`` and, like KServe's agent,
  no response event for non-200 answers, so the collector joins pairs and writes the failed requests' halves alone;
- a Pushgateway, Alertmanager (routes as docs/runbooks.md), Prometheus scraping the sidecars and the Pushgateway
  every second and evaluating the shipped rules with their ``for:`` shortened to 1 s;
- ``infertap webhook`` (HTTPS, a certificate from a test CA) answering AdmissionReviews POSTed to it as the API
  server would: one pod injected, one not selected, two selected pods without a port it can wire (misses);
- an aiohttp receiver standing for the retraining trigger.

Traffic: a 50/50 canary split of in-distribution rows, malformed requests, drifted rows to stable; then the real
drift CLI (``infertap drift baseline|run|canary``) with ``--pushgateway`` and ``--webhook``.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import yaml

from infertap.demo import models, predictors, traffic
from infertap.demo.processes import ManagedProcess, free_port
from infertap.demo.readback import read_records
from tests.integration.observability.components import (
    PrometheusAPI,
    Receiver,
    Server,
    Target,
    fast_rules,
    poll,
    ready,
    start_alertmanager,
    start_prometheus,
    start_pushgateway,
)
from tests.integration.webhook.cluster import CertificateAuthority
from tests.integration.webhook.pods import raw_pod

MODEL = "breast-cancer"
STABLE, CANARY = "breast-cancer-predictor-00001", "breast-cancer-predictor-00002"
BATCH = 4


@dataclass
class Observed:
    """What the tests need: the Prometheus API, the receiver, and when things happened (``time.monotonic()``).

    ``drift_at`` is the Unix time at which Prometheus held the drift job's metrics: the canary job's push to the
    Drift panels are read at that time (the drift and canary jobs push to separate groups, see docs/runbooks.md).
    """

    prometheus: PrometheusAPI
    receiver: Receiver
    drift_at: float
    marks: dict[str, float] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)


def _identity(revision: str, endpoint: str) -> dict[str, str]:
    return {
        "INFERTAP_INFERENCE_SERVICE": MODEL,
        "INFERTAP_NAMESPACE": "demo",
        "INFERTAP_COMPONENT": "predictor",
        "INFERTAP_REVISION": revision,
        "INFERTAP_ENDPOINT": endpoint,
        "INFERTAP_FLUSH_INTERVAL_S": "1",
        "INFERTAP_BATCH_MAX_DELAY_S": "0.2",
    }


def _infertap(args: list[str], log: Path) -> int:
    """Run the ``infertap`` CLI in a subprocess (as a CronJob would); its output goes to ``log``."""
    with log.open("ab") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "infertap.logger.cli", *args], stdout=out, stderr=subprocess.STDOUT, check=False
        )
    return proc.returncode


@dataclass
class WebhookServer:
    """The running ``infertap webhook``: ``admin`` serves /metrics, ``https_port`` the reviews, ``tls`` trusts it."""

    admin: Server
    https_port: int
    tls: ssl.SSLContext


def _start_webhook(workdir: Path) -> WebhookServer:
    """``infertap webhook`` serving HTTPS with a certificate issued by a test CA, ready."""
    ca = CertificateAuthority.create()
    cert, key, config = workdir / "tls.crt", workdir / "tls.key", workdir / "injection.yaml"
    ca.issue(cert, key)
    config.write_text(yaml.safe_dump({"image": "registry.example/infertap:0.1.0"}))
    port, admin = free_port(), free_port()
    proc = ManagedProcess(
        "infertap-webhook",
        [sys.executable, "-m", "infertap.logger.cli", "webhook"],
        workdir / "webhook.log",
        {
            "INFERTAP_WEBHOOK_LISTEN_HOST": "127.0.0.1",
            "INFERTAP_WEBHOOK_PORT": str(port),
            "INFERTAP_WEBHOOK_ADMIN_PORT": str(admin),
            "INFERTAP_WEBHOOK_CERT_FILE": str(cert),
            "INFERTAP_WEBHOOK_KEY_FILE": str(key),
            "INFERTAP_WEBHOOK_CONFIG_FILE": str(config),
        },
    )
    ready(proc, f"http://127.0.0.1:{admin}/readyz", 60)
    return WebhookServer(Server(proc, admin), port, ssl.create_default_context(cadata=ca.pem.decode()))


def _review(webhook: WebhookServer, pod: dict[str, Any]) -> dict[str, Any]:
    """POST an AdmissionReview of creating ``pod`` to the webhook, as the API server does; its answer."""
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "demo",
            "operation": "CREATE",
            "object": pod,
        },
    }
    req = urllib.request.Request(
        f"https://127.0.0.1:{webhook.https_port}/mutate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10, context=webhook.tls) as resp:
        answer: dict[str, Any] = json.loads(resp.read())["response"]
    return answer


def _custom_container(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` with its model container renamed: neither KServe's container nor queue-proxy, no port to wire."""
    for c in pod["spec"]["containers"]:
        c["name"] = "custom-server"
    return pod


def _start_collector(workdir: Path) -> tuple[Server, int]:
    """``infertap collector`` with a 1 s pairing window, writing local Parquet; its admin Server and event port."""
    port, admin = free_port(), free_port()
    proc = ManagedProcess(
        "infertap-collector",
        [sys.executable, "-m", "infertap.logger.cli", "collector"],
        workdir / "collector.log",
        {
            "INFERTAP_COLLECTOR_LISTEN_HOST": "127.0.0.1",
            "INFERTAP_COLLECTOR_LISTEN_PORT": str(port),
            "INFERTAP_COLLECTOR_ADMIN_PORT": str(admin),
            "INFERTAP_COLLECTOR_PAIRING_WINDOW_S": "1",
            "INFERTAP_COLLECTOR_FLUSH_INTERVAL_S": "1",
            "INFERTAP_COLLECTOR_JOURNAL_DIR": str(workdir / "journal"),
            "INFERTAP_COLLECTOR_OUTPUT_DIR": str(workdir / "collector-data"),
            "INFERTAP_COLLECTOR_POD_NAME": "collector-0",
        },
    )
    ready(proc, f"http://127.0.0.1:{admin}/readyz", 60)
    return Server(proc, admin), port


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


@pytest.fixture(scope="package")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    work = tmp_path_factory.mktemp("observed")
    logs, data = work / "logs", work / "data"
    with ExitStack() as stack:
        stable = models.train_breast_cancer(work / "models" / "stable")
        canary = models.train_breast_cancer_canary(work / "models" / "canary")
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(predictors.start_mlserver, m.path.parent, logs, f"mlserver-{n}")
                for n, m in (("stable", stable), ("canary", canary))
            ]
            mls_stable, mls_canary = (f.result() for f in futures)
        stack.callback(mls_stable.process.stop)
        stack.callback(mls_canary.process.stop)

        receiver = Receiver().start()
        stack.callback(receiver.stop)
        pushgateway = start_pushgateway(work)
        stack.callback(pushgateway.process.stop)
        alertmanager = start_alertmanager(work, receiver.url)
        stack.callback(alertmanager.process.stop)

        collector, collector_port = _start_collector(work)
        stack.callback(collector.process.stop)
        cars = {
            "stable-0": predictors.start_sidecar(mls_stable, "stable-0", data, logs, _identity(STABLE, "default")),
            "canary-0": predictors.start_sidecar(mls_canary, "canary-0", data, logs, _identity(CANARY, "canary")),
            "stable-1": predictors.start_sidecar(
                mls_stable,
                "stable-1",
                work / "unused",
                logs,
                {
                    **_identity(STABLE, "default"),
                    "INFERTAP_SINK": "http",
                    "INFERTAP_HTTP_SINK_URL": f"http://127.0.0.1:{free_port()}/nobody-listens",
                    "INFERTAP_SPOOL_DIR": str(work / "spool"),
                    "INFERTAP_SPOOL_MAX_BYTES": str(48 * 1024),
                    "INFERTAP_SPOOL_SEGMENT_MAX_AGE_S": "0.5",
                    "INFERTAP_SPOOL_HEALTHCHECK_INTERVAL_S": "1",
                    "INFERTAP_SPOOL_RETRY_MAX_BACKOFF_S": "1",
                    "INFERTAP_SPOOL_DRAIN_TIMEOUT_S": "1",
                    "INFERTAP_SPOOL_COMPRESSION": "none",
                },
            ),
            "stable-2": predictors.start_sidecar(
                mls_stable,
                "stable-2",
                work / "unused",
                logs,
                {
                    **_identity(STABLE, "default"),
                    "INFERTAP_SINK": "http",
                    "INFERTAP_HTTP_SINK_URL": f"http://127.0.0.1:{collector_port}/",
                    "INFERTAP_HTTP_SINK_LOG_NON_OK_RESPONSES": "false",
                    "INFERTAP_SPOOL_DIR": str(work / "spool-2"),
                    "INFERTAP_SPOOL_SEGMENT_MAX_AGE_S": "0.5",
                    "INFERTAP_SPOOL_HEALTHCHECK_INTERVAL_S": "1",
                },
            ),
        }
        for car in cars.values():
            stack.callback(car.process.stop)
        webhook = _start_webhook(work)
        stack.callback(webhook.admin.process.stop)

        targets = [
            Target(
                f"127.0.0.1:{car.admin_port}",
                {"namespace": "demo", "pod": name, "revision": CANARY if name.startswith("canary") else STABLE},
            )
            for name, car in cars.items()
        ]
        targets.append(
            Target(webhook.admin.address, {"namespace": "infertap-system", "pod": "webhook-0"}, "infertap-webhook")
        )
        targets.append(
            Target(collector.address, {"namespace": "infertap-system", "pod": "collector-0"}, "infertap-collector")
        )
        prom_server: Server = start_prometheus(
            work, targets, pushgateway.address, alertmanager.address, fast_rules(work / "rules.yaml")
        )
        stack.callback(prom_server.process.stop)
        prom = PrometheusAPI(prom_server.url)
        # rate() and increase() see only what happens after a target's first scrape
        poll(
            lambda: len(prom.query('up{job="infertap-sidecar"} == 1')) == len(cars),
            60,
            "the first scrape of every sidecar",
        )
        poll(lambda: prom.query('up{job="infertap-collector"} == 1'), 60, "the first scrape of the collector")
        poll(lambda: prom.query('up{job="pushgateway"} == 1'), 60, "the first scrape of the Pushgateway")
        poll(lambda: prom.query('up{job="infertap-webhook"} == 1'), 60, "the first scrape of the webhook")

        opt_in = {"infertap.io/inject": "true"}
        answers = [
            _review(webhook, raw_pod("predictor-a", annotations=opt_in)),
            _review(webhook, raw_pod("predictor-b")),
            _review(webhook, _custom_container(raw_pod("predictor-c", annotations=opt_in))),
            _review(webhook, _custom_container(raw_pod("predictor-d", annotations=opt_in))),
        ]
        assert all(a["allowed"] for a in answers)  # the webhook never refuses a pod
        assert ["patch" in a for a in answers] == [True, False, False, False]

        log = traffic.TrafficLog()
        # a counter's labelled series appears with its first request: rate() counts what follows the scrape after it
        for name, car in cars.items():
            traffic.send_v2(car.host_port, stable, stable.holdout_x[:1], period="warmup", binary=False, batch=1,
                            log=log, tag=f"{name}-")  # fmt: skip
        poll(lambda: len(prom.query("infertap_requests_total")) >= len(cars), 30, "the first requests scraped")
        rows = np.random.default_rng(1).permutation(stable.holdout_x)
        with log.period("canary"):
            for i, start in enumerate(range(0, len(rows), 2 * BATCH)):
                chunk = rows[start : start + 2 * BATCH]
                arm = "stable-0" if i % 2 == 0 else "canary-0"
                traffic.send_v2(
                    cars[arm].host_port, stable, chunk, period="canary", binary=False, batch=BATCH, log=log,
                    tag=f"{arm}-{start:04d}-",
                )  # fmt: skip
        traffic.send_v2(cars["stable-1"].host_port, stable, rows, period="spool", binary=False, batch=1, log=log)
        traffic.send_v2(
            cars["stable-2"].host_port, stable, rows[:24], period="collector", binary=False, batch=4, log=log
        )
        # a failed request's response is not logged (KServe's rule), so its request half is written alone: once the
        # lone-half counter's series has been scraped, more failures move its rate
        traffic.send_malformed(cars["stable-2"].url, MODEL, log)
        poll(lambda: prom.query("infertap_collector_halves_timed_out_total"), 60, "lone halves scraped")
        for _ in range(5):
            traffic.send_malformed(cars["stable-2"].url, MODEL, log)
        # and one event the collector refuses (not a CloudEvent)
        req = urllib.request.Request(f"http://127.0.0.1:{collector_port}/", data=b"not an event", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 400
        # the decode-error counter's series appears with the first error: rate() counts the errors after that scrape
        traffic.send_malformed(cars["stable-0"].url, MODEL, log)
        poll(lambda: prom.query('infertap_capture_decode_errors_total{pod="stable-0"}'), 30, "decode errors scraped")
        for _ in range(3):
            traffic.send_malformed(cars["stable-0"].url, MODEL, log)
        with log.period("drifted"):
            traffic.send_v2(
                cars["stable-0"].host_port,
                stable,
                stable.shifted_x,
                period="drifted",
                binary=False,
                batch=BATCH,
                log=log,
            )

        sent_ok = {"stable-0": 0, "canary-0": 0}
        for s in log.sent:
            if s.ok and s.period in ("canary", "drifted"):
                sent_ok["canary-0" if "-canary-0-" in s.request_id else "stable-0"] += 1

        def captured() -> bool:
            tables, _ = read_records(data)
            table = tables.get(MODEL)
            if table is None:
                return False
            revisions = table.column("revision").to_pylist()
            return revisions.count(STABLE) >= sent_ok["stable-0"] and revisions.count(CANARY) >= sent_ok["canary-0"]

        poll(captured, 60, "the captured Parquet of both revisions")

        marks: dict[str, float] = {}
        codes: dict[str, int] = {}
        npz = work / "train.npz"
        predicted = joblib.load(stable.path).predict(stable.train_x)
        np.savez(npz, X=stable.train_x, feature_names=np.array(stable.feature_names), predictions=predicted)
        baseline = work / "baseline.json"
        codes["baseline"] = _infertap(
            ["drift", "baseline", str(npz), "-o", str(baseline), "--model", MODEL, "--model-version", "v1",
             "--output-tensor", "predict", "--categorical", "prediction[0]"],
            logs / "drift.log",
        )  # fmt: skip
        assert codes["baseline"] == 0, (logs / "drift.log").read_text()[-3000:]

        start, end = log.periods["drifted"]
        marks["drift_job"] = time.monotonic()
        codes["run"] = _infertap(
            ["drift", "run", str(data), "--baseline", str(baseline), "--start", _iso(start),
             "--end", _iso(end + dt.timedelta(seconds=1)), "--pushgateway", pushgateway.address,
             "--webhook", f"{receiver.url}/retrain", "-o", str(work / "verdict-drift.json"), "--no-progress"],
            logs / "drift.log",
        )  # fmt: skip
        marks["drift_pushed"] = time.monotonic()
        poll(
            lambda: prom.query(f'infertap_drift_dataset_drifted{{model="{MODEL}"}} == 1'),
            30,
            "the drift verdict scraped",
        )
        drift_at = time.time()
        marks["drift_scraped"] = time.monotonic()
        # the drift alert reaches the receiver before the canary job runs, so the two alerts' timings stay apart
        poll(
            lambda: receiver.alert_notifications("InfertapDriftDetected", model=MODEL),
            60,
            "InfertapDriftDetected at the receiver",
        )

        start, end = log.periods["canary"]
        marks["canary_job"] = time.monotonic()
        codes["canary"] = _infertap(
            ["drift", "canary", str(data), "--model", MODEL, "--stable", STABLE, "--canary", CANARY,
             "--start", _iso(start), "--end", _iso(end + dt.timedelta(seconds=1)),
             "--pushgateway", pushgateway.address, "--webhook", f"{receiver.url}/rollback",
             "-o", str(work / "verdict-canary.json"), "--no-progress"],
            logs / "drift.log",
        )  # fmt: skip
        marks["canary_pushed"] = time.monotonic()
        poll(lambda: prom.query(f'infertap_canary_score{{model="{MODEL}"}}'), 30, "the canary verdict scraped")
        marks["canary_scraped"] = time.monotonic()
        yield Observed(prom, receiver, drift_at, marks, codes)
