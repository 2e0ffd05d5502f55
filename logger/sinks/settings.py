"""Settings of the spool and the network sinks, one pydantic-settings model each: plain data, no factories.

Each model reads its own environment prefix (``INFERTAP_SPOOL_``, ``INFERTAP_S3_``, ``INFERTAP_KAFKA_``,
``INFERTAP_HTTP_SINK_``), rejects unknown keyword arguments (``extra="forbid"``) and names units in field names.
Secrets can be given as mounted files (``*_file``), the Kubernetes way, instead of environment variables.
The sinks take these objects as they are (:class:`infertap.logger.sinks.s3.S3Sink` ...); the spool and its delivery
loop are built from :class:`SpoolSettings` where the sink is assembled (:mod:`infertap.logger.sinks.factory`).
This module imports nothing else of the sinks layer.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OverflowPolicy(StrEnum):
    """What :meth:`infertap.logger.sinks.segments.Spool.append` does when the spool is full."""

    DROP_NEWEST = "drop_newest"
    BLOCK_CAPTURE = "block_capture"


def read_secret(value: SecretStr | None, file: Path | None) -> str | None:
    """A secret from its mounted file (stripped of surrounding whitespace) or, failing that, its value."""
    if file is not None:
        return file.read_text().strip()
    return value.get_secret_value() if value is not None else None


class SpoolSettings(BaseSettings):
    """The disk spool in front of a network sink (:class:`infertap.logger.sinks.segments.Spool`), from
    ``INFERTAP_SPOOL_*``."""

    model_config = SettingsConfigDict(env_prefix="INFERTAP_SPOOL_", extra="forbid", frozen=True)

    dir: Path = Field(
        Path("infertap-spool"),
        description="Spool directory (an emptyDir in the pod); one subdirectory per sink.",
    )
    max_bytes: int = Field(
        1 << 30,
        gt=0,
        description="Bound of the spool on disk (max_spool_bytes); beyond it the overflow policy applies.",
    )
    overflow_policy: OverflowPolicy = Field(
        OverflowPolicy.DROP_NEWEST,
        description="drop_newest: drop the batch and count it; block_capture: the capture worker waits for room "
        "(the proxy never waits; its queue then fills and drops).",
    )
    block_timeout_s: float | None = Field(
        None, ge=0, description="With block_capture, longest wait for room before dropping (empty: no limit)."
    )
    fsync: bool = Field(
        True,
        description="fsync each segment and the directory when sealing. Off, a node crash may lose sealed "
        "segments the kernel had not written back; a process crash loses nothing either way.",
    )
    segment_max_bytes: int = Field(16 << 20, gt=0, description="A segment is sealed once its file reaches this size.")
    segment_max_age_s: float = Field(
        10.0, gt=0, description="A segment is sealed this long after its first batch; bounds delivery latency."
    )
    compression: Literal["zstd", "lz4", "none"] = Field("zstd", description="Arrow IPC compression of segments.")
    retry_initial_backoff_s: float = Field(0.5, gt=0, description="First delay before retrying a failed delivery.")
    retry_max_backoff_s: float = Field(30.0, gt=0, description="Longest delay between delivery retries.")
    drain_timeout_s: float = Field(
        20.0, ge=0, description="On shutdown, how long to keep delivering the spool before leaving the rest on disk."
    )
    healthcheck_interval_s: float = Field(15.0, gt=0, description="How often an idle delivery loop checks its sink.")

    def ipc_compression(self) -> str | None:
        """``compression`` as Arrow IPC takes it (``None`` for ``"none"``)."""
        return None if self.compression == "none" else self.compression


class ServerSideEncryption(StrEnum):
    """S3 server-side encryption of uploaded objects."""

    NONE = "none"
    SSE_S3 = "AES256"
    SSE_KMS = "aws:kms"


class S3Settings(BaseSettings):
    """The S3 / MinIO Parquet sink (:class:`infertap.logger.sinks.s3.S3Sink`), from ``INFERTAP_S3_*``."""

    model_config = SettingsConfigDict(env_prefix="INFERTAP_S3_", extra="forbid", frozen=True)

    bucket: str = Field(..., min_length=1, description="Bucket the Parquet files go to.")
    prefix: str = Field("", description="Key prefix; the hive layout model=/date=/hour= follows it.")
    endpoint_url: str | None = Field(None, description="Endpoint override (MinIO, Ceph, a test server).")
    region: str | None = Field(None, description="Region; default from the boto3 chain (AWS_REGION ...).")
    force_path_style: bool = Field(False, description="Path-style addressing (most MinIO deployments need it).")
    access_key_id_file: Path | None = Field(
        None, description="File holding the access key id (a mounted secret); default: the standard boto3 chain."
    )
    secret_access_key_file: Path | None = Field(None, description="File holding the secret access key.")
    session_token_file: Path | None = Field(None, description="File holding a session token, if any.")
    sse: ServerSideEncryption = Field(
        ServerSideEncryption.NONE, description="Server-side encryption: none, AES256 (SSE-S3) or aws:kms (SSE-KMS)."
    )
    sse_kms_key_id: str | None = Field(None, description="KMS key for aws:kms (default: the bucket's AWS key).")
    ca_bundle_file: Path | None = Field(None, description="CA bundle to verify the endpoint's certificate.")
    multipart_threshold_bytes: int = Field(
        16 << 20, ge=5 << 20, description="Files at least this large are uploaded in parts."
    )
    multipart_chunk_bytes: int = Field(8 << 20, ge=5 << 20, description="Size of each part of a multipart upload.")
    max_concurrency: int = Field(4, gt=0, description="Parts uploaded at once (threads of the upload).")
    max_attempts: int = Field(
        3, gt=0, description="Attempts per request inside boto3 (standard retry mode) before the spool's backoff."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout of each request.")
    read_timeout_s: float = Field(60.0, gt=0, description="Read timeout of each request.")
    compression: str = Field("zstd", description="Parquet compression codec.")


class KafkaKey(StrEnum):
    """What the Kafka message key is, and therefore what stays in order (one partition per key)."""

    POD = "pod"
    MODEL = "model"
    REQUEST_ID = "request_id"
    NONE = "none"


class KafkaSettings(BaseSettings):
    """The Kafka CloudEvents sink (:class:`infertap.logger.sinks.kafka.KafkaSink`), from ``INFERTAP_KAFKA_*``."""

    model_config = SettingsConfigDict(env_prefix="INFERTAP_KAFKA_", extra="forbid", frozen=True)

    bootstrap_servers: str = Field(..., min_length=1, description="Comma-separated host:port list.")
    topic: str = Field("infertap.records", min_length=1, description="Topic every record is produced to.")
    client_id: str = Field("infertap", description="Kafka client id.")
    key: KafkaKey = Field(
        KafkaKey.POD,
        description="Message key: pod (records of one sidecar stay in capture order), model, request_id or none.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism with SASL_PLAINTEXT / SASL_SSL."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (prefer sasl_password_file).")
    sasl_password_file: Path | None = Field(None, description="File holding the SASL password (a mounted secret).")
    ssl_cafile: Path | None = Field(None, description="CA file to verify the brokers (SSL / SASL_SSL).")
    ssl_certfile: Path | None = Field(None, description="Client certificate for mutual TLS.")
    ssl_keyfile: Path | None = Field(None, description="Client key for mutual TLS.")
    acks: Literal["all", "1", "0"] = Field(
        "all",
        description="Acknowledgements the producer waits for: all (every in-sync replica, the default), 1 (the "
        "partition leader) or 0 (none: records can be lost without an error).",
    )
    enable_idempotence: bool = Field(
        True,
        description="Idempotent producer: broker-side deduplication of producer retries (needs acks=all and the "
        "IDEMPOTENT_WRITE permission). Turn off for brokers or ACLs that refuse it; delivery stays at least once.",
    )
    compression_type: Literal["zstd", "lz4", "gzip", "snappy", "none"] = Field(
        "zstd", description="Producer batch compression."
    )
    linger_ms: int = Field(20, ge=0, description="How long the producer waits to fill a batch (milliseconds).")
    max_batch_bytes: int = Field(512 * 1024, gt=0, description="Producer batch size per partition (bytes).")
    max_request_bytes: int = Field(4 << 20, gt=0, description="Largest produce request; bounds a message's size.")
    request_timeout_s: float = Field(30.0, gt=0, description="Broker request timeout.")
    flush_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for the acknowledgements of one segment's messages."
    )
    ce_source: str = Field(
        "", description="CloudEvents source; default /namespaces/<ns>/inferenceservices/<isvc>/pods/<pod>."
    )
    ce_type: str = Field("io.infertap.inference.record.v1", description="CloudEvents type of record messages.")

    @model_validator(mode="after")
    def _idempotence_needs_acks_all(self) -> KafkaSettings:
        """The idempotent producer needs ``acks=all`` (KIP-98); say which setting to change."""
        if self.enable_idempotence and self.acks != "all":
            raise ValueError(
                f"INFERTAP_KAFKA_ACKS={self.acks} needs INFERTAP_KAFKA_ENABLE_IDEMPOTENCE=false "
                "(the idempotent producer requires acks=all)"
            )
        return self


class HttpSinkSettings(BaseSettings):
    """The KServe-compatible HTTP CloudEvents sink.

    Configures :class:`infertap.logger.sinks.cloudevents_http.CloudEventsHttpSink`."""

    model_config = SettingsConfigDict(env_prefix="INFERTAP_HTTP_SINK_", extra="forbid", frozen=True)

    url: str = Field(..., min_length=1, description="Where events are POSTed (a KServe logger URL, a Knative broker).")
    source: str = Field("", description="CloudEvents source (KServe: the agent's --source-uri); default derived.")
    timeout_s: float = Field(10.0, gt=0, description="Total timeout of one POST.")
    max_concurrency: int = Field(16, gt=0, description="POSTs in flight at once.")
    ca_file: Path | None = Field(None, description="CA file for an https URL.")
    tls_skip_verify: bool = Field(False, description="Do not verify the server certificate (KServe's tlsSkipVerify).")
    log_non_ok_responses: bool = Field(
        True, description="Also send response events of non-200 exchanges (KServe's logger sends only 200s)."
    )
