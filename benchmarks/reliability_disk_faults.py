"""The spool under disk faults: every record handed to it ends delivered, still spooled or dropped with a reason.

Runs the scenarios of ``tests/integration/sinks/disk_faults.py`` (the same ones the test suite asserts exact counts
on): a full disk (a small tmpfs), a read-only remount, the spool directory deleted at run time, corrupt
``state.json`` and segments, and a SIGKILL of a child process at three points of a seal. Each delivers to a real
local Parquet sink and reads the records back. The tmpfs scenarios need root (``mount``); they are reported as
skipped otherwise.

Writes ``benchmarks/results/reliability_disk_faults.json`` and the "Disk faults" section of
``docs/reliability.md`` (rendered by ``benchmarks/reliability.py`` from both result files).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import reliability  # noqa: E402  (benchmarks/ is on sys.path as this script's folder)

from tests.integration.sinks import disk_faults  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "reliability_disk_faults.json"


def run() -> dict[str, Any]:
    """Every scenario's tally (or why it was skipped)."""
    refused = disk_faults.mount_refused()
    out: dict[str, Any] = {}
    for name, (scenario, needs_mount) in disk_faults.SCENARIOS.items():
        if needs_mount and refused:
            out[name] = {"skipped": refused}
            print(f"== {name}: skipped ({refused})", flush=True)
            continue
        t = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="infertap-disk-faults-") as work:
            tally = scenario(Path(work))
        out[name] = asdict(tally)
        print(f"== {name} ({time.monotonic() - t:.1f} s): {json.dumps(out[name])}", flush=True)
    return out


def main() -> int:
    """Run the scenarios, write the JSON, re-render docs/reliability.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the JSON, do not write results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scenarios = run()
    doc = {
        "date": started,
        "command": "make disk-faults (= .venv/bin/python benchmarks/reliability_disk_faults.py)",
        "machine": {"python": platform.python_version(), "kernel": platform.release()},
        "scenarios": scenarios,
        "unaccounted_total": sum(s.get("unaccounted", 0) for s in scenarios.values()),
    }
    if args.no_write:
        print(json.dumps(doc, indent=2))
        return 0
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    reliability.DOC.write_text(reliability.render(json.loads(reliability.RESULTS.read_text())))
    print(f"unaccounted records over every scenario: {doc['unaccounted_total']}")
    return 0 if doc["unaccounted_total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
