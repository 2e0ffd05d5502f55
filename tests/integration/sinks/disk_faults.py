"""Disk faults under a real spool, with exact accounting: the scenarios of ``test_spool_disk_faults.py`` and of
``benchmarks/reliability_disk_faults.py`` (which writes the "Disk faults" table of docs/reliability.md).

Each scenario hands numbered records to a :class:`Spool` on a real file system, injects one fault, delivers to a
real :class:`FileSink` (Parquet on another file system) and returns a :class:`Tally`: records handed to the spool,
delivered (request ids read back from the Parquet files, each once), still spooled, dropped (by reason) and
unaccounted (handed - delivered - spooled - dropped, which must be 0).

Faults: a full disk is a small tmpfs (``mount -t tmpfs -o size=...``), a read-only file system is that tmpfs
remounted read-only (``mount -o remount,ro``); both need root. A deleted directory, corrupt files and a SIGKILL of
a child process in the middle of a seal need nothing special.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from infertap.logger.sinks.delivery import SpoolDelivery
from infertap.logger.sinks.file import FileSink
from infertap.logger.sinks.segments import Spool
from tests.integration.sinks.records import batch, request_ids

REPO = Path(__file__).resolve().parents[3]
BATCH = 50


@dataclass
class Tally:
    """The books of one scenario (records)."""

    scenario: str
    fault: str
    appended: int
    delivered: int
    spooled: int
    dropped: int
    dropped_by_reason: dict[str, int]
    duplicates: int
    unaccounted: int
    notes: dict[str, int] = field(default_factory=dict)


def mount_refused() -> str | None:
    """Why a tmpfs cannot be mounted here (not root, or the sandbox refuses), or ``None`` when it can."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CI runs as root)"
    probe = Path(f"/tmp/infertap-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "infertap-probe", str(probe)], capture_output=True, text=True
        )
        if done.returncode != 0:
            return f"mount refused: {done.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=True, capture_output=True)
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


@contextlib.contextmanager
def tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted at ``path`` for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "infertap-spool-test", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(path)], check=False, capture_output=True)
        if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)  # busy: detach lazily


def remount(path: Path, mode: str) -> None:
    """``mount -o remount,<mode> path`` (``ro`` / ``rw``)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)


class Harness:
    """A spool on ``spool_dir`` delivering to Parquet files under ``dest_dir``, counting what it hands over."""

    def __init__(self, spool_dir: Path, dest_dir: Path, **spool_kw: object) -> None:
        self.spool_dir = spool_dir
        self.dest_dir = dest_dir
        self.handed = 0
        self.next_id = 0
        self.refused = 0
        self.earlier_dropped: Counter[str] = Counter()
        self.crashed: list[Spool] = []  # spools "killed" by restart(): kept alive so nothing of theirs runs again
        self.spool_kw = {"compression": None, "segment_max_age_s": 3600.0, "fsync": True, **spool_kw}
        self.spool = self._new_spool()
        self.spool.open()
        self.sink = FileSink(dest_dir, pod="faults")
        self.delivery = SpoolDelivery(self.spool, self.sink)

    def _new_spool(self) -> Spool:
        return Spool(self.spool_dir, **self.spool_kw)  # type: ignore[arg-type]

    def append(self, n: int = BATCH, model: str = "iris") -> bool:
        ok = self.spool.append(batch(self.next_id, n, model=model))
        self.handed += n
        self.next_id += n
        self.refused += 0 if ok else n
        return ok

    def deliver(self) -> None:
        self.spool.seal()
        self.delivery.deliver_pending()

    def restart(self) -> None:
        """As after a crash: a new spool object on the same directory (the old one's counters are kept)."""
        self.earlier_dropped.update(self.spool.stats.dropped_by_reason)
        self.crashed.append(self.spool)
        self.spool = self._new_spool()
        self.spool.open()
        self.delivery = SpoolDelivery(self.spool, self.sink)

    def delivered_ids(self) -> list[str]:
        return [i for f in sorted(self.dest_dir.rglob("*.parquet")) for i in request_ids(pq.read_table(f))]

    def tally(self, scenario: str, fault: str, **notes: int) -> Tally:
        ids = self.delivered_ids()
        unique = set(ids)
        assert unique <= {f"req-{i}" for i in range(self.next_id)}
        reasons = Counter(self.earlier_dropped)
        reasons.update(self.spool.stats.dropped_by_reason)
        by_reason = {k: v for k, v in sorted(reasons.items()) if v}
        dropped = sum(by_reason.values())
        spooled = self.spool.pending_records
        return Tally(
            scenario=scenario,
            fault=fault,
            appended=self.handed,
            delivered=len(unique),
            spooled=spooled,
            dropped=dropped,
            dropped_by_reason=by_reason,
            duplicates=len(ids) - len(unique),
            unaccounted=self.handed - len(unique) - spooled - dropped,
            notes=notes,
        )


# --- scenarios ----------------------------------------------------------------------------------------------------
def full_disk(work: Path, segment_max_bytes: int = 64 << 10) -> Tally:
    """ENOSPC: a 384 KiB tmpfs fills while the sink is down; the sink comes back, frees room, and capture goes on.

    With 64 KiB segments the write that fails is a new segment's first (its schema header with the batch); with
    1 MiB segments (larger than the disk) it is a later batch of a segment that already holds records."""
    with tmpfs(work / "spool", 384 << 10) as spool_dir:
        h = Harness(spool_dir, work / "dest", segment_max_bytes=segment_max_bytes)
        failures = 0
        for _ in range(400):
            if not h.append():
                failures += 1
                if failures >= 8:
                    break
        seal_failures_while_full = h.spool.stats.seal_failures
        h.deliver()  # the sink is back: segments are delivered and deleted, room comes back
        h.deliver()  # the seals that failed on the full disk are retried now
        after = [h.append() for _ in range(8)]
        h.deliver()
        assert all(after), "appends failed after room came back"
        return h.tally(
            f"full disk (tmpfs 384 KiB, {segment_max_bytes >> 10} KiB segments)",
            "ENOSPC",
            disk_errors=h.spool.stats.disk_errors,
            failed_first_writes=h.spool.stats.failed_first_writes,
            failed_later_writes=h.spool.stats.failed_later_writes,
            seal_failures=seal_failures_while_full,
            quarantined_segments=h.spool.stats.quarantined_segments,
        )


def read_only(work: Path) -> Tally:
    """EROFS: the spool's file system is remounted read-only with sealed segments waiting, then read-write."""
    with tmpfs(work / "spool", 8 << 20) as spool_dir:
        h = Harness(spool_dir, work / "dest")
        for _ in range(10):
            h.append()
        h.spool.seal()  # Linux refuses a read-only remount while a file is open for writing (EBUSY)
        remount(spool_dir, "ro")
        refused = [h.append() for _ in range(5)]
        h.delivery.deliver_pending()  # delivered; the acknowledged files cannot be deleted yet
        up_while_ro = h.spool.health().ok
        remount(spool_dir, "rw")
        for _ in range(5):
            h.append()
        h.deliver()
        h.spool.seal_due()  # deletes what could not be deleted while read-only
        left = sorted(p.name for p in spool_dir.iterdir() if p.name.startswith("seg-"))
        assert not any(refused)
        assert not left, left
        return h.tally("read-only remount", "EROFS", spool_up_while_read_only=int(up_while_ro))


def deleted_directory(work: Path) -> Tally:
    """The spool directory is deleted at run time (twice: once recreated at once, once while a file blocks it)."""
    spool_dir = work / "spool"
    h = Harness(spool_dir, work / "dest")
    for _ in range(4):
        h.append()
    h.spool.seal()  # 200 records sealed and not delivered: their files go with the directory
    for _ in range(3):
        h.append()  # 150 records in an open segment: readable through its open descriptor
    shutil.rmtree(spool_dir)
    for _ in range(2):
        h.append(model="other")
    h.deliver()
    recreated = h.spool.stats.recreated_directories
    # deleted again, and something stands in the way of recreating it
    for _ in range(2):
        h.append()
    shutil.rmtree(spool_dir)
    spool_dir.write_text("not a directory")
    blocked = [h.append() for _ in range(3)]
    up_while_blocked = h.spool.health().ok
    spool_dir.unlink()
    for _ in range(2):
        h.append()
    h.deliver()
    assert not any(blocked)
    return h.tally(
        "spool directory deleted",
        "rm -r at run time",
        recreated_directories=h.spool.stats.recreated_directories,
        recreated_first=recreated,
        spool_up_while_blocked=int(up_while_blocked),
        seal_failures=h.spool.stats.seal_failures,
    )


def corrupt_files(work: Path) -> Tally:
    """Corrupt ``state.json``, a corrupt sealed segment, a truncated and a garbage open segment, then a restart."""
    spool_dir = work / "spool"
    h = Harness(spool_dir, work / "dest")
    for _ in range(3):
        h.append()
    h.spool.seal()  # seg A: 150 records, kept intact
    for _ in range(2):
        h.append(model="broken")
    h.spool.seal()  # seg B: 100 records, overwritten with garbage below
    for _ in range(3):
        h.append(model="torn")  # open segment C: 150 records, its last batch cut in half below
    for _ in range(2):
        h.append(model="garbage")  # open segment D: 100 records, overwritten with garbage below
    # the process dies here (its files stay as they are); the disk content is then damaged
    sealed = sorted(p for p in spool_dir.iterdir() if p.name.startswith("seg-"))
    sealed[1].write_bytes(b"this is not an Arrow stream")
    opened = sorted(p for p in spool_dir.iterdir() if p.name.startswith(".open-"))
    os.truncate(opened[0], opened[0].stat().st_size - 40)
    opened[1].write_bytes(b"garbage" * 100)
    (spool_dir / "state.json").write_bytes(b'{"instance": 12, "reserved')
    h.restart()
    h.deliver()
    return h.tally(
        "corrupt state and segments",
        "garbage state.json, sealed and open segments; torn tail",
        quarantined_state_files=h.spool.stats.quarantined_state_files,
        quarantined_segments=h.spool.stats.quarantined_segments,
        salvaged_segments=h.spool.stats.salvaged_segments,
    )


_KILL_CHILD = """
import os, signal, sys
from pathlib import Path
from infertap.logger.sinks import segments
from tests.integration.sinks.records import batch

point, directory = sys.argv[1], Path(sys.argv[2])
spool = segments.Spool(directory, compression=None, segment_max_age_s=3600)
spool.open()
seals = 0

def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)

real_fsync, real_replace, real_fsync_dir = segments.os.fsync, segments.os.replace, segments.Spool._fsync_dir
def fsync(fd):
    if seals == 3 and point == "before_fsync":
        die()
    real_fsync(fd)
def replace(src, dst):
    if seals == 3 and point == "before_rename":
        die()
    real_replace(src, dst)
def fsync_dir(self):
    if seals == 3 and point == "after_rename":
        die()
    real_fsync_dir(self)
segments.os.fsync, segments.os.replace, segments.Spool._fsync_dir = fsync, replace, fsync_dir

handed = 0
for i in range(4):
    for j in range(3):
        assert spool.append(batch(handed, 50, model=f"m{j}"))
        handed += 50
    print(handed, flush=True)
    seals += 1
    spool.seal()
print("survived", flush=True)
"""


def kill_during_seal(work: Path, point: str) -> Tally:
    """SIGKILL of a real process in the middle of its fourth seal (``point``: before the segment's fsync, before
    its rename, after the rename before the directory's fsync); then a restart on the same directory."""
    spool_dir = work / "spool"
    done = subprocess.run(
        [sys.executable, "-c", _KILL_CHILD, point, str(spool_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-2000:])
    handed = int(done.stdout.split()[-1])
    h = Harness(spool_dir, work / "dest")
    h.handed, h.next_id = handed, handed
    h.deliver()
    return h.tally(
        f"SIGKILL during seal ({point.replace('_', ' ')})",
        "kill -9 of a child process",
        salvaged_segments=h.spool.stats.salvaged_segments,
        replayed_segments=h.spool.stats.replayed_segments,
    )


KILL_POINTS = ("before_fsync", "before_rename", "after_rename")
#: name -> (scenario, needs a tmpfs mount)
SCENARIOS: dict[str, tuple[Callable[[Path], Tally], bool]] = {
    "full_disk": (full_disk, True),
    "full_disk_mid_segment": ((lambda w: full_disk(w, 1 << 20)), True),
    "read_only": (read_only, True),
    "deleted_directory": (deleted_directory, False),
    "corrupt_files": (corrupt_files, False),
    **{f"kill_{p}": ((lambda w, p=p: kill_during_seal(w, p)), False) for p in KILL_POINTS},  # type: ignore[misc]
}
