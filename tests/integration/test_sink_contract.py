"""One contract, every sink (Vector's sink compliance tests): memory, file, S3, Kafka, HTTP CloudEvents.

Each sink is run against a real destination (see :mod:`tests.integration.sinks.components`) and must:
start and report healthy; take batches of several models and hours through ``write`` + ``flush`` and deliver
each record exactly once; count what it sent in ``stats``; take spool segments through :class:`SpoolDelivery`
(acknowledged only after delivery); and fail with :class:`infertap.logger.errors.SinkError`, never another exception,
and an unhealthy ``healthcheck()``, when its destination is down.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import SegmentSink, Sink
from infertap.logger.sinks.cloudevents_http import CloudEventsHttpSink
from infertap.logger.sinks.delivery import SpoolDelivery
from infertap.logger.sinks.file import FileSink
from infertap.logger.sinks.kafka import KafkaSink
from infertap.logger.sinks.memory import MemorySink
from infertap.logger.sinks.s3 import S3Credentials, S3Sink
from infertap.logger.sinks.segments import Spool
from infertap.logger.sinks.settings import HttpSinkSettings, KafkaSettings, S3Settings
from tests.integration.sinks.components import (
    CloudEventsReceiver,
    S3Endpoint,
    ce_receiver,
    free_port,
    kafka_bootstrap,
    kafka_consume,
    kafka_request_ids,
    kafka_topic,
    s3_bucket,
    s3_endpoint,
    s3_table,
)
from tests.integration.sinks.records import T0_US, batch, request_ids

__all__ = ["ce_receiver", "kafka_bootstrap", "kafka_topic", "s3_bucket", "s3_endpoint"]

pytestmark = pytest.mark.integration
SINKS = ["memory", "file", "s3", "kafka", "http"]


@dataclass
class Harness:
    sink: Sink
    read_ids: Callable[[int], list[str]]  # ids delivered so far; the argument is how many are expected
    down: Callable[[], Sink]  # the same kind of sink, its destination unreachable


@pytest.fixture(params=SINKS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    kind = request.param
    if kind == "memory":
        mem = MemorySink()

        def down_memory() -> Sink:
            s = MemorySink()
            s.fail = True
            return s

        yield Harness(mem, lambda _n: request_ids(mem.table()) if mem.flushed else [], down_memory)
    elif kind == "file":
        root = tmp_path / "files"

        def file_ids(_n: int) -> list[str]:
            files = sorted(root.rglob("*.parquet"))
            return [i for f in files for i in request_ids(pq.read_table(f))]

        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        yield Harness(FileSink(root, pod="p"), file_ids, lambda: FileSink(blocker / "x"))
    elif kind == "s3":
        endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
        bucket: str = request.getfixturevalue("s3_bucket")

        def s3_sink(url: str) -> S3Sink:
            return S3Sink(
                S3Settings(
                    bucket=bucket,
                    prefix="records",
                    endpoint_url=url,
                    region=endpoint.region,
                    max_attempts=1,
                    connect_timeout_s=2,
                    read_timeout_s=5,
                ),
                pod="pod-a",
                credentials=S3Credentials(endpoint.access_key_id, endpoint.secret_access_key),
            )

        def s3_ids(_n: int) -> list[str]:
            table = s3_table(endpoint, bucket, "records/")
            return request_ids(table) if table is not None else []

        yield Harness(s3_sink(endpoint.url), s3_ids, lambda: s3_sink(f"http://127.0.0.1:{free_port()}"))
    elif kind == "kafka":
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        topic: str = request.getfixturevalue("kafka_topic")
        yield Harness(
            KafkaSink(KafkaSettings(bootstrap_servers=bootstrap, topic=topic, linger_ms=5, flush_timeout_s=30)),
            lambda n: kafka_request_ids(kafka_consume(bootstrap, topic, n)),
            lambda: KafkaSink(
                KafkaSettings(
                    bootstrap_servers=f"127.0.0.1:{free_port()}", topic=topic, request_timeout_s=2, flush_timeout_s=3
                )
            ),
        )
    else:
        receiver: CloudEventsReceiver = request.getfixturevalue("ce_receiver")
        yield Harness(
            CloudEventsHttpSink(HttpSinkSettings(url=receiver.url, timeout_s=5)),
            lambda _n: receiver.request_ids(),
            lambda: CloudEventsHttpSink(HttpSinkSettings(url=f"http://127.0.0.1:{free_port()}/", timeout_s=2)),
        )


def ids(start: int, n: int) -> list[str]:
    return [f"req-{i}" for i in range(start, start + n)]


def test_write_flush_delivers_every_record_once(harness: Harness) -> None:
    sink = harness.sink
    sink.start()
    try:
        assert sink.healthcheck().ok, sink.healthcheck().detail
        sink.write(batch(0, 5))
        sink.write(batch(5, 3, model="other-model"))
        sink.write(batch(8, 4, time_us=T0_US + 3_600_000_000))  # the next UTC hour
        sink.write(batch(12, 1).slice(0, 0))  # empty batches are accepted and ignored
        sink.flush()
        assert sink.stats.records_sent == 12
        assert sink.stats.bytes_sent > 0
        assert sink.stats.errors == 0
        assert Counter(harness.read_ids(12)) == Counter(ids(0, 12))
    finally:
        sink.close()


def test_spool_delivery_acknowledges_after_delivery(harness: Harness, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    spool.append(batch(0, 4))
    spool.append(batch(4, 2, model="other-model"))
    spool.seal()
    spool.append(batch(6, 3))
    spool.seal()
    delivery = SpoolDelivery(spool, harness.sink)
    try:
        assert delivery.deliver_pending() == 3
        assert spool.segments() == []
        assert spool.stats.acked_records == 9
        if isinstance(harness.sink, SegmentSink):  # a retried segment overwrites: still exactly once
            seg_batches = [batch(0, 4)]
            harness.sink.write_segment("retry-000000000001", seg_batches)
            harness.sink.write_segment("retry-000000000001", seg_batches)
            assert Counter(harness.read_ids(13)) == Counter(ids(0, 9) + ids(0, 4))
        else:
            assert Counter(harness.read_ids(9)) == Counter(ids(0, 9))
    finally:
        report = delivery.stop(grace_s=10)
    assert report.segments_left == 0


def test_unreachable_destination_raises_sink_error(harness: Harness) -> None:
    sink = harness.down()

    def use() -> None:
        sink.start()
        sink.write(batch(0, 2))
        sink.flush()

    with pytest.raises(SinkError):
        use()
    assert not sink.healthcheck().ok
    with contextlib.suppress(SinkError):
        sink.close()
