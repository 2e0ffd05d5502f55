"""Prometheus metrics of the spools and network sinks, read at scrape time from their delivery loops.

Every metric carries a ``sink`` label (the sink's name, bounded by configuration). Gauges:

* ``infertap_sink_up`` — 1 when the sink's last delivery or health check succeeded, no delivery attempt has
  been blocked for a health-check interval or longer, and its spool is up;
* ``infertap_spool_up`` — 1 when the spool can take records: it is open, its last append did not fail on a disk
  error and no segment waits for a seal retry;
* ``infertap_delivery_consecutive_failures`` — failed delivery attempts since the last success;
* ``infertap_spool_bytes`` / ``infertap_spool_capacity_bytes`` — spool bytes on disk and its bound;
* ``infertap_spool_segments`` / ``infertap_spool_records`` — unacknowledged segments and records;
* ``infertap_spool_lag_seconds`` — age of the oldest unacknowledged segment (0 when empty).

Counters (``_total``): ``infertap_delivery_records`` (records of acknowledged segments, each counted once however
often it was retried), ``infertap_delivery_bytes``, ``infertap_delivery_errors`` (failed writes and flushes, and
failed sink starts), ``infertap_delivery_dropped_records`` (from the sink's
:class:`infertap.logger.sinks.base.SinkStats`); ``infertap_spool_appended_records``, ``infertap_spool_acked_records``,
``infertap_spool_dropped_records`` with a ``reason`` label
(:class:`infertap.logger.sinks.segments.DropReason`), ``infertap_spool_disk_errors``,
``infertap_spool_replayed_segments``, ``infertap_spool_salvaged_segments``, ``infertap_spool_quarantined_segments``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from infertap.logger.sinks.delivery import SpoolDelivery
from infertap.logger.sinks.segments import DropReason


class SinkMetrics(Collector):
    """A collector of the spool and sink metrics of every :meth:`track`-ed delivery loop.

    Args:
        registry: registered into at construction (the sidecar's registry).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[SpoolDelivery] = []
        registry.register(self)

    def track(self, delivery: SpoolDelivery) -> None:
        """Report ``delivery`` (its sink and spool) from now on."""
        with self._lock:
            self._deliveries.append(delivery)

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (lets the registry check names at registration)."""
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        """Current values."""
        with self._lock:
            deliveries = list(self._deliveries)
        fams = {f.name: f for f in self._families()}
        for d in deliveries:
            sink, spool, label = d.sink, d.spool, [d.sink.name]
            s, q = sink.stats, spool.stats
            spool_up = spool.health().ok
            values = {
                "infertap_sink_up": 1.0 if d.state.up(d.healthcheck_interval_s) and spool_up else 0.0,
                "infertap_spool_up": 1.0 if spool_up else 0.0,
                "infertap_delivery_consecutive_failures": d.state.consecutive_failures,
                "infertap_spool_bytes": spool.used_bytes,
                "infertap_spool_capacity_bytes": spool.max_bytes,
                "infertap_spool_segments": spool.pending_segments,
                "infertap_spool_records": spool.pending_records,
                "infertap_spool_lag_seconds": spool.lag_s(),
                "infertap_delivery_records": d.state.delivered_records,
                "infertap_delivery_bytes": s.bytes_sent,
                "infertap_delivery_errors": s.errors + d.state.start_failures,
                "infertap_delivery_dropped_records": s.records_dropped,
                "infertap_spool_appended_records": q.appended_records,
                "infertap_spool_acked_records": q.acked_records,
                "infertap_spool_disk_errors": q.disk_errors,
                "infertap_spool_replayed_segments": q.replayed_segments,
                "infertap_spool_salvaged_segments": q.salvaged_segments,
                "infertap_spool_quarantined_segments": q.quarantined_segments,
            }
            for name, value in values.items():
                fams[name].add_metric(label, float(value))
            dropped = fams["infertap_spool_dropped_records"]
            for reason in DropReason:
                dropped.add_metric([*label, reason.value], float(q.dropped_by_reason.get(reason.value, 0)))
        return list(fams.values())

    @staticmethod
    def _families() -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        gauges = {
            "infertap_sink_up": "1 when the last delivery or health check succeeded and the spool is up, else 0.",
            "infertap_spool_up": "1 when the spool can take records (open, no disk error, no seal waiting).",
            "infertap_delivery_consecutive_failures": "Failed delivery attempts since the last success.",
            "infertap_spool_bytes": "Bytes of unacknowledged segments on disk (sealed and open).",
            "infertap_spool_capacity_bytes": "Bound of the spool (max_spool_bytes).",
            "infertap_spool_segments": "Unacknowledged segments (sealed and open).",
            "infertap_spool_records": "Records in unacknowledged segments.",
            "infertap_spool_lag_seconds": "Age of the oldest unacknowledged segment; 0 when the spool is empty.",
        }
        counters = {
            "infertap_delivery_records": "Records the sink made durable at its destination (acknowledged segments).",
            "infertap_delivery_bytes": "Bytes the sink wrote to its destination (objects, messages, bodies).",
            "infertap_delivery_errors": "Failed sink starts, writes and flushes (each is retried from the spool).",
            "infertap_delivery_dropped_records": "Records the destination rejected for good (not retried).",
            "infertap_spool_appended_records": "Records written to the spool.",
            "infertap_spool_acked_records": "Records acknowledged by the sink and deleted from the spool.",
            "infertap_spool_disk_errors": "Failed disk operations of the spool (writes, seals, deletions, opening).",
            "infertap_spool_replayed_segments": "Segments found on disk at start, from an earlier run.",
            "infertap_spool_salvaged_segments": "Unsealed segments recovered after a crash.",
            "infertap_spool_quarantined_segments": "Unreadable segments moved aside.",
        }
        for name, doc in gauges.items():
            yield GaugeMetricFamily(name, doc, labels=["sink"])
        for name, doc in counters.items():
            yield CounterMetricFamily(name, doc, labels=["sink"])
        yield CounterMetricFamily(
            "infertap_spool_dropped_records",
            "Records handed to the spool and dropped, by reason: full, closed, unavailable, disk_error, corrupt, lost.",
            labels=["sink", "reason"],
        )
