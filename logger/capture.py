"""The capture stage: from an :class:`infertap.logger.exchange.Exchange` to a :class:`CapturedRecord`.

sample -> keep the sides the capture mode asks for -> redact headers -> decode payloads. A payload that cannot be
decoded still becomes a record: the raw body is kept, the error is written in ``decode_error``, and the
``infertap_capture_decode_errors_total`` counter goes up.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import orjson

from infertap.logger.codecs import registry
from infertap.logger.codecs.tensor import Payload, Tensor
from infertap.logger.config import CaptureMode, ServingIdentity
from infertap.logger.errors import CodecError
from infertap.logger.exchange import Exchange
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.redact import HeaderFilter
from infertap.logger.sampling import Sampler

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DECIMAL = re.compile(r"[0-9]{1,18}")


@dataclass(slots=True)
class CapturedRecord:
    """One row of the record schema (:mod:`infertap.logger.record`) before Arrow encoding.

    Field meanings and units are those of the columns of the same name; ``inputs`` / ``outputs`` become the
    ``input.<name>`` / ``output.<name>`` tensor columns.
    """

    request_id: str
    request_time_us: int
    response_time_us: int
    model_name: str
    model_version: str
    identity: ServingIdentity
    protocol: str
    method: str
    path: str
    query: str
    status_code: int
    upstream_latency_s: float
    total_latency_s: float
    request_bytes: int
    response_bytes: int
    capture_mode: str
    sample_rate: float
    request_headers: list[tuple[str, str]] | None
    response_headers: list[tuple[str, str]] | None
    error: str | None
    decode_error: str | None
    request_truncated: bool
    response_truncated: bool
    request_parameters: str | None
    response_parameters: str | None
    request_body: bytes | None
    response_body: bytes | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @property
    def request_datetime(self) -> dt.datetime:
        """``request_time`` as an aware UTC datetime."""
        return _EPOCH + dt.timedelta(microseconds=self.request_time_us)


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

    def process(self, ex: Exchange) -> CapturedRecord | None:
        """The record of ``ex``, or ``None`` when sampling leaves it out. Never raises on bad payloads."""
        if not self.sampler.keep(ex):
            self.metrics.sampled_out.inc()
            return None
        want_request = self.mode is not CaptureMode.RESPONSE
        want_response = self.mode is not CaptureMode.REQUEST
        route = registry.route(ex.path)
        header_len = _binary_header(ex.request_headers)
        resp_header_len = _binary_header(ex.response_headers)
        protocol = route.protocol
        if protocol == "v2" and (header_len is not None or resp_header_len is not None):
            protocol = "v2-binary"
        errors: list[str] = []
        request = response = None
        if route.protocol != "other":
            if want_request and ex.request_body:
                request = self._decode(route.protocol, ex.request_body, header_len, ex.request_truncated, False, errors)
            if want_response and ex.response_body and 200 <= ex.status_code < 300:
                response = self._decode(
                    route.protocol, ex.response_body, resp_header_len, ex.response_truncated, True, errors
                )
        keep_request_raw = want_request and (self.keep_raw_bodies or (bool(ex.request_body) and request is None))
        keep_response_raw = want_response and (self.keep_raw_bodies or (bool(ex.response_body) and response is None))
        self.metrics.captured.inc()
        return CapturedRecord(
            request_id=ex.request_id,
            request_time_us=ex.start_unix_ns // 1000,
            response_time_us=ex.end_unix_ns // 1000,
            model_name=route.model_name or (response.model_name if response else "") or self.default_model,
            model_version=route.model_version or (response.model_version if response else ""),
            identity=self.identity,
            protocol=protocol,
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
        protocol: str,
        body: bytes,
        header: str | None,
        truncated: bool,
        response: bool,
        errors: list[str],
    ) -> Payload | None:
        side = "response" if response else "request"
        if truncated:
            errors.append(f"{side}: body truncated at the capture cap, not decoded")
            self.metrics.decode_errors.labels(protocol).inc()
            return None
        try:
            if header is None:
                header_len = None
            elif _DECIMAL.fullmatch(header):
                header_len = int(header)
            else:
                raise CodecError(f"Inference-Header-Content-Length {header!r} is not a non-negative integer")
            return registry.decode(protocol, body, header_len, response=response)
        except CodecError as exc:
            errors.append(f"{side}: {exc}")
            self.metrics.decode_errors.labels(protocol).inc()
            return None


_BINARY_HEADER = registry.BINARY_HEADER.encode()


def _binary_header(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The ``Inference-Header-Content-Length`` value, stripped, or ``None`` when absent."""
    for name, value in headers:
        if name.lower() == _BINARY_HEADER:
            return value.decode("latin-1").strip()
    return None


def _params(payload: Payload | None) -> str | None:
    if payload is None or not payload.parameters:
        return None
    return orjson.dumps(payload.parameters).decode()
