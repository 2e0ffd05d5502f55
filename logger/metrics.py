"""Prometheus metrics of the sidecar, each documented in ``docs/metrics.md``: prometheus-client's metrics and
registry, with the per-request counter and histograms kept as plain numbers by :class:`RequestMetrics` and exposed
through the same registry.

Names follow the Prometheus naming conventions (base units, ``_seconds``, ``_bytes``, ``_total``). Labels are
bounded: the ``model`` label comes from request paths, which clients control, so at most
:data:`MAX_MODEL_LABELS` distinct values are used and later ones are reported as ``__other__``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

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


class _Histogram:
    """One histogram series kept as plain numbers: per-bucket counts (not cumulative; the last is ``+Inf``), sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0


class _Tally:
    """What one (model label, code, endpoint) key bumps per request: its request count and its model's histograms."""

    __slots__ = ("duration", "request_size", "requests", "response_size", "upstream")

    def __init__(self, duration: _Histogram, upstream: _Histogram, request_size: _Histogram, response_size: _Histogram):
        self.requests = 0
        self.duration = duration
        self.upstream = upstream
        self.request_size = request_size
        self.response_size = response_size


_REQUEST_METRICS = (
    ("infertap_requests", "Requests proxied, by model, HTTP status code and endpoint kind."),
    ("infertap_request_duration_seconds", "Time from request received to response sent, by model."),
    (
        "infertap_upstream_duration_seconds",
        "Time the upstream predictor took, from forwarding the request to its response, by model.",
    ),
    ("infertap_request_size_bytes", "Request body sizes, by model."),
    ("infertap_response_size_bytes", "Response body sizes, by model."),
)


def _le(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The ``le`` label values of a histogram's buckets, ``+Inf`` last, formatted as prometheus-client does."""
    return (*(floatToGoString(b) for b in bounds), "+Inf")  # type: ignore[no-untyped-call]


_HISTOGRAM_LE = (_le(LATENCY_BUCKETS_S), _le(LATENCY_BUCKETS_S), _le(SIZE_BUCKETS_BYTES), _le(SIZE_BUCKETS_BYTES))


class RequestMetrics:
    """The per-request metrics, counted as plain numbers on the event loop and exposed at collection.

    prometheus-client's ``Counter`` and ``Histogram`` take a lock per observation; five of them per request cost
    the event loop about 47,000 instructions (``benchmarks/proxy_instructions.py``). Here a request adds to
    integers and floats (the bucket found by bisection), and :meth:`collect` builds the same families a
    ``Counter`` (``infertap_requests_total``) and four ``Histogram`` s would expose: same names, help, labels,
    buckets (``le`` values formatted as prometheus-client does) and cumulative semantics.

    Observations are made by one thread (the event loop), without a lock. The sidecar's admin server renders
    ``/metrics`` on that same event loop, so a scrape never interleaves with a request there; a collection from
    another thread (a test, another exposition) reads each series' numbers as they are then, and may see a bucket
    count a moment before its sum. Nothing is lost: the numbers only grow.
    """

    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str, str], _Tally] = {}
        self._histograms: dict[str, tuple[_Histogram, _Histogram, _Histogram, _Histogram]] = {}

    def tally(self, label: str, code: int, endpoint: str) -> _Tally:
        """The tally of one label set, created at its first request."""
        key = (label, str(code), endpoint)
        tally = self._tallies.get(key)
        if tally is None:
            hists = self._histograms.get(label)
            if hists is None:
                hists = self._histograms[label] = (
                    _Histogram(LATENCY_BUCKETS_S), _Histogram(LATENCY_BUCKETS_S),
                    _Histogram(SIZE_BUCKETS_BYTES), _Histogram(SIZE_BUCKETS_BYTES),
                )  # fmt: skip
            tally = self._tallies[key] = _Tally(*hists)
        return tally

    def describe(self) -> Iterator[Metric]:
        """The families' names, for the registry's duplicate check (no samples)."""
        (req_name, req_help), *hists = _REQUEST_METRICS
        yield CounterMetricFamily(req_name, req_help, labels=["model", "code", "endpoint"])
        for name, help_text in hists:
            yield HistogramMetricFamily(name, help_text, labels=["model"])

    def collect(self) -> Iterator[Metric]:
        """``infertap_requests_total`` and the four histograms, from the numbers counted so far."""
        (req_name, req_help), *hists = _REQUEST_METRICS
        requests = CounterMetricFamily(req_name, req_help, labels=["model", "code", "endpoint"])
        for key, tally in list(self._tallies.items()):
            requests.add_metric(list(key), tally.requests)
        yield requests
        series = list(self._histograms.items())
        for i, ((name, help_text), bounds) in enumerate(zip(hists, _HISTOGRAM_LE, strict=True)):
            family = HistogramMetricFamily(name, help_text, labels=["model"])
            for label, hs in series:
                hist = hs[i]
                total = hist.sum
                counts = accumulate(list(hist.counts))
                family.add_metric([label], [(le, float(c)) for le, c in zip(bounds, counts, strict=True)], total)
            yield family


class ProxyMetrics:
    """The sidecar's metrics, in their own :class:`CollectorRegistry` (``registry``).

    A registry made here also carries prometheus-client's :class:`ProcessCollector` (``process_cpu_seconds_total``,
    ``process_resident_memory_bytes``, ``process_open_fds`` ... of this process, read from ``/proc``): a sidecar's
    own CPU and memory are what its operators watch. A registry passed in is used as it is.

    The per-request method (:meth:`observe_request`) and :attr:`requests_in_flight` are for the event loop only:
    plain numbers, no lock (:class:`RequestMetrics`); they reach the registry when it is collected.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            ProcessCollector(registry=registry)
        self.registry = registry
        r = self.registry
        self.request_metrics = RequestMetrics()
        r.register(self.request_metrics)
        #: Requests being proxied now: a plain integer the event loop adds to and subtracts from, read at collection.
        self.requests_in_flight = 0
        self.in_flight = Gauge("infertap_requests_in_flight", "Requests being proxied now.", registry=r)
        self.in_flight.set_function(lambda: self.requests_in_flight)
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
        self._tallies: dict[tuple[str, int, str], _Tally] = {}

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
        tally = self._tallies.get(key)
        if tally is None:
            tally = self.request_metrics.tally(self.model_label(model), code, endpoint)
            if len(self._tallies) < 4096:  # keys are client-controlled: the series behind them are bounded
                self._tallies[key] = tally
        tally.requests += 1
        hist = tally.duration
        hist.counts[bisect_left(LATENCY_BUCKETS_S, total_s)] += 1
        hist.sum += total_s
        if upstream_s > 0.0:
            hist = tally.upstream
            hist.counts[bisect_left(LATENCY_BUCKETS_S, upstream_s)] += 1
            hist.sum += upstream_s
        hist = tally.request_size
        hist.counts[bisect_left(SIZE_BUCKETS_BYTES, request_bytes)] += 1
        hist.sum += request_bytes
        hist = tally.response_size
        hist.counts[bisect_left(SIZE_BUCKETS_BYTES, response_bytes)] += 1
        hist.sum += response_bytes
