"""Assembly of the sidecar's sink from its settings: ``INFERTAP_SINK`` names the sink, each network sink reads its
own settings (``INFERTAP_S3_*``, ``INFERTAP_KAFKA_*``, ``INFERTAP_HTTP_SINK_*``) and is put behind the disk spool
(``INFERTAP_SPOOL_*``). The only module of the sinks layer that knows every sink."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from infertap.logger.sinks.base import Sink
from infertap.logger.sinks.file import FileSink
from infertap.logger.sinks.settings import SpoolSettings
from infertap.logger.sinks.spooled import SpooledSink

SinkKind = Literal["file", "s3", "kafka", "http"]


def build_sink(kind: SinkKind, *, pod: str, output_dir: Path, max_file_bytes: int) -> Sink:
    """The sink ``kind`` names: local Parquet (the embedded default), or a network sink behind the spool.

    Args:
        kind: ``"file"``, ``"s3"``, ``"kafka"`` or ``"http"`` (``INFERTAP_SINK``).
        pod: this sidecar's pod name (names files and objects).
        output_dir: root of the local Parquet sink (``INFERTAP_OUTPUT_DIR``).
        max_file_bytes: roll size of the local Parquet sink's files (bytes).

    Raises:
        pydantic.ValidationError: the network sink's or the spool's own settings are invalid.
        OSError: a secret file named by the settings cannot be read.
    """
    if kind == "file":
        return FileSink(output_dir, pod=pod, max_file_bytes=max_file_bytes)
    inner: Sink
    if kind == "s3":
        from infertap.logger.sinks.s3 import S3Sink
        from infertap.logger.sinks.settings import S3Settings

        inner = S3Sink(S3Settings(), pod=pod)
    elif kind == "kafka":
        from infertap.logger.sinks.kafka import KafkaSink
        from infertap.logger.sinks.settings import KafkaSettings

        inner = KafkaSink(KafkaSettings())
    else:
        from infertap.logger.sinks.cloudevents_http import CloudEventsHttpSink
        from infertap.logger.sinks.settings import HttpSinkSettings

        inner = CloudEventsHttpSink(HttpSinkSettings())
    return SpooledSink(inner, SpoolSettings())
