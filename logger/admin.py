"""The admin endpoints every infertap server has: ``/metrics``, ``/livez`` and ``/readyz``.

:func:`answer` decides what each path answers; two servers carry it. The sidecar (both placements) serves it with
:class:`AdminServer`, a small HTTP/1.1 server on asyncio and httptools (which the proxy already uses), so that a
sidecar loads no web framework; the collector and the webhook, which are aiohttp servers anyway, mount
:func:`admin_app`. Each passes its readiness check. The sidecar's check follows the upstream
(:func:`upstream_readiness`): ``/readyz`` answers 200 only while ``GET <upstream><upstream_ready_path>`` answers
2xx (Open Inference Protocol "Server Ready", ``/v2/health/ready``, by default), so Kubernetes sends no traffic to a
pod whose predictor is not ready. The upstream's answer is cached for :data:`READY_CACHE_S` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import httptools
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from infertap.logger.http1 import MAX_HEAD_BYTES, response_head
from infertap.logger.upstream import UpstreamError, UpstreamPool

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

READY_CACHE_S = 1.0
#: Longest the readiness probe waits to connect to the upstream, and then for each read (seconds).
READY_TIMEOUT_S = 2.0

#: A readiness check: ``(ready, detail)``; the detail (may be empty) follows ``ready:`` / ``not ready:`` in the body.
Readiness = Callable[[], Awaitable[tuple[bool, str]]]

_TEXT = "text/plain; charset=utf-8"


async def always_ready() -> tuple[bool, str]:
    """The readiness of a server that is ready as soon as it listens (the webhook)."""
    return True, ""


async def answer(path: str, registry: CollectorRegistry, readiness: Readiness) -> tuple[int, str, bytes] | None:
    """What ``GET path`` answers on the admin port: ``(status, content type, body)``, ``None`` for an unknown path.

    ``/metrics``: the registry in the Prometheus text format 0.0.4. ``/livez``: 200 ``ok``. ``/readyz``: awaits
    ``readiness``; 200 ``ready[: detail]`` when it returns ``(True, detail)``, 503 ``not ready[: detail]``
    otherwise.
    """
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)
    if path == "/livez":
        return 200, _TEXT, b"ok\n"
    if path == "/readyz":
        ok, detail = await readiness()
        text = ("ready" if ok else "not ready") + (f": {detail}" if detail else "")
        return (200 if ok else 503), _TEXT, (text + "\n").encode()
    return None


def admin_app(registry: CollectorRegistry, readiness: Readiness = always_ready) -> web.Application:
    """The admin endpoints (:func:`answer`) as an aiohttp application, for the servers that run aiohttp anyway.

    Args:
        registry: what ``/metrics`` exposes (Prometheus text format 0.0.4).
        readiness: awaited on every ``GET /readyz``.
    """
    from aiohttp import web  # only the collector and the webhook load aiohttp

    async def handler(request: web.Request) -> web.Response:
        status, content_type, body = cast(tuple[int, str, bytes], await answer(request.path, registry, readiness))
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app = web.Application()
    for path in ("/metrics", "/livez", "/readyz"):
        app.router.add_get(path, handler)
    return app


class AdminServer:
    """The admin endpoints (:func:`answer`) on their own port: HTTP/1.1 on asyncio, parsed by httptools.

    ``GET`` and ``HEAD`` of ``/metrics``, ``/livez``, ``/readyz``; other paths 404, other methods 405. Keep-alive
    connections (Prometheus scrapes) answer their requests in order; a malformed request or a head over
    :data:`infertap.logger.http1.MAX_HEAD_BYTES` gets 400 and the connection is closed.

    Args:
        registry: what ``/metrics`` exposes.
        readiness: awaited on every ``GET /readyz``.

    Attributes:
        port: the bound port, known after :meth:`start` (useful with port 0).
    """

    def __init__(self, registry: CollectorRegistry, readiness: Readiness = always_ready) -> None:
        self.registry = registry
        self.readiness = readiness
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[_AdminConnection] = set()

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``. Raises :class:`OSError` when the port cannot be bound."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _AdminConnection(self), host, port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening and close every open connection (an answer being computed is abandoned)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._connections):
            conn.close()


class _AdminConnection(asyncio.Protocol):
    """One client connection of :class:`AdminServer`: parses requests, answers them one at a time, in order."""

    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.head_bytes = 0
        self.pending: deque[tuple[bytes, bytes, bool]] = deque()  # (method, path, keep-alive)
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._refuse()
            return
        if self.head_bytes > MAX_HEAD_BYTES:
            self._refuse()

    def _refuse(self) -> None:
        self.pending.clear()
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self._write(400, _TEXT, b"bad request\n", keep_alive=False, head=False)

    # --- httptools callbacks ---
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        self.pending.append((self.parser.get_method(), path, self.parser.should_keep_alive()))
        self.url = b""
        self.head_bytes = 0
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._answer_pending())

    # --- answers ---
    async def _answer_pending(self) -> None:
        try:
            while self.pending and self.transport is not None:
                method, path, keep_alive = self.pending.popleft()
                if method not in (b"GET", b"HEAD"):
                    self._write(405, _TEXT, b"method not allowed\n", keep_alive, head=False, allow=True)
                    continue
                got = await answer(path.decode("latin-1"), self.server.registry, self.server.readiness)
                status, content_type, body = got if got is not None else (404, _TEXT, b"not found\n")
                self._write(status, content_type, body, keep_alive, head=method == b"HEAD")
        except Exception:  # a failing readiness check or collector must not leave the client hanging
            log.exception("admin endpoint failed")
            self._write(500, _TEXT, b"internal error\n", keep_alive=False, head=False)
        finally:
            self.task = None

    def _write(
        self, status: int, content_type: str, body: bytes, keep_alive: bool, head: bool, allow: bool = False
    ) -> None:
        if self.transport is None:
            return
        headers = [(b"Content-Type", content_type.encode()), (b"Content-Length", b"%d" % len(body))]
        if allow:
            headers.append((b"Allow", b"GET, HEAD"))
        if not keep_alive:
            headers.append((b"Connection", b"close"))
        self.transport.write(response_head(status, headers) + (b"" if head else body))
        if not keep_alive:
            self.transport.close()
            self.transport = None
            self.pending.clear()


@dataclass
class _ReadyState:
    checked: float = -READY_CACHE_S
    ready: bool = False
    detail: str = ""


def upstream_readiness(pool: UpstreamPool, path: str) -> Readiness:
    """The sidecar's readiness: ``GET path`` on the upstream answers 2xx (checked at most every READY_CACHE_S s).

    Args:
        pool: connections to the upstream, the probe's own (not the proxy's): its connect and read timeouts bound
            the probe (:data:`READY_TIMEOUT_S`).
        path: the predictor's readiness path (``INFERTAP_UPSTREAM_READY_PATH``), with any query.
    """
    state = _ReadyState()
    target = path.encode()

    async def check() -> tuple[bool, str]:
        now = time.monotonic()
        if now - state.checked >= READY_CACHE_S:
            try:
                resp = await pool.send(b"GET", target, [(b"Accept", b"*/*")], b"")
                await resp.read()
                state.ready, state.detail = 200 <= resp.status < 300, f"upstream answered {resp.status}"
            except (UpstreamError, TimeoutError) as exc:
                state.ready, state.detail = False, f"upstream unreachable: {type(exc).__name__}"
            state.checked = now
        return state.ready, state.detail

    return check
