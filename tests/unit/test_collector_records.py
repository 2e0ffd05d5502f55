"""Pairs to records (protocol from the content, nulls for what events lack, credentials never written) and halves
joined by id in the reader."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter

from infertap.drift.reader import Window, open_scan
from infertap.logger import batching
from infertap.logger.collector.events import Half, Side
from infertap.logger.collector.join import is_half, join_halves
from infertap.logger.collector.pairing import Outcome, Pair
from infertap.logger.collector.records import RecordBuilder, protocol_of
from infertap.logger.sinks.file import FileSink

V2_REQ = orjson.dumps({"id": "inf-1", "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
V2_RESP = orjson.dumps(
    {"model_name": "iris", "outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [2]}]}
)


def half(rid: str, side: Side, body: bytes, t: int, **kw: object) -> Half:
    return Half(id=rid, side=side, time_unix_ns=t, received_unix_ns=t, source="/s", content_type="application/json",
                body=body, inference_service="iris-isvc", namespace="ns", **kw)  # type: ignore[arg-type]  # fmt: skip


def builder() -> RecordBuilder:
    errors = Counter("e", "e", ["protocol"], registry=CollectorRegistry())
    return RecordBuilder(pod="collector-0", keep_raw_bodies=False, decode_errors=errors)


def test_protocol_is_recognised_from_the_content() -> None:
    req = half("a", Side.REQUEST, V2_REQ, 0)
    assert protocol_of(req, response=False) == ("v2", None)
    assert protocol_of(half("a", Side.RESPONSE, V2_RESP, 0), response=True) == ("v2", None)
    assert protocol_of(half("a", Side.REQUEST, b'{"instances": [[1, 2]]}', 0), response=False) == ("v1", None)
    assert protocol_of(half("a", Side.RESPONSE, b'{"predictions": [1]}', 0), response=True) == ("v1", None)
    assert protocol_of(half("a", Side.REQUEST, b"\x00\x01", 0), response=False) == ("other", None)
    binary = half("a", Side.REQUEST, b"{}", 0, metadata={"Inference-Header-Content-Length": ["2"]})
    assert protocol_of(binary, response=False) == ("v2-binary", 2)
    binary.side = Side.RESPONSE  # the metadata is the request's: it says nothing of the response
    assert protocol_of(binary, response=True) == ("other", None)


def test_pair_and_lone_halves_to_records() -> None:
    secret = {"Authorization": ["Bearer x"], "X-Request-Id": ["abc"]}
    req, resp = half("a", Side.REQUEST, V2_REQ, 1_000, metadata=secret), half("a", Side.RESPONSE, V2_RESP, 5_000)
    b = builder()
    full = b.build(Pair(req, resp, Outcome.JOINED, (1, 2)))
    assert (full.request_time_us, full.response_time_us, full.status_code) == (1, 5, 200)
    assert (full.upstream_latency_s, full.total_latency_s) == (None, None)
    assert (full.model_name, full.inference_id, full.protocol, full.pod) == ("iris", "inf-1", "v2", "collector-0")
    assert full.request_headers == [("x-request-id", "abc")]  # credentials never written
    lone = b.build(Pair(req, None, Outcome.TIMED_OUT, (1,)))
    assert (lone.response_time_us, lone.status_code, lone.response_bytes, lone.model_name) == (
        None, None, None, "iris-isvc")  # fmt: skip
    assert lone.capture_mode == "request"
    assert lone.outputs == ()


def test_join_halves_merges_a_request_half_with_its_response_half() -> None:
    b = builder()
    req, resp = half("a", Side.REQUEST, V2_REQ, 1_000), half("a", Side.RESPONSE, V2_RESP, 5_000)
    other = half("b", Side.REQUEST, V2_REQ, 2_000)
    records = [b.build(Pair(req, None, Outcome.TIMED_OUT, (1,))), b.build(Pair(other, None, Outcome.TIMED_OUT, (2,))),
               b.build(Pair(None, resp, Outcome.TIMED_OUT, (3,)))]  # fmt: skip
    whole = b.build(Pair(req, resp, Outcome.JOINED, (1, 2)))
    table = pa.concat_tables([pa.Table.from_batches(batching.to_batches([r])) for r in records],
                             promote_options="default")  # fmt: skip
    joined = join_halves(table)
    assert joined.num_rows == 2
    assert is_half(joined).to_pylist() == [False, True]  # "b" has no partner: it stays a half
    row = joined.to_pylist()[0]
    expected = pa.Table.from_batches(batching.to_batches([whole])).to_pylist()[0]
    assert {k: row[k] for k in expected} == expected  # as if one collector had joined them


def test_the_drift_reader_windows_response_halves_by_their_response_time(tmp_path: Path) -> None:
    """Halves of one window are all read: inputs from request halves, outputs from response halves."""
    b = builder()
    t0 = 1_795_251_600_000_000_000  # 2026-11-21T09:00Z
    records = []
    for i in range(4):
        req = half(f"r{i}", Side.REQUEST, V2_REQ, t0 + i * 1_000_000)
        resp = half(f"r{i}", Side.RESPONSE, V2_RESP, t0 + i * 1_000_000 + 500_000)
        records += [
            b.build(Pair(req, None, Outcome.TIMED_OUT, (1,))),
            b.build(Pair(None, resp, Outcome.TIMED_OUT, (2,))),
        ]
    sink = FileSink(tmp_path, pod="c")
    sink.start()
    for batch in batching.to_batches(records):
        sink.write(batch)
    sink.close()
    start = dt.datetime(2026, 11, 21, 9, tzinfo=dt.UTC)
    got = {}
    for model in ("iris", "iris-isvc"):  # response halves name the V2 model, request halves the InferenceService
        scan = open_scan(str(tmp_path), model, Window(start, start + dt.timedelta(minutes=1)))
        got[model] = pa.Table.from_batches(list(scan.batches(["request_id"])), schema=None).num_rows
    assert got == {"iris": 4, "iris-isvc": 4}
    late = open_scan(str(tmp_path), "iris", Window(start + dt.timedelta(seconds=30), None))
    assert sum(b.num_rows for b in late.batches(["request_id"])) == 0
