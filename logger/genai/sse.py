"""An incremental parser of server-sent events (``text/event-stream``) as relayed, chunk by chunk.

Source: WHATWG HTML Living Standard, section 9.2 "Server-sent events", "Parsing an event stream" and "Interpreting
an event stream": lines end with CRLF, LF or CR; a line starting with ``:`` is a comment; ``field: value`` (one
leading space of the value dropped); ``data`` lines of one event are joined with LF; an empty line dispatches the
event; a leading UTF-8 byte order mark is skipped; an event not ended by an empty line when the stream ends is
discarded (here: counted in :attr:`SSEParser.incomplete`).

The parser never raises on input: bytes that are not UTF-8 are replaced (U+FFFD) and counted in
:attr:`SSEParser.invalid_utf8`, so a malformed stream becomes a recorded decode error, never a broken relay.
A CR at the end of a chunk is held until the next chunk says whether an LF follows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event.

    Attributes:
        data: the ``data`` lines joined with LF (``"[DONE]"`` for OpenAI's end marker).
        event: the ``event`` field, ``""`` when absent (the standard's default type is ``message``).
        id: the ``id`` field of this event, ``None`` when it had none.
        at: the arrival stamp the caller gave the chunk whose bytes completed this event (any unit, e.g.
            monotonic nanoseconds); ``None`` when the caller gave none.
    """

    data: str
    event: str = ""
    id: str | None = None
    at: int | None = None


class SSEParser:
    """Feed relayed chunks in order with :meth:`feed`, then call :meth:`close` once at the end of the stream.

    Attributes:
        comments: comment lines seen (``: ping`` keep-alives included).
        incomplete: 1 when the stream ended inside an event (its lines are discarded), else 0.
        invalid_utf8: lines that held bytes that are not UTF-8.
    """

    __slots__ = ("_buf", "_data", "_event", "_has_data", "_id", "_started", "comments", "incomplete", "invalid_utf8")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._has_data = False
        self._event = ""
        self._id: str | None = None
        self._started = False
        self.comments = 0
        self.incomplete = 0
        self.invalid_utf8 = 0

    def feed(self, chunk: bytes, at: int | None = None) -> list[SSEEvent]:
        """The events that ``chunk`` completes, in order; ``at`` is stamped on each of them."""
        buf = self._buf + chunk if self._buf else chunk
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buf = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        out: list[SSEEvent] = []
        pos = 0
        end = len(buf)
        while True:
            m = _EOL.search(buf, pos)
            if m is None:
                break
            if m.end() == end and m.end() - m.start() == 1 and buf[m.start()] == 0x0D:  # CR, maybe half of CRLF
                break
            self._line(buf[pos : m.start()], out, at)
            pos = m.end()
        self._buf = buf[pos:]
        return out

    def close(self, at: int | None = None) -> list[SSEEvent]:
        """End of stream: a held CR ends its line; an event without its closing empty line is discarded."""
        out: list[SSEEvent] = []
        if self._buf.endswith(b"\r"):
            self._line(self._buf[:-1], out, at)
            self._buf = b""
        if self._buf or self._has_data or self._event or self._id is not None:
            self.incomplete = 1
        self._buf = b""
        self._reset()
        return out

    def _reset(self) -> None:
        self._data = []
        self._has_data = False
        self._event = ""
        self._id = None

    def _line(self, raw: bytes, out: list[SSEEvent], at: int | None) -> None:
        if not raw:
            if self._has_data:
                out.append(SSEEvent("\n".join(self._data), self._event, self._id, at))
            self._reset()
            return
        if raw[0] == 0x3A:  # ':'
            self.comments += 1
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid_utf8 += 1
            line = raw.decode("utf-8", errors="replace")
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = value
        # "retry" and unknown fields carry nothing capture needs


def event_object(
    data: str, number: int, errors: list[str], output_key: str, error_text: Callable[[Any], str] = str
) -> dict[str, Any] | None:
    """One streamed event's ``data`` as a JSON object, or ``None`` after appending why not to ``errors``.

    The rule of both streaming APIs (OpenAI chat/completions, Open Inference Protocol ``generate_stream``): an event
    that is not JSON, not a JSON object, or an error event (an ``error`` member without ``output_key``) is not
    output and is recorded as ``event <number>: ...``.

    Args:
        data: the event's ``data`` field.
        number: the event's number in the stream (1-based), for the message.
        errors: where the reason is appended (``Generation.errors``).
        output_key: the member an output event has (``choices``, ``text_output``).
        error_text: renders the ``error`` member of an error event.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        errors.append(f"event {number}: invalid JSON: {exc}")
        return None
    if not isinstance(doc, dict):
        errors.append(f"event {number}: not a JSON object")
        return None
    if "error" in doc and output_key not in doc:
        errors.append(f"event {number}: server error: {error_text(doc['error'])}")
        return None
    return doc
