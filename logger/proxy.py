"""The hot path: a transparent HTTP/1.1 reverse proxy in front of one predictor (asyncio protocols + httptools).

Per request it reads the body (up to ``max_body_bytes``), forwards method, target, end-to-end headers and body to
the configured upstream over a pooled keep-alive connection (:mod:`logger.upstream`; never to a host taken from
the request, absolute-form targets included), relays the answer (a body without ``Content-Length`` chunk by chunk
as it arrives), then stamps times and id, updates metrics and hands an :class:`~logger.exchange.Exchange` to the
capture pipeline with the non-blocking :meth:`~logger.pipeline.CapturePipeline.offer`. Nothing is decoded here.

Headers: hop-by-hop fields are dropped in both directions (RFC 9110 section 7.6.1, :mod:`logger.http1`);
``X-Request-Id`` is propagated, or generated (UUID4, hex) when absent, and returned to the client.
``Expect: 100-continue`` is answered here, since the body is read before forwarding.

Answers of the proxy itself, each still captured with its status: 400 (unparseable request, connection closed),
413 (body over ``max_body_bytes``; connection closed), 501 (protocol upgrade, e.g. WebSocket: not supported),
502 (upstream unreachable, connection broken, invalid HTTP), 504 (upstream silent for ``upstream_timeout_s``).
Requests pipelined on one connection are answered in order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import unquote, urlsplit

import httptools

from logger.codecs.registry import route
from logger.exchange import Exchange
from logger.http1 import Headers, chunk, forwardable, response_head, text_headers
from logger.metrics import ProxyMetrics
from logger.pipeline import CapturePipeline
from logger.upstream import UpstreamError, UpstreamPool

_ENDPOINT = {"v1": "v1:predict", "v2": "v2:infer", "other": "other"}
_SKIP_UPSTREAM = frozenset({b"host", b"expect", b"x-request-id"})
_SKIP_CLIENT = frozenset({b"x-request-id"})
_NO_BODY_STATUS = frozenset({204, 304})
_PAUSE_PIPELINED = 16


class _Request:
    """A request as received: raw method, target and headers, body parts."""

    __slots__ = (
        "body",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "queued",
        "request_id",
        "size",
        "start_ns",
        "t0",
        "too_large",
        "upgrade",
        "url",
    )  # fmt: skip

    def __init__(self) -> None:
        self.start_ns = time.time_ns()
        self.t0 = time.perf_counter()
        self.url = b""
        self.method = b""
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.keep_alive = True
        self.expect_continue = False
        self.upgrade = False
        self.request_id = b""
        self.queued = False


class ProxyConfig:
    """What every client connection shares: the upstream pool, the capture pipeline, metrics and limits.

    Args:
        pool: keep-alive connections to the upstream.
        pipeline: the capture pipeline exchanges are offered to.
        metrics: per-request metrics.
        max_body_bytes: largest accepted request body (bytes); larger is answered 413.
        max_capture_bytes: largest streamed body kept for capture (bytes); the relay itself is not limited.
    """

    def __init__(
        self,
        *,
        pool: UpstreamPool,
        pipeline: CapturePipeline,
        metrics: ProxyMetrics,
        max_body_bytes: int,
        max_capture_bytes: int,
    ) -> None:
        self.pool = pool
        self.pipeline = pipeline
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_capture_bytes = max_capture_bytes
        self.connections: set[ClientConnection] = set()
        self.answered = asyncio.Event()  # set whenever a connection finished answering what it had received

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no connection has a request in progress, at most ``timeout_s``; whether they all finished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while any(not c.idle for c in self.connections):
            self.answered.clear()
            try:
                await asyncio.wait_for(self.answered.wait(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                return False
        return True


class ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order, one at a time."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[_Request] = deque()
        self.current: _Request | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self._can_write: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.config.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self.current is not None:
                self.current.upgrade = True
                self.on_message_complete()
        except httptools.HttpParserError as exc:
            self._reject_unparseable(str(exc))

    @property
    def idle(self) -> bool:
        """No request being read, waiting or answered."""
        return self.task is None and not self.pending and self.current is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.config.connections.discard(self)
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        self._can_write = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None

    # --- httptools callbacks ------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.current = _Request()

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name, value))

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        assert self.transport is not None
        req.method = self.parser.get_method()
        req.keep_alive = self.parser.should_keep_alive()
        limit = self.config.max_body_bytes
        for name, value in req.headers:
            low = name.lower()
            if low == b"content-length" and value.isdigit() and int(value) > limit:
                req.too_large = True
            elif low == b"expect" and value.lower() == b"100-continue":
                req.expect_continue = True
            elif low == b"x-request-id" and value:
                req.request_id = value
        if req.too_large:
            req.keep_alive = False
            self.transport.pause_reading()  # answer 413 now, without reading the body
            self._enqueue(req)
        elif req.expect_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        req = self.current
        assert req is not None
        if req.too_large:
            return
        req.size += len(body)
        if req.size > self.config.max_body_bytes:
            req.too_large = True
            req.keep_alive = False
            req.body.clear()
        else:
            req.body.append(body)

    def on_message_complete(self) -> None:
        req = self.current
        if req is None:
            return
        self.current = None
        if not req.queued:
            self._enqueue(req)

    def _enqueue(self, req: _Request) -> None:
        req.queued = True
        self.pending.append(req)
        if len(self.pending) >= _PAUSE_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        if self.task is None:
            self.task = self.loop.create_task(self._serve())

    # --- answering ----------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self.pending and not self.closed:
                req = self.pending.popleft()
                await self._exchange(req)
                if not req.keep_alive or req.upgrade:
                    if self.transport is not None:
                        self.transport.close()
                    return
                if len(self.pending) < _PAUSE_PIPELINED and self.transport is not None and not req.too_large:
                    self.transport.resume_reading()
        finally:
            self.task = None
            self.config.answered.set()

    async def _exchange(self, req: _Request) -> None:
        cfg = self.config
        rid = req.request_id or uuid.uuid4().hex.encode()
        raw_path, _, raw_query = _origin_form(req.url).partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        ex = Exchange(
            request_id=rid.decode("latin-1"), start_unix_ns=req.start_ns, end_unix_ns=0, upstream_s=0.0,
            total_s=0.0, method=req.method.decode("latin-1"), path=path, query=raw_query.decode("latin-1"),
            status_code=0, request_headers=text_headers(req.headers), response_headers=[], request_body=b"",
            response_body=b"", request_body_bytes=req.size, response_body_bytes=0,
        )  # fmt: skip
        cfg.metrics.in_flight.inc()
        try:
            if req.too_large:
                self._error(ex, rid, 413, f"request body exceeds {cfg.max_body_bytes} bytes", close=True)
            elif req.upgrade:
                self._error(ex, rid, 501, "protocol upgrade is not supported by the sidecar", close=True)
            else:
                await self._forward(req, ex, rid)
        finally:
            ex.total_s = time.perf_counter() - req.t0
            ex.end_unix_ns = req.start_ns + int(ex.total_s * 1e9)
            cfg.metrics.in_flight.dec()
            where = route(ex.path)
            cfg.metrics.observe_request(
                where.model_name, ex.status_code, _ENDPOINT[where.protocol], ex.total_s, ex.upstream_s,
                ex.request_body_bytes, ex.response_body_bytes,
            )  # fmt: skip
            cfg.pipeline.offer(ex)

    async def _forward(self, req: _Request, ex: Exchange, rid: bytes) -> None:
        cfg = self.config
        body = b"".join(req.body)
        ex.request_body = body
        headers = forwardable(req.headers, _SKIP_UPSTREAM)
        headers.append((b"X-Request-Id", rid))
        t_up = time.perf_counter()
        try:
            resp = await cfg.pool.send(req.method, _origin_form(req.url), headers, body)
            ex.status_code = resp.status
            ex.response_headers = text_headers(resp.headers)
            out = forwardable(resp.headers, _SKIP_CLIENT)
            out.append((b"X-Request-Id", rid))
            if not req.keep_alive:
                out.append((b"Connection", b"close"))
            if req.method == b"HEAD" or resp.status in _NO_BODY_STATUS:
                if resp.content_length is not None:
                    out.append((b"Content-Length", b"%d" % resp.content_length))
                ex.upstream_s = time.perf_counter() - t_up
                self._write(response_head(resp.status, out))
                return
            if resp.content_length is not None and resp.content_length <= cfg.max_capture_bytes:
                payload = await resp.read()
                ex.upstream_s = time.perf_counter() - t_up
                ex.response_body = payload
                ex.response_body_bytes = len(payload)
                out.append((b"Content-Length", b"%d" % len(payload)))
                self._write(response_head(resp.status, out) + payload)
                return
        except TimeoutError:
            ex.upstream_s = time.perf_counter() - t_up
            self._error(ex, rid, 504, "upstream timed out")
            return
        except UpstreamError as exc:
            ex.upstream_s = time.perf_counter() - t_up
            self._error(ex, rid, 502, f"upstream error: {exc}")
            return
        await self._relay_stream(resp.status, out, resp.iter_chunks(), ex, t_up, resp.content_length)

    async def _relay_stream(
        self,
        status: int,
        out: Headers,
        chunks: AsyncIterator[bytes],
        ex: Exchange,
        t_up: float,
        length: int | None,
    ) -> None:
        """Relay a body chunk by chunk as it arrives, capturing up to ``max_capture_bytes``.

        ``length`` is the declared ``Content-Length`` of a body too large to hold for capture (kept as is), or
        ``None`` for a body of unknown length (relayed with chunked encoding).
        """
        cap = self.config.max_capture_bytes
        framed = length is None
        out.append((b"Transfer-Encoding", b"chunked") if framed else (b"Content-Length", b"%d" % (length or 0)))
        self._write(response_head(status, out))
        kept: list[bytes] = []
        size = 0
        try:
            async for data in chunks:
                if self.closed:
                    ex.error = "client disconnected during the stream"
                    break
                self._write(chunk(data) if framed else data)
                if size < cap:
                    kept.append(data[: cap - size])
                size += len(data)
                if self._can_write is not None:
                    await self._can_write
            else:
                if framed:
                    self._write(chunk(b""))
        except (UpstreamError, TimeoutError) as exc:
            ex.error = f"upstream stream broken: {exc}"
            if self.transport is not None:
                self.transport.abort()  # the client must not take a cut body for a whole one
        ex.upstream_s = time.perf_counter() - t_up
        ex.response_body = b"".join(kept)
        ex.response_body_bytes = size
        ex.response_truncated = size > cap

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _error(self, ex: Exchange, rid: bytes, status: int, message: str, *, close: bool = False) -> None:
        ex.status_code = status
        ex.error = message
        body = message.encode()
        ex.response_body = body
        ex.response_body_bytes = len(body)
        headers: Headers = [
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Content-Length", b"%d" % len(body)),
            (b"X-Request-Id", rid),
        ]
        if close:
            headers.append((b"Connection", b"close"))
        self._write(response_head(status, headers) + body)

    def _reject_unparseable(self, reason: str) -> None:
        """Answer 400 to a request httptools cannot parse, capture it, and close the connection."""
        req = self.current or _Request()
        self.current = None
        req.keep_alive = False
        ex = Exchange(
            request_id=uuid.uuid4().hex, start_unix_ns=req.start_ns, end_unix_ns=time.time_ns(), upstream_s=0.0,
            total_s=time.perf_counter() - req.t0, method=req.method.decode("latin-1"),
            path=_origin_form(req.url).partition(b"?")[0].decode("latin-1"), query="", status_code=400,
            request_headers=text_headers(req.headers), response_headers=[], request_body=b"",
            response_body=b"", request_body_bytes=req.size, response_body_bytes=0, error=f"bad request: {reason}",
        )  # fmt: skip
        self._write(response_head(400, [(b"Content-Length", b"0"), (b"Connection", b"close")]))
        if self.transport is not None:
            self.transport.close()
        self.config.metrics.observe_request("", 400, "other", ex.total_s, 0.0, req.size, 0)
        self.config.pipeline.offer(ex)


def _origin_form(url: bytes) -> bytes:
    """The origin-form target (path and query) of a request target; absolute-form loses scheme and host."""
    if url.startswith(b"/"):
        return url
    parts = urlsplit(url.decode("latin-1"))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target.encode("latin-1")
