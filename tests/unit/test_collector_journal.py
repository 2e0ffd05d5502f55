"""The halves journal: replay after a crash, release and deletion, rotation, torn frames."""

from __future__ import annotations

from pathlib import Path

from infertap.logger.collector.events import Half, Side
from infertap.logger.collector.journal import Journal


def half(i: int, body: bytes = b'{"x": 1}') -> Half:
    return Half(id=f"r{i}", side=Side.REQUEST, time_unix_ns=i, received_unix_ns=i + 1, source="/s",
                content_type="application/json", body=body, metadata={"A": ["1"]})  # fmt: skip


def test_unreleased_halves_are_replayed_by_the_next_process(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    assert j.open() == []
    tokens = j.append([half(1), half(2), half(3)])
    j.release(tokens[:1])
    # no close(): the process died; a new one replays what was not released, in order, unchanged
    j2 = Journal(tmp_path)
    replay = j2.open()
    assert [h for h, _ in replay] == [half(1), half(2), half(3)]  # the file is released only as a whole
    j2.release([t for _, t in replay])
    j2.close()
    assert Journal(tmp_path).open() == []
    assert not [p for p in tmp_path.iterdir() if p.stat().st_size]


def test_released_files_are_deleted_after_rotation(tmp_path: Path) -> None:
    j = Journal(tmp_path, rotate_bytes=200)
    j.open()
    t1 = j.append([half(1, b"x" * 150)])
    t2 = j.append([half(2, b"x" * 150)])
    assert t1 != t2
    assert len(list(tmp_path.iterdir())) == 2
    j.release(t1)
    assert len(list(tmp_path.iterdir())) == 1
    assert j.pending_halves == 1
    j.release(t2)
    j.rotate_if_idle()
    assert j.pending_halves == 0
    assert all(p.stat().st_size == 0 for p in tmp_path.iterdir())


def test_a_torn_frame_ends_the_replay(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.open()
    j.append([half(1), half(2)])
    (path,) = tmp_path.iterdir()
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # the last frame cut by a crash mid-write
    assert [h.id for h, _ in Journal(tmp_path).open()] == ["r1"]
