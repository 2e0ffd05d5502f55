"""The hot path: a transparent HTTP/1.1 reverse proxy in front of one predictor (asyncio protocols + httptools).

Per request it reads the body (up to ``max_body_bytes``), forwards method, target, end-to-end headers and body to
the configured upstream over a pooled keep-alive connection (:mod:`infertap.logger.upstream`; never to a host taken from
the request, absolute-form targets included), relays the answer (a body without ``Content-Length`` chunk by chunk
as it arrives), then stamps times and id, updates metrics and hands an :class:`infertap.logger.exchange.Exchange` to the
capture pipeline with its non-blocking ``offer`` (:class:`infertap.logger.exchange.ExchangeConsumer`: the local
capture pipeline, or the forward-mode framer of :mod:`infertap.logger.forward`). Nothing is decoded here.

Headers: hop-by-hop fields are dropped in both directions (RFC 9110 section 7.6.1, :mod:`infertap.logger.http1`);
``X-Request-Id`` is propagated, or generated (a random UUID, version 4, as 32 hex digits) when absent, and returned
to the client.
``Expect: 100-continue`` is answered here, since the body is read before forwarding.

Answers of the proxy itself, each still captured with its status: 400 (unparseable request, ambiguous framing),
413 (body over ``max_body_bytes``), 431 (request line and headers over ``http1.MAX_HEAD_BYTES``), 501 (protocol
upgrade, e.g. WebSocket, or CONNECT: not supported; an offer of ``h2c`` alone is declined by answering in HTTP/1.1),
each closing the connection; 502 (upstream unreachable, connection
broken, invalid HTTP), 504 (upstream silent for ``upstream_timeout_s``).
Requests pipelined on one connection are answered in order, the proxy's own answers included.

A client that goes away is captured too, with status 499 (nginx's "client closed request") and ``error`` set:
mid-request (nothing forwarded), with requests received but not yet forwarded (each), or before its answer was
whole, e.g. while the predictor works (``error`` then names the status the upstream answered).
The proxy's own answers (400, 413, 431, 501) carry the client's ``X-Request-Id`` when it sent one (as far as the
head was read), in the answer and in the record.
The head limit counts every byte of the request line and header fields, including those of the read that
completes the head (a head and its body often come in one read). A
streamed answer nobody reads any more is abandoned at once (the upstream connection is dropped); a slow reader
pauses reading from the upstream rather than have the proxy buffer the stream.
Trailer fields of a chunked request body are dropped, not merged into the header fields (RFC 9110 section 6.5.1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections import deque
from typing import cast
from urllib.parse import unquote

import httptools

from infertap.logger.exchange import CLIENT_CLOSED, Exchange, ExchangeConsumer
from infertap.logger.http1 import BINARY_HEADER, MAX_HEAD_BYTES, Headers, chunk, dropped, forwardable, response_head
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.routing import route
from infertap.logger.upstream import UpstreamError, UpstreamPool, UpstreamResponse

log = logging.getLogger(__name__)
_SKIP_UPSTREAM = dropped({b"host", b"expect", b"x-request-id"})
_SKIP_CLIENT = dropped({b"x-request-id"})
_NO_BODY_STATUS = frozenset({204, 304})
_PAUSE_PIPELINED = 16
_LINGER_S = 5.0  # longest wait for a client to stop sending after an answer that closes the connection early
_AUTHORITY = re.compile(rb"[^/?#]*")
_FIELD_OVERHEAD = 3  # ":" and CRLF around each header field (a lower bound: no optional whitespace counted)
_UUID4_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)  # clears the version and variant bits
_UUID4_SET = (4 << 76) | (0x8000 << 48)  # version 4, variant RFC 9562
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))  # a forked child draws other ids


class _HeadTooLarge(Exception):
    """Raised from a parser callback when the head outgrows ``MAX_HEAD_BYTES``: stops httptools at once."""


class _Request:
    """A request as received: raw method, target and headers, body parts."""

    __slots__ = (
        "answered",
        "binary_header",
        "body",
        "continue_owed",
        "expect_continue",
        "headers",
        "http10",
        "keep_alive",
        "method",
        "queued",
        "reject",
        "reject_reason",
        "request_id",
        "response_binary_header",
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
        self.binary_header: bytes | None = None  # Inference-Header-Content-Length, as received
        self.response_binary_header: bytes | None = None
        self.queued = False
        self.http10 = False
        self.continue_owed = False  # a 100 Continue to send once the answers before this request are out
        self.answered = False  # the whole answer was handed to a transport still open
        self.reject = 0  # the proxy's own answer (400, 431): not forwarded
        self.reject_reason = ""


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
        pipeline: ExchangeConsumer,
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
        self.upstream: UpstreamResponse | None = None  # the answer being streamed to this client
        self._can_write: asyncio.Future[None] | None = None
        self._in_head = False  # between the start of a request and the end of its header block
        self._head_bytes = 0  # bytes of reads that lay wholly inside the current head (fields not yet complete)
        self._head_parsed = 0  # bytes of the current head's target and complete fields, whatever the reads
        self._head_over = False
        self._done_reading = False  # what follows on this connection is not read (413, 400, 431, upgrade)
        self._h2c_ignored = False  # the request being parsed asks for h2c, which is declined

    # --- asyncio.Protocol ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.config.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._done_reading:
            return
        in_head = self._in_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if not self._h2c_ignored:
                self._stop_reading()  # the upgrade request is queued (501); what follows it is another protocol
                return
            self._h2c_ignored = False  # the request goes on in HTTP/1.1: so does this connection
            self.parser = httptools.HttpRequestParser(self)
            offset = upgrade.args[0] if upgrade.args and isinstance(upgrade.args[0], int) else len(data)
            if offset < len(data):
                self.data_received(data[offset:])
            return
        except httptools.HttpParserError as exc:
            if self._head_over:
                self._reject(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")
            else:
                self._reject(400, f"bad request: {exc}")
            return
        if in_head and self._in_head:  # the whole of ``data`` belongs to one header block
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._reject(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    @property
    def idle(self) -> bool:
        """No request being read, waiting or answered."""
        return self.task is None and not self.pending and self.current is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.config.connections.discard(self)
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        if self.upstream is not None:
            self.upstream.abort("client disconnected")  # nobody reads this stream any more
        req, self.current = self.current, None
        if req is not None and not req.queued:
            self._capture_unanswered(req, "client disconnected before the request was complete")
        self.config.answered.set()  # a drain waiting on this connection is over

    def pause_writing(self) -> None:
        self._can_write = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None

    # --- httptools callbacks ------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.current = _Request()
        self._in_head = True
        self._head_bytes = 0
        self._head_parsed = 0
        self._head_over = False

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # trailer fields (after a chunked body) are dropped, never merged into the header
            assert self.current is not None
            self.current.headers.append((name, value))
            self._head_parsed += len(name) + len(value) + _FIELD_OVERHEAD  # _count_head, inlined (per field)
            if self._head_parsed > MAX_HEAD_BYTES:
                self._head_over = True
                raise _HeadTooLarge

    def _count_head(self, size: int) -> None:
        """Count head bytes as the parser delivers them, also from the read that completes the head."""
        self._head_parsed += size
        if self._head_parsed > MAX_HEAD_BYTES:
            self._head_over = True
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        assert self.transport is not None
        self._in_head = False
        parser = self.parser
        req.method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        req.http10 = parser.get_http_version() == "1.0"
        limit = self.config.max_body_bytes
        for name, value in req.headers:
            low = name.lower()
            if low == b"content-length" and value.isdigit() and int(value) > limit:
                req.too_large = True
            elif low == b"expect" and value.lower() == b"100-continue":
                req.expect_continue = True
            elif low == b"x-request-id" and value:
                req.request_id = value
            elif low == BINARY_HEADER:
                req.binary_header = value
        if parser.should_upgrade():
            if req.method != b"CONNECT" and _only_h2c(req.headers):
                self._h2c_ignored = True  # RFC 9110 section 7.8: a server may ignore Upgrade (curl --http2)
            else:  # WebSocket, CONNECT: answered 501 whatever their length, the connection closed after
                req.upgrade = True
                req.keep_alive = False
                return
        if req.too_large:
            req.keep_alive = False
            self._stop_reading()  # answer 413 now, without reading the body
            self._enqueue(req)
        elif req.expect_continue:
            if self.task is None:  # nothing answered before it: the interim answer can go now
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:
                req.continue_owed = True

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

    def _close(self) -> None:
        """Close after the last answer; with input left unread, linger so that the client can read that answer.

        Closing a socket with unread input resets the connection, and the client may lose the answer (a 413 sent
        while it still uploads): instead, half-close, discard what still comes, close on the client's EOF or
        after ``_LINGER_S``.
        """
        t = self.transport
        if t is None:
            return
        if self._done_reading and t.can_write_eof():
            t.write_eof()
            t.resume_reading()
            self.loop.call_later(_LINGER_S, t.close)
        else:
            t.close()

    def _stop_reading(self) -> None:
        self._done_reading = True
        if self.transport is not None:
            self.transport.pause_reading()

    def _reject(self, status: int, reason: str) -> None:
        """Queue the proxy's own answer to a request it will not forward; nothing after it is read."""
        req = self.current or _Request()
        self.current = None
        self._in_head = False
        self._stop_reading()
        if req.queued:  # a 413 already waits for this one
            return
        if not req.request_id:  # the head may be incomplete: the fields read so far
            req.request_id = _client_request_id(req.headers)
        req.reject, req.reject_reason, req.keep_alive = status, reason, False
        self._enqueue(req)

    # --- answering ----------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self.pending and not self.closed:
                req = self.pending.popleft()
                await self._exchange(req)
                if not req.keep_alive or req.upgrade:
                    self._close()
                    break
                if self._can_write is not None:  # the client reads slowly: answer the next one when it caught up
                    await self._can_write
                if len(self.pending) < _PAUSE_PIPELINED and self.transport is not None and not self._done_reading:
                    self.transport.resume_reading()
            cur = self.current
            if cur is not None and cur.continue_owed and not self.closed:
                cur.continue_owed = False
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        except Exception:  # a bug must not leave the client waiting forever
            log.exception("proxy: answering a request failed")
            if self.transport is not None:
                self.transport.abort()
        finally:
            if self.closed:
                while self.pending:
                    self._capture_unanswered(
                        self.pending.popleft(), "client disconnected before the request was forwarded"
                    )
            self.task = None
            self.config.answered.set()

    def _new_exchange(self, req: _Request, rid: bytes, target: bytes) -> Exchange:
        raw_path, _, raw_query = target.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        return Exchange(
            request_id=rid.decode("latin-1"), start_unix_ns=req.start_ns, end_unix_ns=0, upstream_s=0.0,
            total_s=0.0, method=req.method.decode("latin-1"), path=path, query=raw_query.decode("latin-1"),
            status_code=0, request_headers=req.headers, response_headers=[], request_body=b"",
            response_body=b"", request_body_bytes=req.size, response_body_bytes=0,
        )  # fmt: skip

    def _hand_off(self, req: _Request, ex: Exchange) -> None:
        ex.total_s = time.perf_counter() - req.t0
        ex.end_unix_ns = req.start_ns + int(ex.total_s * 1e9)
        cfg = self.config
        ex.route = where = route(ex.path, req.binary_header, req.response_binary_header)
        cfg.metrics.observe_request(
            where.model_name, ex.status_code, where.endpoint, ex.total_s, ex.upstream_s,
            ex.request_body_bytes, ex.response_body_bytes,
        )  # fmt: skip
        cfg.pipeline.offer(ex)

    def _capture_unanswered(self, req: _Request, error: str) -> None:
        """Capture a request whose client went away before it was forwarded."""
        rid = req.request_id or _client_request_id(req.headers) or new_request_id()
        ex = self._new_exchange(req, rid, _origin_form(req.url))
        ex.status_code = CLIENT_CLOSED
        ex.error = error
        if not req.too_large:
            ex.request_body = b"".join(req.body)
        self._hand_off(req, ex)

    async def _exchange(self, req: _Request) -> None:
        cfg = self.config
        rid = req.request_id or new_request_id()
        target = _origin_form(req.url)
        ex = self._new_exchange(req, rid, target)
        cfg.metrics.requests_in_flight += 1
        try:
            if req.reject:
                self._error(ex, rid, req.reject, req.reject_reason, close=True)
                req.answered = not self.closed
            elif req.upgrade:
                self._error(ex, rid, 501, "protocol upgrade is not supported by the sidecar", close=True)
                req.answered = not self.closed
            elif req.too_large:
                self._error(ex, rid, 413, f"request body exceeds {cfg.max_body_bytes} bytes", close=True)
                req.answered = not self.closed
            else:
                await self._forward(req, ex, rid, target)
        except asyncio.CancelledError:  # the sidecar's shutdown grace period ran out
            ex.status_code = ex.status_code or CLIENT_CLOSED
            ex.error = "sidecar shut down before the answer was complete"
            raise
        finally:
            if self.closed and not req.answered and not ex.error:  # the client left: nginx's 499
                ex.error = "client disconnected before the answer was complete"
                if ex.status_code:
                    ex.error += f"; the upstream answered {ex.status_code}"
                ex.status_code = CLIENT_CLOSED
            cfg.metrics.requests_in_flight -= 1
            self._hand_off(req, ex)

    async def _forward(self, req: _Request, ex: Exchange, rid: bytes, target: bytes) -> None:
        cfg = self.config
        body = b"".join(req.body)
        ex.request_body = body
        headers = forwardable(req.headers, _SKIP_UPSTREAM)
        headers.append((b"X-Request-Id", rid))
        t_up = time.perf_counter()
        try:
            resp = await cfg.pool.send(req.method, target, headers, body)
            ex.status_code = resp.status
            ex.response_headers = resp.headers
            req.response_binary_header = resp.binary_header
            out = forwardable(resp.headers, _SKIP_CLIENT)
            out.append((b"X-Request-Id", rid))
            if not req.keep_alive:
                out.append((b"Connection", b"close"))
            if req.method == b"HEAD" or resp.status in _NO_BODY_STATUS:
                await resp.read()  # nothing: returns the connection to the pool
                if resp.content_length is not None and resp.status != 204:  # RFC 9110 section 8.6
                    out.append((b"Content-Length", b"%d" % resp.content_length))
                ex.upstream_s = time.perf_counter() - t_up
                self._write(response_head(resp.status, out))
                req.answered = not self.closed
                return
            if resp.content_length is not None and resp.content_length <= cfg.max_capture_bytes:
                payload = await resp.read()
                ex.upstream_s = time.perf_counter() - t_up
                ex.response_body = payload
                ex.response_body_bytes = len(payload)
                out.append((b"Content-Length", b"%d" % len(payload)))
                self._write(response_head(resp.status, out) + payload)
                req.answered = not self.closed
                return
        except TimeoutError:
            ex.upstream_s = time.perf_counter() - t_up
            self._error(ex, rid, 504, "upstream timed out")
            req.answered = not self.closed
            return
        except UpstreamError as exc:
            ex.upstream_s = time.perf_counter() - t_up
            self._error(ex, rid, 502, f"upstream error: {exc}")
            req.answered = not self.closed
            return
        await self._relay_stream(req, resp, out, ex, t_up)

    async def _relay_stream(
        self, req: _Request, resp: UpstreamResponse, out: Headers, ex: Exchange, t_up: float
    ) -> None:
        """Relay a body chunk by chunk as it arrives, capturing up to ``max_capture_bytes``.

        A declared ``Content-Length`` (a body too large to hold for capture) is kept as is; a body of unknown
        length is relayed with chunked encoding, or to an HTTP/1.0 client delimited by closing the connection.
        Writing waits for a slow client, and reading the upstream waits for the writing
        (:mod:`infertap.logger.upstream`).
        """
        cap = self.config.max_capture_bytes
        length = resp.content_length
        framed = length is None and not req.http10
        if framed:
            out.append((b"Transfer-Encoding", b"chunked"))
        elif length is not None:
            out.append((b"Content-Length", b"%d" % length))
        elif req.keep_alive:  # HTTP/1.0 and no length: the end of the body is the end of the connection
            req.keep_alive = False
            out.append((b"Connection", b"close"))
        self._write(response_head(resp.status, out))
        kept: list[bytes] = []
        arrivals: list[int] = []  # when each kept chunk was relayed: one clock read and append, nothing held
        clock = time.perf_counter_ns
        size = 0
        chunks = resp.iter_chunks()
        self.upstream = resp
        try:
            async for data in chunks:
                self._write(chunk(data) if framed else data)
                if size < cap:
                    arrivals.append(clock())
                    kept.append(data[: cap - size])
                size += len(data)
                if self._can_write is not None:
                    await self._can_write
                if self.closed:
                    break
            else:
                if framed:
                    self._write(chunk(b""))
                req.answered = not self.closed
        except (UpstreamError, TimeoutError) as exc:
            if not self.closed:
                ex.error = f"upstream stream broken: {exc}"
                if self.transport is not None:
                    self.transport.abort()  # the client must not take a cut body for a whole one
        finally:
            self.upstream = None
            await chunks.aclose()  # an abandoned stream drops its upstream connection now
        ex.upstream_s = time.perf_counter() - t_up
        ex.response_body = b"".join(kept)
        ex.response_body_bytes = size
        ex.response_truncated = size > cap
        ex.received_ns = int(req.t0 * 1e9)
        ex.chunk_arrivals_ns = arrivals
        ex.chunk_sizes = list(map(len, kept))

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


def new_request_id() -> bytes:
    """A random UUID (version 4, RFC 9562 section 5.4) as 32 lower-case hex digits, ASCII bytes.

    Drawn from a generator seeded once from ``os.urandom`` (reseeded in a forked child), not from ``uuid.uuid4``:
    that reads ``os.urandom`` (a system call) and builds a ``UUID`` object for every id. Request ids need to be
    unique, not unpredictable.
    """
    return b"%032x" % (_ids.getrandbits(128) & _UUID4_KEEP | _UUID4_SET)


def _client_request_id(headers: Headers) -> bytes:
    """The last non-empty ``X-Request-Id`` of ``headers``, ``b""`` when none."""
    rid = b""
    for name, value in headers:
        if value and name.lower() == b"x-request-id":
            rid = value
    return rid


def _only_h2c(headers: Headers) -> bool:
    """Whether the ``Upgrade`` fields offer only HTTP/2 over cleartext."""
    offers = [t.strip().lower() for n, v in headers if n.lower() == b"upgrade" for t in v.split(b",")]
    return offers == [b"h2c"]


def _origin_form(url: bytes) -> bytes:
    """The origin-form target (path and query) of a request target; absolute-form loses scheme, host, fragment.

    ``*`` (``OPTIONS *``) is kept. Never raises: httptools has already checked the target's characters.
    """
    if url.startswith((b"/", b"*")):
        return url
    scheme = url.find(b"://")
    rest = url[scheme + 3 :] if scheme >= 0 else url
    m = _AUTHORITY.match(rest)
    target = rest[m.end() :].partition(b"#")[0] if m else rest
    return target if target.startswith(b"/") else b"/" + target
