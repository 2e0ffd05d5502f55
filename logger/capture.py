"""The capture stage: from an :class:`~infertap.logger.exchange.Exchange` to a record (:mod:`infertap.logger.record`).

sample -> keep the sides the capture mode asks for -> decode payloads -> redact (headers, query parameters, JSON
fields in parameters, tensors and raw bodies: :mod:`infertap.logger.redact`), before anything leaves this stage.
The protocol, model and binary header values come from the exchange's route (computed once, on the hot path);
nothing is detected again here. A payload that cannot be decoded still becomes a record: the raw body is kept
(redacted), the error is written in ``decode_error``, and the ``infertap_capture_decode_errors_total`` counter
goes up.
"""

from __future__ import annotations

import dataclasses

import orjson

from infertap.logger.codecs import datatypes, registry
from infertap.logger.codecs.registry import InferenceProtocol, binary_length
from infertap.logger.codecs.tensor import Payload, Tensor
from infertap.logger.config import CaptureMode, ServingIdentity
from infertap.logger.errors import CodecError
from infertap.logger.exchange import CLIENT_CLOSED, Exchange
from infertap.logger.genai import decode as genai
from infertap.logger.genai.model import Generation
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.record import CapturedRecord
from infertap.logger.redact import BodyRedactor, HeaderFilter, QueryRedactor
from infertap.logger.sampling import Sampler


class Capturer:
    """Turns exchanges into records, following the capture settings.

    Args:
        mode: which sides to keep (KServe's ``all | request | response``).
        sampler: decides which exchanges are kept.
        headers: the header allow-list filter.
        query: redacts secret query parameters (default: none).
        fields: redacts JSON fields in parameters, tensors and raw bodies (default: none).
        identity: InferenceService / namespace / component / revision / endpoint / pod written into every record.
        default_model: model name for paths that name none.
        keep_raw_bodies: keep raw bodies even when they decode (they are always kept when they do not).
        metrics: counters to update (sampled out, captured, decode errors) and the generative metrics.
        generative_text: keep the text of generative calls (prompts, messages, completions); ``False`` keeps only
            their lengths, counts and timings, and never writes their raw bodies (``INFERTAP_GENAI_TEXT=lengths``).
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
        generative_text: bool = True,
        query: QueryRedactor | None = None,
        fields: BodyRedactor | None = None,
    ) -> None:
        self.generative_text = generative_text
        self.mode = mode
        self.query = query or QueryRedactor(())
        self.fields = fields or BodyRedactor(())
        self.sampler = sampler
        self.headers = headers
        self.identity = identity
        self.default_model = default_model
        self.keep_raw_bodies = keep_raw_bodies
        self.metrics = metrics
        self._identity_columns = dataclasses.asdict(identity)
        self._want_request = mode is not CaptureMode.RESPONSE
        self._want_response = mode is not CaptureMode.REQUEST
        self._mode_column = mode.value

    def process(self, ex: Exchange) -> CapturedRecord | None:
        """The record of ``ex``, or ``None`` when sampling leaves it out. Never raises on bad payloads.

        A generative call is decoded for the generative metrics whether or not sampling keeps it.
        """
        want_request = self._want_request
        want_response = self._want_response
        route = ex.route
        protocol = route.protocol
        errors: list[str] = []
        generation: Generation | None = None
        if protocol.generative:
            generation = self._generation(ex, True, True, errors)
            label = self.metrics.model_label(route.model_name or generation.model)
            self.metrics.genai.observe(generation, label, self.identity.revision)
        if not self.sampler.keep(ex):
            self.metrics.sampled_out.inc()
            return None
        request = response = None
        if generation is not None:
            if not (want_request and want_response):  # the record keeps only the captured side
                errors = []
                generation = self._generation(ex, want_request, want_response, errors, count=False)
            generation.text_redacted = not self.generative_text or bool(self.fields.names & _GENERATIVE_TEXT_FIELDS)
            if generation.params.other and self.fields.rules:
                other = orjson.loads(generation.params.other)
                if self.fields.document(other):
                    generation.params.other = orjson.dumps(other).decode()
        elif protocol is not _OTHER:
            if want_request and ex.request_body:
                request = self._decode(
                    protocol, ex.request_body, route.request_header, ex.request_truncated, False, errors
                )
            if want_response and ex.response_body and 200 <= ex.status_code < 300:
                response = self._decode(
                    protocol, ex.response_body, route.response_header, ex.response_truncated, True, errors
                )
        if generation is not None:
            keep_request_raw = (
                want_request
                and self.generative_text
                and (self.keep_raw_bodies or any(e.startswith("request") for e in errors))
            )
            keep_response_raw = (
                want_response
                and self.generative_text
                and (
                    self.keep_raw_bodies
                    or any(e.startswith("response") for e in errors)
                    or not 200 <= ex.status_code < 300
                )
            )
            outputs = _embedding_tensor(generation)
        else:
            keep_request_raw = want_request and (self.keep_raw_bodies or (bool(ex.request_body) and request is None))
            keep_response_raw = want_response and (
                self.keep_raw_bodies or (bool(ex.response_body) and response is None)
            )
            outputs = response.tensors if response else ()
        self.metrics.captured.inc()
        fields = self.fields
        inputs = request.tensors if request else ()
        if fields.names and not all(map(fields.keeps_tensor, [t.name for t in (*inputs, *outputs)])):
            inputs = tuple(t for t in inputs if fields.keeps_tensor(t.name))
            outputs = tuple(t for t in outputs if fields.keeps_tensor(t.name))
        return CapturedRecord(
            request_id=ex.request_id,
            inference_id=(request.id if request else "") or (response.id if response else "") or None,
            request_time_us=ex.start_unix_ns // 1000,
            response_time_us=ex.end_unix_ns // 1000,
            model_name=route.model_name
            or (response.model_name if response else "")
            or (generation.model if generation else "")
            or self.default_model,
            model_version=route.model_version or (response.model_version if response else ""),
            **self._identity_columns,
            protocol=_PROTOCOL_COLUMN[protocol],
            method=ex.method,
            path=ex.path,
            query=self.query(ex.query),
            status_code=ex.status_code,
            upstream_latency_s=ex.upstream_s,
            total_latency_s=ex.total_s,
            request_bytes=ex.request_body_bytes,
            response_bytes=ex.response_body_bytes,
            capture_mode=self._mode_column,
            sample_rate=self.sampler.rate,
            request_headers=self.headers(ex.request_headers) if want_request else None,
            response_headers=self.headers(ex.response_headers) if want_response else None,
            error=ex.error or None,
            decode_error="; ".join(errors) or None,
            request_truncated=ex.request_truncated,
            response_truncated=ex.response_truncated,
            request_parameters=_params(request, fields),
            response_parameters=_params(response, fields),
            request_body=fields.body(ex.request_body, route.request_length) if keep_request_raw else None,
            response_body=(fields.body(ex.response_body, route.response_length) if keep_response_raw else None),
            inputs=inputs,
            outputs=outputs,
            generation=generation,
        )

    def _generation(
        self, ex: Exchange, want_request: bool, want_response: bool, errors: list[str], *, count: bool = True
    ) -> Generation:
        """Decode a generative exchange (:mod:`infertap.logger.genai`); what cannot be decoded goes to ``errors``.

        The answer is decoded when it is a success, or what was relayed before the client went away (499); an
        event stream (``Content-Type: text/event-stream``) event by event, with the arrival times of its chunks.
        """
        codec = ex.route.protocol.codec
        api = genai.API_OF_ENDPOINT[ex.route.endpoint]
        before = len(errors)
        gen: Generation | None = None
        if want_request and ex.request_body:
            if ex.request_truncated:
                errors.append("request: body truncated at the capture cap, not decoded")
            else:
                try:
                    gen = genai.decode_request(api, ex.request_body)
                except CodecError as exc:
                    errors.append(f"request: {exc}")
        if gen is None:
            gen = Generation(api=api)
        answered = 200 <= ex.status_code < 300 or ex.status_code == CLIENT_CLOSED
        if want_response and ex.response_body and answered:
            if _event_stream(ex.response_headers):
                genai.decode_stream(gen, _chunks(ex), truncated=ex.response_truncated)
                errors.extend(f"response: {e}" for e in gen.errors)
            elif ex.response_truncated:
                errors.append("response: body truncated at the capture cap, not decoded")
            else:
                try:
                    genai.decode_answer(gen, ex.response_body)
                except CodecError as exc:
                    errors.append(f"response: {exc}")
        if count and len(errors) > before:
            self.metrics.decode_errors.labels(codec).inc()
        return gen

    def _decode(
        self,
        protocol: InferenceProtocol,
        body: bytes,
        header: bytes | None,
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
            length = binary_length(header)
            if header is not None and length is None:
                raw = header.strip().decode("latin-1")
                raise CodecError(f"Inference-Header-Content-Length {raw!r} is not a non-negative integer")
            return registry.decode(codec, body, length, response=response)
        except CodecError as exc:
            errors.append(f"{side}: {exc}")
            self.metrics.decode_errors.labels(codec).inc()
            return None


#: Body fields that hold the text of generative calls: a body-field redaction rule naming one of them
#: (``INFERTAP_REDACT_JSON_FIELDS``) leaves the text out of generative records, as ``INFERTAP_GENAI_TEXT=lengths``.
_GENERATIVE_TEXT_FIELDS = frozenset(
    {"messages", "content", "prompt", "input", "text_input", "choices", "text", "delta", "text_output"}
)
_CONTENT_TYPE = b"content-type"
_EVENT_STREAM = b"text/event-stream"
_FP32 = datatypes.lookup("FP32")
_OTHER = InferenceProtocol.OTHER
_PROTOCOL_COLUMN = {p: p.value for p in InferenceProtocol}  # the record's ``protocol`` value, a plain str


def _event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the response headers say ``Content-Type: text/event-stream``."""
    for name, value in headers:
        if name.lower() == _CONTENT_TYPE:
            return value.strip().lower().startswith(_EVENT_STREAM)
    return False


def _chunks(ex: Exchange) -> list[tuple[bytes, int | None]]:
    """The captured response body as relayed: ``(bytes, arrival ns after the request was received)`` chunks."""
    body = ex.response_body
    sizes, arrivals = ex.chunk_sizes, ex.chunk_arrivals_ns
    if sizes is None or arrivals is None or sum(sizes) != len(body):
        return [(body, None)]
    out: list[tuple[bytes, int | None]] = []
    pos = 0
    for size, at in zip(sizes, arrivals, strict=True):
        out.append((body[pos : pos + size], at - ex.received_ns))
        pos += size
    return out


def _embedding_tensor(gen: Generation) -> tuple[Tensor, ...]:
    """The embedding vectors of an embeddings answer as the FP32 tensor ``output.embedding``, ``(inputs, dims)``."""
    if gen.embeddings is None or gen.embeddings.size == 0:
        return ()
    return (Tensor.build("embedding", _FP32, tuple(gen.embeddings.shape), gen.embeddings),)


def _params(payload: Payload | None, fields: BodyRedactor) -> str | None:
    if payload is None or not payload.parameters:
        return None
    return orjson.dumps(fields.parameters(payload.parameters)).decode()
