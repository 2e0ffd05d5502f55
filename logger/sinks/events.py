"""Captured records as CloudEvents, as KServe's payload logger sends them: shared by the HTTP and Kafka sinks.

KServe's logger (``pkg/logger`` of kserve/kserve) sends one CloudEvent per request and one per response: ``type``
``org.kubeflow.serving.inference.request`` / ``.response``, ``id`` the request id, and the extension attributes
``inferenceservicename``, ``namespace``, ``component``, ``endpoint`` and ``metadata``; the names are kept here so
that consumers written for KServe's logger keep working. A ``revision`` extension is added.
KServe's event ``id`` is a transport id (its ``Ce-Id`` header, else a new UUID) while the body goes out as the client
sent it: here the event ``id`` is the record's ``request_id``, and a V2 body rebuilt from the decoded tensors
carries the client's own V2 ``id`` (``inference_id``), none when the client sent none.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from cloudevents.core.v1.event import CloudEvent

from infertap.logger import record

CE_INFERENCE_REQUEST = "org.kubeflow.serving.inference.request"
CE_INFERENCE_RESPONSE = "org.kubeflow.serving.inference.response"
#: KServe's extension attribute names (lower-case alphanumeric, as CloudEvents requires).
INFERENCE_SERVICE_ATTR = "inferenceservicename"
NAMESPACE_ATTR = "namespace"
COMPONENT_ATTR = "component"
ENDPOINT_ATTR = "endpoint"
METADATA_ATTR = "metadata"
REVISION_ATTR = "revision"


@dataclass(frozen=True, slots=True)
class RecordView:
    """One record of a batch as Python values, with its tensor columns."""

    row: dict[str, Any]
    tensors: list[record.TensorColumn]

    def text(self, column: str) -> str:
        """A string column, ``""`` when null."""
        value = self.row.get(column)
        return "" if value is None else str(value)

    def time(self, column: str) -> dt.datetime:
        """A timestamp column as an aware UTC datetime."""
        value = self.row[column]
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC)
        return dt.datetime.fromtimestamp(0, dt.UTC)

    def headers(self, column: str) -> dict[str, str]:
        """A header map column as a dict (empty when null)."""
        return dict(self.row.get(column) or [])

    def tensor_json(self, io: str) -> list[dict[str, Any]]:
        """The ``io`` side's tensors as V2 JSON tensors (``name``, ``datatype``, ``shape``, ``data``)."""
        out = []
        for t in self.tensors:
            value = self.row.get(t.column)
            if t.io != io or value is None:
                continue
            data = value["data"]
            if t.datatype == "BYTES":
                data = [_bytes_json(v) for v in data]
            out.append({"name": t.tensor, "datatype": t.datatype, "shape": value["shape"], "data": data})
        return out

    def v1_body(self, io: str) -> dict[str, Any] | None:
        """A V1 ``{"instances": ...}`` / ``{"predictions": ...}`` body when the record is V1 with one such tensor."""
        key = "instances" if io == record.INPUT else "predictions"
        tensors = self.tensor_json(io)
        if self.row.get("protocol") != "v1" or len(tensors) != 1 or tensors[0]["name"] != key:
            return None
        t = tensors[0]
        nested = np.array(t["data"], dtype=object).reshape(t["shape"]).tolist()
        return {key: nested}


def record_views(batch: pa.RecordBatch) -> Iterator[RecordView]:
    """The records of ``batch`` (record schema) one by one."""
    tensors = record.tensor_columns(batch.schema)
    for row in batch.to_pylist():
        yield RecordView(row, tensors)


def record_json(view: RecordView) -> bytes:
    """A record as a JSON object: every core column (bodies base64 in ``*_body_b64``), ``inputs`` / ``outputs``.

    Timestamps are RFC 3339 UTC strings, header maps objects, tensors V2 JSON tensors (BYTES elements as UTF-8
    strings, or ``{"b64": ...}`` when not UTF-8).
    """
    doc: dict[str, Any] = {}
    for name, value in view.row.items():
        if name not in record.CORE_NAMES:
            continue
        if name in ("request_body", "response_body"):
            doc[f"{name}_b64"] = base64.b64encode(value).decode() if value is not None else None
        elif name in ("request_headers", "response_headers"):
            doc[name] = dict(value) if value is not None else None
        elif isinstance(value, dt.datetime):
            doc[name] = value.astimezone(dt.UTC)
        else:
            doc[name] = value
    doc["inputs"] = view.tensor_json(record.INPUT)
    doc["outputs"] = view.tensor_json(record.OUTPUT)
    return orjson.dumps(doc, option=orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY)


def default_source(view: RecordView) -> str:
    """CloudEvents source of a record when none is configured: its namespace, InferenceService and pod."""
    ns, isvc, pod = view.text("namespace") or "_", view.text("inference_service") or "_", view.text("pod") or "_"
    return f"/namespaces/{ns}/inferenceservices/{isvc}/pods/{pod}"


def serving_extensions(view: RecordView) -> dict[str, str]:
    """KServe's extension attributes of a record, plus ``revision``."""
    return {
        INFERENCE_SERVICE_ATTR: view.text("inference_service"),
        NAMESPACE_ATTR: view.text("namespace"),
        COMPONENT_ATTR: view.text("component"),
        ENDPOINT_ATTR: view.text("endpoint"),
        REVISION_ATTR: view.text("revision"),
    }


def _bytes_json(value: bytes | None) -> str | dict[str, str] | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode()}


# --- the HTTP sink -------------------------------------------------------------------------------------------
def kserve_events(view: RecordView, *, source: str, log_non_ok_responses: bool = True) -> list[CloudEvent]:
    """The request and response events KServe's logger would send for one record (see the module docs)."""
    mode = view.text("capture_mode") or "all"
    req_headers = view.headers("request_headers")
    content_type = req_headers.get("content-type") or "application/json"
    base = {
        "id": view.text("request_id"),
        "source": source or default_source(view),
        "specversion": "1.0",
        **serving_extensions(view),
        METADATA_ATTR: orjson.dumps({k: [v] for k, v in req_headers.items()}).decode(),
    }
    events = []
    sides = [
        (record.INPUT, CE_INFERENCE_REQUEST, "request_body", "request_time", mode in ("all", "request")),
        (record.OUTPUT, CE_INFERENCE_RESPONSE, "response_body", "response_time", mode in ("all", "response")),
    ]
    for io, ce_type, body_col, time_col, wanted in sides:
        if not wanted:
            continue
        if io == record.OUTPUT and view.row.get("status_code") != 200 and not log_non_ok_responses:
            continue
        body = view.row.get(body_col)
        ctype = content_type
        if body is None:
            tensors = view.tensor_json(io)
            if not tensors:
                continue
            doc = view.v1_body(io) or {
                **({"id": view.text("inference_id")} if view.text("inference_id") else {}),
                "model_name": view.text("model_name"),
                **({"model_version": view.text("model_version")} if view.text("model_version") else {}),
                ("inputs" if io == record.INPUT else "outputs"): tensors,
            }
            body, ctype = orjson.dumps(doc), "application/json"
        attrs = {**base, "type": ce_type, "time": view.time(time_col), "datacontenttype": ctype}
        events.append(CloudEvent(attrs, bytes(body)))
    return events
