"""The halves journal: every event is on disk before the collector acknowledges it.

A half waits in memory for its partner (:mod:`.pairing`) for up to the pairing window, longer than a sender should
wait for an answer. So each half is first appended to the journal, then acknowledged (HTTP 2xx, Kafka offset
commit). Once the record made of it is durable in the sink (after the sink's flush), the half is *released*; a
journal file whose halves are all released is deleted. On start, the halves of every file left by an earlier process
are replayed into the pairing window: a crash loses no acknowledged event, and may write a record twice
(at-least-once; duplicates share their ``request_id``).

Layout: ``<dir>/j-<seq>.log`` files of frames ``>II`` (header length, body length), a JSON header
(:meth:`infertap.logger.collector.events.Half.header`) and the body. Appends go straight to the file descriptor (the
operating system's page cache), which survives a process crash, the spool's guarantee
(:mod:`infertap.logger.sinks.spooled`); with ``fsync=True`` every append is also fsynced, which covers a node crash at
the price of a disk flush per request. A torn frame at the end of a file (a crash mid-write) ends its replay.

The journal is the collector's own spool of halves; the records themselves go through the sink's spool.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

import orjson

from infertap.logger.collector.events import Half
from infertap.logger.errors import InfertapError

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">II")
_NAME = re.compile(r"^j-(\d{12})\.log$")


class JournalError(InfertapError):
    """The journal cannot be written (disk full, permissions): events cannot be acknowledged."""


class Journal:
    """Append-only files of halves with per-file release counting.

    Args:
        directory: where the files live (created if missing).
        rotate_bytes: a file is closed and a new one started once it reaches this size.
        fsync: fsync after every append.

    Tokens returned by :meth:`append` / :meth:`open` name the file a half is in; :meth:`release` takes them back.
    Thread-safe: appends come from the event loop, releases from the writer thread.
    """

    def __init__(self, directory: Path, *, rotate_bytes: int = 64 << 20, fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.rotate_bytes = rotate_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._outstanding: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self._seq = 0
        self._fd = -1

    # --- lifecycle ------------------------------------------------------------------------------------------
    def open(self) -> list[tuple[Half, int]]:
        """Create the directory, read what earlier processes left, start a new file.

        Returns:
            The halves to replay, in append order, each with its token.

        Raises:
            JournalError: the directory cannot be created or written.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            files = sorted((int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name)))
        except OSError as exc:
            raise JournalError(f"journal directory {self.directory}: {exc}") from None
        replay: list[tuple[Half, int]] = []
        for seq, path in files:
            halves = _read(path)
            if halves:
                self._outstanding[seq] = len(halves)
                self._sizes[seq] = path.stat().st_size
                replay += [(h, seq) for h in halves]
            else:
                path.unlink(missing_ok=True)
        self._seq = files[-1][0] if files else 0
        with self._lock:
            self._start_file()
        if replay:
            log.info("journal: replaying %d halves from %d files", len(replay), len(self._outstanding) - 1)
        return replay

    def close(self) -> None:
        """Close the current file; it is deleted when nothing in it waits for release."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._maybe_delete(self._seq, current_ok=True)

    # --- appends and releases ---------------------------------------------------------------------------------
    def append(self, halves: list[Half]) -> list[int]:
        """Write ``halves`` (one ``write``); returns their tokens.

        Raises:
            JournalError: the write failed (nothing of it counts as written).
        """
        data = bytearray()
        for half in halves:
            header = orjson.dumps(half.header())
            data += _FRAME.pack(len(header), len(half.body))
            data += header
            data += half.body
        with self._lock:
            if self._fd < 0:
                raise JournalError("journal is closed")
            if self._sizes[self._seq] and self._sizes[self._seq] + len(data) > self.rotate_bytes:
                os.close(self._fd)
                self._fd = -1
                self._maybe_delete(self._seq)
                self._start_file()
            seq = self._seq
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                if self.fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                # a partial frame may be on disk: start a new file so that later frames stay readable
                os.close(self._fd)
                self._fd = -1
                self._start_file()
                raise JournalError(f"journal write failed: {exc}") from None
            self._sizes[seq] += len(data)
            self._outstanding[seq] = self._outstanding.get(seq, 0) + len(halves)
        return [seq] * len(halves)

    def release(self, tokens: Iterable[int]) -> None:
        """The halves of ``tokens`` are durable elsewhere; files with nothing left are deleted (not the current one)."""
        with self._lock:
            for seq in tokens:
                left = self._outstanding.get(seq, 0) - 1
                self._outstanding[seq] = max(left, 0)
                if left <= 0:
                    self._maybe_delete(seq)

    def rotate_if_idle(self) -> None:
        """Start a new file when everything in the current one was released (bounds the replay after a crash)."""
        with self._lock:
            if self._fd >= 0 and self._sizes.get(self._seq) and not self._outstanding.get(self._seq):
                os.close(self._fd)
                self._fd = -1
                self._maybe_delete(self._seq, current_ok=True)
                self._start_file()

    @property
    def pending_halves(self) -> int:
        """Halves appended and not yet released."""
        with self._lock:
            return sum(self._outstanding.values())

    @property
    def size_bytes(self) -> int:
        """Bytes in the journal's files."""
        with self._lock:
            return sum(self._sizes.values())

    # --- internals (lock held) ----------------------------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.directory / f"j-{seq:012d}.log"

    def _start_file(self) -> None:
        self._seq += 1
        try:
            self._fd = os.open(self._path(self._seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot create a journal file in {self.directory}: {exc}") from None
        self._sizes[self._seq] = 0
        self._outstanding.setdefault(self._seq, 0)

    def _maybe_delete(self, seq: int, *, current_ok: bool = False) -> None:
        if self._outstanding.get(seq, 0) > 0 or (seq == self._seq and self._fd >= 0 and not current_ok):
            return
        self._path(seq).unlink(missing_ok=True)
        self._outstanding.pop(seq, None)
        self._sizes.pop(seq, None)


def _read(path: Path) -> list[Half]:
    """The complete frames of one journal file; a torn or unreadable frame ends it (logged)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.error("journal file %s unreadable, skipped: %s", path, exc)
        return []
    out: list[Half] = []
    pos = 0
    while pos + _FRAME.size <= len(data):
        hlen, blen = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + hlen + blen
        if end > len(data):
            break
        try:
            header = orjson.loads(data[pos + _FRAME.size : pos + _FRAME.size + hlen])
            out.append(Half.from_header(header, bytes(data[end - blen : end])))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            log.error("journal file %s: unreadable frame at byte %d, rest skipped: %s", path, pos, exc)
            return out
        pos = end
    if pos != len(data):
        log.warning("journal file %s: torn frame at byte %d (a crash mid-write), ignored", path, pos)
    return out
