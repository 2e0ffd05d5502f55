"""The proxy's per-request metrics (plain numbers on the event loop) expose what prometheus-client would."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from infertap.logger.http1 import dropped, forwardable
from infertap.logger.metrics import (
    LATENCY_BUCKETS_S,
    MAX_MODEL_LABELS,
    OTHER_MODEL,
    SIZE_BUCKETS_BYTES,
    ProxyMetrics,
)
from infertap.logger.proxy import new_request_id

# (model, code, endpoint, total_s, upstream_s, request_bytes, response_bytes): bucket bounds exactly, between,
# beyond the last bucket, a request that never reached the upstream
REQUESTS = [
    ("iris", 200, "v2:infer", 0.003, 0.002, 1000, 900),
    ("iris", 200, "v2:infer", 0.0005, 0.0005, 256, 1024),
    ("iris", 413, "v2:infer", 0.0001, 0.0, 70_000_000, 45),
    ("iris", 502, "v2:infer", 61.0, 60.0, 0, 0),
    ("", 200, "other", 0.02, 0.019, 3, 4),
]


def _reference(requests: list[tuple[str, int, str, float, float, int, int]]) -> CollectorRegistry:
    """The same requests observed with prometheus-client's own Counter, Histograms and Gauge."""
    r = CollectorRegistry(auto_describe=True)
    requests_total = Counter(
        "infertap_requests", "Requests proxied, by model, HTTP status code and endpoint kind.",
        ["model", "code", "endpoint"], registry=r,
    )  # fmt: skip
    duration = Histogram(
        "infertap_request_duration_seconds", "Time from request received to response sent, by model.", ["model"],
        buckets=LATENCY_BUCKETS_S, registry=r,
    )  # fmt: skip
    upstream = Histogram(
        "infertap_upstream_duration_seconds",
        "Time the upstream predictor took, from forwarding the request to its response, by model.", ["model"],
        buckets=LATENCY_BUCKETS_S, registry=r,
    )  # fmt: skip
    req_size = Histogram(
        "infertap_request_size_bytes", "Request body sizes, by model.", ["model"], buckets=SIZE_BUCKETS_BYTES,
        registry=r,
    )  # fmt: skip
    resp_size = Histogram(
        "infertap_response_size_bytes", "Response body sizes, by model.", ["model"], buckets=SIZE_BUCKETS_BYTES,
        registry=r,
    )  # fmt: skip
    in_flight = Gauge("infertap_requests_in_flight", "Requests being proxied now.", registry=r)
    for model, code, endpoint, total_s, upstream_s, req_b, resp_b in requests:
        requests_total.labels(model, str(code), endpoint).inc()
        duration.labels(model).observe(total_s)
        if upstream_s > 0.0:
            upstream.labels(model).observe(upstream_s)
        else:
            upstream.labels(model)
        req_size.labels(model).observe(req_b)
        resp_size.labels(model).observe(resp_b)
    in_flight.inc(2)
    return r


_PER_REQUEST = ("infertap_request", "infertap_upstream", "infertap_response")


def _request_series(text: bytes) -> list[str]:
    """The exposition lines of the per-request metrics (``# HELP``/``# TYPE`` lines included)."""
    return [line for line in text.decode().splitlines() if any(m in line for m in _PER_REQUEST)]


@pytest.mark.parametrize("exposition", [generate_latest, generate_openmetrics])
def test_request_metrics_expose_what_prometheus_client_would(exposition: object) -> None:
    metrics = ProxyMetrics(CollectorRegistry(auto_describe=True))
    for args in REQUESTS:
        metrics.observe_request(*args)
    metrics.requests_in_flight += 2
    got = _request_series(exposition(metrics.registry))  # type: ignore[operator]
    want = _request_series(exposition(_reference(REQUESTS)))  # type: ignore[operator]
    assert got == want
    assert 'infertap_request_duration_seconds_count{model="iris"} 4.0' in got


def test_request_metrics_grow_between_scrapes() -> None:
    metrics = ProxyMetrics(CollectorRegistry(auto_describe=True))
    metrics.observe_request("iris", 200, "v2:infer", 0.01, 0.005, 10, 10)
    assert (
        metrics.registry.get_sample_value(
            "infertap_requests_total", {"model": "iris", "code": "200", "endpoint": "v2:infer"}
        )
        == 1.0
    )
    metrics.observe_request("iris", 200, "v2:infer", 0.01, 0.005, 10, 10)
    assert (
        metrics.registry.get_sample_value("infertap_request_duration_seconds_bucket", {"model": "iris", "le": "0.01"})
        == 2.0
    )
    assert metrics.registry.get_sample_value("infertap_upstream_duration_seconds_sum", {"model": "iris"}) == 0.01


def test_model_label_stays_bounded() -> None:
    metrics = ProxyMetrics(CollectorRegistry(auto_describe=True))
    for i in range(MAX_MODEL_LABELS + 10):
        metrics.observe_request(f"m{i}", 200, "v2:infer", 0.01, 0.005, 10, 10)
    assert (
        metrics.registry.get_sample_value(
            "infertap_requests_total", {"model": OTHER_MODEL, "code": "200", "endpoint": "v2:infer"}
        )
        == 10.0
    )


def test_generated_request_ids_are_distinct_uuid4_hex() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for rid in ids[:100]:
        u = uuid.UUID(rid.decode("ascii"))
        assert (u.version, u.variant, u.hex) == (4, uuid.RFC_4122, rid.decode("ascii"))


def test_forwardable_drops_hop_by_hop_framing_listed_and_extra_fields() -> None:
    headers = [
        (b"Host", b"a"), (b"Connection", b"keep-alive, X-Secret"), (b"x-secret", b"1"), (b"Content-Length", b"3"),
        (b"Keep-Alive", b"timeout=5"), (b"X-Request-Id", b"r"), (b"Accept", b"*/*"), (b"CONNECTION", b"X-Other"),
        (b"X-Other", b"2"), (b"Transfer-Encoding", b"chunked"),
    ]  # fmt: skip
    assert forwardable(headers, dropped({b"x-request-id"})) == [(b"Host", b"a"), (b"Accept", b"*/*")]
    assert forwardable(iter(headers[:1])) == [(b"Host", b"a")]
