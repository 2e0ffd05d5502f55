"""HTTP/1.1 message framing for the proxy's two hops (RFC 9112), on top of httptools' parsers.

Only what a forwarding proxy needs: serialising a request line or status line with headers, and the header rules
of RFC 9110 section 7.6.1 for intermediaries — hop-by-hop fields (``Connection`` and the fields it lists,
``Proxy-Connection``, ``Keep-Alive``, ``TE``, ``Transfer-Encoding``, ``Upgrade``, ``Trailer``) are not forwarded.
Framing fields (``Content-Length``, ``Transfer-Encoding``) are always written anew for each hop.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

Headers = list[tuple[bytes, bytes]]

#: Longest head (request or status line and header block) accepted on either hop, in bytes: a longer request head
#: is answered 431 (RFC 6585 section 5), a longer upstream head fails the exchange.
MAX_HEAD_BYTES = 64 * 1024
#: ``Inference-Header-Content-Length`` (lower-case), the V2 binary tensor extension's header.
BINARY_HEADER = b"inference-header-content-length"

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade", b"trailer"}
)
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()}


def dropped(extra: Iterable[bytes] = ()) -> frozenset[bytes]:
    """The lower-case names :func:`forwardable` drops: hop-by-hop and framing fields and ``extra`` (lower-case).
    Built once, where the caller is set up, not per request."""
    return HOP_BY_HOP | _FRAMING | frozenset(extra)


_NOT_FORWARDED = dropped()


def forwardable(headers: Iterable[tuple[bytes, bytes]], skip: frozenset[bytes] = _NOT_FORWARDED) -> Headers:
    """``headers`` without the fields in ``skip`` (from :func:`dropped`; by default the hop-by-hop and framing
    fields) nor those listed in ``Connection``.

    Names are compared case-insensitively and kept as received. One pass over ``headers`` (a second, over what was
    kept, only when a ``Connection`` field lists other fields).
    """
    kept: Headers = []
    listed: set[bytes] | None = None
    for name, value in headers:
        low = name.lower()
        if low in skip:
            if low == b"connection":
                if listed is None:
                    listed = set()
                listed.update(t.strip().lower() for t in value.split(b","))
        else:
            kept.append((name, value))
    if listed:
        return [(n, v) for n, v in kept if n.lower() not in listed]
    return kept


def _head(parts: list[bytes], headers: Headers) -> bytes:
    """``parts`` (the start line), then the header block and the empty line that ends it."""
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def request_head(method: bytes, target: bytes, headers: Headers) -> bytes:
    """``METHOD target HTTP/1.1`` and the header block, ending with the empty line."""
    return _head([method, b" ", target, b" HTTP/1.1\r\n"], headers)


def response_head(status: int, headers: Headers) -> bytes:
    """``HTTP/1.1 status reason`` and the header block, ending with the empty line."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
    return _head([line], headers)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 section 7.1); ``b""`` gives the last chunk."""
    if not data:
        return b"0\r\n\r\n"
    return b"%x\r\n%s\r\n" % (len(data), data)
