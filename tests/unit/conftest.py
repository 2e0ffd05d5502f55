"""Shared builders for unit tests: exchanges as the proxy hands them over, and a capturer around them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infertap.logger.capture import Capturer
from infertap.logger.codecs.registry import route
from infertap.logger.config import CaptureMode, ServingIdentity
from infertap.logger.exchange import Exchange
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.redact import HeaderFilter
from infertap.logger.sampling import Sampler

IDENTITY = ServingIdentity("isvc", "ns", "predictor", "isvc-predictor-00001", "default", "pod-0")
V2_OK = b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, 2.5]}]}'
V2_RESPONSE = b'{"model_name": "m", "outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [1]}]}'


def raw_headers(pairs: list[tuple[str, str]] | list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Header pairs as the proxy receives them: bytes (``str`` pairs are encoded Latin-1)."""
    return [(n.encode("latin-1"), v.encode("latin-1")) if isinstance(n, str) else (n, v) for n, v in pairs]


def make_exchange(**overrides: Any) -> Exchange:
    """A successful V2 exchange for model ``m``; any field can be overridden."""
    fields: dict[str, Any] = {
        "request_id": "rid-1",
        "start_unix_ns": 1_700_000_000_123_456_789,
        "end_unix_ns": 1_700_000_000_223_456_789,
        "upstream_s": 0.09,
        "total_s": 0.1,
        "method": "POST",
        "path": "/v2/models/m/infer",
        "query": "",
        "status_code": 200,
        "request_headers": [("Content-Type", "application/json")],
        "response_headers": [("content-type", "application/json")],
        "request_body": V2_OK,
        "response_body": V2_RESPONSE,
    }
    fields.update(overrides)
    for side in ("request_headers", "response_headers"):  # the proxy hands over raw bytes, as received
        fields[side] = raw_headers(fields[side])
    fields.setdefault("request_body_bytes", len(fields["request_body"]))
    fields.setdefault("response_body_bytes", len(fields["response_body"]))
    fields.setdefault(
        "route", route(fields["path"], _binary(fields["request_headers"]), _binary(fields["response_headers"]))
    )
    return Exchange(**fields)


def _binary(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The ``Inference-Header-Content-Length`` value, as the proxy picks it from the headers it reads anyway."""
    return next((v for n, v in headers if n.lower() == b"inference-header-content-length"), None)


CapturerFactory = Callable[..., Capturer]


@pytest.fixture
def metrics() -> ProxyMetrics:
    return ProxyMetrics()


@pytest.fixture
def make_capturer(metrics: ProxyMetrics) -> CapturerFactory:
    def build(
        *,
        mode: CaptureMode = CaptureMode.ALL,
        rate: float = 1.0,
        seed: int = 0,
        allowed: tuple[str, ...] = ("content-type", "x-request-id", "inference-header-content-length"),
        keep_raw_bodies: bool = False,
    ) -> Capturer:
        return Capturer(
            mode=mode,
            sampler=Sampler(rate, seed=seed),
            headers=HeaderFilter(allowed),
            identity=IDENTITY,
            default_model="fallback",
            keep_raw_bodies=keep_raw_bodies,
            metrics=metrics,
        )

    return build


def counter(metrics: ProxyMetrics, name: str, **labels: str) -> float:
    """Current value of a counter sample (0.0 when never incremented)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0
