"""`helm install` of the chart, by Helm's own library, into a real kube-apiserver 1.20 + etcd on loopback (the
fixture of the webhook tests, tests/integration/webhook/cluster.py): the stored objects are the chart's, the API
versions are the ones 1.20 serves, and a predictor pod created after the install gets the sidecar from
`infertap webhook` running as a local process with the certificate and injection configuration the chart made."""

from __future__ import annotations

import base64
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from infertap.demo.processes import ManagedProcess, free_port
from tests.integration.webhook import pods
from tests.integration.webhook.cluster import KUBE_APISERVER, ApiServer, etcd_binary, start_apiserver

from .chart import CHART, NAMESPACE, RELEASE

pytestmark = pytest.mark.skipif(
    not KUBE_APISERVER.exists() or etcd_binary() is None, reason="no kube-apiserver/etcd: run `make webhook-deps`"
)
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_apiserver(tmp_path_factory.mktemp("kube"))
    try:
        for ns in (NAMESPACE, "models"):
            status, body, _ = server.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            assert status == 201, body
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def release(api: ApiServer) -> dict[str, Any]:
    """The chart installed with a local webhook URL, drift and canary CronJobs; returns the webhook's port."""
    port = free_port()
    values = {
        "webhook": {"url": f"https://127.0.0.1:{port}"},
        "drift": {"models": [{"name": "iris", "source": "/data", "baseline": {"configMap": "b", "key": "i.json"}}]},
        "canary": {"comparisons": [{"name": "iris", "source": "/data", "stable": "r1", "canary": "r2"}]},
        "injection": {"config": {"image": "registry.example/infertap:9.9", "env": {"INFERTAP_SAMPLE_RATE": "0.5"}}},
    }
    config = helm.Config(kube_apiserver=api.url, kube_token=api.token, kube_ca_file=api.ca_file, namespace=NAMESPACE)
    summary = helm.Chart.load(str(CHART))
    installed = config.install(summary, RELEASE, values, namespace=NAMESPACE, timeout=120)
    return {"port": port, "release": installed}


def _get(api: ApiServer, path: str) -> dict[str, Any]:
    status, body, _ = api.request("GET", path)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def test_install_stores_the_charts_objects_with_120_api_versions(api: ApiServer, release: dict[str, Any]) -> None:
    deployment = _get(api, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/infertap-webhook")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["webhook"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    _get(api, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/infertap-collector")
    _get(api, f"/apis/batch/v1beta1/namespaces/{NAMESPACE}/cronjobs/infertap-drift-iris")
    _get(api, f"/apis/batch/v1beta1/namespaces/{NAMESPACE}/cronjobs/infertap-canary-iris")
    _get(api, f"/apis/autoscaling/v2beta2/namespaces/{NAMESPACE}/horizontalpodautoscalers/infertap-collector")
    _get(api, f"/apis/policy/v1beta1/namespaces/{NAMESPACE}/poddisruptionbudgets/infertap-collector")
    _get(api, f"/apis/networking.k8s.io/v1/namespaces/{NAMESPACE}/networkpolicies/infertap-collector")
    dashboards = _get(api, f"/api/v1/namespaces/{NAMESPACE}/configmaps?labelSelector=grafana_dashboard%3D1")
    assert len(dashboards["items"]) == 4


def test_configuration_trusts_the_charts_certificate(api: ApiServer, release: dict[str, Any]) -> None:
    mwc = _get(api, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/infertap-sidecar-injector")
    secret = _get(api, f"/api/v1/namespaces/{NAMESPACE}/secrets/infertap-webhook-tls")
    assert [w["name"] for w in mwc["webhooks"]] == ["pods.infertap.io", "namespace.pods.infertap.io"]
    for webhook in mwc["webhooks"]:
        assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        assert webhook["clientConfig"]["url"].startswith(f"https://127.0.0.1:{release['port']}/mutate")


def test_predictor_pod_created_after_install_gets_the_sidecar(
    api: ApiServer, release: dict[str, Any], tmp_path: Path
) -> None:
    secret = _get(api, f"/api/v1/namespaces/{NAMESPACE}/secrets/infertap-webhook-tls")
    injection = _get(api, f"/api/v1/namespaces/{NAMESPACE}/configmaps/infertap-webhook-injection")
    for key in ("tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    (tmp_path / "config.yaml").write_text(injection["data"]["config.yaml"])
    deployment = _get(api, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/infertap-webhook")
    chart_env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    admin = free_port()
    env = {
        **{k: v for k, v in chart_env.items() if k.startswith("INFERTAP_WEBHOOK_")},
        # the chart's paths are the pod's mounts; here they are the files read back from the API server
        "INFERTAP_WEBHOOK_CERT_FILE": str(tmp_path / "tls.crt"),
        "INFERTAP_WEBHOOK_KEY_FILE": str(tmp_path / "tls.key"),
        "INFERTAP_WEBHOOK_CONFIG_FILE": str(tmp_path / "config.yaml"),
        "INFERTAP_WEBHOOK_LISTEN_HOST": "127.0.0.1",
        "INFERTAP_WEBHOOK_PORT": str(release["port"]),
        "INFERTAP_WEBHOOK_ADMIN_PORT": str(admin),
    }
    infertap = shutil.which("infertap", path=str(VENV_BIN)) or "infertap"
    process = ManagedProcess("infertap-webhook", [infertap, "webhook"], tmp_path / "webhook.log", env)
    try:
        process.wait_http(f"http://127.0.0.1:{admin}/readyz", timeout_s=60)
        pod = pods.knative_pod(
            "sklearn-iris-predictor-00001-deployment-abc", annotations={"infertap.io/inject": "true"}
        )
        status, created, _ = api.request("POST", "/api/v1/namespaces/models/pods", pod)
        assert status == 201, created
        stored = _get(api, f"/api/v1/namespaces/models/pods/{created['metadata']['name']}")
    finally:
        process.stop()
    sidecar = pods.container(stored, "infertap")
    assert sidecar["image"] == "registry.example/infertap:9.9"
    assert pods.env(sidecar)["INFERTAP_SAMPLE_RATE"] == "0.5"
    assert pods.env(pods.container(stored, "queue-proxy"))["USER_PORT"] == "8081"
    status = yaml.safe_load(stored["metadata"]["annotations"]["infertap.io/status"])
    assert status["listenPort"] == 8081
