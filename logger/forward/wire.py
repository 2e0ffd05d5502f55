"""The forward protocol's wire format, version 1 (docs/forward-protocol.md), in msgpack.

A **frame** is one exchange as the sidecar saw it, after sampling and after header and query-string redaction, as
a msgpack array of :data:`FRAME_FIELDS` in that order (positional: no field names on the wire). A **batch** is a
msgpack map ``{"v": 1, "meta": {...}, "frames": [bin, ...]}``: the frames stay the bytes the sidecar's spool
holds, so the sidecar never re-encodes one. ``meta`` carries the pod's identity and capture settings
(:func:`meta_of`), which the collector needs to build the same records the sidecar would have built locally.

Only the standard library and msgpack are imported here: this module runs in the forward-mode sidecar, which never
loads NumPy or pyarrow.
"""

from __future__ import annotations

from typing import Any

import msgpack

from infertap.logger.errors import InfertapError
from infertap.logger.exchange import Exchange
from infertap.logger.routing import route

#: Version of the wire format; the collector refuses other versions with 400.
VERSION = 1
#: Path of the collector's forward endpoint (HTTP POST of one batch).
BATCH_PATH = "/forward/v1/batches"
#: Content type of a batch.
CONTENT_TYPE = "application/x-infertap-forward+msgpack; version=1"
#: A frame's fields, in order (docs/forward-protocol.md has their types and units).
FRAME_FIELDS = (
    "request_id", "start_unix_ns", "end_unix_ns", "upstream_s", "total_s", "method", "path", "query",
    "status_code", "request_headers", "response_headers", "request_body", "response_body", "request_body_bytes",
    "response_body_bytes", "request_truncated", "response_truncated", "error", "request_binary_header",
    "response_binary_header", "received_ns", "chunk_arrivals_ns", "chunk_sizes",
)  # fmt: skip
#: ``meta`` keys every batch carries.
META_KEYS = (
    "inference_service", "namespace", "component", "revision", "endpoint", "pod", "capture_mode", "sample_rate",
    "header_allowlist", "redact_json_fields", "keep_raw_bodies", "genai_text", "default_model",
)  # fmt: skip


class WireError(InfertapError):
    """A batch or frame that is not version-1 forward protocol (the collector answers 400 with the message)."""


def pack_frame(
    ex: Exchange,
    query: str,
    request_headers: list[tuple[str, str]],
    response_headers: list[tuple[str, str]],
    request_binary_header: bytes | None,
    response_binary_header: bytes | None,
    *,
    keep_request: bool = True,
    keep_response: bool = True,
) -> bytes:
    """One exchange as a version-1 frame.

    Args:
        ex: the exchange (bodies as kept by the proxy, possibly truncated at the capture cap).
        query: the query string, already redacted.
        request_headers, response_headers: the allow-listed ``(lower-case name, value)`` pairs, already filtered.
        request_binary_header, response_binary_header: raw ``Inference-Header-Content-Length`` values or ``None``.
        keep_request, keep_response: ``False`` leaves that side's body out (capture mode ``response`` /
            ``request``); sizes are still sent.

    Returns:
        The msgpack bytes of the frame (a 23-element array).
    """
    return msgpack.packb(  # type: ignore[no-any-return]
        (
            ex.request_id,
            ex.start_unix_ns,
            ex.end_unix_ns,
            ex.upstream_s,
            ex.total_s,
            ex.method,
            ex.path,
            query,
            ex.status_code,
            request_headers,
            response_headers,
            ex.request_body if keep_request else b"",
            ex.response_body if keep_response else b"",
            ex.request_body_bytes,
            ex.response_body_bytes,
            ex.request_truncated,
            ex.response_truncated,
            ex.error,
            request_binary_header,
            response_binary_header,
            ex.received_ns,
            ex.chunk_arrivals_ns,
            ex.chunk_sizes,
        ),
        use_bin_type=True,
    )


def unpack_frame(frame: bytes) -> Exchange:
    """A frame back to an :class:`Exchange` with its route recomputed (headers as Latin-1 byte pairs).

    Raises:
        WireError: not a version-1 frame.
    """
    try:
        f = msgpack.unpackb(frame, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"frame is not msgpack: {exc}") from exc
    if not isinstance(f, list) or len(f) != len(FRAME_FIELDS):
        raise WireError(f"frame must be an array of {len(FRAME_FIELDS)} fields")
    try:
        ex = Exchange(
            request_id=str(f[0]), start_unix_ns=int(f[1]), end_unix_ns=int(f[2]), upstream_s=float(f[3]),
            total_s=float(f[4]), method=str(f[5]), path=str(f[6]), query=str(f[7]), status_code=int(f[8]),
            request_headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in f[9]],
            response_headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in f[10]],
            request_body=bytes(f[11]), response_body=bytes(f[12]), request_body_bytes=int(f[13]),
            response_body_bytes=int(f[14]), request_truncated=bool(f[15]), response_truncated=bool(f[16]),
            error=str(f[17]), received_ns=int(f[20]),
            chunk_arrivals_ns=None if f[21] is None else [int(x) for x in f[21]],
            chunk_sizes=None if f[22] is None else [int(x) for x in f[22]],
        )  # fmt: skip
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise WireError(f"frame field of the wrong type: {exc}") from exc
    ex.route = route(ex.path, f[18], f[19])
    return ex


def pack_batch(meta: dict[str, Any], frames: list[bytes]) -> bytes:
    """A batch of frames (bytes as :func:`pack_frame` made them) with the pod's ``meta``."""
    return msgpack.packb({"v": VERSION, "meta": meta, "frames": frames}, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_batch(body: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """``(meta, frames)`` of a batch; the frames stay packed.

    Raises:
        WireError: not msgpack, not a map, another version, or ``meta`` / ``frames`` missing or mistyped.
    """
    try:
        batch = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"batch is not msgpack: {exc}") from exc
    if not isinstance(batch, dict):
        raise WireError("batch must be a msgpack map")
    if batch.get("v") != VERSION:
        raise WireError(f"forward protocol version {batch.get('v')!r} not supported (this collector: {VERSION})")
    meta, frames = batch.get("meta"), batch.get("frames")
    if not isinstance(meta, dict) or not isinstance(frames, list) or not all(isinstance(f, bytes) for f in frames):
        raise WireError("batch needs 'meta' (a map) and 'frames' (an array of bin)")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise WireError(f"batch meta lacks {', '.join(missing)}")
    return meta, frames
