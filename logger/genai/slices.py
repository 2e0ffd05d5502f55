"""Bounded slices of capture work: the capture worker gives the GIL back between small pieces of decoding.

In local placement the capture worker thread shares the interpreter with the proxy's event loop. A thread waiting
for the GIL gets it only when the holder drops it: at the switch interval (``sys.setswitchinterval``, 0.2 ms in the
sidecar, checked between bytecodes only, so never inside one long C call such as ``pyarrow.array`` of a large list)
or at a blocking call. Decoding one streamed answer is pure Python (about 10 µs per event, 0.35 ms for a 33-event
stream on the benchmark machine) and turning a batch of calls into Arrow columns takes about 2 ms for 50 calls:
held in one piece, either delays an event or a new request the loop is woken for by up to a switch interval, or
longer. A :class:`Slicer` ticked between pieces of that work (events of a stream; 32 calls of a column) drops the
GIL (:func:`release`) once its budget of work (:data:`SLICE_NS`) has run, so a waiting event loop gets the GIL
within about one budget. A release costs about 15 µs of CPU time, so the 50 µs budget makes decoding take about
30 % more CPU time (0.1 ms per 33-event stream); ``benchmarks/genai_capture_gil.py`` measured a 200 µs budget too:
cheaper (7 %), but the loop's wake-up p90 and p99 stayed closer to no slicing than to the 50 µs budget's.
"""

from __future__ import annotations

import time

#: Work between two releases of the GIL (nanoseconds): the longest the event loop waits for decoding to let it in.
SLICE_NS = 50_000


def release() -> None:
    """Drop the GIL and take it back: ``time.sleep(0)``, whose system call runs without the GIL.

    On Linux it sleeps for the thread's timer slack (50 µs by default; about 75 µs of wall time and 15 µs of CPU
    time on the benchmark machine), which is what hands the GIL over for sure: ``os.sched_yield()`` (1 µs) returns
    before a woken thread on another CPU has taken it, and the waiting thread's wait of a switch interval
    (``SWITCH_INTERVAL_S`` in ``logger/frontend.py``) starts over.
    """
    time.sleep(0)


class Slicer:
    """Counts the time since the GIL was last released; :meth:`tick` releases it when ``budget_ns`` (default
    :data:`SLICE_NS`) has run.

    A tick costs one ``time.perf_counter_ns()`` read (about 60 ns); a release one :func:`release` (about 15 µs of
    CPU time).
    """

    __slots__ = ("_last", "budget_ns", "releases")

    def __init__(self, budget_ns: int | None = None) -> None:
        self.budget_ns = SLICE_NS if budget_ns is None else budget_ns
        self.releases = 0
        self._last = time.perf_counter_ns()

    def tick(self) -> None:
        """Release the GIL once (``time.sleep(0)``) if ``budget_ns`` has passed since the last release."""
        now = time.perf_counter_ns()
        if now - self._last >= self.budget_ns:
            release()
            self.releases += 1
            self._last = time.perf_counter_ns()
