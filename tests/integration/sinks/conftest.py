"""Fixtures of real components for the sink tests (see :mod:`tests.integration.sinks.components`)."""

from tests.integration.sinks.components import ce_receiver, kafka_bootstrap, kafka_topic, s3_bucket, s3_endpoint

__all__ = ["ce_receiver", "kafka_bootstrap", "kafka_topic", "s3_bucket", "s3_endpoint"]
