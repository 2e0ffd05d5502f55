"""A shared thread pool for per-feature work (NumPy releases the GIL in searchsorted, sort, bincount...), and a
reader thread that keeps the next record batches coming while they are counted."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
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


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer, so that reading the next
    record batches (Arrow decodes without the GIL) overlaps counting the current one. An exception raised while
    producing is raised here, where the consumer reaches it; a consumer that stops early stops the producer after
    at most ``depth`` further items.
    """
    q: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for it in items:
                if stop.is_set():
                    return
                q.put((True, it))
        except BaseException as exc:  # handed to the consumer
            q.put((False, exc))
            return
        q.put((False, None))

    t = threading.Thread(target=produce, name="drift-read", daemon=True)
    t.start()
    try:
        while True:
            ok, value = q.get()
            if ok:
                yield value
            elif value is None:
                return
            else:
                raise value
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)
        t.join()
