"""The spool's invariant under disk faults, with exact counts: every record handed to it ends delivered, still
spooled or dropped with a reason (docs/reliability.md, "Disk faults"). Scenarios: :mod:`disk_faults`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.sinks import disk_faults
from tests.integration.sinks.disk_faults import BATCH, Tally

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mountable() -> None:
    reason = disk_faults.mount_refused()
    if reason:
        pytest.skip(reason)


def balanced(t: Tally) -> None:
    assert t.unaccounted == 0, t
    assert t.duplicates == 0, t
    assert t.appended == t.delivered + t.spooled + t.dropped, t


@pytest.mark.usefixtures("mountable")
@pytest.mark.parametrize("segment_max_bytes", [64 << 10, 1 << 20], ids=["first-write", "mid-segment"])
def test_full_disk_drops_only_what_it_counts(tmp_path: Path, segment_max_bytes: int) -> None:
    t = disk_faults.full_disk(tmp_path, segment_max_bytes)
    balanced(t)
    assert t.notes["disk_errors"] > 0
    assert t.notes["failed_first_writes"] > 0  # a new segment's schema header did not make it: never appended to
    if segment_max_bytes > 384 << 10:
        assert t.notes["failed_later_writes"] >= 1  # a segment with records hit the full disk: cut back, delivered
    assert t.dropped > 0
    assert set(t.dropped_by_reason) == {"disk_error"}  # only the batches whose write failed
    assert t.notes["quarantined_segments"] == 0  # no segment lost its schema header or was cut short
    assert t.spooled == 0  # everything kept was delivered once room came back
    assert t.delivered == t.appended - t.dropped


@pytest.mark.usefixtures("mountable")
def test_read_only_remount(tmp_path: Path) -> None:
    t = disk_faults.read_only(tmp_path)
    balanced(t)
    assert t.dropped_by_reason == {"disk_error": 5 * BATCH}  # exactly the appends made while read-only
    assert t.delivered == 15 * BATCH
    assert t.notes["spool_up_while_read_only"] == 0


def test_deleted_directory_is_recreated(tmp_path: Path) -> None:
    t = disk_faults.deleted_directory(tmp_path)
    balanced(t)
    # the sealed, undelivered segment went with the directory; the open segments were written out again
    assert t.dropped_by_reason == {"disk_error": 3 * BATCH, "lost": 4 * BATCH}
    assert t.delivered == 3 * BATCH + 2 * BATCH + 2 * BATCH + 2 * BATCH
    assert t.spooled == 0
    assert t.notes["recreated_first"] == 1
    assert t.notes["recreated_directories"] == 2
    assert t.notes["spool_up_while_blocked"] == 0
    assert t.notes["seal_failures"] >= 1  # the open segment could not be written out while blocked: kept, retried


def test_corrupt_state_and_segments(tmp_path: Path) -> None:
    t = disk_faults.corrupt_files(tmp_path)
    balanced(t)
    assert t.notes["quarantined_state_files"] == 1
    assert t.notes["quarantined_segments"] == 1
    # the corrupt sealed segment, the torn batch and the unreadable open segment
    assert t.dropped_by_reason == {"corrupt": 2 * BATCH + BATCH + 2 * BATCH}
    assert t.delivered == 3 * BATCH + 2 * BATCH


@pytest.mark.parametrize("point", disk_faults.KILL_POINTS)
def test_kill_during_seal_loses_nothing(tmp_path: Path, point: str) -> None:
    t = disk_faults.kill_during_seal(tmp_path, point)
    balanced(t)
    assert t.appended == 9 * BATCH  # killed in its third seal
    assert t.delivered == t.appended
    assert t.dropped == 0
