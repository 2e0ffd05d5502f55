"""Prometheus metrics of ``infertap webhook`` (prometheus-client), documented in docs/injection.md.

A review the webhook answered is counted here by outcome. A call that never reached it (webhook down, TLS
failure, timeout) is visible only on the API server's side: its ``apiserver_admission_webhook_*`` metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from infertap.logger.webhook.mutate import Outcome


class WebhookMetrics:
    """The webhook's metrics, in their own :class:`CollectorRegistry` (``registry``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.reviews = Counter(
            "infertap_webhook_reviews_total",
            "AdmissionReviews answered, by outcome (injected, already_injected, not_selected, patch_error ...).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in Outcome:
            self.reviews.labels(outcome.value)
        self.patch_errors = Counter(
            "infertap_webhook_patch_errors_total",
            "Selected pods let through unpatched because building the patch failed.",
            registry=self.registry,
        )
        self.config_errors = Counter(
            "infertap_webhook_config_errors_total",
            "Injection configuration reloads that failed (the last good configuration stays in use).",
            registry=self.registry,
        )
        self.config_loaded = Gauge(
            "infertap_webhook_config_loaded",
            "1 while a valid injection configuration is in use, 0 while none ever loaded.",
            registry=self.registry,
        )
        self.annotation_refusals = Counter(
            "infertap_webhook_annotation_refusals_total",
            "infertap.io/* override annotations ignored because unknown, not allowed or invalid.",
            registry=self.registry,
        )
        self.duration = Histogram(
            "infertap_webhook_review_duration_seconds",
            "Time to answer one AdmissionReview, parsing to response body.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.cert_reloads = Counter(
            "infertap_webhook_certificate_reloads_total",
            "Serving certificate reloads after its files changed, by result.",
            ["result"],
            registry=self.registry,
        )
        for result in ("ok", "error"):
            self.cert_reloads.labels(result)
        self.cert_expiry = Gauge(
            "infertap_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use (Unix time).",
            registry=self.registry,
        )
