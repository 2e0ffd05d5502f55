"""A shared thread pool for per-feature work (NumPy releases the GIL in searchsorted, sort, bincount...)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_POOL: ThreadPoolExecutor | None = None


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], *, big: bool) -> None:
    """Run ``fn`` on every item, on a thread pool (NumPy releases the GIL) when ``big`` and there are several."""
    global _POOL
    if not big or len(items) < 2 or (os.cpu_count() or 1) < 2:
        for it in items:
            fn(it)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count(), thread_name_prefix="drift")
    for _ in _POOL.map(fn, items):
        pass
