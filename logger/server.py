"""Wiring of the sidecar process: settings -> capture pipeline + proxy + admin endpoints, and its lifecycle.

:class:`Sidecar` runs inside an existing event loop (tests use it in-process); :func:`run` is the ``infertap
proxy`` entry point: uvloop, SIGTERM/SIGINT handling, graceful drain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from infertap.logger.capture import Capturer
from infertap.logger.config import ProxySettings
from infertap.logger.environment import describe_validation_error
from infertap.logger.errors import SinkError
from infertap.logger.frontend import SWITCH_INTERVAL_S, Frontend, StartupError, tune_gc, until_signal
from infertap.logger.memory import limit_malloc_arenas
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.nopandas import refuse_pandas
from infertap.logger.pipeline import CapturePipeline
from infertap.logger.proxy import ProxyConfig
from infertap.logger.redact import BodyRedactor, HeaderFilter, QueryRedactor
from infertap.logger.sampling import Sampler
from infertap.logger.sinks import factory
from infertap.logger.sinks.base import Sink
from infertap.logger.sinks.file import FileSink
from infertap.logger.sinks.metrics import SinkMetrics
from infertap.logger.sinks.settings import HttpSinkSettings, KafkaSettings, S3Settings
from infertap.logger.sinks.spooled import SpooledSink

log = logging.getLogger(__name__)


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
        self.frontend = Frontend(settings, self.pipeline, self.metrics)

    @property
    def port(self) -> int:
        """The bound proxy port (after :meth:`start`)."""
        return self.frontend.port

    @property
    def admin_port(self) -> int:
        """The bound admin port (after :meth:`start`)."""
        return self.frontend.admin_port

    @property
    def proxy_config(self) -> ProxyConfig:
        """The proxy's shared state (connections, drain), after :meth:`start`."""
        assert self.frontend.proxy_config is not None, "the sidecar has not started"
        return self.frontend.proxy_config

    async def start(self) -> None:
        """Start the pipeline, then listen on the proxy and admin ports.

        Raises:
            SinkError: the sink cannot start.
            StartupError: a port cannot be bound.
        """
        s = self.settings
        self.pipeline.start()
        try:
            await self.frontend.start()
        except BaseException:  # nothing was captured: stop the pipeline that started
            await asyncio.get_running_loop().run_in_executor(None, self.pipeline.stop, 1.0)
            raise
        log.info(
            "proxy on %s:%d -> %s, admin on :%d, capture %s at rate %.3g, sink %s: %s",
            s.listen_host, self.port, s.upstream_url, self.admin_port, s.capture_mode.value, s.sample_rate,
            self.sink.name, destination(self.sink),
        )  # fmt: skip

    async def stop(self, grace_s: float = 30.0) -> int:
        """Stop accepting, finish in-flight requests, drain and flush the pipeline, close the sink.

        Returns:
            Exchanges left in the capture queue when ``grace_s`` ran out (0 when all were written).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        await self.frontend.stop(grace_s)
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
    tune_gc()
    await until_signal()
    left = await sidecar.stop(settings.shutdown_grace_s)
    return 0 if left == 0 else 1


def tune_allocators() -> None:
    """Arrow allocates from the C library's malloc (its system pool) instead of its bundled mimalloc, which keeps
    freed memory for reuse (about 11 MB more RSS at 1000 requests/s), unless ``ARROW_DEFAULT_MEMORY_POOL`` (Arrow's
    own variable) names a pool; malloc keeps at most two arenas (:mod:`infertap.logger.memory`). Call before the
    capture thread starts."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
    limit_malloc_arenas()


def run(settings: ProxySettings) -> int:
    """``infertap proxy``: serve on uvloop (when installed) until a termination signal.

    Returns:
        0 after a complete drain, 1 when records were left unwritten, 2 when the sidecar could not start (one line
        on stderr, no traceback).
    """
    refuse_pandas()
    tune_allocators()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
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
