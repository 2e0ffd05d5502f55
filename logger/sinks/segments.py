"""The spool's segment store between the capture pipeline and a network sink: bounded, crash-safe, replayed on start.

Layout of the spool directory (an ``emptyDir`` in the pod)::

    state.json                                   spool instance id and the reserved segment sequence
    .open-<seq>-<opened_ms>.arrows.tmp           a segment being written (one per model and schema)
    seg-<seq>-<opened_ms>-<records>.arrows       a sealed segment: durable, waiting for its acknowledgement
    quarantine/                                  sealed segments that could not be read (counted as dropped)

A **segment** is an Arrow IPC stream (optionally zstd-compressed buffers) of record batches of one model and one
schema. :meth:`Spool.append` writes the batch straight into the open segment's file (the operating system's page
cache, no user-space buffer). A segment is **sealed** when it reaches ``segment_max_bytes``, is older than
``segment_max_age_s``, on :meth:`Spool.seal` and on :meth:`Spool.close`: its stream is ended, the file is fsynced
(``fsync=True``, the default), renamed to its ``seg-...`` name and the directory is fsynced. A sealed segment is
**durable**. Sinks read sealed segments in sequence order (:class:`infertap.logger.sinks.delivery.SpoolDelivery`)
and **acknowledge** each once the sink made it durable at the destination; only acknowledged segments are deleted.

On :meth:`Spool.open`, sealed segments left by an earlier process are replayed (delivered again), and every
``.open-*`` file is **salvaged**: the complete record batches it holds are sealed into a new segment. So:

* a process crash (``SIGKILL``, OOM kill) loses no appended batch: they are in the page cache, which survives the
  process; what is lost is what the capture pipeline had not yet appended (its queue and its current batch, at
  most ``batch_max_delay_s`` old);
* a node crash or power loss additionally loses the batches of segments not yet sealed (at most
  ``segment_max_age_s`` of records) with ``fsync=True``, and anything not yet written back by the kernel with
  ``fsync=False``.

**Bound**: :meth:`Spool.append` refuses a batch when the bytes on disk plus the batch's in-memory size would
exceed ``max_bytes``. With :attr:`OverflowPolicy.DROP_NEWEST` (the default) the batch is dropped at once; with
:attr:`OverflowPolicy.BLOCK_CAPTURE` the caller (the capture worker, never the proxy's event loop) waits for room
up to ``block_timeout_s`` and drops after that. Every drop is counted in :attr:`Spool.stats` and logged at most
once every :data:`DROP_LOG_INTERVAL_S`.

Segment ids (``<instance>-<seq>``) are unique for the life of the spool directory: the instance id is created
once, and sequence numbers are reserved in blocks in ``state.json`` so that they never repeat after a restart.
Sinks derive deterministic names from them (the S3 sink's object keys), so a retried delivery overwrites.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from infertap.logger.errors import InfertapError
from infertap.logger.sinks.settings import OverflowPolicy

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL_S = 10.0
_SEQ_BLOCK = 1024
_SEALED = re.compile(r"^seg-(\d{12})-(\d+)-(\d+)\.arrows$")
_OPEN = re.compile(r"^\.open-(\d{12})-(\d+)\.arrows\.tmp$")


class SpoolError(InfertapError):
    """The spool directory cannot be used (not writable, corrupt state file)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """A sealed, unacknowledged segment.

    Attributes:
        seq: sequence number, increasing in append order.
        id: ``<spool instance>-<seq>``, unique for the life of the spool directory; sinks name things after it.
        path: the file.
        size_bytes: its size.
        records: records it holds.
        opened_unix_s: when its first batch was appended (Unix time, seconds): the lag metric's origin.
    """

    seq: int
    id: str
    path: Path
    size_bytes: int
    records: int
    opened_unix_s: float


@dataclass(slots=True)
class SpoolStats:
    """Cumulative counters of a spool since it was opened (records unless named otherwise)."""

    appended_records: int = 0
    appended_batches: int = 0
    dropped_records: int = 0
    dropped_batches: int = 0
    sealed_segments: int = 0
    acked_segments: int = 0
    acked_records: int = 0
    replayed_segments: int = 0
    salvaged_segments: int = 0
    quarantined_segments: int = 0
    quarantined_records: int = 0


@dataclass(slots=True)
class _OpenSegment:
    seq: int
    opened_ms: int
    tmp: Path
    file: pa.NativeFile
    writer: pa.ipc.RecordBatchStreamWriter
    schema: pa.Schema
    records: int = 0
    size_bytes: int = 0


@dataclass(slots=True)
class _DropLog:
    last: float = 0.0
    pending_records: int = 0
    pending_batches: int = 0


class Spool:
    """A bounded directory of record-batch segments. Thread-safe: one appender, one reader, any observers.

    Args:
        directory: the spool directory; created by :meth:`open`.
        max_bytes: bound of the bytes on disk (sealed and open segments).
        overflow: what to do with a batch that does not fit (:class:`OverflowPolicy`).
        block_timeout_s: with ``BLOCK_CAPTURE``, longest wait for room before dropping (``None``: until room or
            :meth:`close`).
        fsync: fsync each segment and the directory when sealing (see the module docs for what this buys).
        segment_max_bytes: seal a segment once its file reaches this size.
        segment_max_age_s: seal a segment this long after its first batch (checked on :meth:`append` and
            :meth:`seal_due`); bounds delivery latency.
        compression: Arrow IPC buffer compression, ``"zstd"``, ``"lz4"`` or ``None``.
        name: used in logs and metric labels.
        clock: Unix time source (tests).
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        overflow: OverflowPolicy = OverflowPolicy.DROP_NEWEST,
        block_timeout_s: float | None = None,
        fsync: bool = True,
        segment_max_bytes: int = 16 << 20,
        segment_max_age_s: float = 10.0,
        compression: str | None = "zstd",
        name: str = "spool",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.overflow = OverflowPolicy(overflow)
        self.block_timeout_s = block_timeout_s
        self.fsync = fsync
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_s = segment_max_age_s
        self.compression = compression
        self.name = name
        self.stats = SpoolStats()
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._open: dict[tuple[str, bytes], _OpenSegment] = {}
        self._sealed: dict[int, Segment] = {}
        self._sealed_bytes = 0
        self._instance = ""
        self._next_seq = 0
        self._reserved_seq = 0
        self._opened = False
        self._closed = False
        self._drops = _DropLog()
        self._options = pa.ipc.IpcWriteOptions(compression=compression)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def open(self) -> list[Segment]:
        """Create or recover the directory: salvage open segments, list the sealed ones for replay.

        Returns:
            The sealed segments waiting for delivery (replayed and salvaged), in sequence order.

        Raises:
            SpoolError: the directory cannot be created or written, or ``state.json`` is corrupt.
        """
        with self._cond:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._load_state()
                for path in sorted(self.directory.iterdir()):
                    m = _SEALED.match(path.name)
                    if m:
                        seq = int(m.group(1))
                        self._add_sealed(
                            Segment(
                                seq,
                                self._id(seq),
                                path,
                                path.stat().st_size,
                                int(m.group(3)),
                                int(m.group(2)) / 1000,
                            )
                        )
                        self.stats.replayed_segments += 1
                        self._next_seq = max(self._next_seq, seq + 1)
                for path in sorted(self.directory.iterdir()):
                    m = _OPEN.match(path.name)
                    if m:
                        self._next_seq = max(self._next_seq, int(m.group(1)) + 1)
                        self._salvage(path, int(m.group(2)))
                self._reserve(self._next_seq)
            except OSError as exc:
                raise SpoolError(f"spool {self.directory}: {exc}") from exc
            self._opened = True
            self._closed = False
            if self._sealed:
                log.info(
                    "spool %s: %d segments (%d records, %d bytes) waiting from an earlier run",
                    self.directory,
                    len(self._sealed),
                    sum(s.records for s in self._sealed.values()),
                    self._sealed_bytes,
                )
            return sorted(self._sealed.values(), key=lambda s: s.seq)

    def close(self) -> None:
        """Seal every open segment and wake a blocked :meth:`append` (which then drops). Reopen with :meth:`open`."""
        with self._cond:
            self._seal_all()
            self._closed = True
            self._cond.notify_all()

    # --- appender side --------------------------------------------------------------------------------------
    def append(self, batch: pa.RecordBatch) -> bool:
        """Write ``batch`` to the open segment of its model and schema.

        Never raises for a full spool: returns ``False`` after counting the drop (immediately under
        ``DROP_NEWEST``, after waiting under ``BLOCK_CAPTURE``). Also ``False`` on a disk error (logged, counted
        as a drop) and after :meth:`close`.
        """
        if batch.num_rows == 0:
            return True
        need = batch.nbytes
        with self._cond:
            if not self._opened or self._closed:
                self._drop(batch, "spool closed")
                return False
            self._seal_due_locked()
            if self._used_locked() + need > self.max_bytes:
                # open segments hold room that only sealing lets the sink free
                self._seal_all()
                if self.overflow is OverflowPolicy.BLOCK_CAPTURE:
                    deadline = None if self.block_timeout_s is None else time.monotonic() + self.block_timeout_s
                    while self._used_locked() + need > self.max_bytes and not self._closed:
                        wait = None if deadline is None else deadline - time.monotonic()
                        if wait is not None and wait <= 0:
                            break
                        self._cond.wait(wait)
                if self._used_locked() + need > self.max_bytes or self._closed:
                    self._drop(batch, "spool full")
                    return False
            try:
                self._write_locked(batch)
            except (OSError, pa.ArrowException) as exc:
                self._drop(batch, f"write failed: {exc}")
                return False
            self.stats.appended_records += batch.num_rows
            self.stats.appended_batches += 1
            return True

    def seal(self) -> None:
        """Seal every open segment now (the pipeline's flush; also before shutdown)."""
        with self._cond:
            self._seal_all()

    def seal_due(self) -> None:
        """Seal open segments older than ``segment_max_age_s``."""
        with self._cond:
            self._seal_due_locked()

    # --- reader side ----------------------------------------------------------------------------------------
    def segments(self) -> list[Segment]:
        """Sealed, unacknowledged segments in sequence order."""
        with self._cond:
            return sorted(self._sealed.values(), key=lambda s: s.seq)

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a sealed segment; whether there is one."""
        with self._cond:
            if not self._sealed:
                self._cond.wait(timeout_s)
            return bool(self._sealed)

    def read(self, segment: Segment) -> list[pa.RecordBatch]:
        """The record batches of ``segment``.

        Raises:
            SpoolError: the file cannot be read (then :meth:`quarantine` it).
        """
        try:
            with pa.OSFile(str(segment.path), "rb") as f, pa.ipc.open_stream(f) as reader:
                return list(reader)
        except (OSError, pa.ArrowException) as exc:
            raise SpoolError(f"segment {segment.path.name}: {exc}") from exc

    def ack(self, segment: Segment) -> None:
        """Acknowledge ``segment``: the sink made it durable. Deletes the file and frees its room."""
        with self._cond:
            if self._sealed.pop(segment.seq, None) is None:
                return
            self._sealed_bytes -= segment.size_bytes
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            self.stats.acked_segments += 1
            self.stats.acked_records += segment.records
            self._cond.notify_all()

    def quarantine(self, segment: Segment, reason: str) -> None:
        """Move an unreadable segment to ``quarantine/``; its records count as dropped."""
        with self._cond:
            if self._sealed.pop(segment.seq, None) is None:
                return
            self._sealed_bytes -= segment.size_bytes
            qdir = self.directory / "quarantine"
            try:
                qdir.mkdir(exist_ok=True)
                os.replace(segment.path, qdir / segment.path.name)
            except OSError:
                with contextlib.suppress(OSError):
                    segment.path.unlink()
            self.stats.quarantined_segments += 1
            self.stats.quarantined_records += segment.records
            self.stats.dropped_records += segment.records
            log.error(
                "spool %s: quarantined %s (%d records): %s", self.name, segment.path.name, segment.records, reason
            )
            self._cond.notify_all()

    # --- observers ------------------------------------------------------------------------------------------
    @property
    def used_bytes(self) -> int:
        """Bytes on disk: sealed plus open segments."""
        with self._cond:
            return self._used_locked()

    @property
    def pending_records(self) -> int:
        """Records appended and not yet acknowledged (sealed and open segments)."""
        with self._cond:
            return sum(s.records for s in self._sealed.values()) + sum(o.records for o in self._open.values())

    @property
    def pending_segments(self) -> int:
        """Sealed and open segments not yet acknowledged."""
        with self._cond:
            return len(self._sealed) + len(self._open)

    def lag_s(self) -> float:
        """Age of the oldest unacknowledged segment, sealed or open (seconds; 0 when the spool is empty)."""
        with self._cond:
            opened = [s.opened_unix_s for s in self._sealed.values()]
            opened += [o.opened_ms / 1000 for o in self._open.values()]
        return max(0.0, self._clock() - min(opened)) if opened else 0.0

    # --- internals (lock held) ------------------------------------------------------------------------------
    def _id(self, seq: int) -> str:
        return f"{self._instance}-{seq:012d}"

    def _used_locked(self) -> int:
        return self._sealed_bytes + sum(o.size_bytes for o in self._open.values())

    def _add_sealed(self, seg: Segment) -> None:
        self._sealed[seg.seq] = seg
        self._sealed_bytes += seg.size_bytes

    def _load_state(self) -> None:
        path = self.directory / "state.json"
        if path.exists():
            try:
                state = json.loads(path.read_text())
                self._instance = str(state["instance"])
                self._next_seq = int(state["reserved_seq"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SpoolError(f"corrupt {path}: {exc}") from exc
        else:
            self._instance = secrets.token_hex(4)
            self._next_seq = 0
        self._reserved_seq = self._next_seq

    def _reserve(self, upto: int) -> None:
        """Persist a reservation of sequence numbers up to ``upto + _SEQ_BLOCK``, so none repeats after a crash."""
        self._reserved_seq = upto + _SEQ_BLOCK
        data = json.dumps({"instance": self._instance, "reserved_seq": self._reserved_seq}).encode()
        self._atomic_write(self.directory / "state.json", data)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        if not self.fsync:
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        if self._next_seq >= self._reserved_seq:
            self._reserve(self._next_seq)
        return seq

    def _write_locked(self, batch: pa.RecordBatch) -> None:
        model = ""
        idx = batch.schema.get_field_index("model_name")
        if idx >= 0:
            model = str(batch.column(idx)[0].as_py())
        key = (model, batch.schema.serialize().to_pybytes())
        seg = self._open.get(key)
        if seg is None:
            seq = self._take_seq()
            opened_ms = int(self._clock() * 1000)
            tmp = self.directory / f".open-{seq:012d}-{opened_ms}.arrows.tmp"
            file = pa.OSFile(str(tmp), "wb")
            writer = pa.ipc.new_stream(file, batch.schema, options=self._options)
            seg = _OpenSegment(seq, opened_ms, tmp, file, writer, batch.schema)
            self._open[key] = seg
        seg.writer.write_batch(batch)
        seg.records += batch.num_rows
        seg.size_bytes = seg.file.tell()
        if seg.size_bytes >= self.segment_max_bytes:
            self._seal(key)

    def _seal_due_locked(self) -> None:
        now_ms = self._clock() * 1000
        for key, seg in list(self._open.items()):
            if now_ms - seg.opened_ms >= self.segment_max_age_s * 1000:
                self._seal(key)

    def _seal_all(self) -> None:
        for key in list(self._open):
            self._seal(key)

    def _seal(self, key: tuple[str, bytes]) -> None:
        seg = self._open.pop(key)
        try:
            seg.writer.close()
            if self.fsync:
                os.fsync(seg.file.fileno())
            seg.file.close()
            final = self.directory / f"seg-{seg.seq:012d}-{seg.opened_ms}-{seg.records}.arrows"
            os.replace(seg.tmp, final)
            self._fsync_dir()
        except (OSError, pa.ArrowException) as exc:
            # the records stay in the .open file, salvaged on the next open()
            log.error("spool %s: sealing %s failed: %s", self.name, seg.tmp.name, exc)
            return
        self._add_sealed(
            Segment(seg.seq, self._id(seg.seq), final, final.stat().st_size, seg.records, seg.opened_ms / 1000)
        )
        self.stats.sealed_segments += 1
        self._cond.notify_all()

    def _salvage(self, tmp: Path, opened_ms: int) -> None:
        """Seal the complete batches of an open segment left by a crash; delete it."""
        batches: list[pa.RecordBatch] = []
        try:
            with pa.OSFile(str(tmp), "rb") as f, pa.ipc.open_stream(f) as reader:
                while True:
                    try:
                        batches.append(reader.read_next_batch())
                    except StopIteration:
                        break
        except (OSError, pa.ArrowException) as exc:
            log.warning(
                "spool %s: %s ends in a partial write (%s); kept %d batches", self.name, tmp.name, exc, len(batches)
            )
        if batches:
            seq = self._next_seq
            self._next_seq += 1
            records = sum(b.num_rows for b in batches)
            final = self.directory / f"seg-{seq:012d}-{opened_ms}-{records}.arrows"
            part = self.directory / f".salvage-{seq:012d}.tmp"
            with pa.OSFile(str(part), "wb") as f:
                with pa.ipc.new_stream(f, batches[0].schema, options=self._options) as w:
                    for b in batches:
                        w.write_batch(b)
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(part, final)
            self._fsync_dir()
            self._add_sealed(Segment(seq, self._id(seq), final, final.stat().st_size, records, opened_ms / 1000))
            self.stats.salvaged_segments += 1
            log.info("spool %s: salvaged %d records from %s", self.name, records, tmp.name)
        tmp.unlink()

    def _drop(self, batch: pa.RecordBatch, reason: str) -> None:
        self.stats.dropped_records += batch.num_rows
        self.stats.dropped_batches += 1
        d = self._drops
        d.pending_records += batch.num_rows
        d.pending_batches += 1
        now = time.monotonic()
        if now - d.last >= DROP_LOG_INTERVAL_S:
            log.warning(
                "spool %s (%d of %d bytes used): dropped %d records in %d batches: %s",
                self.name,
                self._used_locked(),
                self.max_bytes,
                d.pending_records,
                d.pending_batches,
                reason,
            )
            d.last, d.pending_records, d.pending_batches = now, 0, 0
