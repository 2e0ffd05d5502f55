"""Wiring of the sidecar process: settings -> capture pipeline + proxy + admin endpoints, and its lifecycle.

:class:`Sidecar` runs inside an existing event loop (tests use it in-process); :func:`run` is the ``infertap
proxy`` entry point: uvloop, SIGTERM/SIGINT handling, graceful drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from logger.admin import admin_app
from logger.capture import Capturer
from logger.config import ProxySettings
from logger.metrics import ProxyMetrics
from logger.pipeline import CapturePipeline
from logger.proxy import ProxyHandler, client_session
from logger.redact import HeaderFilter
from logger.sampling import Sampler
from logger.sinks.base import Sink
from logger.sinks.file import FileSink
from logger.sinks.metrics import SinkMetrics
from logger.sinks.settings import SpoolSettings
from logger.sinks.spooled import SpooledSink

log = logging.getLogger(__name__)


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
    """The sink ``settings.sink`` names: local Parquet (the embedded default), or a network sink behind the spool.

    Raises:
        pydantic.ValidationError: the network sink's own settings (``INFERTAP_S3_*`` ...) are invalid.
    """
    pod = settings.serving_identity().pod
    if settings.sink == "file":
        return FileSink(settings.output_dir, pod=pod, max_file_bytes=settings.max_file_bytes)
    inner: Sink
    if settings.sink == "s3":
        from logger.sinks.s3 import S3Sink
        from logger.sinks.settings import S3Settings

        inner = S3Sink.from_settings(S3Settings(), pod=pod)
    elif settings.sink == "kafka":
        from logger.sinks.kafka import KafkaSink
        from logger.sinks.settings import KafkaSettings

        inner = KafkaSink.from_settings(KafkaSettings())
    else:
        from logger.sinks.cloudevents_http import CloudEventsHttpSink
        from logger.sinks.settings import HttpSinkSettings

        inner = CloudEventsHttpSink.from_settings(HttpSinkSettings())
    return SpooledSink(inner, SpoolSettings())


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
        self._runners: list[web.BaseRunner] = []

    async def start(self) -> None:
        """Start the pipeline, then listen on the proxy and admin ports.

        Raises:
            SinkError: the sink cannot start.
            OSError: a port cannot be bound.
        """
        s = self.settings
        self.pipeline.start()
        self.session = client_session(
            connect_timeout_s=s.upstream_connect_timeout_s, read_timeout_s=s.upstream_timeout_s
        )
        handler = ProxyHandler(
            upstream_url=s.upstream_url,
            session=self.session,
            pipeline=self.pipeline,
            metrics=self.metrics,
            max_body_bytes=s.max_body_bytes,
            max_capture_bytes=s.max_capture_bytes,
        )
        proxy_runner = web.ServerRunner(web.Server(handler), handle_signals=False, shutdown_timeout=30.0)
        admin_runner = web.AppRunner(
            admin_app(
                metrics=self.metrics,
                session=self.session,
                upstream_url=s.upstream_url,
                ready_path=s.upstream_ready_path,
            ),
            handle_signals=False,
        )
        for runner, port in ((proxy_runner, s.listen_port), (admin_runner, s.admin_port)):
            await runner.setup()
            site = web.TCPSite(runner, s.listen_host, port, backlog=1024)
            await site.start()
            self._runners.append(runner)
        self.port = _bound_port(proxy_runner)
        self.admin_port = _bound_port(admin_runner)
        log.info(
            "proxy on %s:%d -> %s, admin on :%d, capture %s at rate %.3g",
            s.listen_host, self.port, s.upstream_url, self.admin_port, s.capture_mode.value, s.sample_rate,
        )  # fmt: skip

    async def stop(self, grace_s: float = 30.0) -> int:
        """Stop accepting, finish in-flight requests, drain and flush the pipeline, close the sink.

        Returns:
            Exchanges left in the capture queue when ``grace_s`` ran out (0 when all were written).
        """
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.session.close()
        left = await asyncio.get_running_loop().run_in_executor(None, self.pipeline.stop, grace_s)
        if left:
            log.error("shutdown grace period over: %d captured exchanges not written", left)
        else:
            log.info("capture pipeline drained: every record written")
        return left


def _bound_port(runner: web.BaseRunner) -> int:
    addr = runner.addresses[0]
    return int(addr[1])


async def serve(settings: ProxySettings) -> int:
    """Run a sidecar until SIGTERM or SIGINT, then shut it down gracefully. Returns the exit code."""
    sidecar = Sidecar(settings)
    await sidecar.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining")
    left = await sidecar.stop(settings.shutdown_grace_s)
    return 0 if left == 0 else 1


def run(settings: ProxySettings) -> int:
    """``infertap proxy``: serve on uvloop (when installed) until a termination signal."""
    sys.setswitchinterval(0.001)  # the capture thread yields the GIL to the event loop within 1 ms
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))
