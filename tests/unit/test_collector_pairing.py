"""The pairing window: either order, window expiry, bounds in halves and bytes, duplicates."""

from __future__ import annotations

import pytest

from infertap.logger.collector.events import Half, Side
from infertap.logger.collector.pairing import Outcome, PairingWindow

S = 1_000_000_000


def half(i: str, side: Side, body: bytes = b"{}") -> Half:
    return Half(id=i, side=side, time_unix_ns=0, received_unix_ns=0, source="/s", content_type="", body=body)


def test_pairs_in_either_order() -> None:
    w = PairingWindow(window_s=5, max_halves=10, max_bytes=1 << 20)
    assert w.add(half("a", Side.REQUEST), 1, 0) == []
    assert w.add(half("b", Side.RESPONSE), 2, 0) == []
    (pa,) = w.add(half("a", Side.RESPONSE), 3, S)
    (pb,) = w.add(half("b", Side.REQUEST), 4, S)
    assert (pa.outcome, pa.request.side, pa.response.side, pa.tokens) == (  # type: ignore[union-attr]
        Outcome.JOINED, Side.REQUEST, Side.RESPONSE, (1, 3))  # fmt: skip
    assert pb.request is not None
    assert pb.request.id == "b"
    assert pb.tokens == (2, 4)
    assert w.halves == 0
    assert w.bytes == 0


def test_lone_half_leaves_after_the_window_with_the_other_side_none() -> None:
    w = PairingWindow(window_s=5, max_halves=10, max_bytes=1 << 20)
    w.add(half("a", Side.REQUEST), 1, 0)
    w.add(half("b", Side.RESPONSE), 2, 2 * S)
    assert w.expire(5 * S - 1) == []
    (p,) = w.expire(5 * S)
    assert (p.id, p.outcome, p.response, p.tokens) == ("a", Outcome.TIMED_OUT, None, (1,))
    (p,) = w.expire(7 * S)
    assert (p.id, p.request, p.response is not None) == ("b", None, True)
    # a partner arriving after its half left starts a new entry: nothing is joined to a written record
    assert w.add(half("a", Side.RESPONSE), 3, 8 * S) == []
    assert w.halves == 1


@pytest.mark.parametrize(("max_halves", "max_bytes"), [(2, 1 << 20), (100, 2 * (512 + 100))])
def test_bounds_evict_the_oldest(max_halves: int, max_bytes: int) -> None:
    w = PairingWindow(window_s=60, max_halves=max_halves, max_bytes=max_bytes)
    w.add(half("a", Side.REQUEST, b"x" * 100), 1, 0)
    w.add(half("b", Side.REQUEST, b"x" * 100), 2, 0)
    (p,) = w.add(half("c", Side.REQUEST, b"x" * 100), 3, 0)
    assert (p.id, p.outcome) == ("a", Outcome.EVICTED)
    assert w.halves == 2
    assert w.bytes <= max_bytes
    assert [q.id for q in w.drain()] == ["b", "c"]


def test_a_duplicate_half_is_ignored_and_its_token_returned() -> None:
    w = PairingWindow(window_s=60, max_halves=10, max_bytes=1 << 20)
    w.add(half("a", Side.REQUEST), 1, 0)
    assert w.add(half("a", Side.REQUEST), 2, 0) == []
    assert (w.duplicates, w.take_dropped(), w.take_dropped()) == (1, [2], [])
    (p,) = w.add(half("a", Side.RESPONSE), 3, 0)
    assert p.tokens == (1, 3)
