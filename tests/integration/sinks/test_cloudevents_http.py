"""HTTP CloudEvents sink against a real aiohttp receiver: the events KServe's payload logger sends, and retries."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import numpy as np
import orjson
import pytest

from infertap.logger import batching
from infertap.logger.codecs import datatypes
from infertap.logger.codecs.tensor import Tensor
from infertap.logger.errors import SinkError
from infertap.logger.sinks.cloudevents_http import CloudEventsHttpSink
from infertap.logger.sinks.delivery import SpoolDelivery
from infertap.logger.sinks.segments import Spool
from infertap.logger.sinks.settings import HttpSinkSettings
from tests.integration.sinks.components import CloudEventsReceiver
from tests.integration.sinks.records import batch, captured

pytestmark = pytest.mark.integration

REQUEST, RESPONSE = "org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"


def send(receiver: CloudEventsReceiver, b: object, **kw: object) -> CloudEventsHttpSink:
    sink = CloudEventsHttpSink(HttpSinkSettings(url=receiver.url, **kw))  # type: ignore[arg-type]
    sink.start()
    try:
        sink.write(b)
        sink.flush()
    finally:
        sink.close()
    return sink


def test_events_match_kserve_logger(ce_receiver: CloudEventsReceiver) -> None:
    sink = send(ce_receiver, batch(0, 2), source="http://localhost:8081/")
    assert sink.stats.records_sent == 2
    assert len(ce_receiver.events) == 4
    by_type = {(e.headers["ce-id"], e.headers["ce-type"]): e for e in ce_receiver.events}
    req, resp = by_type[("req-0", REQUEST)], by_type[("req-0", RESPONSE)]
    for e in (req, resp):
        assert e.headers["ce-specversion"] == "1.0"
        assert e.headers["ce-source"] == "http://localhost:8081/"
        assert e.headers["ce-inferenceservicename"] == "iris"
        assert e.headers["ce-namespace"] == "models"
        assert e.headers["ce-component"] == "predictor"
        assert e.headers["ce-endpoint"] == "default"
        assert e.headers["content-type"] == "application/json"
        assert orjson.loads(
            unquote(e.headers["ce-metadata"])
        )  # percent-encoded, as the binding says == {"content-type": ["application/json"]}
    assert req.headers["ce-time"] == "2026-11-21T09:00:00Z"
    # no raw body kept: the V2 body is rebuilt from the decoded tensors
    assert orjson.loads(req.body) == {
        "id": "inf-0",  # the client's V2 id, not the sidecar's request id (that one is the event's ce-id)
        "model_name": "iris",
        "model_version": "1",
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 4], "data": [0.0, 1.0, 2.0, 3.0]}],
    }
    assert orjson.loads(resp.body)["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [0]}]


def test_rebuilt_bodies_keep_the_clients_id_and_tensor_order(ce_receiver: CloudEventsReceiver) -> None:
    fp32 = datatypes.lookup("FP32")
    rec, anonymous = captured(0), captured(1)
    rec.inputs = tuple(
        Tensor.build(n, fp32, (1,), np.array([i], np.float32)) for i, n in enumerate(["zeta", "alpha", "mid"])
    )
    anonymous.inference_id = None
    (b,) = batching.to_batches([rec, anonymous])
    send(ce_receiver, b)
    bodies = {e.headers["ce-id"]: orjson.loads(e.body) for e in ce_receiver.events if e.headers["ce-type"] == REQUEST}
    assert [t["name"] for t in bodies["req-0"]["inputs"]] == ["zeta", "alpha", "mid"]  # as the client sent them
    assert bodies["req-0"]["id"] == "inf-0"
    assert "id" not in bodies["req-1"]  # the client sent none: none is made up


def test_raw_bodies_are_sent_as_they_were(ce_receiver: CloudEventsReceiver) -> None:
    send(ce_receiver, batch(0, 1, body=True))
    bodies = {e.headers["ce-type"]: e.body for e in ce_receiver.events}
    assert bodies == {REQUEST: b'{"inputs": []}', RESPONSE: b'{"outputs": []}'}


def test_v1_records_become_v1_bodies(ce_receiver: CloudEventsReceiver) -> None:
    fp64 = datatypes.lookup("FP64")
    rec = captured(0)
    rec.protocol = "v1"
    rec.inputs = (Tensor.build("instances", fp64, (2, 2), np.array([1.0, 2.0, 3.0, 4.0])),)
    rec.outputs = (Tensor.build("predictions", fp64, (2,), np.array([0.0, 1.0])),)
    (b,) = batching.to_batches([rec])
    send(ce_receiver, b)
    bodies = {e.headers["ce-type"]: orjson.loads(e.body) for e in ce_receiver.events}
    assert bodies == {REQUEST: {"instances": [[1.0, 2.0], [3.0, 4.0]]}, RESPONSE: {"predictions": [0.0, 1.0]}}


def test_server_errors_are_retried_from_the_spool(ce_receiver: CloudEventsReceiver, tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append(batch(0, 3))
    spool.seal()
    sink = CloudEventsHttpSink(HttpSinkSettings(url=ce_receiver.url))
    delivery = SpoolDelivery(spool, sink)
    ce_receiver.status = 503
    with pytest.raises(SinkError, match="HTTP 503"):
        delivery.deliver_pending()
    assert len(spool.segments()) == 1
    ce_receiver.status = 200
    assert delivery.deliver_pending() == 1
    assert sorted(ce_receiver.request_ids()) == ["req-0", "req-1", "req-2"]
    delivery.stop(grace_s=5)


def test_rejected_events_are_dropped_not_retried(ce_receiver: CloudEventsReceiver) -> None:
    ce_receiver.status = 400
    sink = send(ce_receiver, batch(0, 2))
    assert sink.stats.records_dropped == 2
    assert sink.stats.records_sent == 0


def test_mode_request_sends_only_request_events(ce_receiver: CloudEventsReceiver) -> None:
    rec = captured(0)
    rec.capture_mode = "request"
    (b,) = batching.to_batches([rec])
    send(ce_receiver, b)
    assert [e.headers["ce-type"] for e in ce_receiver.events] == [REQUEST]
