"""AdmissionReviews: the JSONPatch applied to the original gives the mutated pod; bad reviews never crash."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from infertap.logger.webhook.injection import InjectionConfigSource, load_injection_config
from infertap.logger.webhook.metrics import WebhookMetrics
from infertap.logger.webhook.mutate import Outcome, Selection
from infertap.logger.webhook.review import review
from tests.integration.webhook.pods import container, env, knative_pod, knative_pod_with_agent, raw_pod

OPT_IN = {"infertap.io/inject": "true"}


def admission(obj: Any, *, operation: str = "CREATE", kind: str = "Pod", version: str = "admission.k8s.io/v1") -> bytes:
    return json.dumps(
        {
            "apiVersion": version,
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods" if kind == "Pod" else kind.lower() + "s"},
                "namespace": "models",
                "operation": operation,
                "object": obj,
            },
        }
    ).encode()


@pytest.fixture
def source() -> InjectionConfigSource:
    return InjectionConfigSource(None)


def _count(metrics: WebhookMetrics, outcome: Outcome) -> float:
    value = metrics.registry.get_sample_value("infertap_webhook_reviews_total", {"outcome": outcome.value})
    return value or 0.0


def _patched(answer_body: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    response = answer_body["response"]
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    patched: dict[str, Any] = jsonpatch.apply_patch(original, ops)
    return patched


@pytest.mark.parametrize("builder", [knative_pod, raw_pod, knative_pod_with_agent])
def test_patch_applied_to_the_original_injects_the_sidecar(source: InjectionConfigSource, builder) -> None:  # type: ignore[no-untyped-def]
    metrics = WebhookMetrics()
    pod = builder("p", annotations=OPT_IN)
    answer = review(admission(pod), source, Selection.OPT_IN, metrics)
    assert answer.status == 200
    assert answer.body["apiVersion"] == "admission.k8s.io/v1"
    assert answer.body["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert answer.body["response"]["allowed"] is True
    patched = _patched(answer.body, pod)
    assert container(patched, "infertap")["image"] == "infertap/infertap:0.1.0"
    assert _count(metrics, Outcome.INJECTED) == 1
    # re-invocation with the patched pod: no patch at all
    again = review(admission(patched), source, Selection.OPT_IN, metrics)
    assert "patch" not in again.body["response"]
    assert again.body["response"]["allowed"] is True
    assert _count(metrics, Outcome.ALREADY_INJECTED) == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"\x00\xffnot json", "not JSON"),
        (b"[1, 2]", "JSON list"),
        (b'{"kind": "Pod"}', "expected 'AdmissionReview'"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "no request with a uid"),
    ],
)
def test_garbage_is_refused_with_one_clear_line(source: InjectionConfigSource, body: bytes, needle: str) -> None:
    metrics = WebhookMetrics()
    answer = review(body, source, Selection.OPT_IN, metrics)
    assert answer.status == 400
    assert needle in answer.body["error"]
    assert "\n" not in answer.body["error"]
    assert _count(metrics, Outcome.BAD_REVIEW) == 1


def test_wrong_version_is_refused(source: InjectionConfigSource) -> None:
    answer = review(
        admission(knative_pod("p", annotations=OPT_IN), version="admission.k8s.io/v1beta1"),
        source,
        Selection.OPT_IN,
        WebhookMetrics(),
    )
    assert answer.status == 400
    assert "admission.k8s.io/v1beta1" in answer.body["error"]
    assert 'admissionReviewVersions: ["v1"]' in answer.body["error"]


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        (admission({"metadata": {"name": "cm"}}, kind="ConfigMap"), Outcome.NOT_A_POD),
        (admission(knative_pod("p", annotations=OPT_IN), operation="UPDATE"), Outcome.IGNORED_OPERATION),
        (admission("a string where a pod should be"), Outcome.BAD_OBJECT),
        (admission(knative_pod("p")), Outcome.NOT_SELECTED),
    ],
)
def test_other_objects_are_allowed_unchanged(source: InjectionConfigSource, body: bytes, outcome: Outcome) -> None:
    metrics = WebhookMetrics()
    answer = review(body, source, Selection.OPT_IN, metrics)
    assert answer.status == 200
    assert answer.body["response"]["allowed"] is True
    assert "patch" not in answer.body["response"]
    assert _count(metrics, outcome) == 1


def test_broken_configuration_lets_pods_through_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("image: registry.example/infertap:1.2\nenv:\n  INFERTAP_SAMPLE_RATE: '0.5'\n")
    metrics = WebhookMetrics()
    errors: list[Exception] = []
    source = InjectionConfigSource(path, on_error=errors.append)
    pod = knative_pod("p", annotations=OPT_IN)
    first = review(admission(pod), source, Selection.OPT_IN, metrics)
    assert container(_patched(first.body, pod), "infertap")["image"] == "registry.example/infertap:1.2"

    path.write_text("image: [unclosed\n")  # a broken edit of the ConfigMap
    second = review(admission(pod), source, Selection.OPT_IN, metrics)
    assert container(_patched(second.body, pod), "infertap")["image"] == "registry.example/infertap:1.2"
    assert len(errors) == 1

    never = InjectionConfigSource(path, on_error=errors.append)
    third = review(admission(pod), never, Selection.OPT_IN, metrics)
    assert third.status == 200
    assert third.body["response"]["allowed"] is True
    assert "patch" not in third.body["response"]
    assert "configuration error" in third.body["response"]["warnings"][0]
    assert _count(metrics, Outcome.CONFIG_ERROR) == 1


def test_patch_error_lets_the_pod_through_and_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("listen_port: 65535\nadmin_port: 65534\n")
    source = InjectionConfigSource(path)
    metrics = WebhookMetrics()
    answer = review(admission(raw_pod("p", annotations=OPT_IN, port=65535)), source, Selection.OPT_IN, metrics)
    assert answer.status == 200
    assert answer.body["response"]["allowed"] is True
    assert "patch" not in answer.body["response"]
    assert "no free port" in answer.body["response"]["warnings"][0]
    assert metrics.registry.get_sample_value("infertap_webhook_patch_errors_total") == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("env:\n  INFERTAP_LISTEN_PORT: '1'\n", "set by the webhook"),
        ("env:\n  PATH: /bin\n", "not a sidecar setting"),
        ("imagee: x\n", "imagee"),
        ("resources:\n  cpu_limit: lots\n", "not a Kubernetes quantity"),
        ("- a list\n", "expected a mapping"),
        ("listen_port: 9091\n", "must differ"),
    ],
)
def test_configuration_errors_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    from infertap.logger.webhook.injection import InjectionConfigError

    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(InjectionConfigError, match=needle):
        load_injection_config(path)


def test_json_configmap_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"env": {"INFERTAP_CAPTURE_MODE": "request"}, "data_size_limit": "500Mi"}))
    config = load_injection_config(path)
    pod = review(
        admission(raw_pod("p", annotations=OPT_IN)), InjectionConfigSource(path), Selection.OPT_IN, WebhookMetrics()
    )
    patched = _patched(pod.body, raw_pod("p", annotations=OPT_IN))
    assert env(container(patched, "infertap"))["INFERTAP_CAPTURE_MODE"] == "request"
    assert config.data_size_limit == "500Mi"


SELECTED = {"labels": {"serving.kserve.io/inferenceservice": "x"}, "annotations": {"infertap.io/inject": "true"}}


@pytest.mark.parametrize(
    "pod",
    [
        {},
        {"metadata": [], "spec": 5},
        {"metadata": {"labels": "x", "annotations": None}},
        {"metadata": SELECTED, "spec": 5},
        {"metadata": SELECTED, "spec": {"containers": "nope"}},
        {"metadata": SELECTED, "spec": {"containers": [None, 3, {"name": "queue-proxy", "env": "USER_PORT=1"}]}},
        {"metadata": SELECTED, "spec": {"containers": [{"name": "queue-proxy", "env": [{"name": "USER_PORT"}]}]}},
        {
            "metadata": SELECTED,
            "spec": {"containers": [{"name": "kserve-container", "ports": [{"containerPort": "80"}]}]},
        },
        {"metadata": SELECTED, "spec": {"containers": [{"name": "kserve-container"}], "volumes": "none"}},
        {"metadata": SELECTED, "spec": {"containers": [{"name": "kserve-container", "ports": [None]}]}},
    ],
)
def test_malformed_pods_never_crash_the_webhook(source: InjectionConfigSource, pod: dict[str, Any]) -> None:
    """Whatever the pod looks like, the answer is an allowed AdmissionReview (patched or not), never an exception."""
    answer = review(admission(pod), source, Selection.OPT_IN, WebhookMetrics())
    assert answer.status == 200
    assert answer.body["response"]["allowed"] is True
    if "patch" in answer.body["response"]:
        patched = _patched(answer.body, pod)
        assert container(patched, "infertap")["name"] == "infertap"
