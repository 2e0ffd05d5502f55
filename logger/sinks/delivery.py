"""The delivery loop: a thread that hands a spool's sealed segments to one sink, in order, and acknowledges each
once the sink made it durable (:class:`SpoolDelivery`), and what it knows about its sink (:class:`DeliveryState`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field

from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import DrainReport, Health, SegmentSink, Sink
from infertap.logger.sinks.segments import Spool, SpoolError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeliveryState:
    """What the delivery loop knows about its sink, for metrics and readiness.

    ``delivered_records`` counts a segment's records once, when the spool acknowledges it: a sink's own
    ``stats.records_sent`` also counts what a failed attempt had sent before it failed, so retries count twice
    there.
    """

    health: Health = field(default_factory=lambda: Health(False, "not started"))
    started: bool = False
    consecutive_failures: int = 0
    last_error: str = ""
    delivered_segments: int = 0
    delivered_records: int = 0  # records of acknowledged segments: each counted once, however often retried
    start_failures: int = 0  # failed sink starts (counted with the sink's write errors as delivery errors)
    attempt_started: float | None = None  # time.monotonic() when the running delivery attempt began

    def up(self, stall_after_s: float) -> bool:
        """Healthy, and no delivery attempt has been running for ``stall_after_s`` seconds or more.

        A sink blocked inside a call (a producer flush waiting on an unreachable broker) is down as soon as it
        has been blocked for ``stall_after_s``, not only when the call finally fails.
        """
        started = self.attempt_started
        return self.health.ok and (started is None or time.monotonic() - started < stall_after_s)


class SpoolDelivery:
    """A thread that hands sealed segments to one sink, in order, and acknowledges each once the sink has it.

    For each segment: read its batches; if the sink is a :class:`SegmentSink` call ``write_segment(id, batches)``,
    else ``write`` every batch and ``flush``; on success :meth:`Spool.ack`. A :class:`infertap.logger.errors.SinkError`
    leaves the segment in the spool and retries it after an exponential backoff with full jitter (``initial``
    doubling to ``max``), for as long as it takes: meanwhile the spool fills and its overflow policy applies.
    Starting the sink is retried the same way, so a sink that is down at boot does not stop the sidecar.

    Args:
        spool: an opened :class:`Spool`.
        sink: the destination; used only from this thread.
        backoff_initial_s: first retry delay (seconds).
        backoff_max_s: longest retry delay (seconds).
        healthcheck_interval_s: how often an idle loop refreshes :attr:`state` ``.health`` (seconds).
        poll_s: how long the idle loop waits for a segment before sealing due ones (seconds).
        rng: randomness of the jitter (tests).
    """

    def __init__(
        self,
        spool: Spool,
        sink: Sink,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        healthcheck_interval_s: float = 15.0,
        poll_s: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self.spool = spool
        self.sink = sink
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.healthcheck_interval_s = healthcheck_interval_s
        self.poll_s = poll_s
        self.state = DeliveryState()
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._drain_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._last_health = 0.0

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the delivery thread (which starts the sink)."""
        self._stop.clear()
        self._drain_deadline = None
        self._thread = threading.Thread(target=self._run, name=f"infertap-deliver-{self.sink.name}", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 30.0) -> DrainReport:
        """Seal the spool, deliver what it holds for at most ``grace_s``, stop, close the sink.

        Call after the capture pipeline stopped appending. Returns what stayed in the spool (it is replayed on
        the next start); logs it when not empty.
        """
        self.spool.seal()
        self._drain_deadline = time.monotonic() + grace_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace_s + 5.0)
            self._thread = None
        if self.state.started:
            try:
                self.sink.close()
            except SinkError as exc:
                log.error("closing sink %s: %s", self.sink.name, exc)
        self.spool.close()
        report = DrainReport(self.spool.pending_segments, self.spool.pending_records, self.spool.used_bytes)
        if report.segments_left:
            log.warning(
                "sink %s: %d records in %d segments (%d bytes) stay in the spool %s for the next start",
                self.sink.name,
                report.records_left,
                report.segments_left,
                report.bytes_left,
                self.spool.directory,
            )
        return report

    # --- one pass (also used by tests) ----------------------------------------------------------------------
    def deliver_pending(self) -> int:
        """Start the sink if needed and deliver every sealed segment once, in order, stopping at the first failure.

        Returns:
            Segments delivered.

        Raises:
            SinkError: the first failure (the segment stays in the spool).
        """
        if not self.state.started:
            try:
                self.sink.start()
            except Exception:
                self.state.start_failures += 1
                raise
            self.state.started = True
        delivered = 0
        for seg in self.spool.segments():
            try:
                batches = self.spool.read(seg)
            except SpoolError as exc:
                self.spool.quarantine(seg, str(exc))
                continue
            self.state.attempt_started = time.monotonic()
            try:
                if isinstance(self.sink, SegmentSink):
                    self.sink.write_segment(seg.id, batches)
                else:
                    for b in batches:
                        self.sink.write(b)
                    self.sink.flush()
            finally:
                self.state.attempt_started = None
            self.spool.ack(seg)
            delivered += 1
            self.state.delivered_segments += 1
            self.state.delivered_records += seg.records
            self.state.consecutive_failures = 0
            self.state.last_error = ""
            self.state.health = Health(True)
        return delivered

    # --- thread ---------------------------------------------------------------------------------------------
    def _draining_done(self) -> bool:
        if not self._stop.is_set():
            return False
        if self._drain_deadline is not None and time.monotonic() >= self._drain_deadline:
            return True
        return not self.spool.segments()

    def _run(self) -> None:
        while not self._draining_done():
            try:
                self.deliver_pending()
            except SinkError as exc:
                self._failed(str(exc))
                continue
            except Exception as exc:  # a sink bug must not kill delivery; the segment stays spooled
                log.exception("sink %s: unexpected error", self.sink.name)
                self._failed(f"unexpected: {exc!r}")
                continue
            if self._stop.is_set():
                continue
            now = time.monotonic()
            if now - self._last_health >= self.healthcheck_interval_s:
                self._last_health = now
                try:
                    self.state.health = self.sink.healthcheck()
                except Exception as exc:
                    self.state.health = Health(False, f"healthcheck failed: {exc!r}")
            self.spool.seal_due()
            if not self.spool.segments():
                self.spool.wait(self.poll_s)

    def _failed(self, error: str) -> None:
        self.spool.seal_due()  # the spool's own upkeep (seal retries, a deleted directory) goes on meanwhile
        self.state.consecutive_failures += 1
        self.state.last_error = error
        self.state.health = Health(False, error)
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (self.state.consecutive_failures - 1))
        delay = self._rng.uniform(0, delay)
        if self.state.consecutive_failures in (1, 10) or self.state.consecutive_failures % 100 == 0:
            log.warning(
                "sink %s: delivery failed %d times in a row, retrying in %.2fs: %s",
                self.sink.name,
                self.state.consecutive_failures,
                delay,
                error,
            )
        if self._drain_deadline is not None:  # draining: retry within the grace period
            time.sleep(max(0.0, min(delay, self._drain_deadline - time.monotonic())))
        else:
            self._stop.wait(delay)
