"""Relative windows (``--start now-1h --end now``): a CronJob names "the last hour" without a shell."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pytest

from infertap.drift.baseline import build_baseline
from infertap.drift.errors import DataError
from infertap.drift.features import FeatureSpec
from infertap.drift.reader import parse_time
from infertap.logger.cli import main
from tests.unit.drift import capture

SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)] + [FeatureSpec("pred", "output.y", 0)]
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("now-30s", NOW - dt.timedelta(seconds=30)),
        ("now-15m", NOW - dt.timedelta(minutes=15)),
        ("now-1h", NOW - dt.timedelta(hours=1)),
        ("now-7d", NOW - dt.timedelta(days=7)),
        ("2026-11-29T08:00Z", dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)),
    ],
)
def test_parse_time_absolute_and_relative(text: str, expected: dt.datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["now-1", "now+1h", "now-1w", "yesterday", "now - 1h"])
def test_parse_time_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(DataError, match="now"):
        parse_time(text, now=NOW)


def test_run_with_a_relative_window_reads_only_the_last_hour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Drifted records older than the window are left out; the recent calm ones alone give no drift."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2000, 3))
    base = build_baseline(
        {"f0": ref[:, 0], "f1": ref[:, 1], "f2": ref[:, 2], "pred": 2 * ref[:, 0]}, SPECS, model_name="m"
    )
    bpath = base.save(tmp_path / "b.json.gz")
    now_us = time.time_ns() // 1000
    calm = rng.normal(size=(1200, 3))
    old = rng.normal(size=(1200, 3)) + 2.0
    capture.write(tmp_path / "data", capture.table(calm, 2 * calm[:, 0], t0_us=now_us - 600_000_000), "calm.parquet")
    capture.write(tmp_path / "data", capture.table(old, 2 * old[:, 0], t0_us=now_us - 3 * 3_600_000_000), "old.parquet")
    out = tmp_path / "v.json"

    rc = main(["drift", "run", str(tmp_path / "data"), "--baseline", str(bpath), "--no-progress", "-o", str(out)])
    assert rc == 1  # everything: the old drifted hour is read too
    rc = main(
        ["drift", "run", str(tmp_path / "data"), "--baseline", str(bpath), "--no-progress", "-o", str(out),
         "--start", "now-1h", "--end", "now"]
    )  # fmt: skip
    assert rc == 0
    assert json.loads(out.read_text())["window"]["records"] == 1200
    capsys.readouterr()
