"""Forward mode's framer and sender threads: they sleep without work and wake when an exchange or a segment comes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from infertap.logger.forward.rawspool import RawSpool
from infertap.logger.forward.shipper import ForwardPipeline, Framer, Sender
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.redact import HeaderFilter, QueryRedactor
from infertap.logger.sampling import Sampler

from .conftest import make_exchange

_GUARD_S = 30.0  # only ends a wait that would otherwise hang a broken build; never a timing assertion


class RecordingSender(Sender):
    """Accepts every batch (``200``) and lets a test wait for a number of delivered frames."""

    def __init__(self) -> None:
        super().__init__("http://collector.invalid", {}, timeout_s=1.0)
        self.frames: list[bytes] = []
        self.arrived = threading.Condition()

    def post(self, frames: list[bytes]) -> int:
        with self.arrived:
            self.frames.extend(frames)
            self.arrived.notify_all()
        return 200

    def wait_for(self, n: int) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.frames) >= n, _GUARD_S)


def _pipeline(tmp_path: Path, sender: RecordingSender, **spool: Any) -> ForwardPipeline:
    framer = Framer(Sampler(1.0, seed=1), HeaderFilter([]), QueryRedactor([]), "all")
    raw = RawSpool(tmp_path, max_bytes=spool.get("max_bytes", 1 << 20),
                   segment_max_bytes=spool.get("segment_max_bytes", 1 << 16))  # fmt: skip
    return ForwardPipeline(
        framer, raw, sender, ProxyMetrics(), queue_max=1000, seal_interval_s=spool.get("seal_interval_s", 0.05)
    )


def test_an_exchange_after_an_idle_spell_is_framed_and_delivered(tmp_path: Path) -> None:
    sender = RecordingSender()
    pipeline = _pipeline(tmp_path, sender)
    pipeline.start()
    try:
        assert pipeline.offer(make_exchange(request_id="a"))
        assert sender.wait_for(1)
        # both threads now sleep with nothing to do; the next exchange wakes them
        assert pipeline.offer(make_exchange(request_id="b"))
        assert sender.wait_for(2)
    finally:
        assert pipeline.stop(5.0) == 0
    assert len(sender.frames) == 2


def test_a_full_segment_is_sent_without_waiting_for_the_seal_interval(tmp_path: Path) -> None:
    sender = RecordingSender()
    pipeline = _pipeline(tmp_path, sender, segment_max_bytes=1, seal_interval_s=3600.0)  # every frame fills one
    pipeline.start()
    try:
        for i in range(3):
            assert pipeline.offer(make_exchange(request_id=f"r{i}"))
        assert sender.wait_for(3)
    finally:
        pipeline.stop(5.0)


def test_stop_frames_and_delivers_what_is_queued(tmp_path: Path) -> None:
    sender = RecordingSender()
    pipeline = _pipeline(tmp_path, sender, seal_interval_s=3600.0)  # nothing would be sealed before stop
    pipeline.start()
    for i in range(200):  # more than one wake-up batch
        assert pipeline.offer(make_exchange(request_id=f"r{i}"))
    assert pipeline.stop(_GUARD_S) == 0
    assert len(sender.frames) == 200
    assert pipeline.spool.waiting_frames == 0
