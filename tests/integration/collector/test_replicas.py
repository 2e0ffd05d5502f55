"""Two collector replicas: the halves of a pair reach different processes; none is lost, all are joined by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from infertap.logger.collector.join import is_half, join_halves
from tests.integration.collector.agent import Agent
from tests.integration.collector.exchanges import check_joined, exchanges, rows_by_id
from tests.integration.collector.process import post, read_records, start_collector

pytestmark = pytest.mark.integration

FAST = {"pairing_window_s": 2.0, "flush_interval_s": 0.2, "batch_max_delay_s": 0.05}


def test_halves_split_over_two_replicas_are_joined_by_id_in_the_reader(tmp_path: Path) -> None:
    a = start_collector(tmp_path, "a", **FAST)
    b = start_collector(tmp_path, "b", **FAST)
    agent = Agent()
    split, local = exchanges("split", 10), exchanges("local", 4, seed=5)
    try:
        for i, ex in enumerate(split):  # request to one replica, response to the other, both ways round
            req, resp = ex.events(agent)
            first, second = (a, b) if i % 2 == 0 else (b, a)
            assert post(first.url, *agent.http(req))[0] == 200
            assert post(second.url, *agent.http(resp))[0] == 200
        for ex in local:
            for event in ex.events(agent):
                assert post(a.url, *agent.http(event))[0] == 200
        a.wait_metric("infertap_collector_halves_timed_out_total", 10, reason="window")
        b.wait_metric("infertap_collector_halves_timed_out_total", 10, reason="window")
        assert a.metric("infertap_collector_pairs_joined_total") == 4
        assert b.metric("infertap_collector_pairs_joined_total") == 0
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
    raw = read_records(a.out, b.out)
    assert raw.num_rows == 4 + 2 * 10  # every half written: none lost
    assert sum(is_half(raw).to_pylist()) == 20
    joined = join_halves(raw)
    assert not any(is_half(joined).to_pylist())
    rows = rows_by_id(joined)
    assert sorted(rows) == sorted(ex.id for ex in split + local)
    for ex in split + local:
        check_joined(joined, ex, rows[ex.id])
