"""The collector's side of forward mode: batches of raw frames from forward-mode sidecars to records.

A batch (docs/forward-protocol.md) is split into its frames; each frame becomes one journal entry (a
:class:`~infertap.logger.collector.events.Half` whose ``source`` is :data:`FORWARD_SOURCE` and whose body is the
pair ``[meta, frame]`` in msgpack), so the collector's journal makes it durable before the ``200`` and replays it
after a crash, exactly as it does KServe's events. Frames skip the pairing window (a frame is a whole exchange).
The writer thread turns each one into a record with the sidecar's own capture stage
(:class:`infertap.logger.capture.Capturer`), configured from the batch's ``meta``: body-field redaction, capture
mode and generative-text rules of the pod apply here, so the record is the one local mode would have written.

Duplicates: a batch the sidecar resends (its ``200`` was lost) carries request ids already seen; the last
:data:`RECENT_IDS` ids are remembered and their frames are acknowledged without being written again. Across a
collector restart delivery is at-least-once (duplicates are removable by ``request_id``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import msgpack

from infertap.logger.capture import Capturer
from infertap.logger.collector.events import Half, Side
from infertap.logger.config import CaptureMode, ServingIdentity
from infertap.logger.exchange import Exchange
from infertap.logger.forward import wire
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.record import CapturedRecord
from infertap.logger.redact import BodyRedactor, HeaderFilter, QueryRedactor
from infertap.logger.sampling import Sampler

#: ``source`` of the journal entries made from forward frames.
FORWARD_SOURCE = "infertap-forward"
#: How many request ids are remembered to drop resent frames.
RECENT_IDS = 200_000
_CACHE_MAX = 256


class RecentIds:
    """The last ``limit`` request ids seen (insertion order), to drop frames a sidecar sent twice."""

    def __init__(self, limit: int = RECENT_IDS) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, request_id: str) -> bool:
        """Whether ``request_id`` was remembered."""
        return request_id in self._ids

    def add(self, request_id: str) -> None:
        """Remember ``request_id`` (once its frame is journaled), forgetting the oldest past ``limit``."""
        self._ids[request_id] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)


def halves_of_batch(body: bytes, received_unix_ns: int | None = None) -> list[Half]:
    """The journal entries of a batch, one per frame, in order.

    Raises:
        infertap.logger.forward.wire.WireError: not a version-1 batch, or a frame that does not decode.
    """
    meta, frames = wire.unpack_batch(body)
    now = time.time_ns() if received_unix_ns is None else received_unix_ns
    halves = []
    for frame in frames:
        ex = wire.unpack_frame(frame)  # checked now: a malformed batch is refused whole, before anything is journaled
        halves.append(
            Half(
                id=ex.request_id,
                side=Side.REQUEST,
                time_unix_ns=ex.start_unix_ns,
                received_unix_ns=now,
                source=FORWARD_SOURCE,
                content_type=wire.CONTENT_TYPE,
                body=msgpack.packb([meta, frame], use_bin_type=True),
                inference_service=str(meta["inference_service"]),
                namespace=str(meta["namespace"]),
                component=str(meta["component"]),
                endpoint=str(meta["endpoint"]),
            )
        )
    return halves


class _Kept(Sampler):
    """The sidecar already sampled: keep everything, report the sidecar's rate in ``sample_rate``."""

    def keep(self, exchange: Exchange) -> bool:
        return True


class ForwardRecordBuilder:
    """Frames (journal entries of :data:`FORWARD_SOURCE`) to records, one capture stage per distinct ``meta``.

    Args:
        metrics: the capture counters and generative metrics the capture stage updates.
    """

    def __init__(self, metrics: ProxyMetrics) -> None:
        self.metrics = metrics
        self._capturers: dict[bytes, Capturer] = {}

    def build(self, half: Half) -> CapturedRecord:
        """The record of one frame.

        Raises:
            infertap.logger.forward.wire.WireError: the journaled frame does not decode (checked on receipt, so
                only a damaged journal).
        """
        meta_key, frame = _split(half.body)
        capturer = self._capturers.get(meta_key)
        if capturer is None:
            capturer = self._capturer(msgpack.unpackb(meta_key, raw=False))
            if len(self._capturers) >= _CACHE_MAX:
                self._capturers.clear()
            self._capturers[meta_key] = capturer
        record = capturer.process(wire.unpack_frame(frame))
        assert record is not None  # _Kept keeps every exchange
        return record

    def _capturer(self, meta: dict[str, Any]) -> Capturer:
        return Capturer(
            mode=CaptureMode(meta["capture_mode"]),
            sampler=_Kept(float(meta["sample_rate"])),
            headers=HeaderFilter(meta["header_allowlist"]),
            identity=ServingIdentity(
                inference_service=meta["inference_service"],
                namespace=meta["namespace"],
                component=meta["component"],
                revision=meta["revision"],
                endpoint=meta["endpoint"],
                pod=meta["pod"],
            ),
            default_model=meta["default_model"],
            keep_raw_bodies=bool(meta["keep_raw_bodies"]),
            metrics=self.metrics,
            generative_text=meta["genai_text"] == "keep",
            query=QueryRedactor(()),  # redacted by the sidecar
            fields=BodyRedactor(meta["redact_json_fields"]),
        )


def _split(body: bytes) -> tuple[bytes, bytes]:
    """``(meta as canonical msgpack bytes, frame)`` of a journal entry's body."""
    meta, frame = msgpack.unpackb(body, raw=False)
    return msgpack.packb(meta, use_bin_type=True), frame
