"""Fixtures of the collector tests: librdkafka's mock Kafka cluster (shared with the sink tests)."""

from tests.integration.sinks.components import kafka_bootstrap, kafka_topic

__all__ = ["kafka_bootstrap", "kafka_topic"]
