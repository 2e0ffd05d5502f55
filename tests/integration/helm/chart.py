"""Rendering helpers for the chart tests: Helm's own library (helm-python-sdk) and the CRD schemas in tests/data."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "infertap"
CRDS = ROOT / "tests" / "data"

# kind -> CRD file (tests/data/crds/README.md says where each comes from)
CRD_FILES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): CRDS / "crds" / "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): CRDS / "crds" / "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): CRDS / "crds" / "monitoring.coreos.com_prometheusrules.yaml",
    ("serving.kserve.io/v1beta1", "InferenceService"): CRDS / "crds" / "serving.kserve.io_inferenceservices.yaml",
    ("sparkoperator.k8s.io/v1beta2", "SparkApplication"): CRDS
    / "spark-operator"
    / "sparkoperator.k8s.io_sparkapplications.yaml",
}
# cert-manager's kinds are rendered only with webhook.certificates.certManager.enabled; no CRD of theirs is kept
NOT_VALIDATED = {"cert-manager.io/v1"}

RELEASE, NAMESPACE = "infertap", "infertap"


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders with ``values`` (release ``infertap`` in namespace ``infertap``)."""
    out = helm.Chart.load(str(CHART)).render(values or {}, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def notes(values: dict[str, Any] | None = None) -> str:
    out = helm.Chart.load(str(CHART)).render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of ``kind`` at ``api_version`` from its CRD in tests/data."""
    crd = yaml.load(CRD_FILES[(api_version, kind)].read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = api_version.split("/")[1]
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return dict(v["schema"]["openAPIV3Schema"])
    raise KeyError(f"{kind}: no version {version} in its CRD")


def validate_custom(doc: dict[str, Any]) -> None:
    """Validate a custom resource against its CRD's schema (jsonschema, Draft 7 as Kubernetes' subset)."""
    schema = crd_schema(doc["apiVersion"], doc["kind"])
    jsonschema.Draft7Validator(schema).validate(doc)
