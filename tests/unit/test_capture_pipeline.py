"""Local mode's capture worker: it sleeps without work, wakes when an exchange comes, and loses nothing on stop."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa

from infertap.logger.metrics import ProxyMetrics
from infertap.logger.pipeline import CapturePipeline
from infertap.logger.sinks.memory import MemorySink

from .conftest import CapturerFactory, make_exchange

_GUARD_S = 30.0  # only ends a wait that would otherwise hang a broken build; never a timing assertion


class WatchedSink(MemorySink):
    """A memory sink that lets a test wait for a number of written records."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Condition()

    def write(self, batch: pa.RecordBatch) -> None:
        with self.arrived:
            super().write(batch)
            self.arrived.notify_all()

    def flush(self) -> None:
        with self.arrived:
            super().flush()
            self.arrived.notify_all()

    def written(self) -> int:
        return sum(b.num_rows for b in [*self.flushed, *self.batches])

    def wait_for(self, n: int) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: self.written() >= n, _GUARD_S)


class WatchedEvent(threading.Event):
    """Records the time-out of every wait and lets a test wait until the worker sleeps without one."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []
        self.asleep = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        if timeout is None:
            self.asleep.set()
        return super().wait(timeout)


def _pipeline(make_capturer: CapturerFactory, sink: MemorySink, **settings: Any) -> CapturePipeline:
    return CapturePipeline(make_capturer(), sink, ProxyMetrics(), queue_max=1000,
                           batch_max_records=settings.get("batch_max_records", 100),
                           batch_max_delay_s=settings.get("batch_max_delay_s", 0.01),
                           flush_interval_s=settings.get("flush_interval_s", 0.01))  # fmt: skip


def test_an_idle_worker_sleeps_until_an_exchange_wakes_it(make_capturer: CapturerFactory) -> None:
    sink = WatchedSink()
    pipeline = _pipeline(make_capturer, sink)
    wake = pipeline._wake = WatchedEvent()
    pipeline.start()
    try:
        assert pipeline.offer(make_exchange(request_id="a"))
        assert sink.wait_for(1)
        assert wake.asleep.wait(_GUARD_S)  # written, flushed: the worker waits without a time-out, no polling
        assert pipeline.offer(make_exchange(request_id="b"))
        assert sink.wait_for(2)
    finally:
        assert pipeline.stop(5.0) == 0
    assert sink.table().column("request_id").to_pylist() == ["a", "b"]


def test_written_records_are_flushed_on_the_workers_clock_with_no_exchange_after_them(
    make_capturer: CapturerFactory,
) -> None:
    sink = WatchedSink()
    pipeline = _pipeline(make_capturer, sink, flush_interval_s=0.05)
    pipeline.start()
    try:
        assert pipeline.offer(make_exchange(request_id="a"))
        with sink.arrived:
            assert sink.arrived.wait_for(lambda: bool(sink.flushed), _GUARD_S)
    finally:
        pipeline.stop(5.0)
    assert sink.table().column("request_id").to_pylist() == ["a"]


def test_stop_writes_everything_queued_in_batches(make_capturer: CapturerFactory) -> None:
    sink = WatchedSink()
    pipeline = _pipeline(make_capturer, sink, batch_max_records=7, batch_max_delay_s=3600.0, flush_interval_s=3600.0)
    for i in range(50):
        assert pipeline.offer(make_exchange(request_id=f"r{i}"))
    pipeline.start()
    assert pipeline.stop(5.0) == 0
    assert sink.closed
    assert sink.table().column("request_id").to_pylist() == [f"r{i}" for i in range(50)]
    assert max(b.num_rows for b in sink.flushed) <= 7
