"""Prometheus metrics of the collector, in the sidecar's naming (docs/metrics.md, "Collector")."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Receipt of an event to its record durable at the sink, seconds (includes the pairing window).
LAG_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class CollectorMetrics:
    """The collector's metrics, in their own :class:`CollectorRegistry` (``registry``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "infertap_collector_events_received", "Events accepted (durable in the journal), by type and transport.",
            ["type", "transport"], registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "infertap_collector_events_rejected",
            "Events refused, by reason (malformed, too_large, overloaded, journal_error, stopping).",
            ["reason", "transport"], registry=r,
        )  # fmt: skip
        self.joined = Counter("infertap_collector_pairs_joined", "Request and response joined into one record.",
                              registry=r)  # fmt: skip
        self.timed_out = Counter(
            "infertap_collector_halves_timed_out",
            "Halves written alone, by reason (window: no partner within the window; full: the window was at its "
            "bound; shutdown).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.duplicates = Counter(
            "infertap_collector_duplicate_events", "Events ignored: the same side of the same id was waiting.",
            registry=r,
        )  # fmt: skip
        self.decode_errors = Counter(
            "infertap_collector_decode_errors",
            "Payloads that could not be decoded (the record keeps the raw body and the error), by protocol.",
            ["protocol"], registry=r,
        )  # fmt: skip
        self.written = Counter("infertap_collector_records_written", "Records accepted by the sink.", registry=r)
        self.sink_errors = Counter("infertap_collector_sink_errors", "Failed sink writes or flushes (retried).",
                                   registry=r)  # fmt: skip
        self.lag = Histogram(
            "infertap_collector_durability_lag_seconds",
            "From an event's receipt to its record being durable at the sink (pairing wait included).",
            buckets=LAG_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.waiting_halves = Gauge("infertap_collector_pairing_halves", "Halves waiting for a partner.", registry=r)
        self.waiting_bytes = Gauge("infertap_collector_pairing_bytes", "Payload bytes waiting for a partner.",
                                   registry=r)  # fmt: skip
        self.backlog = Gauge("infertap_collector_pending_records", "Pairs waiting to be encoded and written.",
                             registry=r)  # fmt: skip
        self.journal_pending = Gauge(
            "infertap_collector_journal_pending_halves", "Halves in the journal whose record is not yet durable.",
            registry=r,
        )  # fmt: skip
        self.journal_bytes = Gauge("infertap_collector_journal_bytes", "Bytes of the journal's files.", registry=r)
        self.kafka_partitions = Gauge(
            "infertap_collector_kafka_assigned_partitions", "Partitions of the source topic assigned to this replica.",
            registry=r,
        )  # fmt: skip
