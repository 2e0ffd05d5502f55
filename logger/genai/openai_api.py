"""OpenAI-compatible API bodies: requests, non-streaming answers and streamed chunks, reassembled.

Sources: OpenAI API reference, "Chat" (``POST /v1/chat/completions``: request ``messages`` / ``tools`` /
``max_tokens`` / ``max_completion_tokens`` / ``stop`` / ``n`` / ``seed`` / ``stream`` / ``stream_options``; the
``chat.completion`` object; the ``chat.completion.chunk`` object with ``choices[].delta`` carrying ``role``,
``content`` and ``tool_calls[]`` whose ``index`` says which call a fragment extends, ``function.arguments``
arriving in pieces), "Completions" (``text_completion`` objects, ``choices[].text``), "Embeddings"
(``data[].embedding`` as a list of floats, or base64 of little-endian float32 with ``encoding_format=base64``, the
OpenAI Python client's default). A stream ends with ``data: [DONE]``; ``usage`` is present only when the server
sends it (``stream_options.include_usage``; some servers, llama.cpp's among them, ignore that option).
The same bodies are served under KServe's Hugging Face runtime prefix ``/openai/v1/...``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import orjson

from infertap.logger.codecs.tensor import json_object
from infertap.logger.errors import CodecError
from infertap.logger.genai.model import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    Choice,
    Delta,
    Generation,
    Message,
    Params,
    ToolCall,
    Usage,
)
from infertap.logger.genai.sse import event_object

_CONTENT_KEYS = frozenset({"model", "messages", "prompt", "input", "stream"})
_PARAM_KEYS = frozenset({"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n", "seed", "tools"})


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def string(value: Any) -> str:
    """``value`` if it is a string, else ``""``."""
    return value if isinstance(value, str) else ""


def _text(value: Any) -> str:
    """Message content as text: a string, the text parts of a content list joined, ``""`` for none."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _texts(value: Any) -> list[str]:
    """A prompt / input field as a list of texts; token-id prompts kept as their JSON text."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [orjson.dumps(value).decode()]
        return [v if isinstance(v, str) else orjson.dumps(v).decode() for v in value]
    return [] if value is None else [orjson.dumps(value).decode()]


def params_of(doc: dict[str, Any], skip: frozenset[str] = _CONTENT_KEYS) -> Params:
    """The generation parameters of a request object (OpenAI names; shared with the generate extension)."""
    stop = doc.get("stop")
    stops = (
        [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else None
    )
    tools = doc.get("tools")
    other = {k: v for k, v in doc.items() if k not in skip and k not in _PARAM_KEYS}
    return Params(
        max_tokens=_int(doc.get("max_completion_tokens", doc.get("max_tokens"))),
        temperature=_float(doc.get("temperature")),
        top_p=_float(doc.get("top_p")),
        stop=stops,
        n=_int(doc.get("n")),
        seed=_int(doc.get("seed")),
        tools=orjson.dumps(tools).decode() if tools is not None else None,
        other=orjson.dumps(other).decode() if other else None,
    )


def decode_request(api: str, body: bytes) -> Generation:
    """The request side of a call to ``api`` (:data:`CHAT`, :data:`COMPLETION` or :data:`EMBEDDING`).

    Raises:
        CodecError: not a JSON object, or chat ``messages`` that is not a list.
    """
    doc = json_object(body)
    model = doc.get("model")
    gen = Generation(api=api, model=model if isinstance(model, str) else "", stream=doc.get("stream") is True)
    if api == CHAT:
        messages = doc.get("messages")
        if not isinstance(messages, list):
            raise CodecError("chat request without a messages list")
        for m in messages:
            if isinstance(m, dict):
                role = m.get("role")
                gen.messages.append(Message(role if isinstance(role, str) else "", _text(m.get("content"))))
    else:
        gen.prompts = _texts(doc.get("prompt" if api == COMPLETION else "input"))
    gen.params = params_of(doc)
    return gen


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return Usage(
        _int(value.get("prompt_tokens")), _int(value.get("completion_tokens")), _int(value.get("total_tokens"))
    )


def _choice(gen: Generation, index: int) -> Choice:
    for c in gen.choices:
        if c.index == index:
            return c
    c = Choice(index)
    gen.choices.append(c)
    gen.choices.sort(key=lambda x: x.index)
    return c


def _tool_calls(value: Any) -> list[ToolCall]:
    out: list[ToolCall] = []
    for tc in value if isinstance(value, list) else []:
        if not isinstance(tc, dict):
            continue
        fn = obj(tc.get("function"))
        out.append(
            ToolCall(string(tc.get("id")), string(tc.get("type")) or "function", string(fn.get("name")),
                     string(fn.get("arguments")))
        )  # fmt: skip
    return out


def decode_response(gen: Generation, body: bytes) -> None:
    """Fill ``gen`` from a non-streaming answer (chat, completion or embeddings object).

    Raises:
        CodecError: not a JSON object; ``choices`` / ``data`` missing; embedding vectors of different lengths,
            not numbers, or base64 that is not float32.
    """
    doc = json_object(body)
    _envelope(gen, doc)
    if gen.api == EMBEDDING:
        gen.embeddings = _embeddings(doc.get("data"))
        return
    choices = doc.get("choices")
    if not isinstance(choices, list):
        if isinstance(doc.get("error"), dict | str):
            raise CodecError(f"server error: {_error_text(doc['error'])}")
        raise CodecError("answer without a choices list")
    for raw in choices:
        if not isinstance(raw, dict):
            continue
        c = _choice(gen, _int(raw.get("index")) or 0)
        if gen.api == CHAT:
            msg = obj(raw.get("message"))
            c.role = string(msg.get("role")) or None
            c.text = _text(msg.get("content"))
            c.tool_calls = _tool_calls(msg.get("tool_calls"))
        else:
            c.text = string(raw.get("text"))
        fr = raw.get("finish_reason")
        c.finish_reason = fr if isinstance(fr, str) else None


def _envelope(gen: Generation, doc: dict[str, Any]) -> None:
    if not gen.response_id and isinstance(doc.get("id"), str):
        gen.response_id = doc["id"]
    if not gen.model and isinstance(doc.get("model"), str):
        gen.model = doc["model"]
    usage = _usage(doc.get("usage"))
    if usage is not None:
        gen.usage = usage


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or orjson.dumps(err).decode())
    return str(err)


def _embeddings(data: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    if not isinstance(data, list):
        raise CodecError("embeddings answer without a data list")
    rows: list[tuple[int, np.ndarray[Any, np.dtype[np.float32]]]] = []
    for pos, item in enumerate(data):
        if not isinstance(item, dict):
            raise CodecError(f"embedding {pos} is not an object")
        vec = item.get("embedding")
        if isinstance(vec, str):
            try:
                raw = base64.b64decode(vec, validate=True)
            except binascii.Error:
                raise CodecError(f"embedding {pos}: invalid base64") from None
            if len(raw) % 4:
                raise CodecError(f"embedding {pos}: {len(raw)} bytes is not a float32 vector")
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif isinstance(vec, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vec):
            arr = np.asarray(vec, dtype=np.float32)
        else:
            raise CodecError(f"embedding {pos} is neither a list of numbers nor base64")
        index = _int(item.get("index"))
        rows.append((pos if index is None else index, arr))
    rows.sort(key=lambda r: r[0])
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    dims = {r[1].size for r in rows}
    if len(dims) != 1:
        raise CodecError(f"embedding vectors of different lengths: {sorted(dims)}")
    return np.stack([r[1] for r in rows])


def apply_event(gen: Generation, data: str, at_s: float | None) -> bool:
    """Apply one streamed event's ``data`` to ``gen``; whether it carried output (text or a tool-call fragment).

    ``[DONE]`` sets ``gen.done``. An event that is not a JSON object, or an error event, is appended to
    ``gen.errors`` and otherwise ignored. ``at_s`` (arrival, seconds after the request) goes into the delta.
    """
    if data == "[DONE]":
        gen.done = True
        return False
    gen.events += 1
    doc = event_object(data, gen.events, gen.errors, "choices", _error_text)
    if doc is None:
        return False
    _envelope(gen, doc)
    output = False
    for raw in doc.get("choices") or ():
        if not isinstance(raw, dict):
            continue
        index = _int(raw.get("index")) or 0
        c = _choice(gen, index)
        text = ""
        fragment = False
        if gen.api == CHAT:
            delta = obj(raw.get("delta"))
            c.role = string(delta.get("role")) or c.role
            text = string(delta.get("content"))
            fragment = _merge_tool_calls(c, delta.get("tool_calls"))
        else:
            text = string(raw.get("text"))
        c.text += text
        fr = raw.get("finish_reason")
        if isinstance(fr, str):
            c.finish_reason = fr
        if text or fragment:
            output = True
            gen.deltas.append(Delta(index, text, at_s))
    return output


def _merge_tool_calls(c: Choice, value: Any) -> bool:
    """Merge streamed tool-call fragments into ``c`` (by their ``index``); whether any arrived."""
    if not isinstance(value, list) or not value:
        return False
    for frag in value:
        if not isinstance(frag, dict):
            continue
        pos = _int(frag.get("index"))
        pos = len(c.tool_calls) if pos is None else pos
        while len(c.tool_calls) <= pos:
            c.tool_calls.append(ToolCall("", "function", "", ""))
        old = c.tool_calls[pos]
        fn = obj(frag.get("function"))
        c.tool_calls[pos] = ToolCall(
            string(frag.get("id")) or old.id,
            string(frag.get("type")) or old.type,
            old.name + string(fn.get("name")),
            old.arguments + string(fn.get("arguments")),
        )
    return True
