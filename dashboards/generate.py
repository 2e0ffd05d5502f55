"""Generate infertap's Grafana dashboards with grafana-foundation-sdk; the JSON files beside this script are its output.

Usage::

    python dashboards/generate.py            # (re)write dashboards/*.json
    python dashboards/generate.py --check    # exit 1 when a committed file differs from what the code generates

Every panel is a :class:`PanelSpec`: a title, a description, a unit and PromQL queries over the metrics documented
in ``docs/metrics.md``. Queries use three Grafana placeholders only: the data source variable ``${datasource}``, the
``$model`` variable (multi-value, "All" = ``.*``) and ``$__rate_interval``. The tests evaluate every query of the
generated JSON against a real Prometheus (``tests/integration/observability``), so a renamed metric breaks them.

Labels the dashboards expect besides the metrics' own (``model``, ``code``, ``sink``, ``reason`` ...): ``revision``,
attached at scrape time from the pod label ``serving.knative.dev/revision`` (docs/dashboards.md), and ``instance``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    GraphTresholdsStyleMode,  # sic: the SDK's spelling
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
)

HERE = Path(__file__).resolve().parent
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
M = 'model=~"$model"'
RI = "$__rate_interval"

PanelKind = Literal["timeseries", "stat", "table", "state"]


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and its legend (Grafana's ``{{label}}`` templating)."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    """A panel: ``kind`` is the visualisation; ``unit`` a Grafana unit id (``s``, ``bytes``, ``reqps``, ``percentunit``
    ...); ``thresholds`` are (value, colour) steps drawn on the panel (the first value is ignored, Grafana's base)."""

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: PanelKind = "timeseries"
    width: int = 12
    thresholds: tuple[tuple[float, str], ...] = ()
    mappings: dict[str, str] = field(default_factory=dict)
    min_value: float | None = 0.0


@dataclass(frozen=True)
class DashboardSpec:
    """A dashboard: its ``uid`` is also the file name (``dashboards/<uid>.json``); ``model_query`` fills ``$model``."""

    uid: str
    title: str
    description: str
    model_query: str
    rows: tuple[tuple[str, tuple[PanelSpec, ...]], ...]


def _quantiles(metric: str, by: str, legend_prefix: str, qs: tuple[float, ...] = (0.5, 0.9, 0.99)) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket{{{M}}}[{RI}])))",
            f"{legend_prefix}p{round(q * 100)}",
        )
        for q in qs
    )


def _ratio_or_zero(num_selector: str, den_selector: str, by: str) -> str:
    """``num/den`` per ``by`` group, 0 (not empty) where the numerator has no series: a ratio panel shows 0 % errors."""
    num = f"sum by ({by}) (rate({num_selector}[{RI}]))"
    den = f"sum by ({by}) (rate({den_selector}[{RI}]))"
    return f"({num} or {den} * 0) / {den}"


SERVING = DashboardSpec(
    uid="infertap-serving",
    title="infertap / Serving",
    description="Requests, errors, latency and payload sizes seen by the infertap sidecar, canary beside stable.",
    model_query="label_values(infertap_requests_total, model)",
    rows=(
        (
            "Traffic",
            (
                PanelSpec(
                    "Requests by status and revision",
                    "Requests answered per second, by HTTP status sent to the client and by revision "
                    "(infertap_requests_total).",
                    (
                        Query(
                            f"sum by (revision, code) (rate(infertap_requests_total{{{M}}}[{RI}]))",
                            "{{revision}} {{code}}",
                        ),
                    ),
                    unit="reqps",
                ),
                PanelSpec(
                    "Error ratio",
                    "Share of requests answered 5xx (server errors, the sidecar's own 502/504 included) and 4xx "
                    "(rejected requests), per revision.",
                    (
                        Query(
                            _ratio_or_zero(
                                f'infertap_requests_total{{{M},code=~"5.."}}',
                                f"infertap_requests_total{{{M}}}",
                                "revision",
                            ),
                            "{{revision}} 5xx",
                        ),
                        Query(
                            _ratio_or_zero(
                                f'infertap_requests_total{{{M},code=~"4.."}}',
                                f"infertap_requests_total{{{M}}}",
                                "revision",
                            ),
                            "{{revision}} 4xx",
                        ),
                    ),
                    unit="percentunit",
                    thresholds=((0, "green"), (0.01, "orange"), (0.05, "red")),
                ),
            ),
        ),
        (
            "Latency",
            (
                PanelSpec(
                    "Latency seen by clients",
                    "Request received to response sent, p50/p90/p99 (infertap_request_duration_seconds).",
                    _quantiles("infertap_request_duration_seconds", "", ""),
                    unit="s",
                ),
                PanelSpec(
                    "Sidecar's own share next to the predictor's",
                    "Predictor time (infertap_upstream_duration_seconds) and what the sidecar adds: the client-seen "
                    "quantile minus the predictor's (a difference of quantiles, an estimate of the added time).",
                    (
                        *_quantiles("infertap_upstream_duration_seconds", "", "predictor ", (0.5, 0.99)),
                        *(
                            Query(
                                f"histogram_quantile({q}, sum by (le) (rate(infertap_request_duration_seconds_bucket"
                                f"{{{M}}}[{RI}]))) - histogram_quantile({q}, sum by (le) "
                                f"(rate(infertap_upstream_duration_seconds_bucket{{{M}}}[{RI}])))",
                                f"sidecar added p{round(q * 100)}",
                            )
                            for q in (0.5, 0.99)
                        ),
                    ),
                    unit="s",
                    min_value=None,
                ),
                PanelSpec(
                    "Canary beside stable: p99 latency",
                    "Client-seen and predictor p99 per revision: a canary revision's line next to the stable one's.",
                    (
                        Query(
                            "histogram_quantile(0.99, sum by (le, revision) "
                            f"(rate(infertap_request_duration_seconds_bucket{{{M}}}[{RI}])))",
                            "{{revision}} client p99",
                        ),
                        Query(
                            "histogram_quantile(0.99, sum by (le, revision) "
                            f"(rate(infertap_upstream_duration_seconds_bucket{{{M}}}[{RI}])))",
                            "{{revision}} predictor p99",
                        ),
                    ),
                    unit="s",
                ),
                PanelSpec(
                    "Canary beside stable: traffic share",
                    "Share of the model's requests each revision answers (the canary's traffic percent, as served).",
                    (
                        Query(
                            f"sum by (revision) (rate(infertap_requests_total{{{M}}}[{RI}])) / ignoring (revision) "
                            f"group_left sum (rate(infertap_requests_total{{{M}}}[{RI}]))",
                            "{{revision}}",
                        ),
                    ),
                    unit="percentunit",
                ),
            ),
        ),
        (
            "Generative (LLM)",
            (
                PanelSpec(
                    "Time to first token",
                    "From the request reaching the sidecar to the first streamed event carrying output, p50 and p99 "
                    "(infertap_genai_time_to_first_token_seconds; vLLM's semantics).",
                    _quantiles("infertap_genai_time_to_first_token_seconds", "", "", (0.5, 0.99)),
                    unit="s",
                ),
                PanelSpec(
                    "Inter-token latency",
                    "Gaps between consecutive streamed events carrying output, p50 and p99 "
                    "(infertap_genai_inter_token_latency_seconds).",
                    _quantiles("infertap_genai_inter_token_latency_seconds", "", "", (0.5, 0.99)),
                    unit="s",
                ),
                PanelSpec(
                    "Generative calls",
                    "Calls per second by API (chat, completion, embedding, generate) and streaming "
                    "(infertap_genai_requests_total), and finished choices by finish reason "
                    "(infertap_genai_request_success_total).",
                    (
                        Query(
                            f"sum by (api, stream) (rate(infertap_genai_requests_total{{{M}}}[{RI}]))",
                            "{{api}} stream={{stream}}",
                        ),
                        Query(
                            f"sum by (finish_reason) (rate(infertap_genai_request_success_total{{{M}}}[{RI}]))",
                            "finished: {{finish_reason}}",
                        ),
                    ),
                    unit="reqps",
                ),
                PanelSpec(
                    "Tokens",
                    "Prompt and generated tokens per second, as the server reported them "
                    "(infertap_genai_prompt_tokens_total, infertap_genai_generation_tokens_total); streams without "
                    "a usage chunk add nothing.",
                    (
                        Query(f"sum (rate(infertap_genai_prompt_tokens_total{{{M}}}[{RI}]))", "prompt"),
                        Query(f"sum (rate(infertap_genai_generation_tokens_total{{{M}}}[{RI}]))", "generated"),
                    ),
                    unit="short",
                ),
            ),
        ),
        (
            "Payloads",
            (
                PanelSpec(
                    "Payload sizes",
                    "Request and response body sizes, p50 and p99 (infertap_request_size_bytes, "
                    "infertap_response_size_bytes).",
                    (
                        *_quantiles("infertap_request_size_bytes", "", "request ", (0.5, 0.99)),
                        *_quantiles("infertap_response_size_bytes", "", "response ", (0.5, 0.99)),
                    ),
                    unit="bytes",
                ),
                PanelSpec(
                    "Requests in flight",
                    "Requests being proxied now, per revision (infertap_requests_in_flight).",
                    (Query("sum by (revision) (infertap_requests_in_flight)", "{{revision}}"),),
                ),
            ),
        ),
    ),
)

WEBHOOK_MISSES = 'outcome=~"patch_error|config_error|no_model_port"'

CAPTURE = DashboardSpec(
    uid="infertap-capture",
    title="infertap / Capture",
    description="The capture pipeline: records, drops by reason, the spool in front of network sinks, sink health, "
    "the collector's pairing, and the admission webhook that injects the sidecar.",
    model_query="label_values(infertap_requests_total, model)",
    rows=(
        (
            "Records",
            (
                PanelSpec(
                    "Records captured",
                    "Exchanges turned into records, left out by sampling, and accepted by the sink, per second.",
                    (
                        Query(
                            f"sum by (revision) (rate(infertap_capture_records_total[{RI}]))", "{{revision}} captured"
                        ),
                        Query(
                            f"sum by (revision) (rate(infertap_capture_sampled_out_total[{RI}]))",
                            "{{revision}} sampled out",
                        ),
                        Query(
                            f"sum by (sink) (rate(infertap_capture_written_records_total[{RI}]))", "written to {{sink}}"
                        ),
                    ),
                    unit="rps",
                ),
                PanelSpec(
                    "Drops by reason",
                    "Records lost per second: capture queue full, sink or encode errors "
                    "(infertap_capture_dropped_total), spool full or unreadable "
                    "(infertap_spool_dropped_records_total), rejected by the destination "
                    "(infertap_delivery_dropped_records_total).",
                    (
                        Query(f"sum by (reason) (rate(infertap_capture_dropped_total[{RI}]))", "capture {{reason}}"),
                        Query(f"sum by (sink) (rate(infertap_spool_dropped_records_total[{RI}]))", "spool {{sink}}"),
                        Query(
                            f"sum by (sink) (rate(infertap_delivery_dropped_records_total[{RI}]))",
                            "rejected by {{sink}}",
                        ),
                    ),
                    unit="rps",
                    thresholds=((0, "green"), (1e-9, "red")),
                ),
                PanelSpec(
                    "Decode-error ratio",
                    "Payloads that could not be decoded (kept raw with decode_error) per captured record, by protocol.",
                    (
                        Query(
                            f"sum by (protocol) (rate(infertap_capture_decode_errors_total[{RI}]))"
                            f" / ignoring (protocol) group_left sum (rate(infertap_capture_records_total[{RI}]))",
                            "{{protocol}}",
                        ),
                    ),
                    unit="percentunit",
                ),
                PanelSpec(
                    "Capture queue",
                    "Exchanges waiting for the capture worker, and the queue's bound (past it, drops).",
                    (
                        Query("max by (instance) (infertap_capture_queue_depth)", "{{instance}} depth"),
                        Query("max by (instance) (infertap_capture_queue_capacity)", "{{instance}} capacity"),
                    ),
                ),
            ),
        ),
        (
            "Spool and sinks",
            (
                PanelSpec(
                    "Spool bytes",
                    "Bytes waiting on disk for a network sink, against the spool's bound.",
                    (
                        Query("sum by (instance, sink) (infertap_spool_bytes)", "{{instance}} {{sink}}"),
                        Query("max by (sink) (infertap_spool_capacity_bytes)", "bound {{sink}}"),
                    ),
                    unit="bytes",
                ),
                PanelSpec(
                    "Spool age (delivery lag)",
                    "Age of the oldest record not yet acknowledged by the sink: how far delivery is behind.",
                    (Query("max by (instance, sink) (infertap_spool_lag_seconds)", "{{instance}} {{sink}}"),),
                    unit="s",
                    thresholds=((0, "green"), (60, "orange"), (300, "red")),
                ),
                PanelSpec(
                    "Sink up",
                    "1 when the sink's last delivery or health check succeeded (infertap_sink_up).",
                    (Query("min by (instance, sink) (infertap_sink_up)", "{{instance}} {{sink}}"),),
                    kind="state",
                    mappings={"0": "down", "1": "up"},
                ),
                PanelSpec(
                    "Deliveries",
                    "Records made durable at the destination and failed attempts (retried from the spool), per second.",
                    (
                        Query(f"sum by (sink) (rate(infertap_delivery_records_total[{RI}]))", "delivered {{sink}}"),
                        Query(f"sum by (sink) (rate(infertap_delivery_errors_total[{RI}]))", "errors {{sink}}"),
                    ),
                    unit="rps",
                ),
            ),
        ),
        (
            "Collector",
            (
                PanelSpec(
                    "Collector events",
                    "CloudEvents accepted per second by type and transport "
                    "(infertap_collector_events_received_total), and refused by reason "
                    "(infertap_collector_events_rejected_total: malformed, too_large, overloaded ...).",
                    (
                        Query(
                            f"sum by (type, transport) (rate(infertap_collector_events_received_total[{RI}]))",
                            "{{type}} {{transport}}",
                        ),
                        Query(
                            f"sum by (reason) (rate(infertap_collector_events_rejected_total[{RI}]))",
                            "refused {{reason}}",
                        ),
                    ),
                    unit="rps",
                ),
                PanelSpec(
                    "Pairs joined and halves written alone",
                    "Requests joined with their response per second, and halves written without a partner by reason "
                    "(window: none came within the pairing window; full: the window was at its bound). With "
                    "KServe's agent the failed requests' halves are alone: it logs only 200 responses.",
                    (
                        Query(f"sum (rate(infertap_collector_pairs_joined_total[{RI}]))", "joined"),
                        Query(
                            f"sum by (reason) (rate(infertap_collector_halves_timed_out_total[{RI}]))",
                            "alone: {{reason}}",
                        ),
                    ),
                    unit="rps",
                ),
                PanelSpec(
                    "Halves waiting and records pending",
                    "Halves waiting for a partner (infertap_collector_pairing_halves) and pairs waiting for the writer "
                    "(infertap_collector_pending_records; events are refused with 429 beyond its bound).",
                    (
                        Query("sum by (instance) (infertap_collector_pairing_halves)", "{{instance}} waiting"),
                        Query("sum by (instance) (infertap_collector_pending_records)", "{{instance}} pending"),
                    ),
                ),
                PanelSpec(
                    "Durability lag",
                    "From an event's receipt to its record durable at the sink, pairing wait included, p50 and p99 "
                    "(infertap_collector_durability_lag_seconds).",
                    tuple(
                        Query(
                            f"histogram_quantile({q}, sum by (le) "
                            f"(rate(infertap_collector_durability_lag_seconds_bucket[{RI}])))",
                            f"p{round(q * 100)}",
                        )
                        for q in (0.5, 0.99)
                    ),
                    unit="s",
                ),
                PanelSpec(
                    "Journal",
                    "Bytes of the halves journal (infertap_collector_journal_bytes): what a restart would replay.",
                    (Query("sum by (instance) (infertap_collector_journal_bytes)", "{{instance}}"),),
                    unit="bytes",
                ),
            ),
        ),
        (
            "Injection webhook",
            (
                PanelSpec(
                    "Admission reviews by outcome",
                    "Pods reviewed per second by the injection webhook, by outcome (infertap_webhook_reviews_total): "
                    "injected, not_selected, opted_out ... and the misses patch_error, config_error, no_model_port.",
                    (Query(f"sum by (outcome) (rate(infertap_webhook_reviews_total[{RI}]))", "{{outcome}}"),),
                    unit="reqps",
                ),
                PanelSpec(
                    "Pods admitted without the sidecar they asked for",
                    "Selected pods the webhook let through unpatched in the window (patch error, no usable "
                    "configuration, no model port): their traffic is not captured.",
                    (
                        Query(
                            f"sum by (outcome) (increase(infertap_webhook_reviews_total{{{WEBHOOK_MISSES}}}[{RI}]))",
                            "{{outcome}}",
                        ),
                    ),
                    thresholds=((0, "green"), (1, "red")),
                ),
                PanelSpec(
                    "Review latency",
                    "Time to answer one AdmissionReview, p50 and p99 (infertap_webhook_review_duration_seconds); "
                    "the API server's timeout for the webhook is 10 s at most.",
                    tuple(
                        Query(
                            f"histogram_quantile({q}, sum by (le) "
                            f"(rate(infertap_webhook_review_duration_seconds_bucket[{RI}])))",
                            f"p{round(q * 100)}",
                        )
                        for q in (0.5, 0.99)
                    ),
                    unit="s",
                ),
                PanelSpec(
                    "Serving certificate expires in",
                    "Time left on the webhook's serving certificate; the lines mark 7 days (alert) and 1 day.",
                    (
                        Query(
                            "min by (instance) (infertap_webhook_certificate_expiry_timestamp_seconds) - time()",
                            "{{instance}}",
                        ),
                    ),
                    unit="s",
                    kind="stat",
                    width=6,
                    thresholds=((0, "red"), (86400, "orange"), (7 * 86400, "green")),
                ),
                PanelSpec(
                    "Injection configuration loaded",
                    "1 while a valid injection configuration is in use (infertap_webhook_config_loaded).",
                    (Query("min by (instance) (infertap_webhook_config_loaded)", "{{instance}}"),),
                    kind="stat",
                    width=6,
                    mappings={"0": "none", "1": "loaded"},
                    thresholds=((0, "red"), (1, "green")),
                ),
            ),
        ),
    ),
)

DRIFT = DashboardSpec(
    uid="infertap-drift",
    title="infertap / Drift",
    description="The drift job's verdicts (pushed to a Pushgateway or written as a textfile): scores per feature.",
    model_query="label_values(infertap_drift_last_run_timestamp_seconds, model)",
    rows=(
        (
            "Verdict",
            (
                PanelSpec(
                    "Dataset drifted",
                    "1 when the share of drifted features reached the job's drift share "
                    "(infertap_drift_dataset_drifted).",
                    (Query(f"max by (model) (infertap_drift_dataset_drifted{{{M}}})", "{{model}}"),),
                    kind="stat",
                    width=6,
                    mappings={"0": "no drift", "1": "DRIFT"},
                    thresholds=((0, "green"), (1, "red")),
                ),
                PanelSpec(
                    "Drifted share",
                    "Share of the tested features that drifted; the line marks the job's default drift share (0.5).",
                    (Query(f"max by (model) (infertap_drift_drifted_share{{{M}}})", "{{model}}"),),
                    unit="percentunit",
                    width=6,
                    thresholds=((0, "green"), (0.5, "red")),
                ),
                PanelSpec(
                    "Time since the last verdict",
                    "Seconds since the drift (or canary) job last ran, by kind; it should stay under the schedule.",
                    (
                        Query(
                            f"time() - max by (model, kind) (infertap_drift_last_run_timestamp_seconds{{{M}}})",
                            "{{model}} {{kind}}",
                        ),
                    ),
                    unit="s",
                    kind="stat",
                    width=6,
                ),
                PanelSpec(
                    "Records in the window",
                    "Records the last verdict was computed on (infertap_drift_window_records).",
                    (Query(f"max by (model, kind) (infertap_drift_window_records{{{M}}})", "{{model}} {{kind}}"),),
                    kind="stat",
                    width=6,
                ),
            ),
        ),
        (
            "Features",
            (
                PanelSpec(
                    "Score per feature",
                    "Each feature's test score (a p-value for ks/chisquare/z, a distance for psi/wasserstein/"
                    "jensenshannon) with the test in the legend; whether it crossed its threshold is the next panel.",
                    (Query(f"max by (feature, test) (infertap_drift_score{{{M}}})", "{{feature}} ({{test}})"),),
                    min_value=None,
                ),
                PanelSpec(
                    "Drifted features",
                    "1 for each feature whose score crossed its threshold in the last verdict.",
                    (Query(f"max by (feature) (infertap_drift_feature_drifted{{{M}}})", "{{feature}}"),),
                    kind="state",
                    mappings={"0": "ok", "1": "drifted"},
                ),
            ),
        ),
    ),
)

CANARY = DashboardSpec(
    uid="infertap-canary",
    title="infertap / Canary",
    description="The canary job's comparison of a canary revision with the stable one: verdict and score history.",
    model_query="label_values(infertap_canary_score, model)",
    rows=(
        (
            "Verdict",
            (
                PanelSpec(
                    "Verdict history",
                    "The canary's verdict over time: Pass (score >= 95), Marginal (>= 75) or Fail "
                    "(infertap_canary_verdict).",
                    (
                        Query(
                            f'max by (model, canary) ((infertap_canary_verdict{{{M},verdict="Fail"}} == 1) * 2 '
                            f'or (infertap_canary_verdict{{{M},verdict="Marginal"}} == 1) '
                            f'or (infertap_canary_verdict{{{M},verdict="Pass"}} == 1) * 0)',
                            "{{model}} {{canary}}",
                        ),
                    ),
                    kind="state",
                    width=24,
                    mappings={"0": "Pass", "1": "Marginal", "2": "Fail"},
                    thresholds=((0, "green"), (1, "orange"), (2, "red")),
                ),
                PanelSpec(
                    "Score history",
                    "Kayenta-style score, 0-100 (infertap_canary_score); the lines mark Marginal (75) and Pass (95).",
                    (Query(f"max by (model, canary) (infertap_canary_score{{{M}}})", "{{model}} {{canary}}"),),
                    thresholds=((0, "red"), (75, "orange"), (95, "green")),
                ),
                PanelSpec(
                    "Checks",
                    "1 when the check passed in the last comparison (infertap_canary_check_passed).",
                    (Query(f"max by (canary, check) (infertap_canary_check_passed{{{M}}})", "{{canary}} {{check}}"),),
                    kind="state",
                    mappings={"0": "failed", "1": "passed"},
                ),
            ),
        ),
    ),
)

DASHBOARDS = (SERVING, CAPTURE, DRIFT, CANARY)


def _thresholds(steps: tuple[tuple[float, str], ...]) -> ThresholdsConfig:
    """Absolute threshold steps. The base step carries its number: Grafana treats the first step as the base
    whatever its value, and the v10.1 dashboard schema requires a number where Grafana itself writes null."""
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(value=v, color=c) for v, c in steps])


def _panel(spec: PanelSpec, panel_id: int) -> timeseries.Panel | stat.Panel | table.Panel | statetimeline.Panel:
    legend = VizLegendOptions().display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM).show_legend(True)
    tooltip = VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
    builder: timeseries.Panel | stat.Panel | table.Panel | statetimeline.Panel
    if spec.kind == "timeseries":
        builder = timeseries.Panel().legend(legend).tooltip(tooltip)
    elif spec.kind == "stat":
        builder = stat.Panel().reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    elif spec.kind == "table":
        builder = table.Panel()
    else:
        builder = statetimeline.Panel().legend(legend).tooltip(tooltip).show_value(VisibilityMode.AUTO)
    builder = builder.id(panel_id).title(spec.title).description(spec.description).datasource(DATASOURCE)
    builder = builder.unit(spec.unit)
    builder = builder.height(8).span(spec.width)
    if spec.min_value is not None and spec.kind == "timeseries":
        builder = builder.min(spec.min_value)
    if spec.thresholds:
        builder = builder.thresholds(_thresholds(spec.thresholds))
        if isinstance(builder, timeseries.Panel):
            builder = builder.thresholds_style(GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.LINE))
    if spec.mappings:
        options = {k: ValueMappingResult(text=v, index=i) for i, (k, v) in enumerate(spec.mappings.items())}
        builder = builder.mappings([ValueMap(options=options)])
    for i, q in enumerate(spec.queries):
        builder = builder.with_target(
            prometheus.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(chr(ord("A") + i))
        )
    return builder


def build(spec: DashboardSpec) -> Dashboard:
    """The SDK builder of ``spec``: variables ``datasource`` (Prometheus) and ``model`` (multi, All = ``.*``)."""
    dash = (
        Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(["infertap"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("utc")
        .with_variable(
            DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .current(VariableOption(selected=True, text="Prometheus", value="prometheus"))
        )
        .with_variable(
            QueryVariable("model")
            .label("Model")
            .datasource(DATASOURCE)
            .query(spec.model_query)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(VariableOption(selected=True, text="All", value="$__all"))
        )
    )
    panel_id = 0
    for title, panels in spec.rows:
        panel_id += 1
        dash = dash.with_row(Row(title).id(panel_id))
        for p in panels:
            panel_id += 1
            dash = dash.with_panel(_panel(p, panel_id))
    return dash


def render(spec: DashboardSpec) -> str:
    """The dashboard JSON of ``spec`` (sorted keys, two-space indent, trailing newline), as Grafana imports it."""
    text = JSONEncoder(sort_keys=True, indent=2).encode(build(spec).build())
    return json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``dashboards/<uid>.json`` for every dashboard, or with ``--check`` report those that differ (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: beside this script)")
    args = parser.parse_args(argv)
    stale = []
    for spec in DASHBOARDS:
        path = args.out / f"{spec.uid}.json"
        text = render(spec)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run python dashboards/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
