"""The Open Inference Protocol generate extension: ``/v2/models/{name}[/versions/{v}]/generate`` and
``generate_stream``.

Sources: Triton's "Generate Extension" (triton-inference-server/server ``docs/protocol/extension_generate.md``):
the request is a JSON object with ``text_input`` and optional ``parameters`` (or parameters as top-level fields);
the answer has ``model_name``, ``model_version`` and ``text_output``; ``generate_stream`` answers with
server-sent events, each ``data`` one such object carrying the next piece of ``text_output``, and an error as
``{"error": ...}``. KServe's Hugging Face runtime adds ``details.finish_reason`` (and TGI-style servers
``details.generated_tokens``), read when present.
"""

from __future__ import annotations

from typing import Any

from infertap.logger.codecs.tensor import json_object
from infertap.logger.errors import CodecError
from infertap.logger.genai.model import GENERATE, Choice, Delta, Generation, Usage
from infertap.logger.genai.openai_api import obj, params_of, string
from infertap.logger.genai.sse import event_object

_SKIP = frozenset({"text_input", "parameters", "id", "model", "stream"})


def decode_request(body: bytes) -> Generation:
    """The request side of a generate call.

    Raises:
        CodecError: not a JSON object, or ``text_input`` missing or not a string.
    """
    doc = json_object(body)
    text = doc.get("text_input")
    if not isinstance(text, str):
        raise CodecError("generate request without a text_input string")
    params = obj(doc.get("parameters"))
    merged = {**{k: v for k, v in doc.items() if k not in _SKIP}, **params}
    stream = merged.pop("stream", doc.get("stream"))
    gen = Generation(api=GENERATE, stream=stream is True, prompts=[text])
    gen.params = params_of(merged, frozenset())
    return gen


def _details(gen: Generation, doc: dict[str, Any], c: Choice) -> None:
    if not gen.model and isinstance(doc.get("model_name"), str):
        gen.model = doc["model_name"]
    if not gen.response_id and isinstance(doc.get("id"), str):
        gen.response_id = doc["id"]
    details = obj(doc.get("details"))
    fr = details.get("finish_reason", doc.get("finish_reason"))
    if isinstance(fr, str):
        c.finish_reason = fr
    tokens = details.get("generated_tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        gen.usage = Usage(gen.usage.prompt_tokens, tokens, gen.usage.total_tokens)


def decode_response(gen: Generation, body: bytes) -> None:
    """Fill ``gen`` from a non-streaming generate answer.

    Raises:
        CodecError: not a JSON object, or ``text_output`` missing (an ``error`` answer says so).
    """
    doc = json_object(body)
    text = doc.get("text_output")
    if not isinstance(text, str):
        if "error" in doc:
            raise CodecError(f"server error: {doc['error']}")
        raise CodecError("generate answer without a text_output string")
    c = Choice(0, text=text)
    gen.choices = [c]
    _details(gen, doc, c)


def apply_event(gen: Generation, data: str, at_s: float | None) -> bool:
    """Apply one ``generate_stream`` event to ``gen``; whether it carried output (non-empty ``text_output``).

    An event that is not a JSON object, or an error event, is appended to ``gen.errors``
    (:func:`~infertap.logger.genai.sse.event_object`).
    """
    gen.events += 1
    doc = event_object(data, gen.events, gen.errors, "text_output")
    if doc is None:
        return False
    if not gen.choices:
        gen.choices.append(Choice(0))
    c = gen.choices[0]
    text = string(doc.get("text_output"))
    c.text += text
    _details(gen, doc, c)
    if text:
        gen.deltas.append(Delta(0, text, at_s))
        return True
    return False
