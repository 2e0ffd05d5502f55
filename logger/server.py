"""Wiring of the sidecar process: settings -> capture pipeline + proxy + admin endpoints, and its lifecycle.

:class:`Sidecar` runs inside an existing event loop (tests use it in-process); :func:`run` is the ``infertap
proxy`` entry point: uvloop, SIGTERM/SIGINT handling, graceful drain.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from infertap.logger.admin import admin_app, upstream_readiness
from infertap.logger.capture import Capturer
from infertap.logger.config import ProxySettings
from infertap.logger.environment import describe_validation_error
from infertap.logger.errors import InfertapError, SinkError
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.pipeline import CapturePipeline
from infertap.logger.proxy import ClientConnection, ProxyConfig
from infertap.logger.redact import BodyRedactor, HeaderFilter, QueryRedactor
from infertap.logger.sampling import Sampler
from infertap.logger.sinks import factory
from infertap.logger.sinks.base import Sink
from infertap.logger.sinks.file import FileSink
from infertap.logger.sinks.metrics import SinkMetrics
from infertap.logger.sinks.settings import HttpSinkSettings, KafkaSettings, S3Settings
from infertap.logger.sinks.spooled import SpooledSink
from infertap.logger.upstream import UpstreamPool

log = logging.getLogger(__name__)


class StartupError(InfertapError):
    """The sidecar cannot start: invalid settings, a port in use, a sink that cannot start.

    ``infertap proxy`` prints the message as one line and exits with code 2.
    """


def destination(sink: Sink) -> str:
    """Where ``sink`` puts records, for the start-up log line (``Parquet under /data``, ``s3://bucket/prefix`` ...)."""
    if isinstance(sink, SpooledSink):
        return f"{destination(sink.inner)}, spooled in {sink.settings.dir / sink.name}"
    if isinstance(sink, FileSink):
        return f"Parquet under {sink.root.resolve()}"
    settings = getattr(sink, "settings", None)
    if isinstance(settings, S3Settings):
        where = f" at {settings.endpoint_url}" if settings.endpoint_url else ""
        return f"Parquet to s3://{settings.bucket}/{settings.prefix}{where}"
    if isinstance(settings, KafkaSettings):
        return f"CloudEvents to Kafka topic {settings.topic} at {settings.bootstrap_servers}"
    if isinstance(settings, HttpSinkSettings):
        return f"CloudEvents POSTed to {settings.url}"
    return type(sink).__name__


def build_pipeline(
    settings: ProxySettings, sink: Sink, metrics: ProxyMetrics, seed: int | None = None
) -> CapturePipeline:
    """The capture pipeline described by ``settings``, writing to ``sink``."""
    capturer = Capturer(
        mode=settings.capture_mode,
        sampler=Sampler(settings.sample_rate, seed),
        headers=HeaderFilter(settings.writable_headers()),
        identity=settings.serving_identity(),
        default_model=settings.model_name,
        keep_raw_bodies=settings.keep_raw_bodies,
        metrics=metrics,
        generative_text=settings.genai_text == "keep",
        query=QueryRedactor(settings.redacted_query_params()),
        fields=BodyRedactor(settings.redacted_json_fields()),
    )
    return CapturePipeline(
        capturer,
        sink,
        metrics,
        queue_max=settings.queue_max_records,
        batch_max_records=settings.batch_max_records,
        batch_max_delay_s=settings.batch_max_delay_s,
        flush_interval_s=settings.flush_interval_s,
    )


def build_sink(settings: ProxySettings) -> Sink:
    """The sink ``settings.sink`` names (:func:`infertap.logger.sinks.factory.build_sink`).

    Raises:
        pydantic.ValidationError: the network sink's own settings (``INFERTAP_S3_*`` ...) are invalid.
    """
    return factory.build_sink(
        settings.sink,
        pod=settings.serving_identity().pod,
        output_dir=settings.output_dir,
        max_file_bytes=settings.max_file_bytes,
    )


class Sidecar:
    """A running sidecar: proxy port, admin port, capture pipeline.

    Args:
        settings: the configuration.
        sink: where records go (default: :func:`build_sink`).
        metrics: metrics to use (default: a fresh registry).
        seed: sampling seed, for tests.

    Attributes:
        port, admin_port: the bound ports, known after :meth:`start` (useful with port 0).
    """

    def __init__(
        self,
        settings: ProxySettings,
        sink: Sink | None = None,
        metrics: ProxyMetrics | None = None,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ProxyMetrics()
        self.sink = sink or build_sink(settings)
        if isinstance(self.sink, SpooledSink):
            SinkMetrics(self.metrics.registry).track(self.sink.delivery)
        self.pipeline = build_pipeline(settings, self.sink, self.metrics, seed)
        self.port = 0
        self.admin_port = 0

    async def start(self) -> None:
        """Start the pipeline, then listen on the proxy and admin ports.

        Raises:
            SinkError: the sink cannot start.
            OSError: a port cannot be bound.
        """
        s = self.settings
        loop = asyncio.get_running_loop()
        self.pipeline.start()
        try:
            await self._listen(loop)
        except BaseException:
            await self._abort_start()
            raise
        log.info(
            "proxy on %s:%d -> %s, admin on :%d, capture %s at rate %.3g, sink %s: %s",
            s.listen_host, self.port, s.upstream_url, self.admin_port, s.capture_mode.value, s.sample_rate,
            self.sink.name, destination(self.sink),
        )  # fmt: skip

    async def _abort_start(self) -> None:
        """Undo a start that failed half-way: close whatever listens, stop the pipeline (nothing was captured)."""
        if getattr(self, "_server", None) is not None:
            self._server.close()
        if getattr(self, "_admin", None) is not None:
            await self._admin.cleanup()
        if getattr(self, "session", None) is not None:
            await self.session.close()
        if getattr(self, "pool", None) is not None:
            self.pool.close()
        await asyncio.get_running_loop().run_in_executor(None, self.pipeline.stop, 1.0)

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the upstream pool, then bind the proxy and admin ports.

        Raises:
            OSError: a port cannot be bound (in use, no permission, no such address).
        """
        s = self.settings
        upstream = urlsplit(s.upstream_url)
        default_port = 443 if upstream.scheme == "https" else 80
        tls = ssl.create_default_context(cafile=s.upstream_ca_file) if upstream.scheme == "https" else None
        self.pool = UpstreamPool(
            upstream.hostname or "127.0.0.1",
            upstream.port or default_port,
            host_header=upstream.netloc.encode(),
            connect_timeout_s=s.upstream_connect_timeout_s,
            read_timeout_s=s.upstream_timeout_s,
            ssl_context=tls,
        )
        self.proxy_config = ProxyConfig(
            pool=self.pool,
            pipeline=self.pipeline,
            metrics=self.metrics,
            max_body_bytes=s.max_body_bytes,
            max_capture_bytes=s.max_capture_bytes,
        )
        config = self.proxy_config
        try:
            self._server = await loop.create_server(
                lambda: ClientConnection(config), s.listen_host, s.listen_port, backlog=1024, reuse_address=True
            )
        except OSError as exc:
            raise StartupError(
                _bind_failure("proxy", s.listen_host, s.listen_port, "INFERTAP_LISTEN_PORT", exc)
            ) from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.session = aiohttp.ClientSession()
        self._admin = web.AppRunner(
            admin_app(
                self.metrics.registry,
                upstream_readiness(self.session, s.upstream_url + s.upstream_ready_path, tls),
            ),
            handle_signals=False,
            access_log=None,
        )
        await self._admin.setup()
        try:
            await web.TCPSite(self._admin, s.listen_host, s.admin_port).start()
        except OSError as exc:
            raise StartupError(_bind_failure("admin", s.listen_host, s.admin_port, "INFERTAP_ADMIN_PORT", exc)) from exc
        self.admin_port = int(self._admin.addresses[0][1])

    async def stop(self, grace_s: float = 30.0) -> int:
        """Stop accepting, finish in-flight requests, drain and flush the pipeline, close the sink.

        Returns:
            Exchanges left in the capture queue when ``grace_s`` ran out (0 when all were written).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
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
        await self._admin.cleanup()
        self.pool.close()
        await self.session.close()
        left = await loop.run_in_executor(None, self.pipeline.stop, max(deadline - loop.time(), 1.0))
        report = self.sink.last_report if isinstance(self.sink, SpooledSink) else None
        if left:
            log.error("shutdown grace period over: %d captured exchanges not written", left)
        elif report is not None and report.records_left:
            log.warning(
                "capture pipeline drained; %d records stay in the spool %s for the next start (the sink did not "
                "take them within INFERTAP_SPOOL_DRAIN_TIMEOUT_S)",
                report.records_left,
                self.sink.spool.directory if isinstance(self.sink, SpooledSink) else "",
            )
        else:
            log.info("capture pipeline drained: every record written")
        return left


def _bind_failure(what: str, host: str, port: int, setting: str, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        reason = "address already in use"
    return f"cannot listen on {host}:{port} for the {what} port ({setting}): {reason}"


async def serve(settings: ProxySettings) -> int:
    """Run a sidecar until SIGTERM or SIGINT, then shut it down gracefully. Returns the exit code.

    Raises:
        StartupError: the sidecar could not start (the message is one line naming the setting at fault).
    """
    try:
        sidecar = Sidecar(settings)
    except ValidationError as exc:
        raise StartupError(f"invalid settings: {describe_validation_error(exc)}") from exc
    except OSError as exc:  # a secret file named by the settings
        raise StartupError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    try:
        await sidecar.start()
    except SinkError as exc:
        setting = " (INFERTAP_OUTPUT_DIR)" if settings.sink == "file" else ""
        raise StartupError(f"the {settings.sink} sink cannot start{setting}: {exc}") from exc
    _tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining")
    left = await sidecar.stop(settings.shutdown_grace_s)
    return 0 if left == 0 else 1


def _tune_gc() -> None:
    """Keep the cyclic garbage collector from pausing the event loop.

    Everything allocated while starting (modules, pyarrow and NumPy internals) is moved to the permanent
    generation (``gc.freeze``), so full collections no longer traverse it, and young collections run less often.
    Records are acyclic and freed by reference counting; the collector only has cycles to find.
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


def run(settings: ProxySettings) -> int:
    """``infertap proxy``: serve on uvloop (when installed) until a termination signal.

    Returns:
        0 after a complete drain, 1 when records were left unwritten, 2 when the sidecar could not start (one line
        on stderr, no traceback).
    """
    sys.setswitchinterval(0.001)  # the capture thread yields the GIL to the event loop within 1 ms
    runner: Callable[[Coroutine[Any, Any, int]], int]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        return runner(serve(settings))
    except StartupError as exc:
        print(f"infertap proxy: {exc}", file=sys.stderr)
        return 2
