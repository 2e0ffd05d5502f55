"""The spool's segment store between the capture pipeline and a network sink: bounded, crash-safe, replayed on start,
and accountable under disk faults.

Layout of the spool directory (an ``emptyDir`` in the pod)::

    state.json                                   spool instance id and the reserved segment sequence
    .open-<seq>-<opened_ms>.arrows.tmp           a segment being written (one per model and schema)
    .count-<seq>-<opened_ms>                     how many records that open segment holds (for salvage)
    seg-<seq>-<opened_ms>-<records>.arrows       a sealed segment: durable, waiting for its acknowledgement
    quarantine/                                  unreadable segments and state files, kept for inspection

A **segment** is an Arrow IPC stream (optionally zstd-compressed buffers) of record batches of one model and one
schema. :meth:`Spool.append` writes the batch straight into the open segment's file (the operating system's page
cache, no user-space buffer). A segment is **sealed** when it reaches ``segment_max_bytes``, is older than
``segment_max_age_s``, on :meth:`Spool.seal` and on :meth:`Spool.close`: its stream is ended, the file is fsynced
(``fsync=True``, the default), renamed to its ``seg-...`` name and the directory is fsynced. A sealed segment is
**durable**. Sinks read sealed segments in sequence order (:class:`infertap.logger.sinks.delivery.SpoolDelivery`)
and **acknowledge** each once the sink made it durable at the destination; only acknowledged segments are deleted.

On :meth:`Spool.open`, sealed segments left by an earlier process are replayed (delivered again), and every
``.open-*`` file is **salvaged**: it is cut after its last complete record batch and sealed in place (no extra
disk space needed). So:

* a process crash (``SIGKILL``, OOM kill) loses no appended batch: they are in the page cache, which survives the
  process; what is lost is what the capture pipeline had not yet appended (its queue and its current batch, at
  most ``batch_max_delay_s`` old);
* a node crash or power loss additionally loses the batches of segments not yet sealed (at most
  ``segment_max_age_s`` of records) with ``fsync=True``, and anything not yet written back by the kernel with
  ``fsync=False``.

**Bound**: :meth:`Spool.append` refuses a batch when the bytes on disk plus the batch's in-memory size would
exceed ``max_bytes``. With :attr:`OverflowPolicy.DROP_NEWEST` (the default) the batch is dropped at once; with
:attr:`OverflowPolicy.BLOCK_CAPTURE` the caller (the capture worker, never the proxy's event loop) waits for room
up to ``block_timeout_s`` and drops after that.

**The invariant** (docs/reliability.md, "Disk faults"): every record handed to :meth:`Spool.append` ends
acknowledged (:attr:`SpoolStats.acked_records`), still spooled (:attr:`Spool.pending_records`, reported at
shutdown and kept on disk for the next start) or dropped with a :class:`DropReason`
(:attr:`SpoolStats.dropped_by_reason`) — under a full disk, a read-only file system, a deleted directory, corrupt
files and a kill at any point. How each fault is handled:

* a write that fails (``ENOSPC``, ``EROFS``, ``EIO``) drops that batch (``disk_error``) and **retires** the
  segment: nothing is ever appended after a failed write, whose half-written bytes are cut off when the segment
  is sealed; the next batch starts a fresh segment with its own schema header;
* a seal that fails keeps the segment in the books (pending, counted in ``infertap_spool_records``) and is retried
  on every later append, seal and delivery-loop pass; at :meth:`close` it stays on disk as an ``.open-*`` file for
  the next start;
* a deleted spool directory is recreated (``state.json`` rewritten with the same instance id); an open segment's
  records are still readable through its open descriptor and are written out again; a sealed segment whose file
  went with the directory is counted dropped (``lost``);
* a salvaged open segment counts the records it cannot recover (its ``.count-*`` file minus the complete batches)
  as dropped (``corrupt``); an unreadable sealed segment is quarantined, its records dropped (``corrupt``);
* a corrupt ``state.json`` is moved to ``quarantine/`` and the spool starts with a new instance id; any other
  error opening the spool raises :class:`SpoolError` to the caller, which keeps serving
  (:class:`infertap.logger.sinks.spooled.SpooledSink`): appends then drop (``unavailable``) and the spool tries to
  open again every :data:`REOPEN_INTERVAL_S`.

Every drop and disk error is counted in :attr:`Spool.stats` and logged at most once every
:data:`DROP_LOG_INTERVAL_S`; :meth:`Spool.health` is down while the spool has a disk problem.

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
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pyarrow as pa

from infertap.logger.errors import InfertapError
from infertap.logger.sinks import segment_files
from infertap.logger.sinks.base import Health
from infertap.logger.sinks.segment_files import OpenSegment
from infertap.logger.sinks.settings import OverflowPolicy

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL_S = 10.0
#: How often a spool that could not be opened tries again (seconds).
REOPEN_INTERVAL_S = 5.0
_SEQ_BLOCK = 1024
_SEALED = re.compile(r"^seg-(\d{12})-(\d+)-(\d+)\.arrows$")
_OPEN = re.compile(r"^\.open-(\d{12})-(\d+)\.arrows\.tmp$")
_COUNT = re.compile(r"^\.count-(\d{12})-(\d+)$")


class SpoolError(InfertapError):
    """The spool directory cannot be used (cannot be created, read or written)."""


class DropReason(StrEnum):
    """Why records handed to the spool were dropped (the ``reason`` label of ``infertap_spool_dropped_records``)."""

    FULL = "full"  # the spool is at its bound (after waiting, under block_capture)
    CLOSED = "closed"  # appended after close()
    UNAVAILABLE = "unavailable"  # the spool directory could not be opened
    DISK_ERROR = "disk_error"  # writing the batch failed: ENOSPC, EROFS, EIO ...
    CORRUPT = "corrupt"  # an unreadable sealed segment, or what a salvaged open segment could not give back
    LOST = "lost"  # a sealed segment's file disappeared (its directory was deleted) before delivery


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
    """Cumulative counters of a spool since it was opened (records unless named otherwise).

    ``dropped_records`` is the sum of ``dropped_by_reason`` (keys: :class:`DropReason` values).
    """

    appended_records: int = 0
    appended_batches: int = 0
    dropped_records: int = 0
    dropped_batches: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    sealed_segments: int = 0
    acked_segments: int = 0
    acked_records: int = 0
    replayed_segments: int = 0
    salvaged_segments: int = 0
    quarantined_segments: int = 0
    quarantined_records: int = 0
    disk_errors: int = 0
    failed_first_writes: int = 0  # failed writes that were a new segment's first (its schema header goes with it)
    failed_later_writes: int = 0  # failed writes to a segment that already held records (those are kept)
    seal_failures: int = 0
    recreated_directories: int = 0
    quarantined_state_files: int = 0


@dataclass(slots=True)
class _DropLog:
    last: float = 0.0
    pending_records: int = 0
    pending_batches: int = 0
    reasons: set[str] = field(default_factory=set)


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
        self._open: dict[tuple[str, bytes], OpenSegment] = {}
        self._unsealed: dict[int, OpenSegment] = {}  # retired segments whose seal failed: retried
        self._unlink_later: list[Path] = []  # acknowledged segments whose file could not be deleted yet
        self._sealed: dict[int, Segment] = {}
        self._sealed_bytes = 0
        self._instance = ""
        self._next_seq = 0
        self._reserved_seq = 0
        self._opened = False
        self._closed = False
        self._open_failed_at: float | None = None  # time.monotonic() of the last failed open()
        self._trouble = ""  # the last disk error, until an append succeeds again
        self._drops = _DropLog()
        self._errors = _DropLog()
        self._options = pa.ipc.IpcWriteOptions(compression=compression)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def open(self) -> list[Segment]:
        """Create or recover the directory: salvage open segments, list the sealed ones for replay.

        A corrupt ``state.json`` is quarantined (the spool starts with a new instance id), not an error.

        Returns:
            The sealed segments waiting for delivery (replayed and salvaged), in sequence order.

        Raises:
            SpoolError: the directory cannot be created, read or written. The spool then stays closed for
                appends (they drop with reason ``unavailable``) and :meth:`append` / :meth:`seal_due` try to open
                it again every :data:`REOPEN_INTERVAL_S`.
        """
        with self._cond:
            self._closed = False
            self._open_locked()
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
        """Seal every open segment and wake a blocked :meth:`append` (which then drops). Reopen with :meth:`open`.

        A segment whose seal still fails stays on disk as an ``.open-*`` file, counted in :attr:`pending_records`
        and salvaged by the next :meth:`open`; one whose file was deleted and cannot be written out again is
        counted dropped (``lost``).
        """
        with self._cond:
            self._seal_all()
            for seg in list(self._unsealed.values()):
                if seg.fd is not None and segment_files.unlinked(seg.fd):
                    self._drop_records(seg.records, 1, DropReason.LOST, f"{seg.tmp.name} was deleted")
                    del self._unsealed[seg.seq]
                segment_files.close_files(seg)
            self._closed = True
            self._cond.notify_all()

    # --- appender side --------------------------------------------------------------------------------------
    def append(self, batch: pa.RecordBatch) -> bool:
        """Write ``batch`` to the open segment of its model and schema.

        Never raises for a full spool or a disk error: returns ``False`` after counting the drop with its
        :class:`DropReason` (immediately under ``DROP_NEWEST``, after waiting under ``BLOCK_CAPTURE``; at once
        after :meth:`close` and while the directory cannot be opened).
        """
        if batch.num_rows == 0:
            return True
        need = batch.nbytes
        with self._cond:
            if self._closed:
                self._drop(batch, DropReason.CLOSED, "spool closed")
                return False
            if not self._opened:
                self._reopen_due()
                if not self._opened:
                    self._drop(batch, DropReason.UNAVAILABLE, self._trouble or "spool not opened")
                    return False
            self._maintain()
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
                if self._closed_now():  # close() woke the wait
                    self._drop(batch, DropReason.CLOSED, "spool closed")
                    return False
                if self._used_locked() + need > self.max_bytes:
                    self._drop(batch, DropReason.FULL, "spool full")
                    return False
            try:
                self._write_locked(batch)
            except (OSError, pa.ArrowException) as exc:
                self._disk_error(f"write failed: {exc}")
                self._drop(batch, DropReason.DISK_ERROR, f"write failed: {exc}")
                return False
            self._trouble = ""
            self.stats.appended_records += batch.num_rows
            self.stats.appended_batches += 1
            return True

    def seal(self) -> None:
        """Seal every open segment now (the pipeline's flush; also before shutdown), and retry failed seals."""
        with self._cond:
            self._seal_all()

    def seal_due(self) -> None:
        """Seal open segments older than ``segment_max_age_s``; retry failed seals and deletions; recreate a
        deleted directory; retry opening a spool that could not be opened (the delivery loop calls this)."""
        with self._cond:
            if not self._opened and not self._closed:
                self._reopen_due()
            if self._opened:
                self._maintain()

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
        """Acknowledge ``segment``: the sink made it durable. Deletes the file and frees its room.

        A file that cannot be deleted now (read-only file system) is deleted later; the records count as
        acknowledged at once.
        """
        with self._cond:
            if self._sealed.pop(segment.seq, None) is None:
                return
            self._sealed_bytes -= segment.size_bytes
            try:
                segment.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._disk_error(f"deleting acknowledged {segment.path.name}: {exc}")
                self._unlink_later.append(segment.path)
            self.stats.acked_segments += 1
            self.stats.acked_records += segment.records
            self._cond.notify_all()

    def quarantine(self, segment: Segment, reason: str) -> None:
        """Move an unreadable segment to ``quarantine/``; its records count as dropped (``corrupt``, or ``lost``
        when its file is gone)."""
        with self._cond:
            if self._sealed.pop(segment.seq, None) is None:
                return
            self._sealed_bytes -= segment.size_bytes
            why = DropReason.CORRUPT if segment.path.exists() else DropReason.LOST
            qdir = self.directory / "quarantine"
            try:
                qdir.mkdir(exist_ok=True)
                os.replace(segment.path, qdir / segment.path.name)
            except OSError:
                with contextlib.suppress(OSError):
                    segment.path.unlink()
            self.stats.quarantined_segments += 1
            self.stats.quarantined_records += segment.records
            self._drop_records(segment.records, 1, why, reason, log_now=True)
            log.error(
                "spool %s: quarantined %s (%d records, dropped as %s): %s",
                self.name,
                segment.path.name,
                segment.records,
                why.value,
                reason,
            )
            self._cond.notify_all()

    # --- observers ------------------------------------------------------------------------------------------
    @property
    def used_bytes(self) -> int:
        """Bytes on disk: sealed plus open segments (and segments waiting for a seal retry)."""
        with self._cond:
            return self._used_locked()

    @property
    def pending_records(self) -> int:
        """Records appended and not yet acknowledged: sealed, open and waiting-for-seal segments."""
        with self._cond:
            return (
                sum(s.records for s in self._sealed.values())
                + sum(o.records for o in self._open.values())
                + sum(u.records for u in self._unsealed.values())
            )

    @property
    def pending_segments(self) -> int:
        """Sealed, open and waiting-for-seal segments not yet acknowledged."""
        with self._cond:
            return len(self._sealed) + len(self._open) + len(self._unsealed)

    def lag_s(self) -> float:
        """Age of the oldest unacknowledged segment, sealed or open (seconds; 0 when the spool is empty)."""
        with self._cond:
            opened = [s.opened_unix_s for s in self._sealed.values()]
            opened += [o.opened_ms / 1000 for o in (*self._open.values(), *self._unsealed.values())]
        return max(0.0, self._clock() - min(opened)) if opened else 0.0

    def health(self) -> Health:
        """Down while the spool cannot be opened, the last append failed on a disk error, or a segment waits for
        a seal retry; ``detail`` says why."""
        with self._cond:
            if not self._opened and not self._closed and self._open_failed_at is not None:
                return Health(False, f"spool cannot be opened: {self._trouble}")
            if self._trouble:
                return Health(False, self._trouble)
            if self._unsealed:
                return Health(False, f"{len(self._unsealed)} segments wait for a seal retry")
            return Health(True)

    # --- internals (lock held) ------------------------------------------------------------------------------
    def _id(self, seq: int) -> str:
        return f"{self._instance}-{seq:012d}"

    def _closed_now(self) -> bool:
        return self._closed

    def _used_locked(self) -> int:
        return (
            self._sealed_bytes
            + sum(o.size_bytes for o in self._open.values())
            + sum(u.size_bytes for u in self._unsealed.values())
        )

    def _add_sealed(self, seg: Segment) -> None:
        self._sealed[seg.seq] = seg
        self._sealed_bytes += seg.size_bytes

    def _open_locked(self) -> None:
        for seg in (*self._open.values(), *self._unsealed.values()):  # left by close(): on disk, salvaged below
            segment_files.close_files(seg)
        self._open.clear()
        self._unsealed.clear()
        self._sealed.clear()
        self._sealed_bytes = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._load_state()
            names = sorted(p.name for p in self.directory.iterdir())
            for name in names:
                if name.startswith(".salvage-") or name.startswith(".state.json."):
                    with contextlib.suppress(OSError):  # an interrupted earlier write; its source is still there
                        (self.directory / name).unlink()
                m = _SEALED.match(name)
                if m:
                    seq, path = int(m.group(1)), self.directory / name
                    sealed = Segment(
                        seq, self._id(seq), path, path.stat().st_size, int(m.group(3)), int(m.group(2)) / 1000
                    )
                    self._add_sealed(sealed)
                    self.stats.replayed_segments += 1
                    self._next_seq = max(self._next_seq, seq + 1)
            for name in names:
                m = _OPEN.match(name)
                if m:
                    self._next_seq = max(self._next_seq, int(m.group(1)) + 1)
                    self._salvage(self.directory / name, int(m.group(1)), int(m.group(2)))
            for name in names:
                m = _COUNT.match(name)
                if m and not (self.directory / f".open-{m.group(1)}-{m.group(2)}.arrows.tmp").exists():
                    with contextlib.suppress(OSError):
                        (self.directory / name).unlink()
            self._reserve(self._next_seq)
        except OSError as exc:
            self._opened = False
            self._open_failed_at = time.monotonic()
            self._disk_error(f"opening {self.directory}: {exc}")
            raise SpoolError(f"spool {self.directory}: {exc}") from exc
        self._opened = True
        self._open_failed_at = None
        self._trouble = ""

    def _reopen_due(self) -> None:
        """Try :meth:`open` again if an earlier one failed and :data:`REOPEN_INTERVAL_S` passed."""
        failed = self._open_failed_at
        if failed is None or time.monotonic() - failed < REOPEN_INTERVAL_S:
            return
        try:
            self._open_locked()
        except SpoolError:
            return
        log.warning("spool %s: opened %s after an earlier failure", self.name, self.directory)
        self._cond.notify_all()

    def _load_state(self) -> None:
        path = self.directory / "state.json"
        if path.exists():
            try:
                state = json.loads(path.read_bytes())
                self._instance = str(state["instance"])
                self._next_seq = int(state["reserved_seq"])
                if not re.fullmatch(r"[0-9a-f]{8}", self._instance) or self._next_seq < 0:
                    raise ValueError(f"unexpected content {state!r}")
            except (ValueError, KeyError, TypeError) as exc:
                qdir = self.directory / "quarantine"
                qdir.mkdir(exist_ok=True)
                moved = qdir / f"state.json.corrupt-{int(self._clock() * 1000)}"
                os.replace(path, moved)
                self.stats.quarantined_state_files += 1
                self._instance = secrets.token_hex(4)
                self._next_seq = 0
                log.error(
                    "spool %s: corrupt %s (%s), moved to %s; starting with a new instance id %s",
                    self.name,
                    path,
                    exc,
                    moved,
                    self._instance,
                )
        else:
            self._instance = self._instance or secrets.token_hex(4)
            self._next_seq = max(self._next_seq, 0)
        self._reserved_seq = self._next_seq

    def _ensure_dir(self) -> None:
        """Recreate the spool directory (and ``state.json``, with the same instance id) if it was deleted."""
        if self.directory.is_dir():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._reserve(self._next_seq)
        self.stats.recreated_directories += 1
        log.warning("spool %s: the directory %s had disappeared; recreated it", self.name, self.directory)

    def _reserve(self, upto: int) -> None:
        """Persist a reservation of sequence numbers up to ``upto + _SEQ_BLOCK``, so none repeats after a crash."""
        reserved = upto + _SEQ_BLOCK
        data = json.dumps({"instance": self._instance, "reserved_seq": reserved}).encode()
        self._atomic_write(self.directory / "state.json", data)
        self._reserved_seq = reserved

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
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
        if self._next_seq + 1 >= self._reserved_seq:
            self._reserve(self._next_seq + 1)
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _new_segment(self, schema: pa.Schema) -> OpenSegment:
        self._ensure_dir()
        seq = self._take_seq()
        return segment_files.create(self.directory, seq, int(self._clock() * 1000), schema, self._options)

    def _write_locked(self, batch: pa.RecordBatch) -> None:
        model = ""
        idx = batch.schema.get_field_index("model_name")
        if idx >= 0:
            model = str(batch.column(idx)[0].as_py())
        key = (model, batch.schema.serialize().to_pybytes())
        seg = self._open.get(key)
        if seg is not None and seg.file is not None and segment_files.unlinked(seg.file.fileno()):
            self._retire(key)  # its directory was deleted: write its records out again, start a fresh segment
            seg = None
        if seg is None:
            seg = self._new_segment(batch.schema)
            self._open[key] = seg
        assert seg.writer is not None
        assert seg.file is not None
        try:
            seg.writer.write_batch(batch)
            end = seg.file.tell()
        except (OSError, pa.ArrowException):
            seg.broken = True  # never append after a failed write: its bytes may be half there
            if seg.records:
                self.stats.failed_later_writes += 1
            else:
                self.stats.failed_first_writes += 1
            self._retire(key)
            raise
        seg.records += batch.num_rows
        seg.size_bytes = end
        try:
            segment_files.write_count(seg)
        except OSError as exc:  # only salvage after a crash reads it; the batch itself is written
            log.warning("spool %s: updating %s failed: %s", self.name, seg.count_path.name, exc)
        if seg.size_bytes >= self.segment_max_bytes:
            self._retire(key)

    def _maintain(self) -> None:
        """Seal due segments, retry failed seals and deletions, notice a deleted directory."""
        for path in list(self._unlink_later):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            self._unlink_later.remove(path)
        now_ms = self._clock() * 1000
        for key, seg in list(self._open.items()):
            deleted = seg.file is not None and segment_files.unlinked(seg.file.fileno())
            if deleted or now_ms - seg.opened_ms >= self.segment_max_age_s * 1000:
                self._retire(key)
        for seg in list(self._unsealed.values()):
            self._try_seal(seg)
        if not self.directory.is_dir():
            try:
                self._ensure_dir()
            except OSError as exc:
                self._disk_error(f"recreating {self.directory}: {exc}")

    def _seal_all(self) -> None:
        for key in list(self._open):
            self._retire(key)
        for seg in list(self._unsealed.values()):
            self._try_seal(seg)

    def _retire(self, key: tuple[str, bytes]) -> None:
        """Stop appending to the open segment ``key`` and seal it (or keep it for a seal retry)."""
        seg = self._open.pop(key)
        self._unsealed[seg.seq] = seg
        self._try_seal(seg)

    def _try_seal(self, seg: OpenSegment) -> bool:
        """End, fsync and rename a retired segment. On failure it stays in :attr:`_unsealed` (and on disk)."""
        if seg.records == 0:  # nothing was written (a failed first write): nothing to keep
            segment_files.close_files(seg)
            for p in (seg.tmp, seg.count_path):
                with contextlib.suppress(OSError):
                    p.unlink()
            del self._unsealed[seg.seq]
            return True
        if seg.fd is None and seg.file is None:  # closed by close(): the next open() salvages it
            return False
        final = self.directory / f"seg-{seg.seq:012d}-{seg.opened_ms}-{seg.records}.arrows"
        try:
            if seg.fd is None:
                segment_files.end_stream(seg)
            assert seg.fd is not None
            if segment_files.unlinked(seg.fd):
                # the directory (or the file) was deleted; the data lives on behind the descriptor: write it again
                self._ensure_dir()
                seg.fd = segment_files.rewrite(seg.fd, seg.tmp, seg.size_bytes)
                if seg.count_fd is not None:
                    os.close(seg.count_fd)
                    seg.count_fd = None
            if self.fsync:
                os.fsync(seg.fd)
            os.replace(seg.tmp, final)
        except (OSError, pa.ArrowException) as exc:
            self.stats.seal_failures += 1
            self._disk_error(f"sealing {seg.tmp.name} failed ({seg.records} records kept for a retry): {exc}")
            return False
        try:
            self._fsync_dir()
        except OSError as exc:
            log.warning("spool %s: fsync of %s failed: %s", self.name, self.directory, exc)
        segment_files.close_files(seg)
        with contextlib.suppress(OSError):
            seg.count_path.unlink()
        del self._unsealed[seg.seq]
        self._add_sealed(Segment(seg.seq, self._id(seg.seq), final, seg.size_bytes, seg.records, seg.opened_ms / 1000))
        self.stats.sealed_segments += 1
        self._cond.notify_all()
        return True

    def _salvage(self, tmp: Path, seq: int, opened_ms: int) -> None:
        """Seal the complete batches of an open segment left by a crash, in place; count what is lost as dropped.

        Raises:
            OSError: the file cannot be cut or renamed (read-only file system): it stays for the next open.
        """
        count_path = segment_files.count_path(self.directory, seq, opened_ms)
        expected = segment_files.read_count(count_path)
        records, good, error = segment_files.scan(tmp)
        lost = max(0, expected - records) if expected is not None else 0
        if error:
            log.warning(
                "spool %s: %s ends in a partial or unreadable write (%s); kept %d records, %s",
                self.name,
                tmp.name,
                error,
                records,
                f"{lost} lost" if expected is not None else "no count file to tell how many were lost",
            )
        if records:
            if tmp.stat().st_size != good:
                os.truncate(tmp, good)
            if self.fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            final = self.directory / f"seg-{seq:012d}-{opened_ms}-{records}.arrows"
            os.replace(tmp, final)
            self._fsync_dir()
            self._add_sealed(Segment(seq, self._id(seq), final, good, records, opened_ms / 1000))
            self.stats.salvaged_segments += 1
            log.info("spool %s: salvaged %d records from %s", self.name, records, tmp.name)
        elif tmp.stat().st_size > 0:
            qdir = self.directory / "quarantine"
            qdir.mkdir(exist_ok=True)
            os.replace(tmp, qdir / tmp.name)
        else:
            tmp.unlink()
        with contextlib.suppress(FileNotFoundError):
            count_path.unlink()
        if lost:
            self._drop_records(lost, 1, DropReason.CORRUPT, f"salvaging {tmp.name}", log_now=True)

    def _disk_error(self, detail: str) -> None:
        self.stats.disk_errors += 1
        self._trouble = detail
        e = self._errors
        e.pending_batches += 1
        now = time.monotonic()
        if now - e.last >= DROP_LOG_INTERVAL_S:
            log.error("spool %s: %s (%d disk errors since the last line)", self.name, detail, e.pending_batches)
            e.last, e.pending_batches = now, 0

    def _drop(self, batch: pa.RecordBatch, reason: DropReason, detail: str) -> None:
        self._drop_records(batch.num_rows, 1, reason, detail)

    def _drop_records(
        self, records: int, batches: int, reason: DropReason, detail: str, *, log_now: bool = False
    ) -> None:
        self.stats.dropped_records += records
        self.stats.dropped_batches += batches
        self.stats.dropped_by_reason[reason.value] = self.stats.dropped_by_reason.get(reason.value, 0) + records
        d = self._drops
        d.pending_records += records
        d.pending_batches += batches
        d.reasons.add(reason.value)
        now = time.monotonic()
        if log_now or now - d.last >= DROP_LOG_INTERVAL_S:
            log.warning(
                "spool %s (%d of %d bytes used): dropped %d records in %d batches (%s): %s",
                self.name,
                self._used_locked(),
                self.max_bytes,
                d.pending_records,
                d.pending_batches,
                ", ".join(sorted(d.reasons)),
                detail,
            )
            d.last, d.pending_records, d.pending_batches = now, 0, 0
            d.reasons.clear()
