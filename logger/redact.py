"""Header redaction: only allow-listed headers are written, and credentials never are."""

from __future__ import annotations

from collections.abc import Iterable

from infertap.logger.config import ALWAYS_REDACTED_HEADERS


class HeaderFilter:
    """Keeps the headers named in an allow-list, minus :data:`~logger.config.ALWAYS_REDACTED_HEADERS`.

    Args:
        allowed: header names, any case.
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(h.lower() for h in allowed) - ALWAYS_REDACTED_HEADERS

    def __call__(self, headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        """The allowed ``(lower-case name, value)`` pairs of ``headers`` (raw bytes, as received) as text, in order;
        repeated names keep the last. Only the allowed values are decoded (Latin-1: HTTP field values are octets)."""
        kept: dict[str, str] = {}
        for name, value in headers:
            low = name.decode("latin-1").lower()
            if low in self.allowed:
                kept[low] = value.decode("latin-1")
        return list(kept.items())
