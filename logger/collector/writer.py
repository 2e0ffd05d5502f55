"""The collector's writer thread: pairs to records, records to Arrow batches, batches to the sink.

The event loop hands :class:`infertap.logger.collector.pairing.Pair` objects over with :meth:`RecordWriter.put`
(a ``deque.append``). The thread builds records (decoding payloads), encodes batches and writes them; every
``flush_interval_s`` it flushes the sink and only then releases the journal tokens of what it wrote, so a half
leaves the journal only once its record is durable. A failed write or flush keeps the batch and retries it on the
next round (the backlog then grows, and the receiver answers 429 past ``max_pending``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from infertap.logger import batching
from infertap.logger.collector.journal import Journal
from infertap.logger.collector.metrics import CollectorMetrics
from infertap.logger.collector.pairing import Pair
from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import Sink

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.005
_RETRY_S = 1.0


@dataclass(slots=True)
class _Written:
    tokens: list[int]
    received_ns: list[int]


class RecordWriter:
    """Thread that turns pairs into records in ``sink``.

    Args:
        build: a pair to its record (:func:`infertap.logger.collector.records.build`).
        sink: where batches go (started and closed by this writer).
        journal: released after each successful flush.
        metrics: the collector's metrics.
        batch_max_records, batch_max_delay_s, flush_interval_s: batching and flushing cadence (records, seconds).
    """

    def __init__(
        self,
        build: Callable[[Pair], object],
        sink: Sink,
        journal: Journal,
        metrics: CollectorMetrics,
        *,
        batch_max_records: int,
        batch_max_delay_s: float,
        flush_interval_s: float,
    ) -> None:
        self.build = build
        self.sink = sink
        self.journal = journal
        self.metrics = metrics
        self.batch_max_records = batch_max_records
        self.batch_max_delay_s = batch_max_delay_s
        self.flush_interval_s = flush_interval_s
        self._queue: deque[Pair] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unflushed = _Written([], [])
        self.healthy = True
        self._held = 0
        metrics.backlog.set_function(lambda: self.backlog)

    @property
    def backlog(self) -> int:
        """Pairs waiting to be written: queued, being encoded, or in batches waiting for a retry."""
        return len(self._queue) + self._held

    def put(self, pairs: list[Pair]) -> None:
        """Hand pairs over (never waits)."""
        self._queue.extend(pairs)

    def start(self) -> None:
        """Start the sink and the thread. Raises :class:`infertap.logger.errors.SinkError` if the sink cannot start."""
        self.sink.start()
        self._thread = threading.Thread(target=self._run, name="infertap-collector-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> int:
        """Write what is queued, flush, close the sink. Returns the pairs left unwritten (0: everything durable)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        try:
            self.sink.close()
        except SinkError as exc:
            log.error("closing sink: %s", exc)
        return len(self._queue)

    def _run(self) -> None:
        pending: list[tuple[pa.RecordBatch, list[int], list[int]]] = []
        records: list[object] = []
        tokens: list[int] = []
        received: list[int] = []
        last_batch = last_flush = time.monotonic()
        while True:
            stopping = self._stopping.is_set()
            # while batches wait for a retry nothing more is taken: the queue grows, and the receiver refuses (429)
            while self._queue and len(records) < self.batch_max_records and not pending:
                self._held += 1  # counted as held before it leaves the queue: the backlog never dips in between
                pair = self._queue.popleft()
                try:
                    records.append(self.build(pair))
                except Exception:  # a bug in record building must not kill the writer; the half stays journaled
                    log.exception("building the record of %s failed", pair.id)
                    continue
                tokens.extend(pair.tokens)
                received.extend(h.received_unix_ns for h in (pair.request, pair.response) if h is not None)
            now = time.monotonic()
            if records and (len(records) >= self.batch_max_records or now - last_batch >= self.batch_max_delay_s
                            or stopping):  # fmt: skip
                try:
                    batches = batching.to_batches(records)  # type: ignore[arg-type]
                except Exception:  # a bug in encoding must not kill the writer; the halves stay journaled
                    log.exception("encoding %d records failed; their events stay in the journal", len(records))
                    batches = []
                last = len(batches) - 1  # tokens ride on the last batch: released once every batch is written
                for i, batch in enumerate(batches):
                    pending.append((batch, tokens if i == last else [], received if i == last else []))
                records, tokens, received, last_batch = [], [], [], now
            if pending:
                pending = self._write(pending)
            self._held = len(records) + sum(batch.num_rows for batch, _, _ in pending)
            done = stopping and not self._queue and not pending and not records
            if self._unflushed.tokens and (now - last_flush >= self.flush_interval_s or done):
                self._flush()
                last_flush = now
            if done:
                return
            if pending and not self.healthy:
                self._stopping.wait(_RETRY_S)
            elif not self._queue:
                time.sleep(_IDLE_POLL_S)

    def _write(
        self, pending: list[tuple[pa.RecordBatch, list[int], list[int]]]
    ) -> list[tuple[pa.RecordBatch, list[int], list[int]]]:
        for i, (batch, tokens, received) in enumerate(pending):
            try:
                self.sink.write(batch)
            except SinkError as exc:
                self.metrics.sink_errors.inc()
                if self.healthy:
                    log.error("sink write failed, retrying (%d batches wait): %s", len(pending) - i, exc)
                self.healthy = False
                return pending[i:]
            self.healthy = True
            self.metrics.written.inc(batch.num_rows)
            self._unflushed.tokens += tokens
            self._unflushed.received_ns += received
        return []

    def _flush(self) -> None:
        try:
            self.sink.flush()
        except SinkError as exc:
            self.metrics.sink_errors.inc()
            self.healthy = False
            log.error("sink flush failed (the journal keeps the events): %s", exc)
            return
        done, self._unflushed = self._unflushed, _Written([], [])
        self.journal.release(done.tokens)
        now = time.time_ns()
        for ns in done.received_ns:
            self.metrics.lag.observe(max(now - ns, 0) / 1e9)
