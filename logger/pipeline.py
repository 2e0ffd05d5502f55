"""The capture pipeline: a bounded queue filled by the proxy, drained by one worker thread.

The proxy calls :meth:`CapturePipeline.offer` on its hot path: a length check and a ``deque.append``, never a
wait. A full queue drops the exchange, counts it (``infertap_capture_dropped_total{reason="queue_full"}``) and logs
at most once per :data:`DROP_LOG_INTERVAL_S`. The worker thread does everything else, away from the event loop:
capture (sample, redact, decode), Arrow encoding, and the sink's writes (after each, the freed pages go back to the
kernel: :func:`infertap.logger.memory.trim_malloc`); it flushes the sink every
``flush_interval_s``, which bounds what a hard kill can lose to the records of the last interval.

The worker never polls an empty queue: with nothing queued and no batch pending it sleeps until :meth:`offer`
wakes it (one wake-up per idle spell, not one per exchange) or its written records are due for their flush; while
a batch is pending it picks the queue up every :data:`_BUSY_INTERVAL_S`, in small pieces of work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from infertap.logger import batching
from infertap.logger.capture import Capturer
from infertap.logger.errors import SinkError
from infertap.logger.exchange import Exchange
from infertap.logger.memory import trim_malloc
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.record import CapturedRecord
from infertap.logger.sinks.base import Sink

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL_S = 10.0
#: While exchanges arrive, the worker picks them up this often (seconds): small pieces of work, so that the event
#: loop never waits long for the GIL, and no wake-up from the event loop per exchange. With nothing queued and no
#: batch pending it sleeps until :meth:`CapturePipeline.offer` wakes it (or the next flush is due).
_BUSY_INTERVAL_S = 0.005


class CapturePipeline:
    """Queue + worker that turns exchanges into records and hands record batches to a sink.

    Args:
        capturer: the capture stage.
        sink: where record batches go.
        metrics: the sidecar's metrics.
        queue_max: bound of the queue (exchanges).
        batch_max_records: records per batch handed to the sink.
        batch_max_delay_s: longest a record waits before its batch is written (seconds).
        flush_interval_s: the sink is flushed this often (seconds).
    """

    def __init__(
        self,
        capturer: Capturer,
        sink: Sink,
        metrics: ProxyMetrics,
        *,
        queue_max: int,
        batch_max_records: int,
        batch_max_delay_s: float,
        flush_interval_s: float,
    ) -> None:
        self.capturer = capturer
        self.sink = sink
        self.metrics = metrics
        self.queue_max = queue_max
        self.batch_max_records = batch_max_records
        self.batch_max_delay_s = batch_max_delay_s
        self.flush_interval_s = flush_interval_s
        self._queue: deque[Exchange] = deque()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # set by offer() when the worker sleeps with nothing to do, and by stop()
        self._idle = False  # the worker sleeps with nothing queued and no batch pending: wake it on the next offer
        self._thread: threading.Thread | None = None
        self._dropped_full = metrics.dropped.labels("queue_full")
        self._last_drop_log = 0.0
        self._drops_since_log = 0
        self.dropped = 0
        metrics.queue_depth.set_function(lambda: len(self._queue))
        metrics.queue_capacity.set(queue_max)

    # --- hot path -------------------------------------------------------------------------------------------
    def offer(self, exchange: Exchange) -> bool:
        """Enqueue ``exchange`` without waiting; ``False`` (and a counted drop) when the queue is full.

        The worker is woken only when it sleeps with nothing to do; otherwise it picks the queue up on its own
        within :data:`_BUSY_INTERVAL_S`.
        """
        if len(self._queue) >= self.queue_max:
            self.dropped += 1
            self._dropped_full.inc()
            self._drops_since_log += 1
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
                log.warning("capture queue full (%d): dropped %d exchanges", self.queue_max, self._drops_since_log)
                self._last_drop_log, self._drops_since_log = now, 0
            return False
        self._queue.append(exchange)
        if self._idle:  # read after the append (see _sleep)
            self._wake.set()
        return True

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sink and the worker thread. Raises :class:`infertap.logger.errors.SinkError` if the sink fails."""
        self.sink.start()
        self._thread = threading.Thread(target=self._run, name="infertap-capture", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> int:
        """Drain the queue, write and flush everything, close the sink.

        Returns:
            Exchanges still queued when ``timeout_s`` ran out (0 when everything was drained).
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        left = len(self._queue)
        try:
            self.sink.close()
        except SinkError as exc:
            log.error("closing sink: %s", exc)
        return left

    @property
    def queue_depth(self) -> int:
        """Exchanges waiting now."""
        return len(self._queue)

    # --- worker ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        pending: list[CapturedRecord] = []
        last_write = last_flush = time.monotonic()  # records written since the last flush: last_write > last_flush
        while True:
            stopping = self._stopping.is_set()
            while self._queue and len(pending) < self.batch_max_records:
                ex = self._queue.popleft()
                try:
                    rec = self.capturer.process(ex)
                except Exception:  # a bug in capture must not kill the worker
                    log.exception("capture failed for request %s", ex.request_id)
                    self.metrics.dropped.labels("encode_error").inc()
                    continue
                if rec is not None:
                    pending.append(rec)
            now = time.monotonic()
            due = len(pending) >= self.batch_max_records or now - last_write >= self.batch_max_delay_s
            if pending and (due or stopping):
                self._write(pending)
                pending = []
                last_write = now
                trim_malloc()  # the batch's records and Arrow buffers are freed: hand their pages back
            if now - last_flush >= self.flush_interval_s or (stopping and not self._queue):
                self._flush()
                last_flush = now
            if stopping and not self._queue and not pending:
                return
            if not self._queue:
                if pending:  # busy: back within the busy interval, or when the batch is due
                    self._sleep(min(_BUSY_INTERVAL_S, last_write + self.batch_max_delay_s - now), idle=False)
                elif last_write > last_flush:  # idle, written records unflushed: until an exchange or their flush
                    self._sleep(last_flush + self.flush_interval_s - now, idle=True)
                else:  # idle with everything flushed: until an exchange arrives; the flush clock starts over then
                    self._sleep(None, idle=True)
                    last_flush = time.monotonic()

    def _sleep(self, timeout_s: float | None, *, idle: bool) -> None:
        """Sleep ``timeout_s`` seconds (``None``: no limit); ``idle`` lets :meth:`offer` wake the worker sooner.

        :meth:`stop` always wakes it.
        """
        self._idle = idle
        self._wake.clear()  # before looking at the queue: an offer after this look sets the event again
        try:
            if not self._queue and not self._stopping.is_set():
                self._wake.wait(None if timeout_s is None else max(timeout_s, 0.0))
        finally:
            self._idle = False

    def _write(self, records: list[CapturedRecord]) -> None:
        try:
            batches = batching.to_batches(records)
        except Exception:
            log.exception("encoding %d records failed", len(records))
            self.metrics.dropped.labels("encode_error").inc(len(records))
            return
        for batch in batches:
            try:
                self.sink.write(batch)
            except SinkError as exc:
                log.error("sink write failed, %d records lost: %s", batch.num_rows, exc)
                self.metrics.dropped.labels("sink_error").inc(batch.num_rows)
                self.metrics.sink_errors.labels(self.sink.name).inc()
                continue
            self.metrics.written.labels(self.sink.name).inc(batch.num_rows)

    def _flush(self) -> None:
        before = self.sink.stats.bytes_sent
        try:
            self.sink.flush()
        except SinkError as exc:
            log.error("sink flush failed: %s", exc)
            self.metrics.sink_errors.labels(self.sink.name).inc()
        self.metrics.sink_bytes.labels(self.sink.name).inc(self.sink.stats.bytes_sent - before)
