"""Scheduling classes for latency benchmarks: keep background work off the request path's CPU time.

Why. The benchmark machine runs a kernel built with ``CONFIG_PREEMPT_NONE`` and ``CONFIG_HZ=250`` (see
``/proc/config.gz``). There, a task woken on a CPU where another ordinary (``SCHED_OTHER``) task is running in user
mode does not preempt it at once: the wake-up only marks the running task for a later switch, taken at its next
system-call return or at the next scheduler tick, up to 4 ms later (``perf sched timehist`` shows these waits as
"sch delay"). On a 2-CPU machine that carries the load generator, the upstream, the proxy and the proxy's own
background threads (capture, framing, the collector), every request that arrives while background work runs on
its CPU waits up to a tick, and the p99 of every proxied path measures that wait, not the proxy.

What. :class:`Isolation` gives the request path (the load generator's thread, the upstream's and the proxies'
serving threads: the sidecar's event loop thread, nginx's workers) ``SCHED_FIFO``, whose wake-ups preempt
``SCHED_OTHER`` tasks at once, and gives processes that model other machines (the collector) ``SCHED_IDLE``. The
sidecar's capture threads keep ``SCHED_OTHER``: they still compete with the event loop for the GIL, which is the
sidecar's own cost and stays in the figures. This models a node with spare cores, where background work does not
sit on the request path's CPU. Benchmarks measure both ways in one run (``shared``: every task ``SCHED_OTHER``, as
started) and say which figures are which.

Needs ``CAP_SYS_NICE`` (root); :meth:`Isolation.available` says whether the calling process has it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

#: the real-time priority of request-path threads (1-99; any value above 0 preempts SCHED_OTHER and SCHED_IDLE)
FIFO_PRIORITY = 50


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--scheduling {both,isolated,shared}`` (default ``both``) on a benchmark's command line."""
    parser.add_argument(
        "--scheduling",
        choices=("both", "isolated", "shared"),
        default="both",
        help="measure with shared scheduling, with the request path isolated (benchmarks/scheduling.py), or both, "
        "interleaved (the headline figures are the isolated ones when they can be measured)",
    )


def modes(choice: str) -> list[str]:
    """The scheduling modes to measure for ``--scheduling choice``, ``isolated`` last; without ``CAP_SYS_NICE``
    only ``shared``, said on stderr."""
    chosen = ["shared", "isolated"] if choice == "both" else [choice]
    if "isolated" in chosen and not Isolation.available():
        print("no CAP_SYS_NICE: measuring with shared scheduling only", file=sys.stderr)
        return ["shared"]
    return chosen


def threads_of(pid: int) -> list[int]:
    """Thread ids of process ``pid`` (``/proc/<pid>/task``); empty when it has exited."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def children_of(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (nginx's workers under its master), from ``/proc/<pid>/task/*/children``."""
    kids: list[int] = []
    for tid in threads_of(pid):
        path = Path(f"/proc/{pid}/task/{tid}/children")
        try:
            kids += [int(c) for c in path.read_text().split()]
        except FileNotFoundError:
            continue
    return kids


class Isolation:
    """Switches a benchmark's processes between ``isolated`` and ``shared`` scheduling (module docstring).

    Args:
        request_threads: thread ids on the request path (``SCHED_FIFO`` when isolated); 0 is the calling thread.
        request_processes: processes whose every thread, and their children's, is on the request path (nginx).
        background_processes: processes that stand for other machines (``SCHED_IDLE`` when isolated).

    Raises:
        PermissionError: from :meth:`isolate` when the process lacks ``CAP_SYS_NICE`` (check :meth:`available`).
    """

    def __init__(
        self, request_threads: list[int], request_processes: list[int], background_processes: list[int]
    ) -> None:
        self.request_threads = request_threads
        self.request_processes = request_processes
        self.background_processes = background_processes

    @staticmethod
    def available() -> bool:
        """Whether this process may give a thread ``SCHED_FIFO`` (tried on itself, then undone)."""
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError:
            return False
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return True

    def _request_tids(self) -> list[int]:
        tids = list(self.request_threads)
        for pid in self.request_processes:
            for proc in [pid, *children_of(pid)]:
                tids += threads_of(proc)
        return tids

    def _background_tids(self) -> list[int]:
        return [tid for pid in self.background_processes for tid in threads_of(pid)]

    def isolate(self) -> None:
        """Request path to ``SCHED_FIFO`` (:data:`FIFO_PRIORITY`), background processes to ``SCHED_IDLE``."""
        for tid in self._request_tids():
            _set(tid, os.SCHED_FIFO, FIFO_PRIORITY)
        for tid in self._background_tids():
            _set(tid, os.SCHED_IDLE, 0)

    def apply(self, mode: str) -> None:
        """:meth:`isolate` for ``"isolated"``, :meth:`share` for ``"shared"``."""
        self.isolate() if mode == "isolated" else self.share()

    def share(self) -> None:
        """Every thread back to ``SCHED_OTHER``, as the processes were started. Call before starting processes
        from the calling thread: children inherit its policy."""
        for tid in self._request_tids() + self._background_tids():
            _set(tid, os.SCHED_OTHER, 0)


def _set(tid: int, policy: int, priority: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the thread ended in between
        os.sched_setscheduler(tid, policy, os.sched_param(priority))
