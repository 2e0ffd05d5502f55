"""The capture stage: decoding inside records, undecodable payloads, capture modes, raw bodies."""

from __future__ import annotations

import random

import numpy as np
import pytest
import tritonclient.http as httpclient

from infertap.logger.config import CaptureMode
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.record import CapturedRecord
from tests.unit.conftest import IDENTITY, V2_OK, V2_RESPONSE, CapturerFactory, counter, make_exchange

DECODE_ERRORS = "infertap_capture_decode_errors_total"


def process(capturer_factory: CapturerFactory, **overrides: object) -> CapturedRecord:
    rec = capturer_factory().process(make_exchange(**overrides))
    assert rec is not None
    return rec


def test_decoded_exchange_becomes_a_full_record(make_capturer: CapturerFactory, metrics: ProxyMetrics) -> None:
    rec = process(
        make_capturer,
        path="/v2/models/m/versions/7/infer",
        query="debug=1",
        request_headers=[("Content-Type", "application/json"), ("Authorization", "Bearer s3cr3t")],
    )
    assert rec.request_id == "rid-1"
    assert rec.request_time_us == 1_700_000_000_123_456
    assert rec.response_time_us == 1_700_000_000_223_456
    assert (rec.model_name, rec.model_version, rec.protocol) == ("m", "7", "v2")
    assert (rec.method, rec.path, rec.query, rec.status_code) == (
        "POST",
        "/v2/models/m/versions/7/infer",
        "debug=1",
        200,
    )
    assert (rec.upstream_latency_s, rec.total_latency_s) == (0.09, 0.1)
    assert (rec.request_bytes, rec.response_bytes) == (len(V2_OK), len(V2_RESPONSE))
    assert (rec.inference_service, rec.namespace, rec.component, rec.revision, rec.endpoint, rec.pod) == (
        IDENTITY.inference_service,
        IDENTITY.namespace,
        IDENTITY.component,
        IDENTITY.revision,
        IDENTITY.endpoint,
        IDENTITY.pod,
    )
    assert rec.request_headers == [("content-type", "application/json")]
    assert rec.decode_error is None
    assert rec.request_body is None
    assert rec.response_body is None
    assert [(t.name, t.data.tolist()) for t in rec.inputs] == [("x", [1.5, 2.5])]
    assert [(t.name, t.data.tolist()) for t in rec.outputs] == [("y", [1])]
    assert counter(metrics, "infertap_capture_records_total") == 1
    assert counter(metrics, DECODE_ERRORS, protocol="v2") == 0


def test_undecodable_request_is_still_captured(make_capturer: CapturerFactory, metrics: ProxyMetrics) -> None:
    body = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, "two"]}]}'
    rec = process(make_capturer, request_body=body)
    assert rec.request_body == body
    assert rec.decode_error is not None
    assert rec.decode_error.startswith("request: strings in FP32 data")
    assert rec.inputs == ()
    assert [t.name for t in rec.outputs] == ["y"]  # the response side still decodes
    assert rec.response_body is None
    assert counter(metrics, DECODE_ERRORS, protocol="v2") == 1
    assert counter(metrics, "infertap_capture_records_total") == 1


def test_both_sides_undecodable(make_capturer: CapturerFactory, metrics: ProxyMetrics) -> None:
    rec = process(make_capturer, request_body=b"not json", response_body=b"[]")
    assert rec.decode_error is not None
    assert "request: invalid JSON" in rec.decode_error
    assert "response: body must be a JSON object, got list" in rec.decode_error
    assert (rec.request_body, rec.response_body) == (b"not json", b"[]")
    assert counter(metrics, DECODE_ERRORS, protocol="v2") == 2


def test_binary_exchange_is_decoded_with_the_header(make_capturer: CapturerFactory) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    inp = httpclient.InferInput("pixels", [3, 4], "UINT8")
    inp.set_data_from_numpy(arr, binary_data=True)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([inp])
    rec = process(
        make_capturer,
        request_body=bytes(body),
        request_headers=[("inference-header-content-length", f" {json_size} ")],  # any case, stray spaces
    )
    assert rec.protocol == "v2-binary"
    assert rec.decode_error is None
    assert rec.inputs[0].data.tolist() == list(range(12))
    assert rec.request_headers == [("inference-header-content-length", f" {json_size} ")]


@pytest.mark.parametrize("header", ["abc", "-3", "1e3", "0x10", "1_0", ""])
def test_unusable_binary_header_is_a_decode_error(
    make_capturer: CapturerFactory, metrics: ProxyMetrics, header: str
) -> None:
    rec = process(make_capturer, request_headers=[("Inference-Header-Content-Length", header)])
    assert rec.decode_error is not None
    assert f"request: Inference-Header-Content-Length {header!r} is not a non-negative integer" in rec.decode_error
    assert rec.request_body == V2_OK
    assert counter(metrics, DECODE_ERRORS, protocol="v2") == 1


def test_error_responses_are_captured_undecoded(make_capturer: CapturerFactory, metrics: ProxyMetrics) -> None:
    rec = process(make_capturer, status_code=422, response_body=b'{"error": "bad input"}')
    assert rec.status_code == 422
    assert rec.outputs == ()
    assert rec.response_body == b'{"error": "bad input"}'  # kept: it explains the failure
    assert rec.decode_error is None
    assert counter(metrics, DECODE_ERRORS, protocol="v2") == 0


def test_proxy_errors_are_captured(make_capturer: CapturerFactory) -> None:
    rec = process(make_capturer, status_code=504, response_body=b"", error="upstream timeout", upstream_s=0.0)
    assert (rec.status_code, rec.error) == (504, "upstream timeout")
    assert [t.name for t in rec.inputs] == ["x"]
    assert rec.response_body is None


def test_truncated_bodies_are_not_decoded(make_capturer: CapturerFactory, metrics: ProxyMetrics) -> None:
    rec = process(make_capturer, response_truncated=True, response_body=V2_RESPONSE[:10], response_body_bytes=10**6)
    assert rec.response_truncated
    assert rec.response_bytes == 10**6
    assert rec.decode_error == "response: body truncated at the capture cap, not decoded"
    assert rec.response_body == V2_RESPONSE[:10]
    assert counter(metrics, DECODE_ERRORS, protocol="v2") == 1


def test_mode_request_keeps_only_the_request(make_capturer: CapturerFactory, metrics: ProxyMetrics) -> None:
    capturer = make_capturer(mode=CaptureMode.REQUEST)
    rec = capturer.process(make_exchange(response_body=b"garbage"))
    assert rec is not None
    assert [t.name for t in rec.inputs] == ["x"]
    assert rec.outputs == ()
    assert rec.response_headers is None
    assert rec.response_body is None
    assert rec.decode_error is None  # the response is not looked at
    assert rec.capture_mode == "request"
    assert counter(metrics, DECODE_ERRORS, protocol="v2") == 0


def test_mode_response_keeps_only_the_response(make_capturer: CapturerFactory) -> None:
    capturer = make_capturer(mode=CaptureMode.RESPONSE, keep_raw_bodies=True)
    rec = capturer.process(make_exchange(request_body=b"garbage"))
    assert rec is not None
    assert rec.inputs == ()
    assert [t.name for t in rec.outputs] == ["y"]
    assert rec.request_headers is None
    assert rec.request_body is None
    assert rec.response_body == V2_RESPONSE
    assert rec.decode_error is None
    assert rec.capture_mode == "response"


def test_mode_all_with_raw_bodies(make_capturer: CapturerFactory) -> None:
    rec = make_capturer(keep_raw_bodies=True).process(make_exchange())
    assert rec is not None
    assert (rec.request_body, rec.response_body) == (V2_OK, V2_RESPONSE)
    assert rec.inputs
    assert rec.outputs


def test_v1_exchange(make_capturer: CapturerFactory) -> None:
    rec = process(
        make_capturer,
        path="/v1/models/iris:predict",
        request_body=b'{"instances": [[1.0, 2.0], [3.0, 4.0]]}',
        response_body=b'{"predictions": [0, 1]}',
    )
    assert (rec.protocol, rec.model_name) == ("v1", "iris")
    assert rec.inputs[0].shape == (2, 2)
    assert rec.outputs[0].data.tolist() == [0, 1]


def test_non_inference_paths_are_not_decoded(make_capturer: CapturerFactory, metrics: ProxyMetrics) -> None:
    rec = process(make_capturer, method="GET", path="/v2/health/ready", request_body=b"", response_body=b"")
    assert (rec.protocol, rec.model_name) == ("other", "fallback")
    assert rec.inputs == ()
    assert rec.outputs == ()
    assert rec.decode_error is None
    assert counter(metrics, DECODE_ERRORS, protocol="other") == 0


def test_model_parameters_are_kept_as_json(make_capturer: CapturerFactory) -> None:
    body = b'{"parameters": {"temperature": 0.5}, "inputs": []}'
    rec = process(make_capturer, request_body=body)
    assert rec.request_parameters == '{"temperature":0.5}'
    assert rec.response_parameters is None


def test_corrupted_payloads_never_raise(make_capturer: CapturerFactory, metrics: ProxyMetrics) -> None:
    # Flip, drop and insert bytes of valid JSON and binary bodies: every exchange still yields a record.
    inp = httpclient.InferInput("s", [2], "BYTES")
    inp.set_data_from_numpy(np.array([b"ab", b"\x00c"], dtype=object), binary_data=True)
    binary, json_size = httpclient.InferenceServerClient.generate_request_body([inp])
    seeds = [(V2_OK, None), (bytes(binary), json_size)]
    rng = random.Random(7)
    capturer = make_capturer()
    failures = 0
    for i in range(2000):
        base, size = seeds[i % 2]
        raw = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(raw))
            op = rng.random()
            if op < 0.4:
                raw[pos] = rng.randrange(256)
            elif op < 0.7:
                del raw[pos]
            else:
                raw.insert(pos, rng.choice(b'{}[]",:0-9.eE \x00\xff'))
        headers = [] if size is None else [("Inference-Header-Content-Length", str(size))]
        rec = capturer.process(make_exchange(request_body=bytes(raw), request_headers=headers))
        assert rec is not None
        if rec.decode_error is not None:
            failures += 1
            assert rec.request_body == bytes(raw)
    assert failures > 1000  # most corruptions are caught
    assert counter(metrics, DECODE_ERRORS, protocol="v2") == failures


def test_binary_response_is_decoded_with_the_response_header(make_capturer: CapturerFactory) -> None:
    raw = np.array([0.25, 0.75], dtype=np.float32).tobytes()
    header = b'{"model_name": "m", "outputs": [{"name": "p", "shape": [2], "datatype": "FP32", '
    header += b'"parameters": {"binary_data_size": 8}}]}'
    rec = process(
        make_capturer,
        response_body=header + raw,
        response_headers=[("Inference-Header-Content-Length", str(len(header)))],
    )
    assert rec.protocol == "v2-binary"
    assert rec.decode_error is None
    assert rec.outputs[0].data.tolist() == [0.25, 0.75]
    assert [t.name for t in rec.inputs] == ["x"]  # the JSON request alongside still decodes
