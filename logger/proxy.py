"""The hot path: a transparent HTTP reverse proxy in front of one predictor.

Per request it reads the body (up to ``max_body_bytes``), forwards method, path, query, end-to-end headers and body
to the configured upstream (never to a host taken from the request), relays the response (streamed responses chunk
by chunk as they arrive), then stamps times and id, updates metrics and hands an :class:`~logger.exchange.Exchange`
to the capture pipeline with a non-blocking :meth:`~logger.pipeline.CapturePipeline.offer`. Nothing is decoded here.

Header handling follows RFC 9110 section 7.6.1: the hop-by-hop fields (``Connection`` and the fields it lists,
``Proxy-Connection``, ``Keep-Alive``, ``TE``, ``Transfer-Encoding``, ``Upgrade``) are not forwarded in either
direction; ``Host`` and ``Content-Length`` are set by the client library for the upstream hop. ``X-Request-Id`` is
propagated, and generated (UUID4 hex) when absent.

Errors the proxy itself answers, each still captured with its status: 413 (body over ``max_body_bytes``), 502
(upstream unreachable or connection broken), 504 (upstream timed out).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from logger.codecs.registry import route
from logger.exchange import Exchange
from logger.metrics import ProxyMetrics
from logger.pipeline import CapturePipeline

HOP_BY_HOP: frozenset[str] = frozenset(
    {"connection", "proxy-connection", "keep-alive", "te", "transfer-encoding", "upgrade", "trailer"}
)
_SKIP_REQUEST = HOP_BY_HOP | {"host", "content-length"}
_SKIP_RESPONSE = HOP_BY_HOP | {"content-length", "date", "server"}
_ENDPOINT = {"v1": "v1:predict", "v2": "v2:infer", "other": "other"}
_STREAM_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl")


def _forwardable(headers: Iterable[tuple[str, str]], skip: frozenset[str], connection: str) -> CIMultiDict[str]:
    listed = {t.strip().lower() for t in connection.split(",")} if connection else set()
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers:
        low = name.lower()
        if low not in skip and low not in listed:
            out.add(name, value)
    return out


class ProxyHandler:
    """The request handler of the sidecar (an ``aiohttp.web`` low-level server handler).

    Args:
        upstream_url: ``scheme://host:port`` of the predictor.
        session: the client session used for every upstream request (connection pooling).
        pipeline: the capture pipeline to offer exchanges to.
        metrics: per-request metrics.
        max_body_bytes: largest accepted request body (bytes); larger is answered 413.
        max_capture_bytes: largest body kept for capture (bytes); streamed responses beyond are truncated in the
            capture only.
    """

    def __init__(
        self,
        *,
        upstream_url: str,
        session: aiohttp.ClientSession,
        pipeline: CapturePipeline,
        metrics: ProxyMetrics,
        max_body_bytes: int,
        max_capture_bytes: int,
    ) -> None:
        self.upstream_url = upstream_url
        self.session = session
        self.pipeline = pipeline
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_capture_bytes = max_capture_bytes

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """Forward ``request`` and relay the answer; never raises for upstream failures."""
        start_ns = time.time_ns()
        t0 = time.perf_counter()
        self.metrics.in_flight.inc()
        headers_in = list(request.headers.items())
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        ex = Exchange(
            request_id=request_id, start_unix_ns=start_ns, end_unix_ns=0, upstream_s=0.0, total_s=0.0,
            method=request.method, path=request.path, query=request.query_string, status_code=0,
            request_headers=headers_in, response_headers=[], request_body=b"", response_body=b"",
            request_body_bytes=0, response_body_bytes=0,
        )  # fmt: skip
        try:
            return await self._handle(request, ex)
        finally:
            ex.total_s = time.perf_counter() - t0
            ex.end_unix_ns = start_ns + int(ex.total_s * 1e9)
            self.metrics.in_flight.dec()
            where = route(ex.path)
            self.metrics.observe_request(
                where.model_name, ex.status_code, _ENDPOINT[where.protocol], ex.total_s,
                ex.upstream_s, ex.request_body_bytes, ex.response_body_bytes,
            )  # fmt: skip
            self.pipeline.offer(ex)

    async def _handle(self, request: web.BaseRequest, ex: Exchange) -> web.StreamResponse:
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            ex.request_body_bytes = declared
            return self._error(ex, 413, f"request body of {declared} bytes exceeds {self.max_body_bytes}")
        body = await self._read_body(request)
        if body is None:
            return self._error(ex, 413, f"request body exceeds {self.max_body_bytes} bytes")
        ex.request_body = body
        ex.request_body_bytes = len(body)
        headers = _forwardable(ex.request_headers, _SKIP_REQUEST, request.headers.get("Connection", ""))
        headers["X-Request-Id"] = ex.request_id
        url = self.upstream_url + request.rel_url.raw_path_qs
        t_up = time.perf_counter()
        try:
            async with self.session.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                out_headers = _forwardable(
                    upstream.headers.items(), _SKIP_RESPONSE, upstream.headers.get("Connection", "")
                )
                out_headers["X-Request-Id"] = ex.request_id
                ex.status_code = upstream.status
                ex.response_headers = list(upstream.headers.items())
                if _is_streamed(upstream):
                    return await self._relay_stream(request, upstream, out_headers, ex, t_up)
                payload = await upstream.read()
                ex.upstream_s = time.perf_counter() - t_up
                ex.response_body = payload
                ex.response_body_bytes = len(payload)
                return web.Response(status=upstream.status, body=payload, headers=out_headers)
        except TimeoutError:
            ex.upstream_s = time.perf_counter() - t_up
            return self._error(ex, 504, "upstream timed out")
        except aiohttp.ClientError as exc:
            ex.upstream_s = time.perf_counter() - t_up
            return self._error(ex, 502, f"upstream error: {type(exc).__name__}: {exc}")

    async def _read_body(self, request: web.BaseRequest) -> bytes | None:
        if request.content_length is not None:
            return await request.content.read() if request.content_length else b""
        parts: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            parts.append(chunk)
        return b"".join(parts)

    async def _relay_stream(
        self,
        request: web.BaseRequest,
        upstream: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        ex: Exchange,
        t_up: float,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        kept: list[bytes] = []
        size = 0
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                if size < self.max_capture_bytes:
                    kept.append(chunk[: self.max_capture_bytes - size])
                size += len(chunk)
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
            ex.error = f"client disconnected during the stream: {exc}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ex.error = f"upstream stream broken: {type(exc).__name__}: {exc}"
        ex.upstream_s = time.perf_counter() - t_up
        ex.response_body = b"".join(kept)
        ex.response_body_bytes = size
        ex.response_truncated = size > self.max_capture_bytes
        return response

    @staticmethod
    def _error(ex: Exchange, status: int, message: str) -> web.Response:
        ex.status_code = status
        ex.error = message
        body = message.encode()
        ex.response_body = body
        ex.response_body_bytes = len(body)
        return web.Response(
            status=status, body=body, content_type="text/plain", headers={"X-Request-Id": ex.request_id}
        )


def _is_streamed(upstream: aiohttp.ClientResponse) -> bool:
    if upstream.content_length is not None:
        return False
    ctype = upstream.headers.get("Content-Type", "")
    return upstream.headers.get("Transfer-Encoding", "").lower() == "chunked" or ctype.startswith(_STREAM_TYPES)


def client_session(*, connect_timeout_s: float, read_timeout_s: float, **kwargs: Any) -> aiohttp.ClientSession:
    """The upstream client session: pooled keep-alive connections, bodies passed through unchanged.

    ``read_timeout_s`` bounds the wait for each read from the upstream (the first byte of the answer included), so a
    long stream that keeps producing is never cut, and a predictor that stalls gets a 504.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0),
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
        **kwargs,
    )
