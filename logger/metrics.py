"""Prometheus metrics of the sidecar (prometheus-client), each documented in ``docs/metrics.md``.

Names follow the Prometheus naming conventions (base units, ``_seconds``, ``_bytes``, ``_total``). Labels are
bounded: the ``model`` label comes from request paths, which clients control, so at most
:data:`MAX_MODEL_LABELS` distinct values are used and later ones are reported as ``__other__``.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from infertap.logger.genai.metrics import GenAIMetrics

# No ``*_created`` series: they double the series count of every counter and histogram and nothing queries them
# (prometheus-client's switch, process-wide; OpenMetrics exposition keeps its own ``created`` handling).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

MAX_MODEL_LABELS = 64
OTHER_MODEL = "__other__"

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
SIZE_BUCKETS_BYTES = tuple(float(256 * 4**i) for i in range(10))  # 256 B .. 64 MiB


class _RequestChildren(NamedTuple):
    requests: Counter
    duration: Histogram
    upstream: Histogram
    request_size: Histogram
    response_size: Histogram


class ProxyMetrics:
    """The sidecar's metrics, in their own :class:`CollectorRegistry` (``registry``).

    A registry made here also carries prometheus-client's :class:`ProcessCollector` (``process_cpu_seconds_total``,
    ``process_resident_memory_bytes``, ``process_open_fds`` ... of this process, read from ``/proc``): a sidecar's
    own CPU and memory are what its operators watch. A registry passed in is used as it is.

    The per-request methods are called on the proxy's hot path and cache labelled children, so a request costs a
    dictionary lookup and a few observations.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            ProcessCollector(registry=registry)
        self.registry = registry
        r = self.registry
        self.requests = Counter(
            "infertap_requests", "Requests proxied, by model, HTTP status code and endpoint kind.",
            ["model", "code", "endpoint"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "infertap_request_duration_seconds", "Time from request received to response sent, by model.",
            ["model"], buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.upstream_duration = Histogram(
            "infertap_upstream_duration_seconds",
            "Time the upstream predictor took, from forwarding the request to its response, by model.",
            ["model"], buckets=LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.request_size = Histogram(
            "infertap_request_size_bytes", "Request body sizes, by model.", ["model"],
            buckets=SIZE_BUCKETS_BYTES, registry=r,
        )  # fmt: skip
        self.response_size = Histogram(
            "infertap_response_size_bytes", "Response body sizes, by model.", ["model"],
            buckets=SIZE_BUCKETS_BYTES, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("infertap_requests_in_flight", "Requests being proxied now.", registry=r)
        self.captured = Counter(
            "infertap_capture_records", "Exchanges turned into records by the capture pipeline.", registry=r
        )
        self.sampled_out = Counter("infertap_capture_sampled_out", "Exchanges left out by sampling.", registry=r)
        self.decode_errors = Counter(
            "infertap_capture_decode_errors",
            "Payloads that could not be decoded (the record keeps the raw body and the error).",
            ["protocol"], registry=r,
        )  # fmt: skip
        self.dropped = Counter(
            "infertap_capture_dropped",
            "Exchanges or records lost to capture, by reason (queue_full, sink_error, encode_error).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.written = Counter(
            "infertap_capture_written_records", "Records accepted by the sink.", ["sink"], registry=r
        )
        self.sink_bytes = Counter("infertap_sink_sent_bytes", "Bytes made durable by the sink.", ["sink"], registry=r)
        self.sink_errors = Counter("infertap_sink_errors", "Failed sink operations.", ["sink"], registry=r)
        self.queue_depth = Gauge("infertap_capture_queue_depth", "Exchanges waiting in the capture queue.", registry=r)
        self.queue_capacity = Gauge("infertap_capture_queue_capacity", "Bound of the capture queue.", registry=r)
        self.genai = GenAIMetrics(r)  # LLM serving metrics, observed by the capture worker (docs/genai.md)
        self._lock = threading.Lock()
        self._models: set[str] = set()
        self._request_children: dict[tuple[str, int, str], _RequestChildren] = {}

    def model_label(self, model: str) -> str:
        """``model`` if it is among the first :data:`MAX_MODEL_LABELS` seen, else :data:`OTHER_MODEL`."""
        if model in self._models:
            return model
        with self._lock:
            if len(self._models) < MAX_MODEL_LABELS:
                self._models.add(model)
                return model
        return OTHER_MODEL

    def observe_request(
        self,
        model: str,
        code: int,
        endpoint: str,
        total_s: float,
        upstream_s: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """Record one finished request (hot path).

        Args:
            model: model name from the path (``""`` when none).
            code: HTTP status code sent to the client.
            endpoint: endpoint kind (``"v1:predict"``, ``"v2:infer"``, ``"other"``).
            total_s: seconds from request received to response sent.
            upstream_s: seconds the upstream took (0.0 when not reached; then not observed).
            request_bytes, response_bytes: body sizes in bytes.
        """
        key = (model, code, endpoint)
        children = self._request_children.get(key)
        if children is None:
            label = self.model_label(model)
            children = _RequestChildren(
                self.requests.labels(label, str(code), endpoint),
                self.duration.labels(label),
                self.upstream_duration.labels(label),
                self.request_size.labels(label),
                self.response_size.labels(label),
            )
            if len(self._request_children) < 4096:
                self._request_children[key] = children
        children.requests.inc()
        children.duration.observe(total_s)
        if upstream_s > 0.0:
            children.upstream.observe(upstream_s)
        children.request_size.observe(request_bytes)
        children.response_size.observe(response_bytes)
