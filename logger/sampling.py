"""Which exchanges are captured: the capture mode (KServe's ``all | request | response``) and a sampling rate."""

from __future__ import annotations

import random

from infertap.logger.exchange import Exchange


class Sampler:
    """Keeps a ``rate`` share of successful exchanges, and every failed one.

    An exchange counts as failed when its status is >= 400 or the proxy recorded an error (upstream unreachable,
    timeout); failures are always kept because they are rare and the ones an operator looks for.

    Args:
        rate: share kept, from 0.0 (only failures) to 1.0 (all).
        seed: seed of the pseudo-random draw, for reproducible tests.

    Raises:
        ValueError: ``rate`` outside [0, 1].
    """

    def __init__(self, rate: float, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate must be within [0, 1], got {rate}")
        self.rate = rate
        self._random = random.Random(seed).random

    def keep(self, exchange: Exchange) -> bool:
        """Whether to capture ``exchange``."""
        if exchange.status_code >= 400 or exchange.error:
            return True
        return self.rate >= 1.0 or self._random() < self.rate
