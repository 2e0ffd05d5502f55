"""``infertap collector`` as a real process on loopback, and reading back what it wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.sinks.components import free_port


@dataclass
class CollectorProcess:
    """A running collector: its receiver URL, admin URL and output directory."""

    proc: subprocess.Popen[bytes]
    url: str
    admin: str
    out: Path
    log: Path

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples ``name`` whose labels include ``labels``, in ``/metrics``; 0.0 when absent."""
        text = get(f"{self.admin}/metrics")[1].decode()
        return sum(
            float(s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def wait_metric(self, name: str, value: float, timeout_s: float = 30.0, **labels: str) -> None:
        """Poll ``/metrics`` until ``name`` reaches ``value``."""
        deadline = time.monotonic() + timeout_s
        while (got := self.metric(name, **labels)) < value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}{labels} is {got}, expected {value}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then the exit code (SIGKILL and an error when it does not exit within ``timeout_s``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        self.proc.kill()
        self.proc.wait(30)


def get(url: str) -> tuple[int, bytes]:
    """GET ``url``: status and body (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


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
    c = CollectorProcess(proc, f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{admin}", base / "data", log)
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
