"""Drift metrics pushed to a real Prometheus Pushgateway (Debian's prometheus-pushgateway) on loopback."""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from infertap.demo.processes import ManagedProcess, free_port
from infertap.drift.baseline import build_baseline
from infertap.drift.features import FeatureSpec
from infertap.drift.job import run_window
from infertap.drift.outputs import write_metrics
from tests.unit.drift import capture

SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)] + [FeatureSpec("pred", "output.y", 0)]


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway")
    assert binary, "prometheus-pushgateway is missing: `make test-deps` installs Debian's package"
    port = free_port()
    proc = ManagedProcess(
        "pushgateway",
        # no persistence file: Debian's default (/var/lib/prometheus/pushgateway.data) is shared by every run
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        tmp_path / "pushgateway.log",
    )
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/-/ready", timeout_s=30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


def test_verdict_metrics_reach_the_pushgateway(tmp_path: Path, pushgateway: str) -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3000, 3))
    base = build_baseline(
        {"f0": ref[:, 0], "f1": ref[:, 1], "f2": ref[:, 2], "pred": 2 * ref[:, 0]}, SPECS, model_name="m"
    )
    cur = rng.normal(size=(2000, 3)) + np.array([1.0, 1.0, 0.0])
    capture.write(tmp_path / "data", capture.table(cur, 2 * cur[:, 0]), "drift.parquet")
    verdict = run_window(base, str(tmp_path / "data"), progress=False)
    assert verdict["dataset_drift"] is True

    write_metrics(verdict, pushgateway=pushgateway)

    with urllib.request.urlopen(f"http://{pushgateway}/metrics", timeout=5) as resp:  # the push has returned
        text = resp.read().decode()
    lines = [line for line in text.splitlines() if line.startswith("infertap_drift_dataset_drifted{")]
    assert len(lines) == 1
    assert 'job="infertap-drift"' in lines[0]
    assert 'model="m"' in lines[0]
    assert lines[0].endswith(" 1")


def test_a_canary_push_keeps_the_drift_metrics_of_the_same_model(tmp_path: Path, pushgateway: str) -> None:
    """Both jobs push for one model; a push replaces its group, so each kind must have a group of its own."""
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(2000, 3))
    base = build_baseline(
        {"f0": ref[:, 0], "f1": ref[:, 1], "f2": ref[:, 2], "pred": 2 * ref[:, 0]}, SPECS, model_name="m"
    )
    cur = rng.normal(size=(1500, 3)) + np.array([1.0, 0.0, 0.0])
    capture.write(tmp_path / "data", capture.table(cur, 2 * cur[:, 0]), "drift.parquet")
    write_metrics(run_window(base, str(tmp_path / "data"), progress=False), pushgateway=pushgateway)
    canary = {
        "kind": "canary",
        "model": {"name": "m"},
        "window": {"records": 10},
        "canary": {"value": "m-predictor-00002"},
        "score": 40.0,
        "verdict": "Fail",
        "checks": [{"name": "output_drift", "passed": False}],
    }
    write_metrics(canary, pushgateway=pushgateway)

    with urllib.request.urlopen(f"http://{pushgateway}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert any(line.startswith("infertap_drift_dataset_drifted{") for line in text.splitlines())
    fail = [line for line in text.splitlines() if line.startswith("infertap_canary_verdict{") and "Fail" in line]
    assert fail
    assert fail[0].endswith(" 1")
