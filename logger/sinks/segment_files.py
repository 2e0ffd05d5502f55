"""The files of one spool segment: creating it, appending its record count, ending its stream, cutting it back
to its complete batches, writing it out again from an open descriptor when its name was deleted, and scanning a
file left by a crash. The books (which segments exist, what was dropped) are :mod:`infertap.logger.sinks.segments`.

Files, in the spool directory: ``.open-<seq>-<opened_ms>.arrows.tmp`` (the Arrow IPC stream) and
``.count-<seq>-<opened_ms>`` (its record count as 20 ASCII digits, rewritten in place after every append, so that
salvage after a crash knows how many records a torn file held).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

COUNT_WIDTH = 20


@dataclass(slots=True)
class OpenSegment:
    """A segment being written, or retired and waiting for its seal. Its ``records`` and ``size_bytes`` describe
    the complete batches only: after a failed write the file is cut back to ``size_bytes``."""

    seq: int
    opened_ms: int
    tmp: Path
    count_path: Path
    file: pa.NativeFile | None
    writer: pa.ipc.RecordBatchStreamWriter | None
    schema: pa.Schema
    count_fd: int | None
    records: int = 0
    size_bytes: int = 0  # bytes of complete batches (the good prefix of the file)
    broken: bool = False  # a write failed: never append again, cut the file back to size_bytes
    fd: int | None = None  # once the stream is ended: a descriptor of the file (kept until it is renamed)


def tmp_path(directory: Path, seq: int, opened_ms: int) -> Path:
    """Path of an open segment's stream file."""
    return directory / f".open-{seq:012d}-{opened_ms}.arrows.tmp"


def count_path(directory: Path, seq: int, opened_ms: int) -> Path:
    """Path of an open segment's record-count file."""
    return directory / f".count-{seq:012d}-{opened_ms}"


def create(
    directory: Path, seq: int, opened_ms: int, schema: pa.Schema, options: pa.ipc.IpcWriteOptions
) -> OpenSegment:
    """Create the files of a new open segment (its stream's schema header is written with the first batch).

    Raises:
        OSError, pyarrow.ArrowException: a file cannot be created (nothing is left behind).
    """
    tmp, counter = tmp_path(directory, seq, opened_ms), count_path(directory, seq, opened_ms)
    count_fd = os.open(counter, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(count_fd, b"0".rjust(COUNT_WIDTH, b"0"), 0)
        file = pa.OSFile(str(tmp), "wb")
    except (OSError, pa.ArrowException):
        os.close(count_fd)
        with contextlib.suppress(OSError):
            counter.unlink()
        raise
    writer = pa.ipc.new_stream(file, schema, options=options)
    return OpenSegment(seq, opened_ms, tmp, counter, file, writer, schema, count_fd)


def write_count(seg: OpenSegment) -> None:
    """Rewrite the segment's record count in place. Raises ``OSError``."""
    if seg.count_fd is not None:
        os.pwrite(seg.count_fd, str(seg.records).rjust(COUNT_WIDTH, "0").encode(), 0)


def scan(path: Path) -> tuple[int, int, str]:
    """Read the stream at ``path`` up to its first incomplete or unreadable message.

    Returns:
        (records in complete batches, byte offset just after the last complete batch, the error that stopped the
        scan or ``""`` when the stream ended cleanly).
    """
    records, good, error = 0, 0, ""
    try:
        with pa.OSFile(str(path), "rb") as f, pa.ipc.open_stream(f) as reader:
            while True:
                try:
                    b = reader.read_next_batch()
                except StopIteration:
                    break
                records += b.num_rows
                good = f.tell()
    except (OSError, pa.ArrowException) as exc:
        error = str(exc)
    return records, good, error


def unlinked(fd: int) -> bool:
    """Whether the file behind ``fd`` has no name left (its directory or itself was deleted)."""
    try:
        return os.fstat(fd).st_nlink == 0
    except OSError:
        return False


def end_stream(seg: OpenSegment) -> None:
    """End the segment's stream (its end-of-stream marker, or cut back to its complete batches after a failed
    write) and keep a plain descriptor of the file in ``seg.fd``."""
    assert seg.file is not None
    assert seg.writer is not None
    if not seg.broken:
        try:
            seg.writer.close()
            seg.size_bytes = seg.file.tell()
        except (OSError, pa.ArrowException):
            seg.broken = True  # the end-of-stream marker is optional for readers: cut it off
    fd = reopen_rw(seg.file.fileno())
    if seg.broken:
        try:
            os.ftruncate(fd, seg.size_bytes)
        except OSError:
            os.close(fd)
            raise
    with contextlib.suppress(OSError, pa.ArrowException):
        seg.file.close()
    seg.file, seg.writer, seg.fd = None, None, fd


def reopen_rw(fd: int) -> int:
    """A read-write descriptor of the file behind the write-only ``fd`` (through ``/proc/self/fd``, which also
    reaches a file whose name was deleted); a duplicate of ``fd`` where ``/proc`` is not mounted."""
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
    except OSError:
        return os.dup(fd)


def rewrite(fd: int, path: Path, size: int) -> int:
    """Copy the first ``size`` bytes behind ``fd`` to a new file at ``path``; close ``fd``; the new descriptor."""
    new = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        offset = 0
        while offset < size:
            chunk = os.pread(fd, min(1 << 20, size - offset), offset)
            if not chunk:
                break
            os.write(new, chunk)
            offset += len(chunk)
    except OSError:
        os.close(new)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)
    return new


def close_files(seg: OpenSegment) -> None:
    if seg.file is not None:
        with contextlib.suppress(OSError, pa.ArrowException):
            seg.file.close()
        seg.file, seg.writer = None, None
    for fd in (seg.fd, seg.count_fd):
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    seg.fd, seg.count_fd = None, None


def read_count(path: Path) -> int | None:
    """The record count an open segment's ``.count`` file holds, or ``None`` when it is missing or unreadable."""
    try:
        return int(path.read_bytes().strip() or b"0")
    except (OSError, ValueError):
        return None
