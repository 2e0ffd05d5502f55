"""The Kafka path: events as Knative's KafkaSink writes them, consumed by a consumer group (librdkafka's mock cluster on
loopback, or a real cluster at ``INFERTAP_TEST_KAFKA_BOOTSTRAP``).

The mock cluster refuses the SyncGroup request of every member but the group's leader when the members are aiokafka
consumers (``InvalidRequestError``, seen with each ``api_version``), so on it the group has one collector; against a
real cluster it has two, and the halves of the pairs split between them are joined in the reader.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import confluent_kafka
import pytest

from infertap.logger.collector.join import join_halves
from tests.integration.collector.agent import Agent
from tests.integration.collector.exchanges import check_joined, exchanges, rows_by_id
from tests.integration.collector.process import CollectorProcess, read_records, start_collector

pytestmark = pytest.mark.integration

PARTITIONS = 4  # what the mock cluster gives an auto-created topic


def _wait(condition: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _total(cs: list[CollectorProcess], name: str, **labels: str) -> float:
    return sum(c.metric(name, **labels) for c in cs)


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions (negative ones, none yet, count 0)."""
    check = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3})
    try:
        tps = [confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in check.committed(tps, timeout=30))
    finally:
        check.close()


REPLICAS = 2 if os.environ.get("INFERTAP_TEST_KAFKA_BOOTSTRAP") else 1


def test_consumer_group_joins_every_pair_and_commits_after_the_journal(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap, "log_level": 3})
    producer.produce(kafka_topic, b"not an event", partition=0)  # creates the topic; a malformed record
    assert producer.flush(30) == 0
    group = f"collectors-{uuid.uuid4().hex[:8]}"
    kafka = {
        "kafka_source_bootstrap_servers": kafka_bootstrap,
        "kafka_source_topic": kafka_topic,
        "kafka_source_group_id": group,
        "pairing_window_s": 5.0,  # long enough that one replica joins every pair even on a loaded machine
        "flush_interval_s": 0.2,
        "batch_max_delay_s": 0.05,
    }
    cs = [start_collector(tmp_path, name, **kafka) for name in "ab"[:REPLICAS]]
    agent = Agent()
    sent = exchanges("kafka", 12)
    try:
        share = PARTITIONS // REPLICAS
        _wait(lambda: [c.metric("infertap_collector_kafka_assigned_partitions") for c in cs] == [share] * REPLICAS,
              "the group to share the partitions")  # fmt: skip
        for i, ex in enumerate(sent):  # no key: the two events of a pair land in different partitions
            for event, partition in zip(ex.events(agent), (i % PARTITIONS, (i + 1) % PARTITIONS), strict=True):
                headers, value = agent.kafka(event)
                producer.produce(kafka_topic, value, headers=headers, partition=partition)
        assert producer.flush(30) == 0
        _wait(lambda: _total(cs, "infertap_collector_events_received_total", transport="kafka") == 24,
              "every event to be received")  # fmt: skip
        _wait(lambda: 2 * _total(cs, "infertap_collector_pairs_joined_total")
              + _total(cs, "infertap_collector_halves_timed_out_total", reason="window") == 24,
              "every half to be joined or written alone")  # fmt: skip
        assert _total(cs, "infertap_collector_events_rejected_total", reason="malformed", transport="kafka") == 1
        split = _total(cs, "infertap_collector_halves_timed_out_total", reason="window")
        assert (split > 0) == (REPLICAS > 1)  # with two replicas, some pairs were split between them
    finally:
        assert [c.stop() for c in cs] == [0] * REPLICAS
    check = confluent_kafka.Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "log_level": 3})
    try:
        tps = [confluent_kafka.TopicPartition(kafka_topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: tp.offset for tp in check.committed(tps, timeout=30)}
        ends = {p: check.get_watermark_offsets(tp, timeout=30)[1] for p, tp in enumerate(tps)}
    finally:
        check.close()
    assert committed == ends  # everything consumed was committed, after it was in the journal
    raw = read_records(*(c.out for c in cs))
    assert raw.num_rows == 12 + split / 2
    joined = join_halves(raw)
    rows = rows_by_id(joined)
    assert sorted(rows) == sorted(ex.id for ex in sent)
    for ex in sent:
        check_joined(joined, ex, rows[ex.id])


def test_a_crash_after_the_commit_loses_nothing(tmp_path: Path, kafka_bootstrap: str, kafka_topic: str) -> None:
    """SIGKILL once the offsets are committed and before any record is written: the journal has every event."""
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka_bootstrap, "log_level": 3})
    agent = Agent()
    sent = exchanges("crash", 6)
    for ex in sent:
        for event in ex.events(agent):
            headers, value = agent.kafka(event)
            producer.produce(kafka_topic, value, headers=headers)
    assert producer.flush(30) == 0
    kafka = {
        "kafka_source_bootstrap_servers": kafka_bootstrap,
        "kafka_source_topic": kafka_topic,
        "kafka_source_group_id": f"crash-{uuid.uuid4().hex[:8]}",
        "batch_max_delay_s": 0.05,
    }
    c = start_collector(tmp_path, **kafka, flush_interval_s=3600.0, pairing_window_s=3600.0)
    c.wait_metric("infertap_collector_events_received_total", 12)
    _wait(lambda: _committed(kafka_bootstrap, str(kafka["kafka_source_group_id"]), kafka_topic) == 12,
          "the offsets of all 12 events to be committed")  # fmt: skip
    c.kill()
    assert not list(c.out.rglob("*.parquet"))
    c2 = start_collector(tmp_path, **kafka, flush_interval_s=0.2, pairing_window_s=1.0)
    try:
        c2.wait_metric("infertap_collector_records_written_total", 6)
        assert c2.metric("infertap_collector_events_received_total") == 0  # offsets were committed: nothing re-read
    finally:
        assert c2.stop() == 0
    table = read_records(c2.out)
    rows = rows_by_id(table)
    assert sorted(rows) == sorted(ex.id for ex in sent)
    for ex in sent:
        check_joined(table, ex, rows[ex.id])
