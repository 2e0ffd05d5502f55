"""The contracts of the sinks layer, which every sink implements and one parametrised contract test checks.

A sink receives Arrow record batches in the record schema (:mod:`infertap.logger.record`), one model per batch.
It is used from one thread at a time (the capture pipeline's worker, or a spool's delivery thread); ``write`` may
buffer, ``flush`` makes everything written so far durable at the destination, ``close`` flushes and releases
resources. A :class:`SegmentSink` also takes whole spool segments named by their id. :class:`DrainReport` is what
a spool's delivery loop leaves behind at shutdown.

Import graph of the layer (each module imports only those to its left):
``settings`` <- ``base`` <- ``partitions``, ``segment_files`` <- ``segments`` <- ``delivery`` <- ``spooled`` <-
``factory``; the sinks themselves (``file``, ``s3``, ``kafka``, ``cloudevents_http``, ``memory``) import ``base``,
``settings``, ``partitions`` and their helpers (``events``, ``loop_thread``) only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pyarrow as pa


@dataclass(slots=True)
class SinkStats:
    """Named pipeline events of one sink, cumulative since start.

    Attributes:
        records_sent: records made durable at the destination.
        bytes_sent: bytes written to the destination (files, objects or messages).
        records_dropped: records the sink gave up on.
        errors: failed write / flush attempts.
    """

    records_sent: int = 0
    bytes_sent: int = 0
    records_dropped: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Health:
    """Result of :meth:`Sink.healthcheck`: ``ok`` and a human-readable ``detail``."""

    ok: bool
    detail: str = ""


@runtime_checkable
class Sink(Protocol):
    """Destination of record batches.

    Attributes:
        name: short name used in metrics labels and logs (``"file"``, ``"s3"``, ``"kafka"`` ...).
        stats: cumulative :class:`SinkStats`.
    """

    name: str

    @property
    def stats(self) -> SinkStats:
        """Cumulative :class:`SinkStats`."""

    def start(self) -> None:
        """Open connections or directories.

        Raises :class:`infertap.logger.errors.SinkError` if the sink cannot start."""

    def write(self, batch: pa.RecordBatch) -> None:
        """Accept a batch of records (record schema, one model). Raises :class:`infertap.logger.errors.SinkError`."""

    def flush(self) -> None:
        """Make every accepted record durable. Raises :class:`infertap.logger.errors.SinkError`."""

    def close(self) -> None:
        """Flush and release resources; the sink is unusable afterwards."""

    def healthcheck(self) -> Health:
        """Whether the destination is reachable and writable now."""


@runtime_checkable
class SegmentSink(Protocol):
    """A sink that takes whole spool segments and names what it writes after the segment id.

    :meth:`write_segment` must make the batches durable before returning, and writing the same ``segment_id``
    again must overwrite rather than duplicate (the S3 sink's deterministic object keys).
    """

    def write_segment(self, segment_id: str, batches: Sequence[pa.RecordBatch]) -> None:
        """Write and make durable the records of one segment. Raises :class:`infertap.logger.errors.SinkError`."""


@dataclass(slots=True)
class DrainReport:
    """What :meth:`infertap.logger.sinks.delivery.SpoolDelivery.stop` left in the spool (all zero when everything
    was delivered)."""

    segments_left: int
    records_left: int
    bytes_left: int
