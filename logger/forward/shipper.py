"""Forward mode's capture stage in the sidecar: frame exchanges into the raw spool, ship sealed segments.

Two threads, neither on the event loop:

- the **framer** takes exchanges from the bounded queue the proxy fills (:meth:`ForwardPipeline.offer`: a length
  check and a ``deque.append``), samples them, filters headers by the allow-list, redacts the query string, packs
  a frame (:mod:`.wire`) and appends it to the spool (:mod:`.rawspool`); it seals the open segment every
  ``seal_interval_s`` or when it is full;
- the **sender** posts each sealed segment, oldest first, as one batch to the collector over one persistent
  HTTP/1.1 connection (``http.client``: keep-alive, reconnect on error) and deletes the segment only on ``200``,
  which the collector answers once the batch is in its journal. ``429``/``503``/network errors are retried with
  backoff (0.1 s doubling to 5 s); ``400``/``413`` mean the batch can never be accepted: the segment is set aside as
  ``.rejected`` and its frames are counted as dropped.

A collector outage therefore never touches the proxy: frames wait on disk, past the spool's bound new ones are
dropped (``infertap_capture_dropped_total{reason="spool_full"}``), and delivery resumes when the collector answers.
:meth:`ForwardPipeline.stop` (SIGTERM) frames what is queued, seals, and sends until the spool is empty or the time
is up; what is left is sent by the next start.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Gauge

from infertap.logger.exchange import Exchange
from infertap.logger.forward import wire
from infertap.logger.forward.rawspool import RawSpool
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.redact import HeaderFilter, QueryRedactor
from infertap.logger.sampling import Sampler

log = logging.getLogger(__name__)

_STOP_POLL_S = 0.005  # stop() checks this often whether the sender has emptied the spool
#: longest time an exchange waits in the queue while a segment is open: the framer wakes this often, or when the
#: queue holds :data:`_WAKE_BATCH` exchanges, so the event loop pays one wake-up per batch, not one per exchange
_FRAME_DELAY_S = 0.05
_WAKE_BATCH = 64
_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.1, 5.0
#: the metric label of forward mode's writes (``infertap_capture_written_records_total{sink="forward"}``)
SINK_NAME = "forward"


class Framer:
    """An exchange to a frame: sampling, header allow-list, query redaction, capture mode (hot path's neighbour).

    Args:
        sampler: decides which exchanges are kept (failures always are).
        headers: the allow-list filter (credentials never pass it).
        query: redacts secret query parameters.
        capture_mode: ``all``, ``request`` or ``response``; the side not captured leaves its body behind.
    """

    def __init__(self, sampler: Sampler, headers: HeaderFilter, query: QueryRedactor, capture_mode: str) -> None:
        self.sampler = sampler
        self.headers = headers
        self.query = query
        self.keep_request = capture_mode != "response"
        self.keep_response = capture_mode != "request"

    def frame(self, ex: Exchange) -> bytes | None:
        """The frame of ``ex``, or ``None`` when sampling leaves it out."""
        if not self.sampler.keep(ex):
            return None
        generative = ex.route.protocol.generative  # its metrics need both sides, decoded on the collector
        return wire.pack_frame(
            ex,
            self.query(ex.query) if ex.query else "",
            self.headers(ex.request_headers),
            self.headers(ex.response_headers),
            ex.route.request_header,
            ex.route.response_header,
            keep_request=self.keep_request or generative,
            keep_response=self.keep_response or generative,
        )


class Sender:
    """Posts sealed segments to the collector over one keep-alive connection.

    Args:
        collector_url: ``http://host:port`` (a path prefix is kept: ``<url>/forward/v1/batches``).
        meta: the batch ``meta`` (:data:`infertap.logger.forward.wire.META_KEYS`).
        timeout_s: connect and read timeout of one POST (seconds).

    Raises:
        ValueError: the URL is not ``http://``.
    """

    def __init__(self, collector_url: str, meta: dict[str, Any], *, timeout_s: float) -> None:
        url = urlsplit(collector_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"collector URL must be http://host[:port], got {collector_url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.path = url.path.rstrip("/") + wire.BATCH_PATH
        self.meta = meta
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def post(self, frames: list[bytes]) -> int:
        """POST one batch; the HTTP status (0 for a network error: connection refused, reset, timeout)."""
        body = wire.pack_batch(self.meta, frames)
        for attempt in (0, 1):  # a pooled connection the collector closed fails once: retry on a fresh one
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                self._conn.request("POST", self.path, body, {"Content-Type": wire.CONTENT_TYPE})
                resp = self._conn.getresponse()
                resp.read()
                if resp.will_close:
                    self.close()
                return resp.status
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt or not isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError):
                    log.debug("forward post failed: %r", exc)
                    return 0
        return 0  # pragma: no cover - the loop always returns

    def close(self) -> None:
        """Close the connection (reopened by the next post)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ForwardPipeline:
    """Queue + framer thread + sender thread: forward mode's :class:`infertap.logger.exchange.ExchangeConsumer`.

    Args:
        framer: exchange → frame.
        spool: the raw spool (opened by :meth:`start`).
        sender: posts batches.
        metrics: the sidecar's metrics (drops, written records, sink bytes and errors, queue depth).
        queue_max: bound of the in-memory queue (exchanges).
        seal_interval_s: longest time a frame waits in the open segment before it becomes deliverable (seconds):
            the latency of forwarding, and with fsync on seal what a node crash can lose.
    """

    def __init__(
        self,
        framer: Framer,
        spool: RawSpool,
        sender: Sender,
        metrics: ProxyMetrics,
        *,
        queue_max: int,
        seal_interval_s: float,
    ) -> None:
        self.framer = framer
        self.spool = spool
        self.sender = sender
        self.metrics = metrics
        self.queue_max = queue_max
        self.seal_interval_s = seal_interval_s
        self._queue: deque[Exchange] = deque()
        self._stop_framing = threading.Event()
        self._work = threading.Event()  # set by offer() when the framer should wake (or by stop)
        self._framer_idle = False  # the framer waits with nothing queued and no open segment: wake on the next one
        self._wake_at = max(1, min(_WAKE_BATCH, queue_max // 2))
        self._segment_ready = threading.Event()  # set by the framer after a seal (or by stop): the sender wakes
        self._stop_sending = threading.Event()
        self._framer_thread: threading.Thread | None = None
        self._sender_thread: threading.Thread | None = None
        self._dropped_full = metrics.dropped.labels("queue_full")
        self._dropped_spool = metrics.dropped.labels("spool_full")
        self._captured = metrics.captured  # a frame in the spool is a record to be, written by the collector
        self._written = metrics.written.labels(SINK_NAME)
        self._sent_bytes = metrics.sink_bytes.labels(SINK_NAME)
        self._errors = metrics.sink_errors.labels(SINK_NAME)
        self._last_drop_log = 0.0
        self.dropped = 0
        self.delivered = 0
        self.connected = False
        metrics.queue_depth.set_function(lambda: len(self._queue))
        metrics.queue_capacity.set(queue_max)
        Gauge(
            "infertap_forward_spool_frames", "Forward mode: exchanges in the raw spool, not yet acknowledged by the "
            "collector.", registry=metrics.registry,
        ).set_function(lambda: spool.waiting_frames)  # fmt: skip
        Gauge(
            "infertap_forward_spool_bytes", "Forward mode: bytes of the raw spool's segment files.",
            registry=metrics.registry,
        ).set_function(lambda: spool.total_bytes)  # fmt: skip

    # --- hot path -------------------------------------------------------------------------------------------
    def offer(self, exchange: Exchange) -> bool:
        """Enqueue ``exchange`` without waiting; ``False`` (and a counted drop) when the queue is full.

        The framer is woken only when it sleeps with nothing to do, or when a batch of exchanges is waiting
        (:data:`_WAKE_BATCH`); otherwise it picks the queue up on its own within :data:`_FRAME_DELAY_S`.
        """
        queue = self._queue
        if len(queue) >= self.queue_max:
            self.dropped += 1
            self._dropped_full.inc()
            return False
        queue.append(exchange)
        if self._framer_idle or len(queue) == self._wake_at:  # read after the append (see _wait_for_work)
            self._work.set()
        return True

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the spool (salvaging an earlier run's segments) and start both threads.

        Raises:
            OSError: the spool directory is unusable.
        """
        waiting = self.spool.open()
        if waiting:
            log.info("forward spool: %d frames of an earlier run wait for the collector", waiting)
        self._framer_thread = threading.Thread(target=self._frame_loop, name="infertap-forward-framer", daemon=True)
        self._sender_thread = threading.Thread(target=self._send_loop, name="infertap-forward-sender", daemon=True)
        self._framer_thread.start()
        self._sender_thread.start()

    def stop(self, timeout_s: float = 30.0) -> int:
        """Frame what is queued, seal, send until the spool is empty or ``timeout_s`` is over.

        Returns:
            Frames not delivered (they stay in the spool for the next start) plus exchanges still queued.
        """
        deadline = time.monotonic() + timeout_s
        self._stop_framing.set()
        self._work.set()
        if self._framer_thread is not None:
            self._framer_thread.join(max(deadline - time.monotonic(), 0.1))
        while self.spool.sealed_frames and time.monotonic() < deadline and self._sender_alive():
            time.sleep(_STOP_POLL_S)
        self._stop_sending.set()
        self._segment_ready.set()
        if self._sender_thread is not None:
            self._sender_thread.join(max(deadline - time.monotonic(), 0.1) + self.sender.timeout_s)
        self.sender.close()
        left = self.spool.waiting_frames + len(self._queue)
        if left:
            log.warning("forward: %d frames stay in the spool %s for the next start", left, self.spool.directory)
        return left

    def _sender_alive(self) -> bool:
        return self._sender_thread is not None and self._sender_thread.is_alive()

    @property
    def queue_depth(self) -> int:
        """Exchanges waiting to be framed."""
        return len(self._queue)

    # --- framer thread --------------------------------------------------------------------------------------
    def _frame_loop(self) -> None:
        last_seal = time.monotonic()
        while True:
            stopping = self._stop_framing.is_set()
            while self._queue:
                ex = self._queue.popleft()
                try:
                    frame = self.framer.frame(ex)
                    if frame is None:
                        self.metrics.sampled_out.inc()
                        continue
                    if self.spool.append(frame):
                        self._captured.inc()
                    else:
                        self._count_spool_drop()
                except OSError as exc:
                    log.error("forward spool write failed, exchange %s lost: %s", ex.request_id, exc)
                    self._errors.inc()
                    self._dropped_spool.inc()
                except Exception:  # a bug in framing must not kill the thread
                    log.exception("framing failed for request %s", ex.request_id)
                    self.metrics.dropped.labels("encode_error").inc()
            now = time.monotonic()
            if self.spool.open_frames and (now - last_seal >= self.seal_interval_s or stopping):
                try:
                    self.spool.seal()
                except OSError as exc:
                    log.error("forward spool seal failed: %s", exc)
                    self._errors.inc()
                last_seal = now
            elif not self.spool.open_frames:
                last_seal = now
            if self.spool.sealed_frames:  # sealed here or by append() when a segment filled up
                self._segment_ready.set()
            if stopping and not self._queue:
                return
            self._wait_for_work(last_seal + self.seal_interval_s - now)

    def _wait_for_work(self, until_seal_s: float) -> None:
        """Sleep until :meth:`offer` or :meth:`stop` wakes the framer, or the open segment is due (or
        :data:`_FRAME_DELAY_S`). With no segment open and nothing queued, sleep until the next exchange."""
        self._framer_idle = not self.spool.open_frames
        self._work.clear()  # before looking at the queue: an offer after this look sets the event again
        if len(self._queue) >= self._wake_at:
            self._framer_idle = False
            return
        if self.spool.open_frames or self._queue:
            self._framer_idle = False
            self._work.wait(max(min(_FRAME_DELAY_S, until_seal_s), 0.0))
            return
        try:
            if not self._queue and not self._stop_framing.is_set():
                self._work.wait()
        finally:
            self._framer_idle = False

    def _count_spool_drop(self) -> None:
        self.dropped += 1
        self._dropped_spool.inc()
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:
            log.warning("forward spool full (%d bytes): dropping exchanges", self.spool.max_bytes)
            self._last_drop_log = now

    # --- sender thread --------------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        backoff = _BACKOFF_MIN_S
        while not self._stop_sending.is_set():
            self._segment_ready.clear()  # before looking at the spool: a seal after this look sets it again
            seq = self.spool.oldest()
            if seq is None:
                if not self._stop_sending.is_set():
                    self._segment_ready.wait()  # the framer (a sealed segment) or stop() sets it
                continue
            try:
                frames = self.spool.read(seq)
            except OSError as exc:
                log.error("forward spool: segment %d unreadable: %s", seq, exc)
                self._errors.inc()
                self._stop_sending.wait(backoff)
                continue
            status = self.sender.post(frames) if frames else 200
            if status == 200:
                self.spool.ack(seq)
                self.delivered += len(frames)
                self._written.inc(len(frames))
                self._sent_bytes.inc(sum(map(len, frames)))
                self.connected, backoff = True, _BACKOFF_MIN_S
            elif status in (400, 413):
                log.error("collector refused segment %d (%d frames) with %d: set aside", seq, len(frames), status)
                self._errors.inc()
                self.spool.reject(seq)
                self.metrics.dropped.labels("rejected").inc(len(frames))
            else:
                if self.connected or backoff == _BACKOFF_MIN_S:
                    log.warning("collector unavailable (status %s): %d frames wait", status or "none",
                                self.spool.sealed_frames)  # fmt: skip
                self.connected = False
                self._errors.inc()
                self._stop_sending.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
