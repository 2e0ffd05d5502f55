"""Redaction before anything is written: headers, query parameters, fields inside JSON bodies.

- Headers: only allow-listed headers are written, and credentials never are (:class:`HeaderFilter`).
- Query strings: the values of secret parameters (``token``, ``X-Amz-Signature`` ...) are replaced
  (:class:`QueryRedactor`).
- JSON bodies: named fields or simple JSON paths (:mod:`infertap.logger.jsonpaths`) are replaced in the decoded
  ``parameters``, in raw bodies kept for records (decode errors included), and a tensor named like a redacted
  field is not stored (:class:`BodyRedactor`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

import orjson

from infertap.logger import jsonpaths
from infertap.logger.config import ALWAYS_REDACTED_HEADERS

#: Distinct raw header names a :class:`HeaderFilter` remembers the verdict of.
_SEEN_NAMES_MAX = 1024


class HeaderFilter:
    """Keeps the headers named in an allow-list, minus :data:`~logger.config.ALWAYS_REDACTED_HEADERS`.

    Args:
        allowed: header names, any case.
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(h.lower() for h in allowed) - ALWAYS_REDACTED_HEADERS
        # raw name as received -> its lower-case text when allowed, else "": the same few names come with every
        # exchange; bounded, as names are the client's choice
        self._seen: dict[bytes, str] = {}

    def __call__(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        """The allowed ``(lower-case name, value)`` pairs of ``headers`` (raw bytes, as received) as text, in order;
        repeated names keep the last. Only the allowed values are decoded (Latin-1: HTTP field values are octets)."""
        kept: dict[str, str] = {}
        seen = self._seen
        for name, value in headers:
            low = seen.get(name)
            if low is None:
                low = self._learn(name)
            if low:
                kept[low] = value.decode("latin-1")
        return list(kept.items())

    def _learn(self, name: bytes) -> str:
        low = name.decode("latin-1").lower()
        kept = low if low in self.allowed else ""
        if len(self._seen) < _SEEN_NAMES_MAX:
            self._seen[name] = kept
        return kept


#: What a redacted query-parameter value becomes (unreserved characters: no escaping needed).
QUERY_REPLACEMENT = "REDACTED"
#: What a redacted JSON value becomes.
JSON_REPLACEMENT = "[REDACTED]"


class QueryRedactor:
    """Replaces the values of secret query parameters, keeping the rest of the query string as it was.

    Args:
        names: parameter names, compared case-insensitively after percent-decoding (``X-Amz-Signature``,
            ``api%5Fkey`` ...).
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(n.strip().lower() for n in names if n.strip())

    def __call__(self, query: str) -> str:
        """``query`` (without ``?``) with the value of every listed parameter replaced by ``REDACTED``.

        Pairs are split on ``&`` and ``;`` (the W3C's recommendation for servers); empty values stay empty.
        """
        if not query or not self.names:
            return query
        parts = _QUERY_SEPARATORS.split(query)
        changed = False
        for i in range(0, len(parts), 2):
            name, _, value = parts[i].partition("=")
            if value and unquote_plus(name).strip().lower() in self.names:
                parts[i] = f"{name}={QUERY_REPLACEMENT}"
                changed = True
        return "".join(parts) if changed else query


_QUERY_SEPARATORS = re.compile(r"([&;])")


class BodyRedactor:
    """Field redaction inside JSON: decoded ``parameters``, tensors, and raw bodies before they are written.

    Args:
        rules: field names and simple JSON paths (:mod:`infertap.logger.jsonpaths`).

    Raises:
        ValueError: a rule outside the supported syntax.
    """

    def __init__(self, rules: Iterable[str]) -> None:
        self.rules = tuple(jsonpaths.parse(r) for r in rules if r.strip())
        self.names = frozenset(r.name for r in self.rules if r.name)
        fallback = sorted({r.last_name for r in self.rules} - {""})
        alternatives = "|".join(re.escape(n.encode()).decode() for n in fallback)
        # In text that is not valid JSON: a quoted member name, then its value (string, possibly cut, or scalar).
        self._fallback = (
            re.compile(rb'("(?i:' + alternatives.encode() + rb')"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,}\]\s]*)')
            if fallback
            else None
        )

    def document(self, doc: dict[str, Any]) -> int:
        """Redact a parsed body (a JSON object) in place; how many values were replaced."""
        return jsonpaths.redact(doc, self.rules, JSON_REPLACEMENT) if self.rules else 0

    def parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """A body's top-level ``parameters``, redacted in place (paths are read from the body's root)."""
        if self.rules and parameters:
            jsonpaths.redact({"parameters": parameters}, self.rules, JSON_REPLACEMENT)
        return parameters

    def keeps_tensor(self, name: str) -> bool:
        """Whether a decoded tensor may be stored: not when its name is a redacted field name (V1 named values)."""
        return name.lower() not in self.names

    def body(self, body: bytes, json_length: int | None = None) -> bytes:
        """A raw body with the selected fields redacted, byte for byte the same when nothing was selected.

        Args:
            body: the raw body.
            json_length: for a V2 binary body, the length of its JSON part (``Inference-Header-Content-Length``);
                the binary part after it is kept, and the redacted JSON is padded with spaces to the same length
                when it is not longer, so that the header still describes the body.

        A body that is not valid JSON has every member named by a rule (a path's last name) replaced in its text.
        """
        if not self.rules or not body:
            return body
        cut = json_length if json_length is not None and 0 <= json_length <= len(body) else len(body)
        text, tail = body[:cut], body[cut:]
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            if self._fallback is None:
                return body
            return self._fallback.sub(rb'\1"' + JSON_REPLACEMENT.encode() + rb'"', text) + tail
        if not jsonpaths.redact(doc, self.rules, JSON_REPLACEMENT):
            return body
        out = orjson.dumps(doc)
        if tail and len(out) <= len(text):
            out = out.ljust(len(text))
        return out + tail
