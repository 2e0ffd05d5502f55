"""A pair of KServe logger events (or a lone half) to one record of the record schema, through the sidecar's codecs.

The events carry no URL path, so the protocol is recognised from the content: a side whose ``metadata`` holds
``Inference-Header-Content-Length`` (when the InferenceService lists it in ``logger.metadataHeaders``) is the V2
binary extension; a JSON object whose ``inputs`` (request) / ``outputs`` (response) are V2 tensor objects (with a
``datatype``) is V2; one with ``instances`` / ``inputs`` (request) or ``predictions`` / ``outputs`` (response) is
KServe V1; anything else is ``other`` and is kept raw. The model name is the V2 response's ``model_name``, else the
InferenceService name (KServe names the model after it).

Columns the events do not carry are null (never zero): ``upstream_latency_s`` and ``total_latency_s`` always;
the missing side's time, size and headers on a lone half (``request_time`` null: a response written alone;
``response_time`` null: a request written alone); ``status_code`` on a request written alone (KServe sends
responses of ``200`` answers only, so a response means ``200``). ``method``, ``path``, ``query`` and ``revision``
are empty. ``request_headers`` are the ``metadata`` headers (values joined with ``", "``), credentials
(``Authorization``, cookies, API keys: the sidecar's list) never. Times are the events'
``recordedtime`` (else ``time``, else receipt): docs/collector.md.
"""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from infertap.logger.codecs import registry
from infertap.logger.codecs.registry import InferenceProtocol
from infertap.logger.codecs.tensor import Payload
from infertap.logger.collector.events import Half
from infertap.logger.collector.pairing import Pair
from infertap.logger.collector.settings import CollectorSettings
from infertap.logger.config import ALWAYS_REDACTED_HEADERS
from infertap.logger.errors import CodecError
from infertap.logger.http1 import BINARY_HEADER
from infertap.logger.record import CapturedRecord
from infertap.logger.sinks import factory
from infertap.logger.sinks.base import Sink
from infertap.logger.sinks.metrics import SinkMetrics
from infertap.logger.sinks.spooled import SpooledSink

#: The V2 binary extension's header, as the events' ``metadata`` names it (:data:`.http1.BINARY_HEADER`).
_BINARY_HEADER = BINARY_HEADER.decode("ascii")


def build_sink(settings: CollectorSettings, metrics_registry: CollectorRegistry | None = None) -> Sink:
    """The sink ``settings.sink`` names (:func:`infertap.logger.sinks.factory.build_sink`); spool and sink metrics
    are registered in ``metrics_registry`` when given.

    Raises:
        pydantic.ValidationError: the network sink's or the spool's own settings are invalid.
    """
    sink = factory.build_sink(
        settings.sink, pod=settings.pod(), output_dir=settings.output_dir, max_file_bytes=settings.max_file_bytes
    )
    if metrics_registry is not None and isinstance(sink, SpooledSink):
        SinkMetrics(metrics_registry).track(sink.delivery)
    return sink


def protocol_of(half: Half, *, response: bool) -> tuple[InferenceProtocol, int | None]:
    """The protocol of one side's body (``v1``, ``v2``, ``v2-binary``, ``other``) and its binary header length.

    A binary response cannot be split (its ``Inference-Header-Content-Length`` is a response header, which the
    events do not carry): it is ``other`` and kept raw.

    Raises:
        CodecError: ``Inference-Header-Content-Length`` is present but not a non-negative integer.
    """
    # metadata holds request headers (on both events): the response's own binary header is never in the event
    header = None if response else half.metadata_value(_BINARY_HEADER)
    if header is not None:
        value = header.strip()
        if not (value.isdigit() and len(value) <= 18):
            raise CodecError(f"Inference-Header-Content-Length {value!r} is not a non-negative integer")
        return InferenceProtocol.V2_BINARY, int(value)
    try:
        doc = orjson.loads(half.body)
    except orjson.JSONDecodeError:
        return InferenceProtocol.OTHER, None
    if not isinstance(doc, dict):
        return InferenceProtocol.OTHER, None
    tensors = doc.get("outputs" if response else "inputs")
    if (
        isinstance(tensors, list)
        and all(isinstance(t, dict) and "datatype" in t for t in tensors)
        and (tensors or "model_name" in doc)
    ):
        return InferenceProtocol.V2, None
    if any(k in doc for k in (("predictions", "outputs") if response else ("instances", "inputs"))):
        return InferenceProtocol.V1, None
    return InferenceProtocol.OTHER, None


class RecordBuilder:
    """Builds records from pairs.

    Args:
        pod: the collector's pod name (written in ``pod``; the events do not say which pod sent them).
        keep_raw_bodies: keep raw bodies even when they decode (they are always kept when they do not).
        decode_errors: counter of undecodable payloads, labelled by protocol.
    """

    def __init__(self, *, pod: str, keep_raw_bodies: bool, decode_errors: Counter) -> None:
        self.pod = pod
        self.keep_raw_bodies = keep_raw_bodies
        self.decode_errors = decode_errors

    def build(self, pair: Pair) -> CapturedRecord:
        """The record of ``pair`` (never raises on bad payloads: they are kept raw with ``decode_error``)."""
        req, resp = pair.request, pair.response
        first = req or resp
        assert first is not None
        errors: list[str] = []
        protocols: list[InferenceProtocol] = []
        request = self._decode(req, False, errors, protocols)
        response = self._decode(resp, True, errors, protocols)
        decoded = [p for p in protocols if p != InferenceProtocol.OTHER]
        protocol = (
            InferenceProtocol.V2_BINARY
            if InferenceProtocol.V2_BINARY in protocols
            else next(iter(decoded), InferenceProtocol.OTHER)
        )
        return _record(
            request_id=first.id,
            inference_id=(request.id if request else "") or (response.id if response else "") or None,
            request_time_us=None if req is None else req.time_unix_ns // 1000,
            response_time_us=None if resp is None else resp.time_unix_ns // 1000,
            model_name=(response.model_name if response else "") or first.inference_service,
            model_version=response.model_version if response else "",
            inference_service=first.inference_service,
            namespace=first.namespace,
            component=first.component,
            revision="",
            endpoint=first.endpoint,
            pod=self.pod,
            protocol=protocol,
            method="",
            path="",
            query="",
            status_code=None if resp is None else 200,
            upstream_latency_s=None,
            total_latency_s=None,
            request_bytes=None if req is None else len(req.body),
            response_bytes=None if resp is None else len(resp.body),
            capture_mode="all" if req and resp else first.side.value,
            sample_rate=1.0,
            request_headers=None if req is None else _headers(req),
            response_headers=None,
            error=None,
            decode_error="; ".join(errors) or None,
            request_truncated=False,
            response_truncated=False,
            request_parameters=_params(request),
            response_parameters=_params(response),
            request_body=self._raw(req, request),
            response_body=self._raw(resp, response),
            inputs=request.tensors if request else (),
            outputs=response.tensors if response else (),
        )

    def _raw(self, half: Half | None, payload: Payload | None) -> bytes | None:
        if half is None:
            return None
        return half.body if self.keep_raw_bodies or (half.body and payload is None) else None

    def _decode(
        self, half: Half | None, response: bool, errors: list[str], protocols: list[InferenceProtocol]
    ) -> Payload | None:
        if half is None or not half.body:
            return None
        side = "response" if response else "request"
        protocol: InferenceProtocol = InferenceProtocol.OTHER
        try:
            protocol, header_length = protocol_of(half, response=response)
            protocols.append(protocol)
            if protocol == InferenceProtocol.OTHER:
                return None
            return registry.decode(protocol.codec, half.body, header_length, response=response)
        except CodecError as exc:
            errors.append(f"{side}: {exc}")
            self.decode_errors.labels(protocol).inc()
            return None


def _headers(half: Half) -> list[tuple[str, str]]:
    """The ``metadata`` headers, lower-case, without credentials (:data:`ALWAYS_REDACTED_HEADERS`)."""
    return [(k.lower(), ", ".join(v)) for k, v in half.metadata.items() if k.lower() not in ALWAYS_REDACTED_HEADERS]


def _params(payload: Payload | None) -> str | None:
    if payload is None or not payload.parameters:
        return None
    return orjson.dumps(payload.parameters).decode()


def _record(**columns: Any) -> CapturedRecord:
    return CapturedRecord(**columns)
