"""An infertap process (collector, forward-mode sidecar) started by a test: its admin port's metrics, stop and kill."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def get(url: str) -> tuple[int, bytes]:
    """GET ``url``: status and body (error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


@dataclass
class ServedProcess:
    """A running infertap process with an admin port (``/metrics``) and a log file."""

    proc: subprocess.Popen[bytes]
    url: str
    admin: str
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
        """Poll ``/metrics`` until ``name`` reaches ``value``; on time-out the error carries the process's infertap
        metrics and its log."""
        deadline = time.monotonic() + timeout_s
        while (got := self.metric(name, **labels)) < value:
            if time.monotonic() > deadline:
                text = get(f"{self.admin}/metrics")[1].decode()
                state = "\n".join(x for x in text.splitlines() if x.startswith("infertap_"))
                raise AssertionError(f"{name}{labels} is {got}, expected {value}:\n{state}\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (drain), then the exit code (SIGKILL and an error when it does not exit within ``timeout_s``)."""
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
