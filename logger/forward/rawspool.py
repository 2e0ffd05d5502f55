"""The forward-mode sidecar's spool: raw frames in append-only segment files, bounded, crash-safe, acked by segment.

Layout of a directory: ``<seq:012d>.open`` (at most one, being appended to) and ``<seq:012d>.seg`` (sealed, waiting
for delivery, oldest first). A segment file is a sequence of frames, each ``<u32 length><u32 crc32>`` (little
endian) followed by ``length`` bytes. Sealing fsyncs the file, renames it to ``.seg`` and fsyncs the directory; a
delivered segment is deleted (acknowledged) as a whole. After a crash, :meth:`RawSpool.open` keeps every frame of an
``.open`` file up to the first torn or corrupt one (crc32), cuts the rest off and seals it: what a hard kill can lose
is what the kernel had not written of the open segment, bounded by the seal interval of the caller.

Bound: ``max_bytes`` over all segment files. An append that would pass it is refused (the caller drops the frame
and counts it); the oldest segments are never overwritten, so a recovered collector receives the first exchanges
of an outage, not the last.

Standard library only (no pyarrow, no NumPy): the thin sidecar imports it.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from pathlib import Path

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<II")
_OPEN, _SEALED = ".open", ".seg"


class RawSpool:
    """Segments of length-prefixed frames on disk.

    Args:
        directory: created if missing; one sidecar per directory.
        max_bytes: bound of all segment files together (bytes).
        segment_max_bytes: an open segment is sealed once it holds this many bytes (the size of one batch).

    Thread safety: :meth:`append` and :meth:`seal` are called by one thread (the framer), :meth:`oldest`,
    :meth:`read` and :meth:`ack` by another (the sender); a lock guards the books they share.
    """

    def __init__(self, directory: Path, *, max_bytes: int, segment_max_bytes: int) -> None:
        if max_bytes <= 0 or segment_max_bytes <= 0:
            raise ValueError("max_bytes and segment_max_bytes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_max_bytes = segment_max_bytes
        self._lock = threading.Lock()
        self._sealed: list[tuple[int, int, int]] = []  # (seq, bytes, frames), oldest first
        self._next_seq = 0
        self._fd = -1
        self._open_seq = -1
        self._open_bytes = 0
        self._open_frames = 0
        self.total_bytes = 0
        self.recovered_frames = 0
        self.cut_bytes = 0

    # --- lifecycle ------------------------------------------------------------------------------------------
    def open(self) -> int:
        """Create the directory, salvage ``.open`` files of an earlier run, list sealed segments.

        Returns:
            Frames waiting for delivery from earlier runs.

        Raises:
            OSError: the directory cannot be created or read.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.directory.glob("*" + _OPEN)):
            frames, good = _scan(path)
            size = path.stat().st_size
            if good < size:
                log.warning("forward spool: %s cut at byte %d of %d (torn or corrupt frame)", path.name, good, size)
                self.cut_bytes += size - good
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            if frames:
                os.replace(path, path.with_suffix(_SEALED))
            else:
                path.unlink()
        waiting = 0
        for path in sorted(self.directory.glob("*" + _SEALED)):
            frames, good = _scan(path)
            self._sealed.append((int(path.stem), good, frames))
            self.total_bytes += good
            waiting += frames
        if self._sealed:
            self._next_seq = self._sealed[-1][0] + 1
        self.recovered_frames = waiting
        _fsync_dir(self.directory)
        return waiting

    def close(self) -> None:
        """Seal the open segment (if any frame is in it)."""
        self.seal()

    # --- framer side ----------------------------------------------------------------------------------------
    def append(self, frame: bytes) -> bool:
        """Append one frame to the open segment (a ``write``, no fsync); seal it once it is full.

        Returns:
            ``False`` when the frame would pass ``max_bytes`` (nothing written: drop and count it).

        Raises:
            OSError: the write failed (disk full, I/O error).
        """
        size = _HEAD.size + len(frame)
        with self._lock:
            if self.total_bytes + size > self.max_bytes:
                return False
            if self._fd < 0:
                self._open_seq = self._next_seq
                self._next_seq += 1
                self._fd = os.open(self._path(self._open_seq, _OPEN), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._open_bytes = self._open_frames = 0
            self.total_bytes += size
        os.write(self._fd, _HEAD.pack(len(frame), zlib.crc32(frame)) + frame)
        self._open_bytes += size
        self._open_frames += 1
        if self._open_bytes >= self.segment_max_bytes:
            self.seal()
        return True

    @property
    def open_frames(self) -> int:
        """Frames in the open segment (not yet deliverable)."""
        return self._open_frames

    def seal(self) -> None:
        """fsync the open segment and make it deliverable (``.open`` → ``.seg``); nothing when none is open."""
        if self._fd < 0:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        seq = self._open_seq
        os.replace(self._path(seq, _OPEN), self._path(seq, _SEALED))
        _fsync_dir(self.directory)
        with self._lock:
            self._sealed.append((seq, self._open_bytes, self._open_frames))
            self._fd = -1
            self._open_bytes = self._open_frames = 0

    # --- sender side ----------------------------------------------------------------------------------------
    def oldest(self) -> int | None:
        """Sequence number of the oldest sealed segment, ``None`` when none waits."""
        with self._lock:
            return self._sealed[0][0] if self._sealed else None

    def read(self, seq: int) -> list[bytes]:
        """The frames of sealed segment ``seq``, in order (a corrupt tail is left out and logged).

        Raises:
            OSError: the file cannot be read.
        """
        data = self._path(seq, _SEALED).read_bytes()
        frames: list[bytes] = []
        pos = 0
        while pos + _HEAD.size <= len(data):
            length, crc = _HEAD.unpack_from(data, pos)
            end = pos + _HEAD.size + length
            frame = data[pos + _HEAD.size : end]
            if end > len(data) or zlib.crc32(frame) != crc:
                log.error("forward spool: segment %d corrupt at byte %d; its later frames are lost", seq, pos)
                break
            frames.append(frame)
            pos = end
        return frames

    def ack(self, seq: int) -> None:
        """Segment ``seq`` was delivered: delete it and free its bytes."""
        self._path(seq, _SEALED).unlink(missing_ok=True)
        with self._lock:
            for i, (s, size, _) in enumerate(self._sealed):
                if s == seq:
                    del self._sealed[i]
                    self.total_bytes -= size
                    break

    def reject(self, seq: int) -> None:
        """Segment ``seq`` can never be delivered (the collector refused it as malformed): keep it aside as
        ``.rejected`` for an operator, out of the bound and the queue."""
        path = self._path(seq, _SEALED)
        if path.exists():
            os.replace(path, path.with_suffix(".rejected"))
        self.ack(seq)

    @property
    def sealed_frames(self) -> int:
        """Frames in sealed segments, waiting for delivery."""
        with self._lock:
            return sum(n for _, _, n in self._sealed)

    @property
    def waiting_frames(self) -> int:
        """Frames not yet delivered (sealed and open)."""
        return self.sealed_frames + self._open_frames

    def _path(self, seq: int, suffix: str) -> Path:
        return self.directory / f"{seq:012d}{suffix}"


def _scan(path: Path) -> tuple[int, int]:
    """``(frames, bytes)`` of the intact prefix of a segment file."""
    data = path.read_bytes()
    pos = frames = 0
    while pos + _HEAD.size <= len(data):
        length, crc = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        if end > len(data) or zlib.crc32(data[pos + _HEAD.size : end]) != crc:
            break
        pos, frames = end, frames + 1
    return frames, pos


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
