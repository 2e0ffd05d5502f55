"""The C library's allocator settings of a sidecar process: fewer malloc arenas, freed pages handed back.

glibc's malloc gives each thread that allocates an arena of its own (up to 8 per core); memory freed in one stays
with it. The sidecar has two busy threads (the event loop and the capture or framer thread), so two arenas are
enough, and handing back the pages freed after each written batch (``malloc_trim``) keeps the resident set near
what is in use. Both are no-ops on a C library other than glibc (musl has neither function).

Measured with ``benchmarks/sidecar_memory.py`` (local mode, 15 s at 1000 requests/s, RSS after the load): Arrow's
default pool (mimalloc) 132.8 MB, Arrow on the system allocator 121.8 MB, plus two arenas 119.8 MB
(docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger(__name__)

#: ``mallopt`` parameter number of ``M_ARENA_MAX`` (glibc's ``malloc.h``).
M_ARENA_MAX = -8


@cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both exist on glibc only
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (``mallopt(M_ARENA_MAX)``) for threads started from now on.

    Returns:
        Whether the C library took the setting (``False`` off glibc).
    """
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim_malloc() -> None:
    """Give the free pages of every malloc arena back to the kernel (``malloc_trim(0)``); no-op off glibc.

    ctypes releases the GIL during the call, so the event loop runs meanwhile.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
