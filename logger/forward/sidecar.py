"""The forward-mode sidecar (``INFERTAP_CAPTURE_PLACEMENT=forward``): the proxy, admin endpoints and the framer.

The same proxy (:mod:`infertap.logger.proxy`) and admin endpoints as local mode; the exchanges go to a
:class:`~infertap.logger.forward.shipper.ForwardPipeline` instead of the local capture pipeline. Nothing imported
from here loads NumPy or pyarrow (no codecs, no Arrow, no sinks): decoding and writing happen on the collector.
``python -m infertap.logger.forward`` runs it without the ``infertap`` command line, whose other subcommands
(the drift job) would load NumPy at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from infertap.logger.config import ProxySettings
from infertap.logger.forward.rawspool import RawSpool
from infertap.logger.forward.shipper import ForwardPipeline, Framer, Sender
from infertap.logger.frontend import SWITCH_INTERVAL_S, Frontend, tune_gc, until_signal
from infertap.logger.memory import limit_malloc_arenas
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.redact import HeaderFilter, QueryRedactor
from infertap.logger.sampling import Sampler

log = logging.getLogger(__name__)


def meta_of(settings: ProxySettings) -> dict[str, Any]:
    """The ``meta`` of every batch (:data:`infertap.logger.forward.wire.META_KEYS`): the pod's identity and the
    capture settings the collector needs to build the records (body-field redaction runs there)."""
    identity = settings.serving_identity()
    return {
        "inference_service": identity.inference_service,
        "namespace": identity.namespace,
        "component": identity.component,
        "revision": identity.revision,
        "endpoint": identity.endpoint,
        "pod": identity.pod,
        "capture_mode": settings.capture_mode.value,
        "sample_rate": settings.sample_rate,
        "header_allowlist": sorted(settings.writable_headers()),
        "redact_json_fields": settings.redacted_json_fields(),
        "keep_raw_bodies": settings.keep_raw_bodies,
        "genai_text": settings.genai_text,
        "default_model": settings.model_name,
    }


def build_forward_pipeline(settings: ProxySettings, metrics: ProxyMetrics, seed: int | None = None) -> ForwardPipeline:
    """The framer, raw spool and sender ``settings`` describe.

    Raises:
        ValueError: ``forward_collector_url`` is not ``http://host[:port]``.
    """
    framer = Framer(
        Sampler(settings.sample_rate, seed),
        HeaderFilter(settings.writable_headers()),
        QueryRedactor(settings.redacted_query_params()),
        settings.capture_mode.value,
    )
    spool = RawSpool(
        settings.forward_spool_dir,
        max_bytes=settings.forward_spool_max_bytes,
        segment_max_bytes=settings.forward_segment_max_bytes,
    )
    sender = Sender(settings.forward_collector_url, meta_of(settings), timeout_s=settings.forward_timeout_s)
    return ForwardPipeline(
        framer, spool, sender, metrics, queue_max=settings.queue_max_records, seal_interval_s=settings.batch_max_delay_s
    )


class ForwardSidecar:
    """A running forward-mode sidecar: proxy port, admin port, framer and sender threads.

    Args:
        settings: the configuration (``capture_placement`` is not looked at: this class is forward mode).
        metrics: metrics to use (default: a fresh registry).
        seed: sampling seed, for tests.

    Attributes:
        port, admin_port: the bound ports, known after :meth:`start` (useful with port 0).
    """

    def __init__(self, settings: ProxySettings, metrics: ProxyMetrics | None = None, seed: int | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or ProxyMetrics()
        self.pipeline = build_forward_pipeline(settings, self.metrics, seed)
        self.frontend = Frontend(settings, self.pipeline, self.metrics)

    @property
    def port(self) -> int:
        """The bound proxy port (after :meth:`start`)."""
        return self.frontend.port

    @property
    def admin_port(self) -> int:
        """The bound admin port (after :meth:`start`)."""
        return self.frontend.admin_port

    async def start(self) -> None:
        """Open the spool, start the threads, then listen on the proxy and admin ports.

        Raises:
            OSError: the spool directory is unusable.
            StartupError: a port cannot be bound.
        """
        s = self.settings
        self.pipeline.start()
        try:
            await self.frontend.start()
        except BaseException:  # nothing was framed: stop the threads that started
            await asyncio.get_running_loop().run_in_executor(None, self.pipeline.stop, 1.0)
            raise
        log.info(
            "proxy on %s:%d -> %s, admin on :%d, capture forwarded to %s at rate %.3g",
            s.listen_host, self.port, s.upstream_url, self.admin_port, s.forward_collector_url, s.sample_rate,
        )  # fmt: skip

    async def stop(self, grace_s: float = 30.0) -> int:
        """Stop accepting, finish in-flight requests, frame and send what is left.

        Returns:
            Frames not delivered when ``grace_s`` ran out (they stay in the spool for the next start).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        await self.frontend.stop(grace_s)
        left = await loop.run_in_executor(None, self.pipeline.stop, max(deadline - loop.time(), 1.0))
        if not left:
            log.info("forward pipeline drained: every frame delivered to the collector")
        return left


async def serve(settings: ProxySettings) -> int:
    """Run a forward-mode sidecar until SIGTERM or SIGINT, then drain. Exit code 0 (a spool left for the next
    start is not an error: nothing is lost)."""
    sidecar = ForwardSidecar(settings)
    await sidecar.start()
    tune_gc()  # as local mode: keep full collections from walking start-up objects (docs/architecture.md)
    await until_signal()
    await sidecar.stop(settings.shutdown_grace_s)
    return 0


def run(settings: ProxySettings) -> int:
    """Serve forward mode on uvloop (when installed) until a termination signal."""
    limit_malloc_arenas()  # before the framer and sender threads start (infertap.logger.memory)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))
