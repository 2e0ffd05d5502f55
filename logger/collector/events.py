"""KServe payload-logger CloudEvents, from an HTTP request or a Kafka message, to :class:`Half` objects.

KServe's agent (``pkg/logger`` of kserve/kserve: ``handler.go`` builds, ``worker.go`` sends) posts one CloudEvent
per request and one per ``200`` response, in HTTP **binary** mode with the CloudEvents Go SDK:

- ``ce-id``: the request id (the request's ``Ce-Id`` header, else a new UUID), the same for both halves;
- ``ce-type``: ``org.kubeflow.serving.inference.request`` or ``org.kubeflow.serving.inference.response``;
- ``ce-source``: the agent's ``--source-uri`` (default ``http://localhost:9081/``); ``ce-specversion`` ``1.0``;
- ``ce-time``: when the agent's worker sent the event (the SDK's ``WithTimeNow``);
- extensions ``ce-inferenceservicename``, ``ce-namespace``, ``ce-component``, ``ce-endpoint`` (``default`` or
  ``canary``), ``ce-metadata`` (JSON object of the request headers listed in ``metadataHeaders``, each a list of
  values; since KServe 0.11) and ``ce-annotations`` (JSON object; recent releases only, absent when empty);
- ``Content-Type``: the **request's** content type, on the response event too;
- the body: the request or response body, unchanged.

Older agents send no ``metadata`` / ``annotations``; some deployments add a ``recordedtime`` extension (RFC 3339)
with the time the exchange was recorded. Times are taken from ``recordedtime``, else ``time``, else the moment the
collector received the event. The events carry no URL path, status code (only 200 responses are sent) or latency.

Structured mode (``application/cloudevents+json``) and batched mode (``application/cloudevents-batch+json``, a JSON
array of structured events) are parsed too; the Kafka binding (Knative's KafkaSink and Kafka broker write binary
mode: ``ce_`` headers, the payload as the value) likewise. Parsing uses the ``cloudevents`` library.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infertap.logger.errors import InfertapError

CE_INFERENCE_REQUEST = "org.kubeflow.serving.inference.request"
CE_INFERENCE_RESPONSE = "org.kubeflow.serving.inference.response"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
RECORDED_TIME_ATTR = "recordedtime"


class Side(StrEnum):
    """Which half of an exchange an event carries (the ``label`` of the ``type`` metric)."""

    REQUEST = "request"
    RESPONSE = "response"


_TYPES = {CE_INFERENCE_REQUEST: Side.REQUEST, CE_INFERENCE_RESPONSE: Side.RESPONSE}


class EventError(InfertapError):
    """A message is not a KServe inference CloudEvent; the message says what is wrong (answered with a 400)."""


@dataclass(slots=True)
class Half:
    """One KServe logger event: the request or the response of one exchange.

    Attributes:
        id: ``ce-id``, the request id shared by both halves.
        side: request or response.
        time_unix_ns: when the exchange side was recorded (``recordedtime``, else ``time``, else received), Unix ns.
        received_unix_ns: when the collector received the event, Unix ns.
        source: ``ce-source``.
        content_type: ``Content-Type`` / ``datacontenttype`` (KServe: the request's, on both halves), ``""`` if none.
        body: the payload bytes, unchanged.
        inference_service, namespace, component, endpoint: KServe's extensions (``""`` when absent).
        metadata: the ``metadata`` extension, header name to values (empty when absent or not a JSON object).
        annotations: the ``annotations`` extension (empty when absent).
    """

    id: str
    side: Side
    time_unix_ns: int
    received_unix_ns: int
    source: str
    content_type: str
    body: bytes
    inference_service: str = ""
    namespace: str = ""
    component: str = ""
    endpoint: str = ""
    metadata: dict[str, list[str]] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        """Approximate memory held by this half (body plus a fixed overhead), for the pairing window's bound."""
        return len(self.body) + 512

    def header(self) -> dict[str, Any]:
        """Everything but the body, as JSON-serialisable values (the journal's frame header)."""
        return {
            "id": self.id,
            "side": self.side.value,
            "t": self.time_unix_ns,
            "r": self.received_unix_ns,
            "source": self.source,
            "ct": self.content_type,
            "isvc": self.inference_service,
            "ns": self.namespace,
            "comp": self.component,
            "ep": self.endpoint,
            "md": self.metadata,
            "ann": self.annotations,
        }

    @classmethod
    def from_header(cls, header: Mapping[str, Any], body: bytes) -> Half:
        """The half whose :meth:`header` is ``header``. Raises ``KeyError`` / ``ValueError`` on a foreign header."""
        return cls(
            id=str(header["id"]),
            side=Side(header["side"]),
            time_unix_ns=int(header["t"]),
            received_unix_ns=int(header["r"]),
            source=str(header["source"]),
            content_type=str(header["ct"]),
            body=body,
            inference_service=str(header["isvc"]),
            namespace=str(header["ns"]),
            component=str(header["comp"]),
            endpoint=str(header["ep"]),
            metadata=dict(header["md"]),
            annotations=dict(header["ann"]),
        )

    def metadata_value(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive) in ``metadata``, or ``None``."""
        lower = name.lower()
        for key, values in self.metadata.items():
            if key.lower() == lower and values:
                return values[0]
        return None


class _RawData(JSONFormat):
    """The JSON event format, but binary-mode data is kept as the bytes received (the codecs decode them)."""

    def read_data(self, body: bytes, datacontenttype: str | None) -> bytes | None:
        return body


_RAW = _RawData()
_JSON = JSONFormat()


def from_http(headers: Mapping[str, str], body: bytes, received_unix_ns: int | None = None) -> list[Half]:
    """The events of one HTTP request: binary mode (``ce-*`` headers), structured or batched mode.

    Args:
        headers: the request headers (any case).
        body: the request body.
        received_unix_ns: receive time (default: now).

    Raises:
        EventError: not a CloudEvent, not a KServe inference event type, or a malformed attribute.
    """
    received = time.time_ns() if received_unix_ns is None else received_unix_ns
    lower = {k.lower(): v for k, v in headers.items()}
    content_type = lower.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if any(k.startswith("ce-") for k in lower):
            if not lower.get("ce-id"):
                raise EventError("binary-mode event without a ce-id header (the request id)")
            return [_half(ce_http.from_binary(ce_http.HTTPMessage(lower, body), _RAW, CloudEvent), received)]
        if content_type == BATCH_CONTENT_TYPE:
            items = orjson.loads(body)
            if not isinstance(items, list):
                raise EventError("a batched CloudEvents body must be a JSON array")
            return [_structured(item, received) for item in items]
        if content_type == STRUCTURED_CONTENT_TYPE:
            return [_structured(orjson.loads(body), received)]
    except EventError:
        raise
    except orjson.JSONDecodeError as exc:
        raise EventError(f"body is not valid JSON: {exc}") from None
    except Exception as exc:  # the library's validation errors (missing id, bad specversion ...)
        raise EventError(f"not a valid CloudEvent: {exc}") from None
    raise EventError(
        "not a CloudEvent: no ce-* headers (binary mode) and Content-Type is neither "
        f"{STRUCTURED_CONTENT_TYPE} nor {BATCH_CONTENT_TYPE}"
    )


def from_kafka(
    headers: Iterable[tuple[str, bytes]], key: bytes | None, value: bytes, received_unix_ns: int | None = None
) -> Half:
    """The event of one Kafka record: binary mode (``ce_*`` headers) or structured mode (``content-type`` header).

    Raises:
        EventError: as :func:`from_http`.
    """
    received = time.time_ns() if received_unix_ns is None else received_unix_ns
    hdrs = {k: v for k, v in headers}
    message = ce_kafka.KafkaMessage(headers=hdrs, key=key, value=value)
    try:
        if any(k.lower().startswith("ce_") for k in hdrs):
            if not hdrs.get("ce_id"):
                raise EventError("binary-mode event without a ce_id header (the request id)")
            return _half(ce_kafka.from_binary(message, _RAW, CloudEvent), received)
        return _structured(orjson.loads(value), received)
    except EventError:
        raise
    except orjson.JSONDecodeError as exc:
        raise EventError(f"value is not valid JSON: {exc}") from None
    except Exception as exc:
        raise EventError(f"not a valid CloudEvent: {exc}") from None


def _structured(item: object, received: int) -> Half:
    if not isinstance(item, dict):
        raise EventError("a structured CloudEvent must be a JSON object")
    if not item.get("id"):
        raise EventError("structured event without an id (the request id)")
    try:
        event = _JSON.read(CloudEvent, orjson.dumps(item))
    except ValueError as exc:
        raise EventError(f"not a valid structured CloudEvent: {exc}") from None
    return _half(event, received)


def _data_bytes(data: object) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    return orjson.dumps(data)  # structured mode: JSON data arrives parsed


def _ext(event: BaseCloudEvent, name: str) -> str:
    value = event.get_extension(name)
    return "" if value is None else str(value)


def _json_object(event: BaseCloudEvent, name: str) -> dict[str, Any]:
    raw = event.get_extension(name)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        raise EventError(f"extension {name!r} is not JSON: {str(raw)[:80]!r}") from None
    if not isinstance(value, dict):
        raise EventError(f"extension {name!r} is not a JSON object")
    return value


def _time_ns(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise EventError(f"recordedtime {value!r} is not an RFC 3339 timestamp") from None
    if not isinstance(value, dt.datetime):
        raise EventError(f"time {value!r} is not a timestamp")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _half(event: BaseCloudEvent, received: int) -> Half:
    side = _TYPES.get(event.get_type())
    if side is None:
        raise EventError(
            f"event type {event.get_type()!r} is not {CE_INFERENCE_REQUEST!r} or {CE_INFERENCE_RESPONSE!r}"
        )
    event_id = event.get_id()
    if not event_id:
        raise EventError("event has an empty id")
    recorded = _time_ns(event.get_extension(RECORDED_TIME_ATTR))
    if recorded is None:
        recorded = _time_ns(event.get_time())
    metadata = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in
                _json_object(event, "metadata").items()}  # fmt: skip
    annotations = {str(k): str(v) for k, v in _json_object(event, "annotations").items()}
    return Half(
        id=event_id,
        side=side,
        time_unix_ns=received if recorded is None else recorded,
        received_unix_ns=received,
        source=event.get_source(),
        content_type=event.get_datacontenttype() or "",
        body=_data_bytes(event.get_data()),
        inference_service=_ext(event, "inferenceservicename"),
        namespace=_ext(event, "namespace"),
        component=_ext(event, "component"),
        endpoint=_ext(event, "endpoint"),
        metadata=metadata,
        annotations=annotations,
    )
