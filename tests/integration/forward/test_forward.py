"""Forward mode end to end: real sidecar processes, a real collector process, a real model server on loopback.

What a user notices: every inference answers while the collector is up, down or restarting; every exchange ends
up as one record, decoded into tensors, with the pod's identity, its headers and query string redacted in the pod;
the sidecar never loads NumPy or pyarrow.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.integration.collector.process import CollectorProcess, read_records, start_collector
from tests.integration.forward.processes import ForwardProcess, model_server, start_forward
from tests.integration.sinks.components import free_port

_COLLECTOR = {"batch_max_delay_s": 0.2, "flush_interval_s": 0.5}


def _cleanup(request: pytest.FixtureRequest, process: ForwardProcess | CollectorProcess) -> None:
    """Kill ``process`` at the end of the test if it still runs (a failed assertion leaves nothing behind)."""
    request.addfinalizer(lambda: process.kill() if process.proc.poll() is None else None)


def _send(car: ForwardProcess, prefix: str, n: int) -> None:
    for i in range(n):
        answer = car.infer(f"{prefix}-{i}", [float(i), 1.5], query="?api_key=s3cret&v=1")
        assert answer["outputs"][0]["data"] == [2.0 * i, 3.0]


def _ids(table: pa.Table) -> list[str]:
    return [str(x) for x in table.column("request_id").to_pylist()]


def test_forward_mode_end_to_end_through_a_collector(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    collector = start_collector(tmp_path, **_COLLECTOR)
    _cleanup(request, collector)
    with model_server() as model:
        car = start_forward(tmp_path, model, collector.url.rstrip("/"), inference_service="iris",
                            namespace="models")  # fmt: skip
        _cleanup(request, car)
        _send(car, "e2e", 30)
        car.wait_metric("infertap_capture_written_records_total", 30, sink="forward")
        assert car.stop() == 0
    assert collector.stop() == 0
    table = read_records(collector.out)
    assert sorted(_ids(table)) == sorted(f"e2e-{i}" for i in range(30))
    rows = {r["request_id"]: r for r in table.to_pylist()}
    row = rows["e2e-7"]
    assert (row["pod"], row["inference_service"], row["namespace"]) == ("pod-a", "iris", "models")
    assert (row["model_name"], row["protocol"], row["status_code"], row["method"]) == ("iris", "v2", 200, "POST")
    assert row["query"] == "api_key=REDACTED&v=1"
    headers = dict(row["request_headers"])
    assert headers["x-tenant"] == "acme"
    assert "authorization" not in headers
    assert row["total_latency_s"] > 0
    assert row["upstream_latency_s"] > 0
    assert (row["input.x"]["shape"], row["input.x"]["data"]) == ([1, 2], [7.0, 1.5])  # decoded on the collector
    assert row["output.out"]["data"] == [14.0, 3.0]
    modules = set(car.modules.read_text().split())
    assert "infertap.logger.proxy" in modules
    assert "msgpack" in modules
    # thin: no Arrow, no NumPy, no web framework (the admin port and readiness probe are the project's own)
    assert not {m for m in modules if m.split(".")[0] in ("numpy", "pyarrow", "aiohttp")}


def test_a_collector_outage_and_restarts_lose_nothing(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with model_server() as model:
        # 1. the collector is down from the start: inference answers, frames wait on disk
        car = start_forward(tmp_path, model, url, forward_segment_max_bytes=4096)
        _cleanup(request, car)
        _send(car, "down", 40)
        assert car.metric("infertap_capture_written_records_total", sink="forward") == 0
        # 2. the sidecar crashes (SIGKILL) with everything undelivered, and starts again on the same spool
        car.wait_metric("infertap_forward_spool_frames", 40)  # every exchange is on disk
        car.wait_metric("infertap_sink_errors_total", 1, sink="forward")  # it tried the collector, and failed
        car.kill()
        car = start_forward(tmp_path, model, url, forward_segment_max_bytes=4096)
        _cleanup(request, car)
        _send(car, "after-crash", 10)
        # 3. the collector comes up: everything arrives
        collector = start_collector(tmp_path, listen_port=port, **_COLLECTOR)
        _cleanup(request, collector)
        car.wait_metric("infertap_capture_written_records_total", 50, sink="forward")
        # 4. the collector stops (SIGTERM) while traffic goes on, and comes back on its journal
        assert collector.stop() == 0
        _send(car, "restart", 25)
        collector = start_collector(tmp_path, listen_port=port, **_COLLECTOR)  # on its journal
        _cleanup(request, collector)
        car.wait_metric("infertap_capture_written_records_total", 75, sink="forward")
        assert car.stop() == 0
    assert collector.stop() == 0
    ids = _ids(read_records(collector.out))
    expected = [f"down-{i}" for i in range(40)] + [f"after-crash-{i}" for i in range(10)]
    expected += [f"restart-{i}" for i in range(25)]
    assert sorted(set(ids)) == sorted(expected)
    assert len(ids) == len(expected)  # no duplicate: each segment was acknowledged once
