"""The upstream hop: a pool of keep-alive HTTP/1.1 connections to the one predictor, parsed with httptools.

:meth:`UpstreamPool.send` writes a request and returns an :class:`UpstreamResponse` once the status line and
headers have arrived; the body is then read whole (:meth:`UpstreamResponse.read`) or chunk by chunk as it arrives
(:meth:`UpstreamResponse.iter_chunks`). Every wait for the upstream (connect excepted) is bounded by
``read_timeout_s`` since the last byte received: on expiry the connection is dropped and :class:`TimeoutError`
raised. A request whose pooled connection turns out closed before any byte of answer is retried once on a new
connection (the predictor never saw it).

Interim answers (1xx) are skipped; a ``101`` (never asked for), a head over ``MAX_HEAD_BYTES``, framing httptools
rejects, or bytes after a complete answer fail the exchange or keep the connection out of the pool. A streamed body
is read no faster than it is consumed: past ``STREAM_HIGH_WATER`` bytes buffered, reading from the upstream pauses
(and with it the read timeout) until the consumer has taken them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncGenerator
from typing import cast

import httptools

from infertap.logger.http1 import BINARY_HEADER, MAX_HEAD_BYTES, Headers, request_head

_NO_BODY = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE"})
STREAM_HIGH_WATER = 512 * 1024  # bytes of a streamed body buffered before reading from the upstream pauses


class UpstreamError(ConnectionError):
    """The upstream could not be reached, or broke the connection or the protocol."""


class UpstreamResponse:
    """An upstream answer whose head has arrived.

    Attributes:
        status: HTTP status code.
        headers: header fields as received (bytes pairs).
        content_length: the declared body length, or ``None`` (chunked or until close).
        binary_header: the ``Inference-Header-Content-Length`` value as received, ``None`` when absent.
    """

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self.content_length = conn.content_length
        self.binary_header = conn.binary_header

    async def read(self) -> bytes:
        """The whole body. Raises :class:`UpstreamError` or :class:`TimeoutError`."""
        await self._conn.wait_complete()
        return b"".join(self._conn.body)

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        """The body's chunks as they arrive (de-chunked). Raises :class:`UpstreamError` or :class:`TimeoutError`.

        Reading from the upstream pauses while more than ``STREAM_HIGH_WATER`` bytes wait to be taken from here.
        """
        conn = self._conn
        conn.streaming = True
        try:
            while True:
                while conn.body:
                    data = conn.body.popleft()
                    conn.buffered -= len(data)
                    yield data
                if conn.complete:
                    conn.pool.release(conn)
                    return
                if conn.paused:
                    conn.resume()
                await conn.wait_data()
        finally:
            if not conn.complete and conn.transport is not None:  # abandoned mid-stream: not reusable
                conn.closed = True
                conn.transport.abort()

    def abort(self, reason: str) -> None:
        """Give up on this answer: the connection is dropped, a waiting reader gets :class:`UpstreamError`."""
        self._conn._fail(UpstreamError(reason))

    @property
    def paused(self) -> bool:
        """Whether reading from the upstream is paused because the consumer is behind."""
        return self._conn.paused

    @property
    def buffered(self) -> int:
        """Bytes of body received and not yet consumed."""
        return self._conn.buffered


class _Connection(asyncio.Protocol):
    """One upstream connection; one request at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self._timer: asyncio.TimerHandle | None = None  # pending, possibly disarmed (``_deadline`` None)
        self._deadline: float | None = None  # loop time by which the upstream must send something
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: Headers = []
        self.content_length: int | None = None
        self.binary_header: bytes | None = None
        self.chunked = False
        self.keep_alive = False
        self.body: deque[bytes] = deque()
        self.head_done = False
        self.complete = False
        self.received_any = False
        self.error: BaseException | None = None
        self.head_only = False
        self.head_bytes = 0
        self.interim = False  # parsing a 1xx answer
        self.streaming = False
        self.paused = False
        self.buffered = 0

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        if self.complete:  # bytes after a complete answer (or on an idle connection): the framing is off
            self._fail(UpstreamError("upstream sent bytes after its answer"))
            return
        self.received_any = True
        self._arm_timer()
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(UpstreamError(f"invalid HTTP from upstream: {exc}"))
            return
        if not self.head_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._fail(UpstreamError(f"upstream answer head over {MAX_HEAD_BYTES} bytes"))

    def eof_received(self) -> bool | None:
        if self.complete:  # the upstream closed an idle keep-alive connection
            self.closed = True
            return None
        if self.head_done and self.content_length is None and not self.chunked:
            self.on_message_complete()  # a body delimited by the end of the connection (RFC 9112 section 6.3)
            self.closed = True
        else:
            self._fail(UpstreamError("upstream closed the connection before the answer was complete"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.complete:
            self._fail(UpstreamError(f"upstream connection lost: {exc or 'closed'}"))

    # --- httptools callbacks ---
    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailer fields of a chunked body are not header fields
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self.interim = True
            self.headers = []
            if status == 101:  # no upgrade is ever asked for
                self._fail(UpstreamError("upstream switched protocols unasked"))
            return  # 100, 102, 103: an interim answer, the final one follows
        self.status = status
        for name, value in self.headers:
            low = name.lower()
            if low == b"content-length":
                self.content_length = int(value)
            elif low == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif low == BINARY_HEADER:
                self.binary_header = value
        if self.chunked:
            self.content_length = None  # httptools rejects both; never relay a length the body does not have
        self.head_done = True
        if self.head_only:  # a HEAD answer has no body whatever its headers say
            self.complete = True
            self.closed = True  # the parser expects a body: do not reuse the connection
            if self.transport is not None:
                self.transport.close()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.streaming and self.buffered > STREAM_HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
            self._cancel_timer()  # the consumer is slow, not the upstream
        self._wake()

    def resume(self) -> None:
        """Read from the upstream again (the consumer caught up); the read timeout starts anew."""
        self.paused = False
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self._arm_timer()

    def on_message_complete(self) -> None:
        if self.interim or self.error is not None:
            self.interim = False
            return
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful inside the parser's callbacks
        self.complete = True
        self._cancel_timer()
        self._wake()

    # --- waiting ---
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is not None:
            return
        self.closed = True  # a complete answer stays readable, but the connection carries no other
        if self.transport is not None:
            self.transport.abort()
        if self.complete:
            return
        self.error = exc
        self._cancel_timer()
        self._wake()

    def _arm_timer(self) -> None:
        """The read timeout starts anew: a deadline moved, the timer made only when none is pending."""
        self._deadline = self.loop.time() + self.pool.read_timeout_s
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._timed_out)

    def _cancel_timer(self) -> None:
        """No read timeout until the next :meth:`_arm_timer`; a pending timer is left to expire harmlessly."""
        self._deadline = None

    def _timed_out(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:  # disarmed since
            return
        if self.loop.time() < deadline:  # bytes arrived since the timer was made: wait the rest
            self._timer = self.loop.call_at(deadline, self._timed_out)
            return
        self._fail(TimeoutError(f"upstream sent nothing for {self.pool.read_timeout_s:g} s"))

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    async def wait_head(self) -> None:
        while not self.head_done:
            await self._wait()

    async def wait_data(self) -> None:
        if not self.body and not self.complete:
            await self._wait()

    async def wait_complete(self) -> None:
        while not self.complete:
            await self._wait()
        self.pool.release(self)

    def send(self, head: bytes, body: bytes, head_only: bool) -> None:
        assert self.transport is not None
        self._reset()
        self.head_only = head_only
        self._arm_timer()
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)


class UpstreamPool:
    """Keep-alive connections to ``host:port``.

    Args:
        host, port: the upstream.
        host_header: value of the ``Host`` field sent upstream.
        connect_timeout_s: longest wait to connect (then :class:`UpstreamError`).
        read_timeout_s: longest wait for each read from the upstream (then :class:`TimeoutError`).
        max_idle: idle connections kept.
        ssl_context: TLS for an ``https`` upstream (certificate and host name verified), ``None`` for plain HTTP.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        host_header: bytes,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_idle: int = 256,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.host_header = host_header
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_idle = max_idle
        self.ssl_context = ssl_context
        self.loop = asyncio.get_running_loop()
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        try:
            _, proto = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host if self.ssl_context else None,
                ),
                self.connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc or type(exc).__name__}") from exc
        return proto

    async def send(self, method: bytes, target: bytes, headers: Headers, body: bytes) -> UpstreamResponse:
        """Send one request; returns once the answer's head has arrived.

        ``headers`` must not hold framing or hop-by-hop fields: ``Host`` and ``Content-Length`` are added here.

        Raises:
            UpstreamError: connection refused, lost, or invalid HTTP.
            TimeoutError: the upstream sent nothing for ``read_timeout_s``.
        """
        framing = [(b"Content-Length", b"%d" % len(body))] if body or method not in _NO_BODY else []
        head = request_head(method, target, [*headers, (b"Host", self.host_header), *framing])
        head_only = method == b"HEAD"
        for attempt in (0, 1):
            conn = self._acquire_idle() or await self._connect()
            conn.send(head, body, head_only)
            try:
                await conn.wait_head()
            except UpstreamError:
                if attempt == 0 and conn.reused and not conn.received_any:
                    continue  # a pooled connection the upstream had closed: it never saw this request
                raise
            return UpstreamResponse(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def _acquire_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: _Connection) -> None:
        """Return a connection whose answer is complete to the pool, if it can carry another request."""
        if conn.closed or not conn.keep_alive or len(self._idle) >= self.max_idle:
            if conn.transport is not None and not conn.closed:
                conn.transport.close()
            return
        conn.reused = True
        self._idle.append(conn)

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
