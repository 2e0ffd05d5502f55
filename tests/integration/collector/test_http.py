"""``infertap collector`` over real HTTP: events exactly as KServe's agent sends them, Parquet read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.collector.agent import REQUEST, RESPONSE, Agent
from tests.integration.collector.exchanges import check_joined, check_request_side, exchanges, rows_by_id
from tests.integration.collector.process import post, read_records, start_collector

pytestmark = pytest.mark.integration

FAST = {"pairing_window_s": 2.0, "flush_interval_s": 0.2, "batch_max_delay_s": 0.05}


def test_pairs_in_either_order_and_lone_halves_after_the_window(tmp_path: Path) -> None:
    c = start_collector(tmp_path, **FAST)
    iris, wine = Agent(), Agent(inference_service="wine", endpoint="canary")
    v2, v1 = exchanges("v2", 12), exchanges("v1", 4, v1=True, seed=1)
    lone_req, lone_resp = exchanges("lone-req", 2, seed=2), exchanges("lone-resp", 1, seed=3)
    try:
        for i, ex in enumerate(v2 + v1):
            agent = wine if ex.v1 else iris
            req, resp = ex.events(agent)
            for event in (req, resp) if i % 2 == 0 else (resp, req):  # both orders
                status, body, _ = post(c.url, *agent.http(event))
                assert (status, body) == (200, b"")
        for ex in lone_req:
            assert post(c.url, *iris.http(ex.events(iris)[0]))[0] == 200
        assert post(c.url, *iris.http(lone_resp[0].events(iris)[1]))[0] == 200
        c.wait_metric("infertap_collector_halves_timed_out_total", 3, reason="window")
        assert c.metric("infertap_collector_pairs_joined_total") == 16
        assert c.metric("infertap_collector_events_received_total", type="request", transport="http") == 18
        assert c.metric("infertap_collector_events_received_total", type="response", transport="http") == 17
    finally:
        assert c.stop() == 0
    table = read_records(c.out)
    rows = rows_by_id(table)
    assert len(rows) == 16 + 3
    for ex in v2 + v1:
        check_joined(table, ex, rows[ex.id])
    assert rows["v1-0"]["inference_service"] == "wine"
    assert rows["v1-0"]["endpoint"] == "canary"
    for ex in lone_req:  # a request written alone: the response side null, not zero
        row = rows[ex.id]
        assert row["request_time"] == ex.start
        assert row["response_time"] is None
        assert row["status_code"] is None
        assert row["response_bytes"] is None
        assert row["capture_mode"] == "request"
        check_request_side(table, ex, row)
        assert row["output.label"] is None
    row = rows["lone-resp-0"]
    assert row["request_time"] is None
    assert row["response_time"] == lone_resp[0].end
    assert row["request_bytes"] is None
    assert row["output.label"]["data"] == [lone_resp[0].label]


def test_bad_events_get_a_clear_4xx_and_nothing_is_written(tmp_path: Path) -> None:
    c = start_collector(tmp_path, max_event_bytes=4096, **FAST)
    try:
        status, body, _ = post(c.url, {"Content-Type": "application/json"}, b'{"instances": [[1]]}')
        assert status == 400
        assert b"not a CloudEvent" in body
        headers = {"Ce-Id": "x", "Ce-Source": "/s", "Ce-Specversion": "1.0", "Ce-Type": "com.example.order"}
        status, body, _ = post(c.url, headers, b"{}")
        assert status == 400
        assert b"org.kubeflow.serving.inference.request" in body
        agent = Agent()
        status, _, _ = post(c.url, *agent.http(agent.event(REQUEST, "big", b"x" * 5000)))
        assert status == 413
        assert c.metric("infertap_collector_events_rejected_total", reason="malformed", transport="http") == 2
        assert c.metric("infertap_collector_events_received_total", type="request", transport="http") == 0
    finally:
        assert c.stop() == 0
    assert not list(c.out.rglob("*.parquet"))


def test_429_while_the_sink_fails_then_every_accepted_event_is_written(tmp_path: Path) -> None:
    """A sink that cannot write (a file where the model's directory must go) fills the bound; 429 says so."""
    c = start_collector(tmp_path, max_pending_records=2, **FAST)
    blocker = c.out / "model=iris"
    c.out.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")
    agent = Agent()
    accepted = []
    refused = 0
    try:
        retry_after = []
        for ex in exchanges("bp", 10):
            answers = [post(c.url, *agent.http(e)) for e in ex.events(agent)]
            codes = [status for status, _body, _headers in answers]
            if codes == [200, 200]:
                accepted.append(ex)
            else:
                assert set(codes) <= {200, 429}
                retry_after += [headers.get("Retry-After") for status, _b, headers in answers if status == 429]
                refused += 1
            if refused:
                break
        assert refused
        assert retry_after == ["1"] * len(retry_after)
        assert retry_after
        assert c.metric("infertap_collector_events_rejected_total", reason="overloaded") >= 1
        blocker.unlink()  # the disk is usable again: the writer's retry drains the backlog
        c.wait_metric("infertap_collector_records_written_total", len(accepted))
    finally:
        assert c.stop() == 0
    rows = rows_by_id(read_records(c.out))
    for ex in accepted:
        assert rows[ex.id]["response_time"] == ex.end


def test_a_crash_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """SIGKILL before any flush: the next process replays the journal and writes the records (at-least-once)."""
    slow = {**FAST, "flush_interval_s": 3600.0, "pairing_window_s": 3600.0}
    c = start_collector(tmp_path, **slow)
    agent = Agent()
    done, waiting = exchanges("crash", 5), exchanges("wait", 1, seed=4)
    for ex in done:
        for event in ex.events(agent):
            assert post(c.url, *agent.http(event))[0] == 200
    assert post(c.url, *agent.http(waiting[0].events(agent)[0]))[0] == 200  # its response comes after the crash
    c.kill()
    assert not list(c.out.rglob("*.parquet"))
    c2 = start_collector(tmp_path, **FAST)
    try:
        assert post(c2.url, *agent.http(waiting[0].events(agent)[1]))[0] == 200
        c2.wait_metric("infertap_collector_pairs_joined_total", 6)
    finally:
        assert c2.stop() == 0
    table = read_records(c2.out)
    rows = rows_by_id(table)
    assert sorted(rows) == sorted(ex.id for ex in done + waiting)
    for ex in done + waiting:
        check_joined(table, ex, rows[ex.id])


def test_undecodable_payloads_are_kept_raw_with_the_error(tmp_path: Path) -> None:
    c = start_collector(tmp_path, **FAST)
    agent = Agent()
    bad = b'{"outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "data": [1.0]}]}'  # 1 element, shape says 2
    try:
        assert post(c.url, *agent.http(agent.event(REQUEST, "bad", b"not json at all")))[0] == 200
        assert post(c.url, *agent.http(agent.event(RESPONSE, "bad", bad)))[0] == 200
        c.wait_metric("infertap_collector_pairs_joined_total", 1)
        c.wait_metric("infertap_collector_decode_errors_total", 1, protocol="v2")  # counted by the writer thread
    finally:
        assert c.stop() == 0
    (row,) = read_records(c.out).to_pylist()
    assert row["request_body"] == b"not json at all"
    assert row["response_body"] == bad
    assert row["protocol"] == "v2"
    assert row["decode_error"].startswith("response: ")
