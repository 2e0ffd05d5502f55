"""The serving front of a sidecar, the same in both capture placements: the proxy port, the upstream pool, the admin
port, their start-up and graceful stop.

:class:`infertap.logger.server.Sidecar` (local capture) and :class:`infertap.logger.forward.sidecar.ForwardSidecar`
(forward mode) each put their own exchange consumer behind one :class:`Frontend`. This module imports neither
NumPy, pyarrow nor a web framework (the admin port is :class:`infertap.logger.admin.AdminServer`, the readiness
probe an :class:`infertap.logger.upstream.UpstreamPool` of its own), so the forward-mode sidecar stays thin.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import gc
import logging
import os
import signal
import ssl
import time
from urllib.parse import urlsplit

from infertap.logger.admin import READY_TIMEOUT_S, AdminServer, upstream_readiness
from infertap.logger.config import ProxySettings
from infertap.logger.errors import InfertapError
from infertap.logger.exchange import ExchangeConsumer
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.proxy import ClientConnection, ProxyConfig
from infertap.logger.upstream import UpstreamPool

log = logging.getLogger(__name__)


class StartupError(InfertapError):
    """The sidecar cannot start: invalid settings, a port in use, a sink that cannot start.

    ``infertap proxy`` prints the message as one line and exits with code 2.
    """


class Frontend:
    """The proxy and admin ports of one sidecar, in front of ``consumer`` (which the caller starts and stops).

    Args:
        settings: listen host and ports, upstream URL, CA file, timeouts, body and capture limits.
        consumer: where the proxy hands exchanges (the local capture pipeline or the forward-mode framer).
        metrics: the sidecar's metrics; the admin port serves their registry.

    Attributes:
        port, admin_port: the bound ports, known after :meth:`start` (useful with port 0).
    """

    def __init__(self, settings: ProxySettings, consumer: ExchangeConsumer, metrics: ProxyMetrics) -> None:
        self.settings = settings
        self.consumer = consumer
        self.metrics = metrics
        self.port = 0
        self.admin_port = 0
        self.pool: UpstreamPool | None = None
        self.proxy_config: ProxyConfig | None = None
        self.probe_pool: UpstreamPool | None = None
        self._server: asyncio.Server | None = None
        self._admin: AdminServer | None = None

    @property
    def accepting(self) -> bool:
        """True while the proxy port accepts new connections (from :meth:`start` until :meth:`stop` begins)."""
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        """Open the upstream pool, then bind the proxy and admin ports; on failure, close what was opened.

        Raises:
            StartupError: a port cannot be bound (in use, no permission, no such address); one line naming the
                setting.
        """
        try:
            await self._listen()
        except BaseException:
            await self.abort()
            raise

    async def _listen(self) -> None:
        s = self.settings
        upstream = urlsplit(s.upstream_url)
        tls = ssl.create_default_context(cafile=s.upstream_ca_file) if upstream.scheme == "https" else None
        host, port = upstream.hostname or "127.0.0.1", upstream.port or (443 if upstream.scheme == "https" else 80)
        pool = functools.partial(UpstreamPool, host, port, host_header=upstream.netloc.encode(), ssl_context=tls)
        self.pool = pool(connect_timeout_s=s.upstream_connect_timeout_s, read_timeout_s=s.upstream_timeout_s)
        self.probe_pool = pool(connect_timeout_s=READY_TIMEOUT_S, read_timeout_s=READY_TIMEOUT_S, max_idle=1)
        config = self.proxy_config = ProxyConfig(
            pool=self.pool,
            pipeline=self.consumer,
            metrics=self.metrics,
            max_body_bytes=s.max_body_bytes,
            max_capture_bytes=s.max_capture_bytes,
        )
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: ClientConnection(config), s.listen_host, s.listen_port, backlog=1024, reuse_address=True
            )
        except OSError as exc:
            raise StartupError(
                _bind_failure("proxy", s.listen_host, s.listen_port, "INFERTAP_LISTEN_PORT", exc)
            ) from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        readiness = upstream_readiness(self.probe_pool, (upstream.path + s.upstream_ready_path) or "/")
        self._admin = AdminServer(self.metrics.registry, readiness)
        try:
            await self._admin.start(s.listen_host, s.admin_port)
        except OSError as exc:
            raise StartupError(_bind_failure("admin", s.listen_host, s.admin_port, "INFERTAP_ADMIN_PORT", exc)) from exc
        self.admin_port = self._admin.port

    async def abort(self) -> None:
        """Close whatever a failed :meth:`start` had opened."""
        if self._server is not None:
            self._server.close()
        if self._admin is not None:
            self._admin.close()
        for pool in (self.pool, self.probe_pool):
            if pool is not None:
                pool.close()

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let in-flight requests finish within ``grace_s``, then cancel the late ones (captured as
        499 by the proxy) and close the admin port and the upstream pools."""
        assert self._server is not None, "stop() before start()"
        assert self.proxy_config is not None
        self._server.close()
        if not await self.proxy_config.drain(grace_s):
            log.warning("grace period over with requests still in progress: closing their connections")
        late = []
        for conn in list(self.proxy_config.connections):
            if conn.task is not None:  # still answering after the grace period: give up on it
                conn.task.cancel()
                late.append(conn.task)
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.gather(*late, return_exceptions=True)
        self._server = None
        await self.abort()


def _bind_failure(what: str, host: str, port: int, setting: str, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        reason = "address already in use"
    return f"cannot listen on {host}:{port} for the {what} port ({setting}): {reason}"


async def until_signal() -> None:
    """Return at the first SIGTERM or SIGINT (the kubelet's stop, Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining")


#: The GIL switch interval of both placements (``sys.setswitchinterval``, seconds). A thread that wants the GIL asks
#: the holder to drop it after this long; the event loop wakes for every request and response, so while a capture
#: thread (local mode's worker, forward mode's framer and sender) runs Python, each wake-up can wait this long.
#: Two trials on ``benchmarks/proxy_overhead.py``'s setup with the request path isolated (2026-11-30) measured local
#: mode's added p99 at 1 ms against 0.2 ms: 0.63 -> 0.33 ms, forward's 0.15 -> 0.10 ms; forced switches happen only
#: while two threads want the GIL, so the extra CPU is small (docs/benchmarks.md).
SWITCH_INTERVAL_S = 0.0002


def tune_gc() -> None:
    """Keep the cyclic garbage collector from pausing the event loop.

    Everything allocated while starting (modules, and in local mode pyarrow and NumPy internals) is moved to the
    permanent generation (``gc.freeze``), so full collections no longer traverse it, and young collections run less
    often. Records are acyclic and freed by reference counting; the collector only has cycles to find.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    if os.environ.get("INFERTAP_DEBUG_GC"):
        started: dict[str, float] = {}

        def report(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started["t"] = time.perf_counter()
            elif (pause := time.perf_counter() - started.get("t", time.perf_counter())) > 0.005:
                log.warning("gc generation %d paused %.1f ms", info["generation"], pause * 1000)

        gc.callbacks.append(report)
