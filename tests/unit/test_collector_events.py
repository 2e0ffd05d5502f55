"""KServe logger CloudEvents to halves: binary, structured and batched HTTP modes, Kafka binary mode, bad input."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat

from infertap.logger.collector import events
from infertap.logger.collector.events import EventError, Side
from tests.integration.collector.agent import REQUEST, RESPONSE, Agent

T = dt.datetime(2026, 11, 21, 9, 0, 0, 123456, tzinfo=dt.UTC)
T_NS = 1_795_251_600_123_456_000
BODY = b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1.5,2.5]}]}'


def test_binary_mode_as_kserve_agent_sends_it() -> None:
    agent = Agent(metadata={"X-Request-Id": ["abc"], "Inference-Header-Content-Length": ["17"]},
                  annotations={"team": "fraud"})  # fmt: skip
    headers, body = agent.http(agent.event(REQUEST, "req-1", BODY, time=T))
    assert headers["Ce-Id"] == "req-1"
    assert headers["Ce-Inferenceservicename"] == "iris"
    (half,) = events.from_http(headers, body, received_unix_ns=5)
    assert half.id == "req-1"
    assert half.side is Side.REQUEST
    assert half.body == BODY  # bytes unchanged, not parsed and re-serialised
    assert half.time_unix_ns == T_NS
    assert half.received_unix_ns == 5
    assert (half.inference_service, half.namespace, half.component, half.endpoint) == (
        "iris", "models", "predictor", "default")  # fmt: skip
    assert half.source == "http://localhost:9081/"
    assert half.content_type == "application/json"
    assert half.metadata_value("inference-header-content-length") == "17"
    assert half.annotations == {"team": "fraud"}


def test_recordedtime_wins_over_time_and_old_agents_without_metadata() -> None:
    agent = Agent()
    recorded = "2026-11-21T09:00:01.5Z"
    event = agent.event(RESPONSE, "req-2", b'{"predictions":[1]}', time=T, extra={"recordedtime": recorded})
    headers, body = agent.http(event)
    del headers["Ce-Metadata"]  # agents before KServe 0.11 send no metadata
    (half,) = events.from_http(headers, body)
    assert half.side is Side.RESPONSE
    assert half.time_unix_ns == T_NS - 123_456_000 + 1_500_000_000
    assert half.metadata == {}
    assert half.annotations == {}


def test_structured_and_batched_modes() -> None:
    agent = Agent()
    binary_body = b"\x00\x01\xff"
    e1 = agent.event(REQUEST, "s-1", BODY, time=T)
    e2 = agent.event(RESPONSE, "s-1", binary_body, content_type="application/octet-stream", time=T)
    msg = ce_http.to_structured(e1, JSONFormat())
    (half,) = events.from_http(msg.headers, msg.body)
    assert half.id == "s-1"
    assert orjson.loads(half.body) == orjson.loads(BODY)
    batch = b"[" + JSONFormat().write(e1) + b"," + JSONFormat().write(e2) + b"]"
    halves = events.from_http({"Content-Type": "application/cloudevents-batch+json"}, batch)
    assert [h.side for h in halves] == [Side.REQUEST, Side.RESPONSE]
    assert halves[1].body == binary_body  # data_base64


def test_kafka_binary_mode() -> None:
    agent = Agent(metadata={"X-B3-Traceid": ["t"]})
    headers, value = agent.kafka(agent.event(RESPONSE, "k-1", b'{"outputs":[]}', time=T))
    half = events.from_kafka(headers, None, value)
    assert (half.id, half.side, half.body, half.time_unix_ns) == ("k-1", Side.RESPONSE, b'{"outputs":[]}', T_NS)
    assert half.metadata == {"X-B3-Traceid": ["t"]}


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"Content-Type": "application/json"}, b"{}", "not a CloudEvent"),
        ({"Content-Type": "application/cloudevents+json"}, b"{not json", "not valid JSON"),
        ({"Content-Type": "application/cloudevents-batch+json"}, b"{}", "JSON array"),
        ({"Ce-Id": "1", "Ce-Source": "/x", "Ce-Specversion": "1.0", "Ce-Type": "com.example.other"}, b"",
         "is not 'org.kubeflow.serving.inference.request'"),
        ({"Ce-Source": "/x", "Ce-Specversion": "1.0", "Ce-Type": REQUEST}, b"", "without a ce-id"),
        ({"Content-Type": "application/cloudevents+json"}, b'{"type": "x"}', "without an id"),
        ({"Ce-Id": "1", "Ce-Source": "/x", "Ce-Specversion": "1.0", "Ce-Type": REQUEST, "Ce-Metadata": "[1]"}, b"",
         "not a JSON object"),
        ({"Ce-Id": "1", "Ce-Source": "/x", "Ce-Specversion": "1.0", "Ce-Type": REQUEST,
          "Ce-Recordedtime": "yesterday"}, b"", "RFC 3339"),
    ],
)  # fmt: skip
def test_malformed_events_say_what_is_wrong(headers: dict[str, str], body: bytes, message: str) -> None:
    with pytest.raises(EventError, match=message):
        events.from_http(headers, body)


def test_half_header_round_trip() -> None:
    agent = Agent(metadata={"A": ["1", "2"]}, annotations={"b": "c"})
    (half,) = events.from_http(*agent.http(agent.event(REQUEST, "r", BODY, time=T)))
    assert events.Half.from_header(orjson.loads(orjson.dumps(half.header())), half.body) == half
