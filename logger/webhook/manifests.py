"""The MutatingWebhookConfiguration that registers the injector with the API server.

Two webhooks share one server (``admissionregistration.k8s.io/v1``, valid from Kubernetes 1.16):

- ``pods.infertap.io`` calls ``/mutate`` for KServe pods (``objectSelector``: the
  ``serving.kserve.io/inferenceservice`` label exists) in namespaces *not* labelled ``infertap.io/inject=enabled``;
  it injects pods annotated ``infertap.io/inject: "true"``;
- ``namespace.pods.infertap.io`` calls ``/mutate-all`` for KServe pods in namespaces labelled
  ``infertap.io/inject=enabled``; it injects every predictor pod not annotated ``infertap.io/inject: "false"``.

Both: CREATE of pods only, ``sideEffects: None``, ``reinvocationPolicy: IfNeeded`` (called again if a later
webhook, such as KServe's own pod mutator, changes the pod), ``failurePolicy: Ignore`` by default.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from infertap.logger.webhook.annotations import ISVC_LABEL

NAMESPACE_LABEL = "infertap.io/inject"
NAMESPACE_ON = "enabled"


def webhook_configuration(
    *,
    ca_bundle_pem: bytes,
    url: str | None = None,
    service: tuple[str, str, int] | None = None,
    name: str = "infertap-sidecar-injector",
    failure_policy: Literal["Ignore", "Fail"] = "Ignore",
    timeout_s: int = 5,
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration object.

    Args:
        ca_bundle_pem: the CA certificate(s) that signed the webhook's serving certificate, PEM.
        url: the webhook's base URL (``https://host:port``), for a webhook outside the cluster (tests); or
        service: ``(namespace, name, port)`` of the webhook's Service, the in-cluster way.
        name: the configuration's name. The API server calls configurations in name order; KServe's is
            ``inferenceservice.serving.kserve.io``, which sorts first, so its agent is usually present already.
        failure_policy: ``Ignore`` (a webhook outage admits pods unpatched) or ``Fail`` (it blocks them).
        timeout_s: per-call timeout, 1-30 s.

    Raises:
        ValueError: neither or both of ``url`` and ``service`` given.
    """
    if (url is None) == (service is None):
        raise ValueError("give exactly one of url and service")

    def client_config(path: str) -> dict[str, Any]:
        cfg: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle_pem).decode("ascii")}
        if url is not None:
            cfg["url"] = url.rstrip("/") + path
        else:
            assert service is not None
            cfg["service"] = {"namespace": service[0], "name": service[1], "port": service[2], "path": path}
        return cfg

    def webhook(webhook_name: str, path: str, namespace_selector: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": webhook_name,
            "clientConfig": client_config(path),
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }
            ],
            "objectSelector": {"matchExpressions": [{"key": ISVC_LABEL, "operator": "Exists"}]},
            "namespaceSelector": namespace_selector,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": failure_policy,
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": timeout_s,
        }

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            webhook(
                "pods.infertap.io",
                "/mutate",
                {"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "NotIn", "values": [NAMESPACE_ON]}]},
            ),
            webhook(
                "namespace.pods.infertap.io",
                "/mutate-all",
                {"matchLabels": {NAMESPACE_LABEL: NAMESPACE_ON}},
            ),
        ],
    }
