"""Kafka sink against librdkafka's mock cluster: CloudEvents binary mode, keys, value encoding, delivery checks."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from infertap.logger.sinks.kafka import KafkaSink
from infertap.logger.sinks.settings import KafkaKey, KafkaSettings
from tests.integration.sinks.components import kafka_consume
from tests.integration.sinks.records import IDENTITY, batch

pytestmark = pytest.mark.integration


def produce(bootstrap: str, topic: str, n: int, **kw: object) -> KafkaSink:
    sink = KafkaSink(KafkaSettings(bootstrap_servers=bootstrap, topic=topic, linger_ms=5, **kw))  # type: ignore[arg-type]
    sink.start()
    try:
        sink.write(batch(0, n, body=True))
        sink.flush()
    finally:
        sink.close()
    return sink


def test_one_cloudevent_per_record_in_binary_mode(kafka_bootstrap: str, kafka_topic: str) -> None:
    sink = produce(kafka_bootstrap, kafka_topic, 3)
    assert sink.stats.records_sent == 3
    messages = kafka_consume(kafka_bootstrap, kafka_topic, 3)
    assert len(messages) == 3
    first = min(messages, key=lambda m: m.headers["ce_id"])
    h = first.headers
    assert h["ce_specversion"] == b"1.0"
    assert h["ce_id"] == b"req-0"
    assert h["ce_type"] == b"io.infertap.inference.record.v1"
    assert h["ce_source"] == f"/namespaces/models/inferenceservices/iris/pods/{IDENTITY.pod}".encode()
    assert h["ce_time"] == b"2026-11-21T09:00:00Z"
    assert h["ce_subject"] == b"iris"
    assert h["content-type"] == b"application/json"
    assert h["ce_inferenceservicename"] == b"iris"
    assert h["ce_namespace"] == b"models"
    assert h["ce_component"] == b"predictor"
    assert h["ce_endpoint"] == b"default"
    assert h["ce_revision"] == IDENTITY.revision.encode()
    # the key keeps one sidecar's records in order: all in one partition
    assert {m.key for m in messages} == {IDENTITY.pod.encode()}
    assert len({m.partition for m in messages}) == 1

    # the cloudevents library reads it back
    event = ce_kafka.from_binary(ce_kafka.KafkaMessage(first.headers, first.key, first.value), JSONFormat())
    assert event.get_id() == "req-0"
    value = orjson.loads(first.value)
    assert value["request_id"] == "req-0"
    assert value["model_name"] == "iris"
    assert value["request_time"] == "2026-11-21T09:00:00Z"
    assert value["request_headers"] == {"content-type": "application/json"}
    assert value["request_body_b64"] == "eyJpbnB1dHMiOiBbXX0="
    assert value["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [1, 4], "data": [0.0, 1.0, 2.0, 3.0]}]
    assert value["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [0]}]


def test_key_by_request_id(kafka_bootstrap: str, kafka_topic: str) -> None:
    produce(kafka_bootstrap, kafka_topic, 2, key=KafkaKey.REQUEST_ID)
    assert sorted(m.key for m in kafka_consume(kafka_bootstrap, kafka_topic, 2)) == [b"req-0", b"req-1"]


def test_producer_is_durable_and_settings_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "password").write_text("s3cret\n")
    monkeypatch.setenv("INFERTAP_KAFKA_BOOTSTRAP_SERVERS", "broker-0:9093")
    monkeypatch.setenv("INFERTAP_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("INFERTAP_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("INFERTAP_KAFKA_SASL_USERNAME", "infertap")
    monkeypatch.setenv("INFERTAP_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "password"))
    monkeypatch.setenv("INFERTAP_KAFKA_SSL_CAFILE", str(tmp_path / "ca.pem"))
    sink = KafkaSink(KafkaSettings())  # type: ignore[call-arg]
    conf = sink.producer_config()
    assert conf["acks"] == "all"
    assert conf["enable_idempotence"] is True
    assert conf["compression_type"] == "zstd"
    assert conf["linger_ms"] > 0
    assert conf["security_protocol"] == "SASL_SSL"
    assert conf["sasl_mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl_plain_username"] == "infertap"
    assert conf["sasl_plain_password"] == "s3cret"
    assert sink.settings.ssl_cafile == tmp_path / "ca.pem"


def test_acks_and_idempotence_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERTAP_KAFKA_BOOTSTRAP_SERVERS", "broker-0:9092")
    monkeypatch.setenv("INFERTAP_KAFKA_ENABLE_IDEMPOTENCE", "false")
    monkeypatch.setenv("INFERTAP_KAFKA_ACKS", "1")
    conf = KafkaSink(KafkaSettings()).producer_config()  # type: ignore[call-arg]
    assert (conf["acks"], conf["enable_idempotence"]) == (1, False)
    monkeypatch.setenv("INFERTAP_KAFKA_ENABLE_IDEMPOTENCE", "true")
    with pytest.raises(ValueError, match="INFERTAP_KAFKA_ENABLE_IDEMPOTENCE=false"):
        KafkaSettings()  # type: ignore[call-arg]
