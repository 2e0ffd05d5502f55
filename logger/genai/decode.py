"""One generative exchange, request and answer, decoded into a :class:`~infertap.logger.genai.model.Generation`.

Which API an exchange speaks, from its route's endpoint kind (:func:`api_of`):

- ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` (vLLM, llama.cpp, OpenAI) and the same under
  ``/openai`` (KServe's Hugging Face runtime: ``/openai/v1/...``);
- ``/v2/models/{name}[/versions/{v}]/generate`` and ``.../generate_stream`` (Open Inference Protocol generate
  extension).

A streamed answer is given as the relayed chunks with their arrival offsets; events are parsed as the chunks
arrived (:mod:`.sse`), so each event's time is that of the chunk that completed it.
"""

from __future__ import annotations

from collections.abc import Iterable

from infertap.logger.codecs import registry
from infertap.logger.errors import CodecError
from infertap.logger.genai import generate, openai_api
from infertap.logger.genai.model import CHAT, COMPLETION, EMBEDDING, GENERATE, Generation
from infertap.logger.genai.slices import Slicer
from infertap.logger.genai.sse import SSEParser
from infertap.logger.genai.timing import stream_timing

#: The API of each generative endpoint kind of :func:`infertap.logger.codecs.registry.route`.
API_OF_ENDPOINT = {
    registry.OPENAI_CHAT: CHAT,
    registry.OPENAI_COMPLETION: COMPLETION,
    registry.OPENAI_EMBEDDING: EMBEDDING,
    registry.V2_GENERATE: GENERATE,
    registry.V2_GENERATE_STREAM: GENERATE,
}


def api_of(route: registry.Route) -> str | None:
    """The generative API of an exchange from the route it carries (computed once, on the hot path), ``None`` for
    any other endpoint.

    >>> api_of(registry.route("/openai/v1/chat/completions")), api_of(registry.route("/v2/models/m/infer"))
    ('chat', None)
    """
    return API_OF_ENDPOINT.get(route.endpoint)


def decode_request(api: str, body: bytes) -> Generation:
    """The request side of a call to ``api``.

    Raises:
        CodecError: the body is not a request of that API.
    """
    if api == GENERATE:
        return generate.decode_request(body)
    return openai_api.decode_request(api, body)


def decode_answer(gen: Generation, body: bytes) -> None:
    """Fill ``gen`` from a whole (non-streamed) answer body.

    Raises:
        CodecError: the body is not an answer of ``gen.api``.
    """
    if gen.api == GENERATE:
        generate.decode_response(gen, body)
    else:
        openai_api.decode_response(gen, body)


def decode_stream(gen: Generation, chunks: Iterable[tuple[bytes, int | None]], *, truncated: bool = False) -> None:
    """Fill ``gen`` from a streamed answer, relayed as ``(bytes, arrival ns after the request was received)``
    chunks (``None`` for an unknown time), and compute its :class:`~.timing.StreamTiming`.

    Malformed events and a stream cut inside an event end up in ``gen.errors``; nothing raises.
    """
    gen.stream = True
    parser = SSEParser()
    apply = generate.apply_event if gen.api == GENERATE else openai_api.apply_event
    output_ns = gen.output_ns
    last_at: int | None = None
    slicer = Slicer()
    for data, at in chunks:
        last_at = at
        for ev in parser.feed(data, at):
            if apply(gen, ev.data, None if ev.at is None else ev.at * 1e-9) and ev.at is not None:
                output_ns.append(ev.at)
            slicer.tick()  # the GIL goes back to the event loop every SLICE_NS of decoding
    parser.close(last_at)
    gen.comments = parser.comments
    if parser.invalid_utf8:
        gen.errors.append(f"{parser.invalid_utf8} event-stream line(s) not UTF-8")
    if parser.incomplete and not truncated:
        gen.errors.append("event stream ended inside an event")
    if truncated:
        gen.errors.append("event stream truncated at the capture cap")
    gen.timing = stream_timing(0, output_ns, gen.usage.completion_tokens)


def decode(
    api: str,
    request_body: bytes | None,
    answer: bytes | Iterable[tuple[bytes, int | None]] | None,
    *,
    streamed: bool,
    truncated: bool = False,
) -> Generation:
    """Decode a whole exchange: the request (when captured) and the answer (a body, or relayed chunks).

    Args:
        api: from :func:`api_of`.
        request_body: the request body, ``None`` when not captured (then only the answer is decoded).
        answer: the answer body, or its chunks with arrival offsets (ns) when ``streamed``; ``None`` when not
            captured or not successful.
        streamed: the answer is an event stream (``Content-Type: text/event-stream``).
        truncated: the captured answer was cut at the capture cap.

    Raises:
        CodecError: the request, or a whole (non-streamed) answer, is not one of ``api``.
    """
    gen = decode_request(api, request_body) if request_body else Generation(api=api)
    if answer is None:
        return gen
    if streamed:
        chunks = [(answer, None)] if isinstance(answer, bytes) else answer
        decode_stream(gen, chunks, truncated=truncated)
    elif isinstance(answer, bytes):
        if truncated:
            raise CodecError("answer truncated at the capture cap, not decoded")
        gen.stream = False
        decode_answer(gen, answer)
    else:
        decode_answer(gen, b"".join(data for data, _ in answer))
    return gen
