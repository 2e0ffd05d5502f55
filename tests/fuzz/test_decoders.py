"""Fuzz targets of the decoders (V1, V2 JSON, V2 binary), through the capture stage as the pipeline runs it.

Property: whatever the body, capture returns a record, never raises; a body that does not decode is kept raw with
the reason in ``decode_error`` (nothing lost); the record encodes to Arrow (the next stage does not fail either).
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from infertap.logger.batching import to_batches
from infertap.logger.capture import Capturer
from infertap.logger.codecs.registry import route
from infertap.logger.config import CaptureMode, ServingIdentity
from infertap.logger.exchange import Exchange
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.record import CapturedRecord
from infertap.logger.redact import HeaderFilter
from infertap.logger.sampling import Sampler
from tests.fuzz.strategies import v1_body, v2_binary, v2_body

IDENTITY = ServingIdentity("isvc", "ns", "predictor", "isvc-predictor-00001", "default", "pod-0")
BINARY = b"inference-header-content-length"
CAPTURER = Capturer(
    mode=CaptureMode.ALL,
    sampler=Sampler(1.0, seed=0),
    headers=HeaderFilter(("content-type", "inference-header-content-length")),
    identity=IDENTITY,
    default_model="fallback",
    keep_raw_bodies=False,
    metrics=ProxyMetrics(),
)


def _capture(path: str, request: bytes, response: bytes, header: bytes | None = None) -> CapturedRecord:
    headers = [(b"content-type", b"application/json")]
    if header is not None:
        headers.append((BINARY, header))
    exchange = Exchange(
        request_id="fuzz",
        start_unix_ns=1_700_000_000_000_000_000,
        end_unix_ns=1_700_000_000_100_000_000,
        upstream_s=0.05,
        total_s=0.1,
        method="POST",
        path=path,
        query="",
        status_code=200,
        request_headers=headers,
        response_headers=headers,
        request_body=request,
        response_body=response,
        request_body_bytes=len(request),
        response_body_bytes=len(response),
        route=route(path, header, header),
    )
    rec = CAPTURER.process(exchange)
    assert rec is not None
    if rec.decode_error is None:
        assert rec.request_body is None or rec.request_body == request
    else:
        assert (rec.request_body, rec.response_body) != (None, None), "an undecodable body was not kept"
    assert to_batches([rec]), "the record did not encode"
    return rec


@given(v1_body(), v1_body())
@example(b'{"instances": [9007199254740993]}', b'{"predictions": [1]}')
@example(b'{"instances": [[1, 2], [3]]}', b"{}")
@example(b'{"instances": [{"b64": "!!"}]}', b"[]")
def test_v1(request: bytes, response: bytes) -> None:
    _capture("/v1/models/m:predict", request, response)


@given(st.binary(max_size=512), st.binary(max_size=512))
def test_v1_raw_bytes(request: bytes, response: bytes) -> None:
    _capture("/v1/models/m:predict", request, response)


@given(v2_body(), v2_body())
@example(b'{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2]}]}', b"{}")
@example(b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "BYTES", "data": [1]}]}', b'{"outputs": 3}')
def test_v2_json(request: bytes, response: bytes) -> None:
    _capture("/v2/models/m/infer", request, response)


@given(st.binary(max_size=512), st.binary(max_size=512))
def test_v2_raw_bytes(request: bytes, response: bytes) -> None:
    _capture("/v2/models/m/versions/1/infer", request, response)


@given(v2_binary(), v2_binary())
def test_v2_binary(request: tuple[bytes, str], response: tuple[bytes, str]) -> None:
    body, length = request
    _capture("/v2/models/m/infer", body, response[0], length.encode("latin-1", "replace"))
