"""In-memory sink for tests: keeps every batch it is given, and can be told to fail."""

from __future__ import annotations

import pyarrow as pa

from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import Health, SinkStats


class MemorySink:
    """Keeps written batches in :attr:`batches`; flushed ones in :attr:`flushed`.

    Set :attr:`fail` to make :meth:`write` and :meth:`flush` raise :class:`infertap.logger.errors.SinkError`, as a sink
    whose destination is down would.
    """

    name = "memory"

    def __init__(self) -> None:
        self.stats = SinkStats()
        self.batches: list[pa.RecordBatch] = []
        self.flushed: list[pa.RecordBatch] = []
        self.fail = False
        self.started = False
        self.closed = False

    def start(self) -> None:
        """Mark the sink started."""
        self.started = True

    def write(self, batch: pa.RecordBatch) -> None:
        """Keep ``batch`` until the next flush."""
        if self.fail:
            self.stats.errors += 1
            raise SinkError("destination is down", sink=self.name)
        self.batches.append(batch)

    def flush(self) -> None:
        """Move pending batches to :attr:`flushed` and count them as sent."""
        if self.fail:
            self.stats.errors += 1
            raise SinkError("destination is down", sink=self.name)
        for b in self.batches:
            self.stats.records_sent += b.num_rows
            self.stats.bytes_sent += b.nbytes
        self.flushed.extend(self.batches)
        self.batches.clear()

    def close(self) -> None:
        """Flush and mark closed."""
        self.flush()
        self.closed = True

    def healthcheck(self) -> Health:
        """Healthy unless :attr:`fail` is set."""
        return Health(not self.fail, "destination is down" if self.fail else "")

    def table(self) -> pa.Table:
        """Every flushed record as one table (schemas unified, missing tensor columns null)."""
        if not self.flushed:
            raise ValueError("no records flushed")
        return pa.concat_tables([pa.Table.from_batches([b]) for b in self.flushed], promote_options="default")
