"""Settings of ``infertap collector``, from ``INFERTAP_COLLECTOR_*`` environment variables.

One pydantic-settings model (``extra="forbid"``, units in field names). The record sink is configured as the
sidecar's is: ``INFERTAP_COLLECTOR_SINK`` picks it, and the network sinks read their own ``INFERTAP_SPOOL_*``,
``INFERTAP_S3_*``, ``INFERTAP_KAFKA_*`` and ``INFERTAP_HTTP_SINK_*`` settings (docs/sinks.md). Every field is listed
in docs/collector.md.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CollectorSettings(BaseSettings):
    """Settings of the collector (docs/collector.md)."""

    model_config = SettingsConfigDict(env_prefix="INFERTAP_COLLECTOR_", extra="forbid", frozen=True)

    listen_host: str = Field("0.0.0.0", description="Address the CloudEvents receiver listens on.")
    listen_port: int = Field(8080, ge=0, le=65535, description="Port KServe's logger.url points at (0: any free port).")
    admin_port: int = Field(9091, ge=0, le=65535, description="Port of /metrics, /livez, /readyz (0: any free port).")
    max_event_bytes: int = Field(
        64 << 20, gt=0, description="Largest HTTP request body accepted (one event or a batch); larger ones get 413."
    )
    pairing_window_s: float = Field(
        30.0, gt=0, description="How long a half waits for its partner before it is written alone (seconds)."
    )
    pairing_max_halves: int = Field(
        100_000, gt=0, description="Most halves waiting for a partner; beyond it the oldest are written alone."
    )
    pairing_max_bytes: int = Field(
        256 << 20, gt=0, description="Most payload bytes waiting for a partner; beyond it the oldest are written alone."
    )
    max_pending_records: int = Field(
        20_000,
        gt=0,
        description="Pairs waiting to be encoded and written; beyond it events are refused with 429 (HTTP) or "
        "fetching pauses (Kafka).",
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After of 429 and 503 answers (seconds).")
    batch_max_records: int = Field(1_000, gt=0, description="Records per Arrow record batch.")
    batch_max_delay_s: float = Field(1.0, gt=0, description="Longest time a record waits to be batched (seconds).")
    flush_interval_s: float = Field(
        10.0,
        gt=0,
        description="The sink is flushed this often (seconds); then the journal releases what the flush made durable.",
    )
    journal_dir: Path = Field(
        Path("infertap-journal"), description="Directory of the halves journal (an emptyDir in the pod)."
    )
    journal_fsync: bool = Field(
        False,
        description="fsync the journal on every append (survives a node crash; costs a disk flush per event). "
        "Off, a process crash loses nothing and a node crash may lose what the kernel had not written back.",
    )
    journal_rotate_bytes: int = Field(64 << 20, gt=0, description="Size at which a journal file is rotated.")
    keep_raw_bodies: bool = Field(False, description="Keep raw bodies in every record (always kept when undecodable).")
    sink: Literal["file", "s3", "kafka", "http"] = Field(
        "file",
        description="Where records go: file (local Parquet) or s3 / kafka / http behind the disk spool, configured "
        "by INFERTAP_SPOOL_* and INFERTAP_S3_* / INFERTAP_KAFKA_* / INFERTAP_HTTP_SINK_*.",
    )
    output_dir: Path = Field(Path("infertap-data"), description="Root of the local Parquet sink.")
    max_file_bytes: int = Field(128 * 1024 * 1024, gt=0, description="Size at which a Parquet file is rolled.")
    pod_name: str = Field("", description="Name written in file names and the pod column; default HOSTNAME.")
    kafka_source_bootstrap_servers: str = Field(
        "", description="Consume events from Kafka too (comma-separated host:port); empty: HTTP only."
    )
    kafka_source_topic: str = Field("", description="Topic the events are read from (Knative KafkaSink's topic).")
    kafka_source_group_id: str = Field("infertap-collector", min_length=1, description="Consumer group id.")
    kafka_source_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Security protocol of the source cluster."
    )
    kafka_source_max_poll_records: int = Field(500, gt=0, description="Most records fetched per poll.")
    shutdown_grace_s: float = Field(
        30.0, gt=0, description="On SIGTERM: longest time to write waiting halves and flush the sink (seconds)."
    )

    @model_validator(mode="after")
    def _kafka_topic(self) -> CollectorSettings:
        if self.kafka_source_bootstrap_servers and not self.kafka_source_topic:
            raise ValueError("kafka_source_topic is required when kafka_source_bootstrap_servers is set")
        return self

    def pod(self) -> str:
        """The pod name: ``pod_name``, else ``HOSTNAME``, else the host name."""
        return self.pod_name or os.environ.get("HOSTNAME", "") or socket.gethostname()
