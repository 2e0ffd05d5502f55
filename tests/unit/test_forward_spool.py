"""The forward-mode raw spool: frames survive a hard kill, a torn tail is cut, the bound refuses, acks free space."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infertap.logger.forward.rawspool import RawSpool


def _frames(n: int, size: int = 100) -> list[bytes]:
    return [f"{i:06d}".encode() * (size // 6) for i in range(n)]


def test_sealed_segments_are_read_back_in_order_and_acked(tmp_path: Path) -> None:
    spool = RawSpool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1_000)
    spool.open()
    frames = _frames(25)
    for f in frames:
        assert spool.append(f)
    spool.seal()
    got: list[bytes] = []
    while (seq := spool.oldest()) is not None:
        got += spool.read(seq)
        spool.ack(seq)
    assert got == frames
    assert spool.total_bytes == 0
    assert not list(tmp_path.iterdir())  # every segment deleted once acknowledged


def test_hard_kill_keeps_written_frames_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path; from infertap.logger.forward.rawspool import RawSpool\n"
        f"s = RawSpool(Path({str(tmp_path)!r}), max_bytes=1 << 20, segment_max_bytes=1 << 20); s.open()\n"
        "for i in range(40): s.append(b'frame-%03d' % i)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9
    [open_file] = list(tmp_path.glob("*.open"))
    with open_file.open("ab") as f:  # a frame half written when the process died
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00partial")
    spool = RawSpool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    assert spool.open() == 40
    assert spool.cut_bytes == 15
    seq = spool.oldest()
    assert seq is not None
    assert spool.read(seq) == [b"frame-%03d" % i for i in range(40)]
    assert not list(tmp_path.glob("*.open"))


def test_a_corrupt_frame_ends_the_segment_at_the_last_good_one(tmp_path: Path) -> None:
    spool = RawSpool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    spool.open()
    for f in _frames(3):
        spool.append(f)
    spool.seal()
    [path] = list(tmp_path.glob("*.seg"))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip a byte of the third frame: its crc32 no longer matches
    path.write_bytes(bytes(data))
    again = RawSpool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    assert again.open() == 2


def test_the_bound_refuses_new_frames_until_a_segment_is_acked(tmp_path: Path) -> None:
    spool = RawSpool(tmp_path, max_bytes=1_100, segment_max_bytes=500)
    spool.open()
    accepted = [spool.append(f) for f in _frames(20)]
    assert accepted.count(True) == 10  # 104 bytes a frame with its 8-byte head: 10 fit in 1100
    assert accepted[10:] == [False] * 10  # the oldest are kept, the newest refused
    seq = spool.oldest()
    assert seq is not None
    spool.ack(seq)
    assert spool.append(b"x" * 100)


def test_a_rejected_segment_is_set_aside_not_resent(tmp_path: Path) -> None:
    spool = RawSpool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20)
    spool.open()
    spool.append(b"bad")
    spool.seal()
    seq = spool.oldest()
    assert seq is not None
    spool.reject(seq)
    assert spool.oldest() is None
    assert len(list(tmp_path.glob("*.rejected"))) == 1
    assert RawSpool(tmp_path, max_bytes=1 << 20, segment_max_bytes=1 << 20).open() == 0


def test_bad_bounds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        RawSpool(tmp_path, max_bytes=0, segment_max_bytes=1)
    assert os.path.isdir(tmp_path)
