"""The alert loop for real: Prometheus scrapes the sidecars and the Pushgateway holding the drift job's metrics,
the shipped rules fire, Alertmanager routes them to a webhook receiver standing for the retraining trigger, and
the drift job's own CloudEvent reaches the same receiver."""

from __future__ import annotations

import pytest

from tests.integration.observability.components import poll
from tests.integration.observability.conftest import Observed

pytestmark = pytest.mark.integration

SIDECAR_ALERTS = (
    "InfertapSinkDown",
    "InfertapCaptureDropping",
    "InfertapDecodeErrors",
    "InfertapWebhookMisses",
    "InfertapWebhookCertificateExpiring",
    "InfertapCollectorPairingTimeouts",
)
#: which pod each on-call alert is about: the spooled pod's sink is down and its spool overflows, stable-0 got the
#: malformed payloads (stable-2 too, whose failed requests the collector writes as lone halves), the webhook let two
#: selected pods through unwired, and its test certificate lives 2 hours
EXPECTED_PODS = {
    "InfertapSinkDown": {"stable-1"},
    "InfertapCaptureDropping": {"stable-1"},
    "InfertapDecodeErrors": {"stable-0", "stable-2"},
    "InfertapWebhookMisses": {"webhook-0"},
    "InfertapWebhookCertificateExpiring": {"webhook-0"},
    "InfertapCollectorPairingTimeouts": {"collector-0"},
}


def test_drift_alert_and_the_drift_jobs_cloudevent_reach_the_retraining_trigger(observed: Observed) -> None:
    rx = observed.receiver
    (note, *_) = rx.alert_notifications("InfertapDriftDetected", model="breast-cancer")
    assert note.path == "retrain"  # routed by trigger="retrain"
    assert note.body["commonLabels"]["model"] == "breast-cancer"
    assert note.body["commonLabels"]["severity"] == "warning"
    (alert,) = [a for a in note.body["alerts"] if a["labels"]["alertname"] == "InfertapDriftDetected"]
    assert alert["annotations"]["runbook_url"].endswith("/docs/runbooks.md#infertapdriftdetected")
    assert "of the features drifted" in alert["annotations"]["description"]

    (event,) = [e for e in rx.cloudevents("io.infertap.drift.detected") if e.body["subject"] == "breast-cancer"]
    assert event.path == "retrain"
    assert event.headers["Content-Type"].startswith("application/cloudevents+json")
    assert event.body["subject"] == "breast-cancer"
    assert event.body["data"]["dataset_drift"] is True
    assert observed.exit_codes["run"] == 1  # the drift CLI's "drift found"


def test_canary_fail_is_routed_to_the_rollback_receiver(observed: Observed) -> None:
    rx = observed.receiver
    notes = poll(
        lambda: rx.alert_notifications("InfertapCanaryFail", model="breast-cancer"),
        60,
        "InfertapCanaryFail at the receiver",
    )
    assert notes[0].path == "rollback"
    labels = notes[0].body["commonLabels"]
    assert (labels["model"], labels["canary"], labels["severity"]) == (
        "breast-cancer",
        "breast-cancer-predictor-00002",
        "critical",
    )
    (event,) = rx.cloudevents("io.infertap.canary.verdict")
    assert event.body["data"]["verdict"] == "Fail"
    assert observed.exit_codes["canary"] == 1


@pytest.mark.parametrize("alertname", SIDECAR_ALERTS)
def test_sidecar_alert_reaches_on_call(observed: Observed, alertname: str) -> None:
    rx = observed.receiver

    def pods() -> set[str]:
        alerts = [a for n in rx.alert_notifications(alertname) for a in n.body["alerts"]]
        return {a["labels"]["pod"] for a in alerts if a["labels"]["alertname"] == alertname}

    poll(lambda: pods() >= EXPECTED_PODS[alertname], 60, f"{alertname} for {EXPECTED_PODS[alertname]} at the receiver")
    assert pods() == EXPECTED_PODS[alertname]
    assert {n.path for n in rx.alert_notifications(alertname)} == {"on-call"}


def test_loop_timings(observed: Observed, capsys: pytest.CaptureFixture[str]) -> None:
    """Seconds from each job's end to its alert at the receiver, and which alerts fired (printed for the record)."""
    rx, m = observed.receiver, observed.marks
    for name in ("InfertapCanaryFail", *SIDECAR_ALERTS):
        poll(lambda name=name: rx.alert_notifications(name), 60, name)  # type: ignore[misc]
    drift = rx.alert_notifications("InfertapDriftDetected", model="breast-cancer")[0].at - m["drift_pushed"]
    canary = rx.alert_notifications("InfertapCanaryFail", model="breast-cancer")[0].at - m["canary_pushed"]
    drift_event = rx.cloudevents("io.infertap.drift.detected")[0].at - m["drift_job"]
    fired = sorted({a["labels"]["alertname"] for r in rx.snapshot() if "alerts" in r.body for a in r.body["alerts"]})
    with capsys.disabled():
        print(
            f"\nalerts received: {', '.join(fired)}"
            f"\npush -> InfertapDriftDetected at the receiver: {drift:.1f} s"
            f"\npush -> InfertapCanaryFail at the receiver: {canary:.1f} s"
            f"\ndrift job start -> its CloudEvent at the receiver: {drift_event:.1f} s"
        )
    # the figures above are for the record, not asserted (no wall-clock bound in a test); what is asserted is that
    # both retraining/rollback alerts and the drift job's own CloudEvent reached the receiver
    assert {"InfertapDriftDetected", "InfertapCanaryFail", *SIDECAR_ALERTS} <= set(fired)
