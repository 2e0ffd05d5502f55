"""``infertap collector`` as a real process on loopback, and reading back what it wrote.

``get`` is re-exported from :mod:`tests.integration.served_process` for the collector tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.integration.served_process import ServedProcess, get
from tests.integration.sinks.components import free_port


@dataclass
class CollectorProcess(ServedProcess):
    """A running collector: its receiver URL, admin URL, log and output directory."""

    out: Path


def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """POST ``body`` to ``url``: status, body and headers of the answer (error statuses included)."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status), bytes(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read()), dict(exc.headers)


def start_collector(work: Path, name: str = "c", **settings: Any) -> CollectorProcess:
    """Start ``infertap collector`` writing under ``work/name``; returns once ``/readyz`` answers 200.

    ``settings`` are ``INFERTAP_COLLECTOR_*`` fields (lower-case names); the journal and the Parquet output live in
    ``work/name``.
    """
    port, admin = free_port(), free_port()
    base = work / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERTAP_")}
    conf: dict[str, Any] = {
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "admin_port": admin,
        "output_dir": base / "data",
        "journal_dir": base / "journal",
        "pod_name": name,
        **settings,
    }
    env.update({f"INFERTAP_COLLECTOR_{k.upper()}": str(v) for k, v in conf.items()})
    base.mkdir(parents=True, exist_ok=True)
    log = base / "collector.log"
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "infertap.logger.cli", "collector"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    c = CollectorProcess(proc, f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{admin}", log, base / "data")
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"collector exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if get(f"{c.admin}/readyz")[0] == 200:
                return c
        except OSError:
            pass
        if time.monotonic() > deadline:
            c.kill()
            raise RuntimeError(f"collector not ready after 60 s:\n{log.read_text()}")
        time.sleep(0.05)


def read_records(*dirs: Path) -> pa.Table:
    """Every Parquet file under ``dirs`` as one table (schemas unified)."""
    files = sorted(f for d in dirs for f in d.rglob("*.parquet"))
    assert files, f"no Parquet under {dirs}"
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
