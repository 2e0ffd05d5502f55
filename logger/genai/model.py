"""What capture keeps of one generative call: the request, the reassembled answer and its stream timing.

These are plain values built off the hot path by :mod:`.openai_api` and :mod:`.generate`; the record schema's
generative columns (docs/record-schema.md) are their flat form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infertap.logger.genai.timing import StreamTiming

#: ``api`` values: OpenAI chat completions, (legacy) completions, embeddings; Open Inference Protocol generate.
CHAT, COMPLETION, EMBEDDING, GENERATE = "chat", "completion", "embedding", "generate"


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message of a request: ``role`` and its text (the text parts of a multi-part content, joined)."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of an answer (OpenAI ``tool_calls[]``): ``arguments`` is the JSON text as the model wrote it."""

    id: str
    type: str
    name: str
    arguments: str


@dataclass(slots=True)
class Choice:
    """One reassembled choice: ``text`` is the whole content (chat ``content``, completion ``text``,
    generate ``text_output``); ``finish_reason`` is ``None`` when the server sent none (a cut stream)."""

    index: int
    role: str | None = None
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed event that carried output: the choice it extends, the text it added (``""`` for a tool-call
    fragment) and its arrival at the sidecar in seconds after the request was received (``None`` when unknown)."""

    choice: int
    text: str
    at_s: float | None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts exactly as the server reported them; ``None`` where it reported nothing (never estimated)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(slots=True)
class Params:
    """Generation parameters of a request; ``None`` where the request set none (the server's default applies).

    Attributes:
        max_tokens: ``max_tokens`` (``max_completion_tokens`` for newer chat clients).
        temperature, top_p: sampling settings.
        stop: stop sequences (a single string becomes a one-element list).
        n: choices asked for.
        seed: sampling seed.
        tools: the ``tools`` list as JSON text.
        other: every other request field that is not content (JSON text), e.g. penalties, ``stream_options``.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    n: int | None = None
    seed: int | None = None
    tools: str | None = None
    other: str | None = None


@dataclass(slots=True)
class Generation:
    """One generative call, request and answer.

    Attributes:
        api: :data:`CHAT`, :data:`COMPLETION`, :data:`EMBEDDING` or :data:`GENERATE`.
        model: the model the request named (else the answer's ``model``; ``""`` when neither did).
        stream: the answer was an event stream.
        messages: chat messages (chat only).
        prompts: completion prompts, embedding inputs or generate ``text_input``, as text (token-id prompts as
            their JSON text).
        params: generation parameters.
        choices: the reassembled answer, by choice index.
        usage: token counts as reported.
        embeddings: float32 ``(inputs, dimensions)`` matrix of an embeddings answer, else ``None``.
        response_id: the answer's ``id``.
        events: data events in the stream (``[DONE]`` excluded); 0 when not streamed.
        deltas: the events that carried output, in arrival order (streams only).
        output_ns: arrival of each event that carried output, ns after the request was received (streams only).
        timing: stream timing statistics (streams only).
        comments: SSE comment lines (keep-alive pings) seen.
        done: the stream ended with ``data: [DONE]`` (OpenAI) — ``False`` for a cut stream.
        errors: what could not be decoded (malformed events, an error event from the server), in order.
        text_redacted: the text (prompts, messages, completions, deltas, stop sequences, tool-call arguments) is
            not to be written; lengths, counts and timings are.
    """

    api: str
    model: str = ""
    stream: bool = False
    messages: list[Message] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    params: Params = field(default_factory=Params)
    choices: list[Choice] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    embeddings: np.ndarray[Any, np.dtype[np.float32]] | None = None
    response_id: str = ""
    events: int = 0
    deltas: list[Delta] = field(default_factory=list)
    output_ns: list[int] = field(default_factory=list)
    timing: StreamTiming | None = None
    comments: int = 0
    done: bool = False
    errors: list[str] = field(default_factory=list)
    text_redacted: bool = False

    def prompt_chars(self) -> int:
        """Characters of the prompt side: every message's text plus every prompt."""
        return sum(len(m.content) for m in self.messages) + sum(len(p) for p in self.prompts)

    def completion_chars(self) -> int:
        """Characters of the answer: every choice's text."""
        return sum(len(c.text) for c in self.choices)
