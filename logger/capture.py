"""The capture stage: from an :class:`~infertap.logger.exchange.Exchange` to a record (:mod:`infertap.logger.record`).

sample -> keep the sides the capture mode asks for -> redact headers -> decode payloads. The protocol, model and
binary header lengths come from the exchange's route (computed once, on the hot path); nothing is detected again
here. A payload that cannot be decoded still becomes a record: the raw body is kept, the error is written in
``decode_error``, and the ``infertap_capture_decode_errors_total`` counter goes up.
"""

from __future__ import annotations

import dataclasses

import orjson

from infertap.logger.codecs import registry
from infertap.logger.codecs.registry import BinaryHeader, InferenceProtocol
from infertap.logger.codecs.tensor import Payload
from infertap.logger.config import CaptureMode, ServingIdentity
from infertap.logger.errors import CodecError
from infertap.logger.exchange import Exchange
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.record import CapturedRecord
from infertap.logger.redact import HeaderFilter
from infertap.logger.sampling import Sampler


class Capturer:
    """Turns exchanges into records, following the capture settings.

    Args:
        mode: which sides to keep (KServe's ``all | request | response``).
        sampler: decides which exchanges are kept.
        headers: the header allow-list filter.
        identity: InferenceService / namespace / component / revision / endpoint / pod written into every record.
        default_model: model name for paths that name none.
        keep_raw_bodies: keep raw bodies even when they decode (they are always kept when they do not).
        metrics: counters to update (sampled out, captured, decode errors).
    """

    def __init__(
        self,
        *,
        mode: CaptureMode,
        sampler: Sampler,
        headers: HeaderFilter,
        identity: ServingIdentity,
        default_model: str,
        keep_raw_bodies: bool,
        metrics: ProxyMetrics,
    ) -> None:
        self.mode = mode
        self.sampler = sampler
        self.headers = headers
        self.identity = identity
        self.default_model = default_model
        self.keep_raw_bodies = keep_raw_bodies
        self.metrics = metrics
        self._identity_columns = dataclasses.asdict(identity)

    def process(self, ex: Exchange) -> CapturedRecord | None:
        """The record of ``ex``, or ``None`` when sampling leaves it out. Never raises on bad payloads."""
        if not self.sampler.keep(ex):
            self.metrics.sampled_out.inc()
            return None
        want_request = self.mode is not CaptureMode.RESPONSE
        want_response = self.mode is not CaptureMode.REQUEST
        route = ex.route
        protocol = route.protocol
        errors: list[str] = []
        request = response = None
        if protocol is not InferenceProtocol.OTHER:
            if want_request and ex.request_body:
                request = self._decode(
                    protocol, ex.request_body, route.request_header, ex.request_truncated, False, errors
                )
            if want_response and ex.response_body and 200 <= ex.status_code < 300:
                response = self._decode(
                    protocol, ex.response_body, route.response_header, ex.response_truncated, True, errors
                )
        keep_request_raw = want_request and (self.keep_raw_bodies or (bool(ex.request_body) and request is None))
        keep_response_raw = want_response and (self.keep_raw_bodies or (bool(ex.response_body) and response is None))
        self.metrics.captured.inc()
        return CapturedRecord(
            request_id=ex.request_id,
            inference_id=(request.id if request else "") or (response.id if response else "") or None,
            request_time_us=ex.start_unix_ns // 1000,
            response_time_us=ex.end_unix_ns // 1000,
            model_name=route.model_name or (response.model_name if response else "") or self.default_model,
            model_version=route.model_version or (response.model_version if response else ""),
            **self._identity_columns,
            protocol=protocol.value,
            method=ex.method,
            path=ex.path,
            query=ex.query,
            status_code=ex.status_code,
            upstream_latency_s=ex.upstream_s,
            total_latency_s=ex.total_s,
            request_bytes=ex.request_body_bytes,
            response_bytes=ex.response_body_bytes,
            capture_mode=self.mode.value,
            sample_rate=self.sampler.rate,
            request_headers=self.headers(ex.request_headers) if want_request else None,
            response_headers=self.headers(ex.response_headers) if want_response else None,
            error=ex.error or None,
            decode_error="; ".join(errors) or None,
            request_truncated=ex.request_truncated,
            response_truncated=ex.response_truncated,
            request_parameters=_params(request),
            response_parameters=_params(response),
            request_body=ex.request_body if keep_request_raw else None,
            response_body=ex.response_body if keep_response_raw else None,
            inputs=request.tensors if request else (),
            outputs=response.tensors if response else (),
        )

    def _decode(
        self,
        protocol: InferenceProtocol,
        body: bytes,
        header: BinaryHeader | None,
        truncated: bool,
        response: bool,
        errors: list[str],
    ) -> Payload | None:
        side = "response" if response else "request"
        codec = protocol.codec
        if truncated:
            errors.append(f"{side}: body truncated at the capture cap, not decoded")
            self.metrics.decode_errors.labels(codec).inc()
            return None
        try:
            if header is not None and header.length is None:
                raise CodecError(f"Inference-Header-Content-Length {header.raw!r} is not a non-negative integer")
            return registry.decode(codec, body, None if header is None else header.length, response=response)
        except CodecError as exc:
            errors.append(f"{side}: {exc}")
            self.metrics.decode_errors.labels(codec).inc()
            return None


def _params(payload: Payload | None) -> str | None:
    if payload is None or not payload.parameters:
        return None
    return orjson.dumps(payload.parameters).decode()
