"""AdmissionReview ``admission.k8s.io/v1`` in, AdmissionReview with a JSONPatch out.

The wire format is Kubernetes' (``k8s.io/api/admission/v1``, "Dynamic Admission Control" in the Kubernetes
documentation): the response echoes ``request.uid``, says ``allowed``, and carries the patch as base64-encoded
JSON Patch (RFC 6902) with ``patchType: JSONPatch``. The patch is the diff of the mutated pod against the
original, made by the ``jsonpatch`` library.

What is refused and what is let through:

- a body that is not a v1 AdmissionReview with a ``request.uid`` (garbage, another version, no request) is
  answered HTTP 400 with one line of explanation: there is no request to answer, and the API server then applies
  the webhook's failurePolicy (``Ignore``: the object is admitted unchanged);
- anything else is answered ``allowed: true``: objects that are not Pods, operations other than CREATE, pods not
  selected, and selected pods the webhook could not patch (its configuration is broken, building the patch
  failed); the last two carry a warning the client sees (``kubectl`` prints it) and are counted.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

import jsonpatch
import orjson

from infertap.logger.webhook.injection import InjectionConfigSource
from infertap.logger.webhook.metrics import WebhookMetrics
from infertap.logger.webhook.mutate import Mutation, Outcome, Selection, mutate_pod

log = logging.getLogger(__name__)

API_VERSION = "admission.k8s.io/v1"
#: Longest warning sent back; the API server truncates longer ones (k8s.io/apiserver, warning.go).
MAX_WARNING_CHARS = 256


@dataclass(frozen=True)
class ReviewAnswer:
    """What to send back: HTTP status and JSON body."""

    status: int
    body: dict[str, Any]
    outcome: Outcome


def _refuse(message: str) -> ReviewAnswer:
    return ReviewAnswer(400, {"error": message}, Outcome.BAD_REVIEW)


def _allowed(uid: str, outcome: Outcome, patch: bytes | None = None, warnings: list[str] | None = None) -> ReviewAnswer:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(patch).decode("ascii")
    if warnings:
        response["warnings"] = [w[:MAX_WARNING_CHARS] for w in warnings]
    return ReviewAnswer(200, {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}, outcome)


def _parse(body: bytes) -> dict[str, Any] | str:
    """The ``request`` of a v1 AdmissionReview, or why ``body`` is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"body is not JSON: {exc}"
    if not isinstance(doc, dict):
        return f"body is a JSON {type(doc).__name__}, not an AdmissionReview object"
    if doc.get("kind") != "AdmissionReview":
        return f"kind is {doc.get('kind')!r}, expected 'AdmissionReview'"
    if doc.get("apiVersion") != API_VERSION:
        return (
            f"apiVersion {doc.get('apiVersion')!r} is not supported; register the webhook with "
            f'admissionReviewVersions: ["v1"]'
        )
    request = doc.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or not request["uid"]:
        return "AdmissionReview has no request with a uid"
    return request


def review(body: bytes, source: InjectionConfigSource, selection: Selection, metrics: WebhookMetrics) -> ReviewAnswer:
    """Answer one AdmissionReview; never raises (an unexpected error lets the pod through unpatched).

    Args:
        body: the HTTP request body.
        source: the injection configuration in use.
        selection: opt-in by annotation (``/mutate``) or every predictor pod (``/mutate-all``).
        metrics: counts the outcome, patch errors and refused annotations.
    """
    started = time.perf_counter()
    answer = _review(body, source, selection, metrics)
    metrics.reviews.labels(answer.outcome.value).inc()
    metrics.duration.observe(time.perf_counter() - started)
    return answer


def _review(body: bytes, source: InjectionConfigSource, selection: Selection, metrics: WebhookMetrics) -> ReviewAnswer:
    request = _parse(body)
    if isinstance(request, str):
        log.warning("refused an AdmissionReview: %s", request)
        return _refuse(request)
    uid: str = request["uid"]
    kind = request.get("kind") if isinstance(request.get("kind"), dict) else {}
    resource = request.get("resource") if isinstance(request.get("resource"), dict) else {}
    if (kind or {}).get("kind") != "Pod" or (resource or {}).get("resource") != "pods" or request.get("subResource"):
        return _allowed(uid, Outcome.NOT_A_POD)
    if request.get("operation") != "CREATE":
        return _allowed(uid, Outcome.IGNORED_OPERATION)
    pod = request.get("object")
    if not isinstance(pod, dict):
        return _allowed(uid, Outcome.BAD_OBJECT, warnings=["infertap: not injected: the review carries no Pod object"])
    where = f"{request.get('namespace', '')}/{(pod.get('metadata') or {}).get('generateName') or ''}"
    config = source.current()
    if config is None:
        error = source.last_error
        log.error("pod %s let through unpatched: no valid injection configuration (%s)", where, error)
        return _allowed(uid, Outcome.CONFIG_ERROR, warnings=[f"infertap: not injected: configuration error: {error}"])
    try:
        mutation: Mutation = mutate_pod(pod, config, selection)
        patch = orjson.dumps(jsonpatch.make_patch(pod, mutation.pod).patch) if mutation.pod is not pod else None
    except Exception as exc:  # the webhook never rejects a pod for its own faults
        metrics.patch_errors.inc()
        log.exception("pod %s let through unpatched: building the patch failed", where)
        return _allowed(uid, Outcome.PATCH_ERROR, warnings=[f"infertap: not injected: {type(exc).__name__}: {exc}"])
    refused = [w for w in mutation.warnings if "annotation refused" in w]
    if refused:
        metrics.annotation_refusals.inc(len(refused))
    log.info("pod %s: %s (%s)", where, mutation.outcome.value, mutation.detail)
    return _allowed(uid, mutation.outcome, patch, mutation.warnings)
