"""Pods shaped like the ones KServe and Knative create, for the webhook's tests (Kubernetes 1.20-valid).

Shapes follow what a Knative revision Deployment and a KServe RawDeployment produce for an InferenceService
``sklearn-iris``: the model server in ``kserve-container``; in Knative mode ``queue-proxy`` with ``USER_PORT`` and
its declared ports (8022 admin, 9090 autoscaler metrics, 9091 user metrics, 8012 serving, 8112 TLS); KServe's
agent (``agent``, port 9081, ``--component-port``) when the InferenceService has ``spec.predictor.logger``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

ISVC = "sklearn-iris"
REVISION = "sklearn-iris-predictor-00001"
KNATIVE_PROBE = json.dumps({"tcpSocket": {"port": 8080, "host": "127.0.0.1"}, "successThreshold": 1})


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def model_container(port: int = 8080) -> dict[str, Any]:
    """KServe's model server container (the sklearn runtime)."""
    return {
        "name": "kserve-container",
        "image": "kserve/sklearnserver:v0.14.0",
        "args": [f"--model_name={ISVC}", "--model_dir=/mnt/models", f"--http_port={port}"],
        "ports": [_port("user-port", port)],
        "env": [{"name": "PORT", "value": str(port)}, {"name": "K_REVISION", "value": REVISION}],
    }


def queue_proxy(user_port: int = 8080) -> dict[str, Any]:
    """Knative's queue-proxy as the revision Deployment declares it."""
    return {
        "name": "queue-proxy",
        "image": "gcr.io/knative-releases/knative.dev/serving/cmd/queue:v1.15.0",
        "ports": [
            _port("http-queueadm", 8022),
            _port("http-autometric", 9090),
            _port("http-usermetric", 9091),
            _port("queue-port", 8012),
            _port("https-port", 8112),
        ],
        "env": [
            {"name": "SERVING_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "SERVING_SERVICE", "value": f"{ISVC}-predictor"},
            {"name": "SERVING_REVISION", "value": REVISION},
            {"name": "QUEUE_SERVING_PORT", "value": "8012"},
            {"name": "USER_PORT", "value": str(user_port)},
            {"name": "SERVING_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "SERVING_READINESS_PROBE", "value": KNATIVE_PROBE},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/", "port": 8012, "httpHeaders": [{"name": "K-Network-Probe", "value": "queue"}]}
        },
    }


def agent(component_port: int = 8080) -> dict[str, Any]:
    """KServe's agent as its injector adds it for ``spec.predictor.logger`` (mode all)."""
    return {
        "name": "agent",
        "image": "kserve/agent:v0.14.0",
        "args": [
            "--log-url",
            "http://collector.logging/",
            "--source-uri",
            "pod",
            "--log-mode",
            "all",
            "--inference-service",
            ISVC,
            "--namespace",
            "models",
            "--endpoint",
            "",
            "--component",
            "predictor",
            "--logger-tls-skip-verify",
            "false",
            "--component-port",
            str(component_port),
        ],
        "ports": [_port("agent-port", 9081)],
    }


def knative_pod(name: str, *, annotations: dict[str, str] | None = None, user_port: int = 8080) -> dict[str, Any]:
    """A Knative revision pod of InferenceService ``sklearn-iris`` (serverless mode)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "app": REVISION,
                "component": "predictor",
                "serving.kserve.io/inferenceservice": ISVC,
                "serving.knative.dev/configuration": f"{ISVC}-predictor",
                "serving.knative.dev/revision": REVISION,
                "serving.knative.dev/service": f"{ISVC}-predictor",
            },
            "annotations": {"serving.kserve.io/deploymentMode": "Serverless", **(annotations or {})},
        },
        "spec": {
            "containers": [model_container(user_port), queue_proxy(user_port)],
            "terminationGracePeriodSeconds": 300,
        },
    }


def knative_pod_with_agent(name: str, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A Knative pod after KServe's agent injector: USER_PORT 9081, the agent forwarding to the model on 8080."""
    pod = knative_pod(name, annotations={"internal.serving.kserve.io/logger": "true", **(annotations or {})})
    for var in pod["spec"]["containers"][1]["env"]:
        if var["name"] == "USER_PORT":
            var["value"] = "9081"
    pod["spec"]["containers"].append(agent(8080))
    return pod


def raw_pod(name: str, *, annotations: dict[str, str] | None = None, port: int = 8080) -> dict[str, Any]:
    """A RawDeployment predictor pod (no queue-proxy)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "app": f"isvc.{ISVC}-predictor",
                "component": "predictor",
                "serving.kserve.io/inferenceservice": ISVC,
            },
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment", **(annotations or {})},
        },
        "spec": {"containers": [model_container(port)]},
    }


def other_app_pod(name: str) -> dict[str, Any]:
    """A pod of another application (no KServe label), annotated as if it asked for injection."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}, "annotations": {"infertap.io/inject": "true"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [_port("http", 80)]}]},
    }


def with_sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` already carrying a container named ``infertap`` (deployed by hand, or injected earlier)."""
    out = copy.deepcopy(pod)
    out["spec"]["containers"].append(
        {
            "name": "infertap",
            "image": "infertap/infertap:0.0.9",
            "args": ["proxy"],
            "env": [{"name": "INFERTAP_LISTEN_PORT", "value": "8081"}],
            "ports": [_port("infertap-http", 8081)],
        }
    )
    return out


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The container named ``name`` (KeyError if absent)."""
    for c in pod["spec"]["containers"]:
        if c["name"] == name:
            return dict(c)
    raise KeyError(name)


def env(c: dict[str, Any]) -> dict[str, Any]:
    """A container's env as ``name -> value`` (or the ``valueFrom`` object)."""
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in c.get("env") or []}
