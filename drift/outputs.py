"""Outputs of a verdict: Prometheus metrics, CloudEvent alert, JSON (the HTML report: :mod:`infertap.drift.report`).

- :func:`write_metrics` -- gauges written as a node-exporter textfile and, when a Pushgateway URL is given, pushed
  (``prometheus_client``): ``infertap_drift_score``, ``infertap_drift_feature_drifted``,
  ``infertap_drift_dataset_drifted``, ``infertap_drift_drifted_share``, ``infertap_drift_window_records``,
  ``infertap_drift_last_run_timestamp_seconds``, and for canaries ``infertap_canary_score``,
  ``infertap_canary_verdict`` (1 for the current verdict label), ``infertap_canary_check_passed``.
- :func:`send_alert` -- the verdict as a structured-mode CloudEvent (``cloudevents`` library) POSTed to a webhook:
  type ``io.infertap.drift.detected`` / ``io.infertap.drift.cleared`` / ``io.infertap.canary.verdict``.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from infertap.drift.errors import DriftError

EVENT_SOURCE = "/infertap/drift"


def metrics_registry(verdict: dict[str, Any]) -> CollectorRegistry:
    """A registry with the verdict's gauges (see the module docstring)."""
    reg = CollectorRegistry()
    model = str(verdict.get("model", {}).get("name", ""))
    Gauge(
        "infertap_drift_last_run_timestamp_seconds",
        "Unix time of the last drift job run",
        ["model", "kind"],
        registry=reg,
    ).labels(model, verdict["kind"]).set_to_current_time()
    Gauge("infertap_drift_window_records", "Records in the evaluated window", ["model", "kind"], registry=reg).labels(
        model, verdict["kind"]
    ).set(verdict["window"]["records"])
    if verdict["kind"] == "drift":
        score = Gauge(
            "infertap_drift_score",
            "Drift score per feature (p-value or distance)",
            ["model", "feature", "test"],
            registry=reg,
        )
        drifted = Gauge(
            "infertap_drift_feature_drifted", "1 when the feature drifted", ["model", "feature"], registry=reg
        )
        for f in verdict["features"]:
            if f["score"] is not None:
                score.labels(model, f["name"], f["test"]).set(f["score"])
            drifted.labels(model, f["name"]).set(int(f["drifted"]))
        Gauge("infertap_drift_dataset_drifted", "1 when the dataset drifted", ["model"], registry=reg).labels(
            model
        ).set(int(verdict["dataset_drift"]))
        Gauge("infertap_drift_drifted_share", "Share of drifted features", ["model"], registry=reg).labels(model).set(
            verdict["drifted_share"]
        )
    else:
        Gauge("infertap_canary_score", "Kayenta-style canary score (0-100)", ["model", "canary"], registry=reg).labels(
            model, verdict["canary"]["value"]
        ).set(verdict["score"])
        v = Gauge("infertap_canary_verdict", "1 for the canary's verdict", ["model", "canary", "verdict"], registry=reg)
        for label in ("Pass", "Marginal", "Fail"):
            v.labels(model, verdict["canary"]["value"], label).set(int(verdict["verdict"] == label))
        c = Gauge(
            "infertap_canary_check_passed", "1 when the canary check passed", ["model", "canary", "check"], registry=reg
        )
        for chk in verdict["checks"]:
            c.labels(model, verdict["canary"]["value"], chk["name"]).set(int(chk["passed"]))
    return reg


def write_metrics(
    verdict: dict[str, Any], textfile: Path | None = None, pushgateway: str | None = None, job: str = "infertap-drift"
) -> CollectorRegistry:
    """Write the verdict's metrics to ``textfile`` and/or push them to ``pushgateway``.

    A push replaces its whole group on the Pushgateway, so the group is the model *and* the verdict's kind
    (``drift`` or ``canary``): a canary run never erases the drift job's metrics of the same model, nor the reverse.
    """
    reg = metrics_registry(verdict)
    if textfile is not None:
        Path(textfile).parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(textfile), reg)
    if pushgateway:
        model = str(verdict.get("model", {}).get("name", ""))
        push_to_gateway(pushgateway, job=job, registry=reg, grouping_key={"model": model, "kind": str(verdict["kind"])})
    return reg


def event_type(verdict: dict[str, Any]) -> str:
    """The CloudEvent type of a verdict."""
    if verdict["kind"] == "canary":
        return "io.infertap.canary.verdict"
    return "io.infertap.drift.detected" if verdict["dataset_drift"] else "io.infertap.drift.cleared"


def alert_event(verdict: dict[str, Any]) -> ce_http.HTTPMessage:
    """The verdict as a structured-mode CloudEvent HTTP message (data: the verdict without bulky details)."""
    data = {k: v for k, v in verdict.items() if k != "distributions"}
    data = json.loads(json.dumps(clean(data), default=_default))
    model = str(verdict.get("model", {}).get("name", ""))
    event = CloudEvent(
        attributes={
            "type": event_type(verdict),
            "source": EVENT_SOURCE,
            "subject": model,
            "datacontenttype": "application/json",
        },
        data=data,
    )
    return ce_http.to_structured_event(event)


def send_alert(verdict: dict[str, Any], url: str, *, timeout_s: float = 10.0) -> int:
    """POST the verdict's CloudEvent to ``url``; returns the HTTP status.

    Raises:
        DriftError: the webhook is unreachable or answers with a non-2xx status.
    """
    msg = alert_event(verdict)
    req = urllib.request.Request(url, data=msg.body, headers=msg.headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            status = int(resp.status)
    except OSError as exc:
        raise DriftError(f"alert webhook {url} failed: {exc}") from exc
    if not 200 <= status < 300:
        raise DriftError(f"alert webhook {url} answered {status}")
    return status


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def dump_verdict(verdict: dict[str, Any], path: Path | None) -> str:
    """The verdict as indented JSON, written to ``path`` when given."""
    text = json.dumps(clean(verdict), indent=2, default=_default, allow_nan=False)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    return text


def clean(o: Any) -> Any:
    """``o`` with NaN replaced by ``None`` and +-inf by +-1e308, recursively (strict JSON)."""
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [clean(v) for v in o]
    if isinstance(o, float | np.floating):
        f = float(o)
        return None if f != f else (f if abs(f) != float("inf") else (1e308 if f > 0 else -1e308))
    return o
