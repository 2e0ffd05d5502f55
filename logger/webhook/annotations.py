"""Labels and annotations the webhook reads from pods, and the per-InferenceService overrides.

KServe copies an InferenceService's ``metadata.annotations`` (and ``spec.predictor.annotations``) onto the
predictor's Knative revision template or Deployment pod template, minus its ``serviceAnnotationDisallowedList``
(kserve/kserve ``pkg/controller/v1beta1/inferenceservice/components/predictor.go``, ``buildPredictorResources``;
the default list holds only autoscaling, storage-URI, kubectl and modelFormat keys). So annotations set on the
InferenceService reach the pod, where this webhook reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from infertap.logger.webhook.injection import OverrideName

#: Opt-in (``"true"``) or opt-out (``"false"``) annotation.
INJECT_ANNOTATION = "infertap.io/inject"
#: Written on injected pods: what was injected and how the pod was rewired (JSON).
STATUS_ANNOTATION = "infertap.io/status"
#: Prefix of the override annotations (``infertap.io/sample-rate`` ...).
OVERRIDE_PREFIX = "infertap.io/"

#: KServe's label naming the InferenceService on every pod it creates (kserve ``constants.InferenceServiceLabel``).
ISVC_LABEL = "serving.kserve.io/inferenceservice"
#: KServe's component label (``predictor``, ``transformer``, ``explainer``; kserve ``KServiceComponentLabel``).
COMPONENT_LABEL = "component"
#: KServe's endpoint label (``default`` / ``canary`` in older releases; kserve ``KServiceEndpointLabel``).
ENDPOINT_LABEL = "endpoint"
#: Knative Serving's revision label on revision pods.
REVISION_LABEL = "serving.knative.dev/revision"


def _sample_rate(value: str) -> str:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError("must be between 0 and 1")
    return repr(rate)


def _capture_mode(value: str) -> str:
    if value not in ("all", "request", "response"):
        raise ValueError("must be all, request or response")
    return value


def _header_allowlist(value: str) -> str:
    names = [h.strip().lower() for h in value.split(",") if h.strip()]
    if not names:
        raise ValueError("must name at least one header")
    return json.dumps(names)


def _bool(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("must be true or false")
    return lowered


def _model_name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


#: override name -> (sidecar variable, parser returning the variable's value or raising ValueError)
OVERRIDES = {
    "sample-rate": ("INFERTAP_SAMPLE_RATE", _sample_rate),
    "capture-mode": ("INFERTAP_CAPTURE_MODE", _capture_mode),
    "header-allowlist": ("INFERTAP_HEADER_ALLOWLIST", _header_allowlist),
    "keep-raw-bodies": ("INFERTAP_KEEP_RAW_BODIES", _bool),
    "model-name": ("INFERTAP_MODEL_NAME", _model_name),
}


@dataclass
class Overrides:
    """Sidecar variables set by a pod's annotations, and what was refused (one line per annotation)."""

    env: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def read_overrides(annotations: Mapping[str, str], allowed: list[OverrideName]) -> Overrides:
    """The overrides ``infertap.io/<name>`` found in ``annotations``.

    An annotation whose name is not in ``allowed`` or whose value is invalid is refused (listed in
    ``refused``, never an error): a bad annotation must not keep a pod from starting. Values: ``sample-rate`` a
    float in [0, 1]; ``capture-mode`` all|request|response; ``header-allowlist`` comma-separated header names;
    ``keep-raw-bodies`` true|false; ``model-name`` a string.
    """
    out = Overrides()
    for key, value in sorted(annotations.items()):
        if not key.startswith(OVERRIDE_PREFIX):
            continue
        name = key[len(OVERRIDE_PREFIX) :]
        if name in ("inject", "status"):
            continue
        if name not in OVERRIDES:
            out.refused.append(f"{key}: unknown infertap annotation")
            continue
        if name not in allowed:
            out.refused.append(f"{key}: not overridable in this cluster (injection config allowed_overrides)")
            continue
        variable, parse = OVERRIDES[name]
        try:
            out.env[variable] = parse(str(value))
        except ValueError as exc:
            out.refused.append(f"{key}={value!r}: {exc}")
    return out
