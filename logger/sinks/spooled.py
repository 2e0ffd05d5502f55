"""A sink behind the disk spool: what the capture pipeline sees when the destination is on the network.

``write`` appends to the :class:`infertap.logger.sinks.segments.Spool` (never waits on the network); a
:class:`infertap.logger.sinks.delivery.SpoolDelivery` thread hands sealed segments to the real sink and acknowledges
them; ``close`` drains within the grace period and reports what stayed on disk (replayed on the next start).
"""

from __future__ import annotations

import logging

import pyarrow as pa

from infertap.logger.sinks.base import DrainReport, Health, Sink, SinkStats
from infertap.logger.sinks.delivery import SpoolDelivery
from infertap.logger.sinks.segments import Spool, SpoolError
from infertap.logger.sinks.settings import SpoolSettings

log = logging.getLogger(__name__)


def spool_for(settings: SpoolSettings, sink_name: str) -> Spool:
    """The (unopened) spool of sink ``sink_name`` in ``settings.dir / sink_name``, with the bound, overflow policy,
    fsync, segment and compression settings of ``settings``."""
    return Spool(
        settings.dir / sink_name,
        max_bytes=settings.max_bytes,
        overflow=settings.overflow_policy,
        block_timeout_s=settings.block_timeout_s,
        fsync=settings.fsync,
        segment_max_bytes=settings.segment_max_bytes,
        segment_max_age_s=settings.segment_max_age_s,
        compression=settings.ipc_compression(),
        name=sink_name,
    )


def delivery_for(settings: SpoolSettings, spool: Spool, sink: Sink) -> SpoolDelivery:
    """The delivery loop from ``spool`` to ``sink`` with the retry and health-check settings of ``settings``."""
    return SpoolDelivery(
        spool,
        sink,
        backoff_initial_s=settings.retry_initial_backoff_s,
        backoff_max_s=settings.retry_max_backoff_s,
        healthcheck_interval_s=settings.healthcheck_interval_s,
    )


class SpooledSink:
    """``sink`` behind a spool in ``settings.dir / sink.name``.

    Args:
        sink: the destination (S3, Kafka, HTTP ...).
        settings: spool bound, overflow policy, fsync, retry and drain settings.

    Attributes:
        delivery: the delivery loop (its ``state`` and the spool's ``stats`` feed
            :class:`infertap.logger.sinks.metrics.SinkMetrics`).
        last_report: what stayed in the spool at the last :meth:`close`.
    """

    def __init__(self, sink: Sink, settings: SpoolSettings) -> None:
        self.inner = sink
        self.name = sink.name
        self.settings = settings
        self.spool: Spool = spool_for(settings, sink.name)
        self.delivery: SpoolDelivery = delivery_for(settings, self.spool, sink)
        self.last_report: DrainReport | None = None

    @property
    def stats(self) -> SinkStats:
        """The destination sink's stats, with spool drops counted as dropped records."""
        inner = self.inner.stats
        return SinkStats(inner.records_sent, inner.bytes_sent, inner.records_dropped + self.spool.stats.dropped_records,
                         inner.errors)  # fmt: skip

    def start(self) -> None:
        """Open the spool (replaying what an earlier run left) and start delivering.

        Never raises for the spool: inference must not depend on capture. A spool that cannot be opened is logged,
        shown as down (``infertap_spool_up``, ``infertap_sink_up``), drops what is appended with reason
        ``unavailable`` and is opened again every :data:`infertap.logger.sinks.segments.REOPEN_INTERVAL_S`.
        """
        try:
            pending = self.spool.open()
        except SpoolError as exc:
            log.error(
                "sink %s: the spool cannot be used (%s); the proxy serves on, records are dropped and counted "
                '(infertap_spool_dropped_records_total{reason="unavailable"}) until it can be opened',
                self.name,
                exc,
            )
        else:
            if pending:
                log.info("sink %s: replaying %d segments left by an earlier run", self.name, len(pending))
        self.delivery.start()

    def write(self, batch: pa.RecordBatch) -> None:
        """Append ``batch`` to the spool; a full spool drops it (counted by the spool), never raises."""
        self.spool.append(batch)

    def flush(self) -> None:
        """Seal open segments so that the delivery thread can send them."""
        self.spool.seal()

    def close(self) -> None:
        """Deliver what the spool holds for at most ``drain_timeout_s``, then stop; what is left stays on disk."""
        self.last_report = self.delivery.stop(self.settings.drain_timeout_s)

    def healthcheck(self) -> Health:
        """Down while the spool has a disk problem, else the delivery loop's last view of the destination; down
        while a delivery attempt is stalled."""
        spool = self.spool.health()
        if not spool.ok:
            return spool
        state = self.delivery.state
        if state.health.ok and not state.up(self.delivery.healthcheck_interval_s):
            return Health(False, f"a delivery attempt has been blocked for {self.delivery.healthcheck_interval_s:g} s")
        return state.health
