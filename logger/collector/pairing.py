"""The pairing window: request and response halves joined by id, in either order, within a bounded time.

Single-threaded (the collector's event loop owns it) and free of I/O. A half waits in the window until its partner
comes (a :class:`Pair` with both sides) or until ``window_s`` has passed since it arrived; then it leaves alone (a
:class:`Pair` with one side ``None``). The window is bounded in halves and in bytes: past either bound the oldest
halves leave alone at once, so memory stays bounded and nothing is lost (a lone half is still written, and halves
written alone are joined by id in the reader, :mod:`infertap.logger.collector.join`).

A second half of the same side and id (a retried delivery, a Kafka redelivery) is a duplicate: while its first
copy waits it is ignored and counted; after a pair left, it starts a new entry (at-least-once delivery; duplicate
records are removable by id).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from infertap.logger.collector.events import Half, Side


class Outcome(StrEnum):
    """Why a pair left the window."""

    JOINED = "joined"
    TIMED_OUT = "timed_out"
    EVICTED = "evicted"  # the window was full
    DRAINED = "drained"  # shutdown


@dataclass(slots=True)
class Pair:
    """What leaves the window: both halves, or one and ``None``.

    Attributes:
        request, response: the halves (one may be ``None``, never both).
        outcome: why it left.
        tokens: the journal tokens of its halves (:class:`infertap.logger.collector.journal.Journal`).
    """

    request: Half | None
    response: Half | None
    outcome: Outcome
    tokens: tuple[int, ...]

    @property
    def id(self) -> str:
        """The request id."""
        half = self.request or self.response
        assert half is not None
        return half.id


@dataclass(slots=True)
class _Entry:
    half: Half
    token: int
    deadline_ns: int


class PairingWindow:
    """Halves waiting for their partner, oldest first.

    Args:
        window_s: how long a half waits for its partner (seconds, from its arrival at the collector).
        max_halves: most halves waiting at once.
        max_bytes: most payload bytes waiting at once (:attr:`Half.size_bytes`).

    Attributes:
        halves, bytes: what waits now.
        duplicates: halves ignored because the same side of the same id was waiting.
    """

    def __init__(self, *, window_s: float, max_halves: int, max_bytes: int) -> None:
        if window_s <= 0 or max_halves <= 0 or max_bytes <= 0:
            raise ValueError("window_s, max_halves and max_bytes must be positive")
        self.window_ns = int(window_s * 1e9)
        self.max_halves = max_halves
        self.max_bytes = max_bytes
        self._waiting: OrderedDict[tuple[str, Side], _Entry] = OrderedDict()
        self.bytes = 0
        self.duplicates = 0
        self._dropped: list[int] = []

    @property
    def halves(self) -> int:
        """Halves waiting now."""
        return len(self._waiting)

    def add(self, half: Half, token: int, now_ns: int) -> list[Pair]:
        """Offer ``half`` (journal token ``token``) at monotonic time ``now_ns``.

        Returns:
            What leaves the window because of it: the joined pair, or lone halves evicted to respect the bounds.
            A duplicate returns nothing; its token comes back from :meth:`take_dropped`.
        """
        other = Side.RESPONSE if half.side is Side.REQUEST else Side.REQUEST
        partner = self._waiting.pop((half.id, other), None)
        if partner is not None:
            self.bytes -= partner.half.size_bytes
            req, resp = (half, partner.half) if half.side is Side.REQUEST else (partner.half, half)
            return [Pair(req, resp, Outcome.JOINED, (partner.token, token))]
        key = (half.id, half.side)
        if key in self._waiting:
            self.duplicates += 1
            self._dropped.append(token)
            return []
        self._waiting[key] = _Entry(half, token, now_ns + self.window_ns)
        self.bytes += half.size_bytes
        out: list[Pair] = []
        while len(self._waiting) > self.max_halves or (self.bytes > self.max_bytes and len(self._waiting) > 1):
            out.append(self._pop_oldest(Outcome.EVICTED))
        return out

    def expire(self, now_ns: int) -> list[Pair]:
        """Lone halves whose window has passed at monotonic time ``now_ns``, oldest first."""
        out: list[Pair] = []
        while self._waiting:
            entry = next(iter(self._waiting.values()))
            if entry.deadline_ns > now_ns:
                break
            out.append(self._pop_oldest(Outcome.TIMED_OUT))
        return out

    def drain(self) -> list[Pair]:
        """Every waiting half, alone (shutdown)."""
        out = []
        while self._waiting:
            out.append(self._pop_oldest(Outcome.DRAINED))
        return out

    def take_dropped(self) -> list[int]:
        """Journal tokens of duplicates ignored since the last call (they need no record)."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def _pop_oldest(self, outcome: Outcome) -> Pair:
        _, entry = self._waiting.popitem(last=False)
        self.bytes -= entry.half.size_bytes
        half = entry.half
        if half.side is Side.REQUEST:
            return Pair(half, None, outcome, (entry.token,))
        return Pair(None, half, outcome, (entry.token,))
