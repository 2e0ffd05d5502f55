"""The disk spool: bound, overflow policies, acknowledgements, replay after restart and salvage after a crash."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import Health, SegmentSink
from infertap.logger.sinks.delivery import SpoolDelivery
from infertap.logger.sinks.memory import MemorySink
from infertap.logger.sinks.segments import Spool
from infertap.logger.sinks.settings import OverflowPolicy
from tests.integration.sinks.records import batch, request_ids

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def make_spool(path: Path, **kw: object) -> Spool:
    spool = Spool(path, **kw)  # type: ignore[arg-type]
    spool.open()
    return spool


def delivered_ids(spool: Spool) -> list[str]:
    return [i for seg in spool.segments() for i in request_ids(spool.read(seg))]


def test_append_seal_read_ack(tmp_path: Path) -> None:
    spool = make_spool(tmp_path / "s")
    assert spool.append(batch(0, 5))
    assert spool.append(batch(5, 5))
    assert spool.append(batch(0, 2, model="other"))
    assert spool.segments() == []  # open segments are not delivered
    assert spool.pending_records == 12
    spool.seal()
    segs = spool.segments()
    assert [s.records for s in segs] == [10, 2]  # one segment per model, in sequence order
    assert [s.seq for s in segs] == sorted(s.seq for s in segs)
    assert len({s.id for s in segs}) == 2
    assert request_ids(spool.read(segs[0])) == [f"req-{i}" for i in range(10)]
    used = spool.used_bytes
    assert used == sum(s.size_bytes for s in segs) > 0
    spool.ack(segs[0])
    assert not segs[0].path.exists()
    assert spool.used_bytes == used - segs[0].size_bytes
    assert spool.stats.acked_records == 10
    assert spool.pending_records == 2


def test_unacked_segments_replayed_after_restart(tmp_path: Path) -> None:
    first = make_spool(tmp_path)
    first.append(batch(0, 3))
    first.seal()
    first.append(batch(3, 3))
    first.seal()
    acked = first.segments()[0]
    first.ack(acked)
    first.close()

    second = Spool(tmp_path)
    replay = second.open()
    assert [s.records for s in replay] == [3]
    assert request_ids(second.read(replay[0])) == ["req-3", "req-4", "req-5"]
    assert second.stats.replayed_segments == 1
    # new segments never reuse an id, even one whose segment was acknowledged and deleted
    second.append(batch(6, 1))
    second.seal()
    ids = [s.id for s in second.segments()]
    assert acked.id not in ids
    assert len(set(ids)) == 2


def test_sequence_never_repeats_when_spool_was_empty(tmp_path: Path) -> None:
    seen: set[str] = set()
    for _ in range(3):
        spool = make_spool(tmp_path)
        spool.append(batch(0, 1))
        spool.seal()
        for seg in spool.segments():
            assert seg.id not in seen
            seen.add(seg.id)
            spool.ack(seg)
        spool.close()
    assert len(seen) == 3


_CRASH_CHILD = """
import sys
from pathlib import Path
from infertap.logger.sinks.segments import Spool
from tests.integration.sinks.records import batch
spool = Spool(Path(sys.argv[1]), segment_max_age_s=3600)
spool.open()
spool.append(batch(0, 4))
spool.seal()
for i in range(4, 40, 4):
    assert spool.append(batch(i, 4))
print("appended", flush=True)
sys.stdin.read()
"""


def test_sigkill_loses_no_appended_batch(tmp_path: Path) -> None:
    """Batches in an open (unsealed) segment survive SIGKILL: the next open() salvages them."""
    with subprocess.Popen(
        [sys.executable, "-c", _CRASH_CHILD, str(tmp_path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "appended"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".open-") for p in tmp_path.iterdir())

    spool = Spool(tmp_path)
    segs = spool.open()
    assert spool.stats.replayed_segments == 1
    assert spool.stats.salvaged_segments == 1
    assert not any(p.name.startswith(".open-") for p in tmp_path.iterdir())
    assert delivered_ids(spool) == [f"req-{i}" for i in range(40)]
    assert sum(s.records for s in segs) == 40


def test_partial_write_salvages_complete_batches(tmp_path: Path) -> None:
    spool = make_spool(tmp_path, segment_max_age_s=3600, compression=None)
    for i in range(3):
        spool.append(batch(i * 2, 2))
    (open_file,) = [p for p in tmp_path.iterdir() if p.name.startswith(".open-")]
    size = open_file.stat().st_size
    # simulate a crash in the middle of writing the third batch
    os.truncate(open_file, size - 40)
    again = Spool(tmp_path)
    again.open()
    assert delivered_ids(again) == ["req-0", "req-1", "req-2", "req-3"]
    # the torn batch is counted, not lost silently
    assert again.stats.dropped_by_reason == {"corrupt": 2}
    assert again.stats.dropped_records == 2


def test_unreadable_segment_is_quarantined_and_counted(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append(batch(0, 3))
    spool.seal()
    spool.append(batch(3, 2))
    spool.seal()
    bad = spool.segments()[0]
    bad.path.write_bytes(b"not arrow")
    sink = MemorySink()
    delivery = SpoolDelivery(spool, sink)
    assert delivery.deliver_pending() == 1
    assert request_ids(sink.table()) == ["req-3", "req-4"]
    assert spool.stats.quarantined_segments == 1
    assert spool.stats.dropped_records == 3
    assert (tmp_path / "quarantine" / bad.path.name).exists()


def test_drop_newest_counts_every_drop_and_rate_limits_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = batch(0, 10)
    spool = make_spool(tmp_path, max_bytes=3 * b.nbytes)
    accepted = dropped = 0
    with caplog.at_level(logging.WARNING, logger="infertap.logger.sinks.segments"):
        for i in range(20):
            if spool.append(batch(i * 10, 10)):
                accepted += 1
            else:
                dropped += 1
    assert accepted >= 1
    assert dropped >= 10
    assert spool.stats.dropped_records == dropped * 10
    assert spool.stats.dropped_batches == dropped
    assert spool.stats.appended_records == accepted * 10
    assert spool.used_bytes <= spool.max_bytes
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    # what was accepted is all there
    spool.seal()
    assert len(delivered_ids(spool)) == accepted * 10


def test_block_capture_waits_for_room(tmp_path: Path) -> None:
    b = batch(0, 10)
    spool = make_spool(tmp_path, max_bytes=2 * b.nbytes, overflow=OverflowPolicy.BLOCK_CAPTURE)
    while spool.append(batch(0, 10)) if spool.used_bytes + b.nbytes <= spool.max_bytes else False:
        pass
    result: list[bool] = []
    appender = threading.Thread(target=lambda: result.append(spool.append(batch(100, 10))))
    appender.start()
    # the appender sealed the open segments to let the sink free room; acknowledge them
    assert spool.wait(30)
    for seg in spool.segments():
        spool.ack(seg)
    appender.join(30)
    assert result == [True]
    assert spool.stats.dropped_records == 0


def test_block_capture_gives_up_after_timeout_and_on_close(tmp_path: Path) -> None:
    b = batch(0, 10)
    spool = make_spool(tmp_path, max_bytes=b.nbytes, overflow="block_capture", block_timeout_s=0.0)
    assert spool.append(b)
    assert not spool.append(batch(10, 10))
    assert spool.stats.dropped_records == 10

    forever = make_spool(tmp_path / "f", max_bytes=b.nbytes, overflow=OverflowPolicy.BLOCK_CAPTURE)
    assert forever.append(b)
    result: list[bool] = []
    appender = threading.Thread(target=lambda: result.append(forever.append(batch(10, 10))))
    appender.start()
    forever.close()
    appender.join(30)
    assert result == [False]


def test_segments_sealed_by_size_and_age(tmp_path: Path) -> None:
    clock = FakeClock()
    spool = make_spool(tmp_path, segment_max_bytes=1, segment_max_age_s=5, clock=clock)
    spool.append(batch(0, 1))
    assert len(spool.segments()) == 1  # size reached at once

    aged = make_spool(tmp_path / "age", segment_max_age_s=5, clock=clock)
    aged.append(batch(0, 1))
    clock.now += 4
    aged.seal_due()
    assert aged.segments() == []
    assert aged.lag_s() == pytest.approx(4)
    clock.now += 1
    aged.seal_due()
    assert len(aged.segments()) == 1
    assert aged.lag_s() == pytest.approx(5)


def test_delivery_acks_only_what_the_sink_took(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    sink = MemorySink()
    delivery = SpoolDelivery(spool, sink)
    spool.append(batch(0, 3))
    spool.seal()
    sink.fail = True
    with pytest.raises(SinkError):
        delivery.deliver_pending()
    assert len(spool.segments()) == 1
    spool.append(batch(3, 3))
    spool.seal()
    sink.fail = False
    assert delivery.deliver_pending() == 2
    assert spool.segments() == []
    assert request_ids(sink.table()) == [f"req-{i}" for i in range(6)]
    assert not list(tmp_path.glob("seg-*"))


class RecordingSegmentSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.segment_ids: list[str] = []

    def write_segment(self, segment_id: str, batches: Sequence[pa.RecordBatch]) -> None:
        self.segment_ids.append(segment_id)
        for b in batches:
            self.write(b)
        self.flush()


def test_segment_sinks_get_segment_ids(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    sink = RecordingSegmentSink()
    assert isinstance(sink, SegmentSink)
    spool.append(batch(0, 2))
    spool.seal()
    (seg,) = spool.segments()
    SpoolDelivery(spool, sink).deliver_pending()
    assert sink.segment_ids == [seg.id]


def test_delivery_thread_retries_then_drains_on_stop(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    sink = MemorySink()
    sink.fail = True
    delivery = SpoolDelivery(spool, sink, backoff_initial_s=0.001, backoff_max_s=0.01, poll_s=0.01)
    delivery.start()
    spool.append(batch(0, 4))
    spool.seal()
    while delivery.state.consecutive_failures < 3:
        spool.wait(0.01)
    assert not delivery.state.health.ok
    assert len(spool.segments()) == 1
    sink.fail = False
    spool.append(batch(4, 4))  # open segment: stop() seals and drains it
    report = delivery.stop(grace_s=30)
    assert report.segments_left == 0
    assert report.records_left == 0
    assert sorted(request_ids(sink.table()), key=lambda r: int(r[4:])) == [f"req-{i}" for i in range(8)]
    assert sink.closed


def test_stop_reports_what_stays_and_next_run_replays_it(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    down = MemorySink()
    down.fail = True
    delivery = SpoolDelivery(spool, down, backoff_initial_s=0.001, backoff_max_s=0.01, poll_s=0.01)
    delivery.start()
    spool.append(batch(0, 5))
    report = delivery.stop(grace_s=0.05)
    assert (report.segments_left, report.records_left) == (1, 5)
    assert report.bytes_left > 0

    restarted = Spool(tmp_path)
    restarted.open()
    up = MemorySink()
    SpoolDelivery(restarted, up).deliver_pending()
    assert request_ids(up.table()) == [f"req-{i}" for i in range(5)]


def test_sink_and_spool_metrics(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from infertap.logger.sinks.metrics import SinkMetrics

    clock = FakeClock()
    registry = CollectorRegistry()
    metrics = SinkMetrics(registry)
    spool = make_spool(tmp_path, max_bytes=1 << 20, clock=clock)
    sink = MemorySink()
    delivery = SpoolDelivery(spool, sink)
    metrics.track(delivery)
    spool.append(batch(0, 3))
    spool.seal()
    clock.now += 7
    sink.fail = True
    with pytest.raises(SinkError):
        delivery.deliver_pending()

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, {"sink": "memory"})

    assert value("infertap_spool_records") == 3
    assert value("infertap_spool_segments") == 1
    assert value("infertap_spool_lag_seconds") == pytest.approx(7)
    assert value("infertap_spool_bytes") == spool.used_bytes > 0
    assert value("infertap_spool_capacity_bytes") == 1 << 20
    assert value("infertap_spool_appended_records_total") == 3
    sink.fail = False
    delivery.deliver_pending()
    assert value("infertap_sink_up") == 1
    assert value("infertap_spool_lag_seconds") == 0
    assert value("infertap_delivery_records_total") == 3
    assert value("infertap_delivery_errors_total") == 1
    assert value("infertap_spool_acked_records_total") == 3
    text = generate_latest(registry).decode()
    assert "# HELP infertap_spool_lag_seconds" in text


def test_settings_build_spool_and_delivery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infertap.logger.sinks.settings import SpoolSettings
    from infertap.logger.sinks.spooled import delivery_for, spool_for

    monkeypatch.setenv("INFERTAP_SPOOL_DIR", str(tmp_path))
    monkeypatch.setenv("INFERTAP_SPOOL_MAX_BYTES", "4096")
    monkeypatch.setenv("INFERTAP_SPOOL_OVERFLOW_POLICY", "block_capture")
    monkeypatch.setenv("INFERTAP_SPOOL_COMPRESSION", "none")
    settings = SpoolSettings()
    spool = spool_for(settings, "kafka")
    assert spool.directory == tmp_path / "kafka"
    assert (spool.max_bytes, spool.overflow, spool.compression) == (4096, OverflowPolicy.BLOCK_CAPTURE, None)
    delivery = delivery_for(settings, spool, MemorySink())
    assert delivery.backoff_max_s == settings.retry_max_backoff_s
    with pytest.raises(ValueError, match="extra"):
        SpoolSettings(unknown=1)  # type: ignore[call-arg]


class BlockingSink(MemorySink):
    """A sink whose flush blocks until released, as a producer waiting on an unreachable broker does."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def flush(self) -> None:
        self.entered.set()
        self.release.wait(30)
        super().flush()


def test_sink_blocked_in_a_call_is_reported_down(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    sink = BlockingSink()
    delivery = SpoolDelivery(spool, sink, healthcheck_interval_s=15.0)
    delivery.state.health = Health(True)
    spool.append(batch(0, 2))
    spool.seal()
    delivery.start()
    assert sink.entered.wait(30)
    state = delivery.state
    assert state.attempt_started is not None
    assert state.up(stall_after_s=1e9)  # blocked, but not for long yet
    state.attempt_started -= 60.0  # as if the call had been blocked for a minute
    assert not state.up(stall_after_s=15.0)
    sink.release.set()
    delivery.stop(grace_s=10)
    assert state.attempt_started is None
    assert request_ids(sink.table()) == ["req-0", "req-1"]


class SendsThenFails(MemorySink):
    """Counts records as sent on write (as the HTTP sink does per answered POST), then fails its first flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        super().write(batch)
        self.stats.records_sent += batch.num_rows

    def flush(self) -> None:
        self.flushes += 1
        if self.flushes == 1:
            self.batches.clear()
            self.stats.errors += 1
            raise SinkError("half the events failed", sink=self.name)
        self.flushed.extend(self.batches)
        self.batches.clear()


def test_redelivered_records_are_counted_once(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from infertap.logger.sinks.metrics import SinkMetrics

    registry = CollectorRegistry()
    spool = make_spool(tmp_path)
    sink = SendsThenFails()
    delivery = SpoolDelivery(spool, sink)
    SinkMetrics(registry).track(delivery)
    spool.append(batch(0, 7))
    spool.seal()
    with pytest.raises(SinkError):
        delivery.deliver_pending()
    assert delivery.deliver_pending() == 1
    assert sink.stats.records_sent == 14  # the sink's own count includes the failed attempt
    assert registry.get_sample_value("infertap_delivery_records_total", {"sink": "memory"}) == 7
    assert delivery.state.delivered_records == spool.stats.acked_records == 7


class NeverStarts(MemorySink):
    def start(self) -> None:
        raise SinkError("broker refused the connection", sink=self.name)


def test_failed_sink_starts_count_as_delivery_errors(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from infertap.logger.sinks.metrics import SinkMetrics

    registry = CollectorRegistry()
    spool = make_spool(tmp_path)
    delivery = SpoolDelivery(spool, NeverStarts(), backoff_initial_s=0.001, backoff_max_s=0.005, poll_s=0.01)
    SinkMetrics(registry).track(delivery)
    delivery.start()
    while delivery.state.start_failures < 3:
        spool.wait(0.01)
    delivery.stop(grace_s=0)
    errors = registry.get_sample_value("infertap_delivery_errors_total", {"sink": "memory"})
    assert errors is not None
    assert errors >= 3
    assert registry.get_sample_value("infertap_sink_up", {"sink": "memory"}) == 0


def test_corrupt_state_file_is_quarantined_not_fatal(tmp_path: Path) -> None:
    first = make_spool(tmp_path)
    first.append(batch(0, 3))
    first.seal()
    first.close()
    (tmp_path / "state.json").write_text("{not json")
    again = Spool(tmp_path)
    replay = again.open()
    assert [s.records for s in replay] == [3]
    assert again.stats.quarantined_state_files == 1
    assert len(list((tmp_path / "quarantine").glob("state.json.corrupt-*"))) == 1
    assert again.append(batch(3, 1))
    again.seal()
    assert sorted(delivered_ids(again), key=lambda r: int(r[4:])) == [f"req-{i}" for i in range(4)]


def test_unusable_spool_does_not_stop_the_sink_from_starting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from infertap.logger.sinks import segments
    from infertap.logger.sinks.settings import SpoolSettings
    from infertap.logger.sinks.spooled import SpooledSink

    blocker = tmp_path / "spool"
    blocker.write_text("a file where the spool directory should be")
    sink = SpooledSink(MemorySink(), SpoolSettings(dir=blocker, drain_timeout_s=1))
    sink.start()  # logs, does not raise: the proxy must serve without capture
    assert not sink.healthcheck().ok
    sink.write(batch(0, 4))
    assert sink.spool.stats.dropped_by_reason == {"unavailable": 4}
    blocker.unlink()
    monkeypatch.setattr(segments, "REOPEN_INTERVAL_S", 0.0)
    sink.write(batch(4, 4))  # opened again, accepted
    sink.flush()
    sink.close()
    assert sink.spool.stats.appended_records == 4
    assert sink.last_report is not None
    assert sink.last_report.records_left == 0
    assert request_ids(sink.inner.table()) == [f"req-{i}" for i in range(4, 8)]  # type: ignore[attr-defined]
