"""S3 (and MinIO) Parquet sink: the local sink's files, in the same hive layout, as objects under a bucket/prefix.

Object keys: ``<prefix>/model=<m>/date=YYYY-MM-DD/hour=HH/part-<pod>-<segment id>.parquet`` when fed by the spool
(:meth:`S3Sink.write_segment`). The segment id is unique for the life of the spool directory and does not change
when a delivery is retried, so a retried upload **overwrites** its earlier attempt instead of duplicating records.
A segment spanning two UTC hours becomes two objects, each with a deterministic key. Fed through the generic
:meth:`S3Sink.write` / :meth:`S3Sink.flush` (without a spool), keys are ``part-<pod>-<start>-<seq>.parquet``.

Uploads use boto3's managed transfer (``upload_fileobj``): files of ``multipart_threshold_bytes`` and more go up
in parts of ``multipart_chunk_bytes``, ``max_concurrency`` at a time. Each request is retried by botocore
(standard mode: exponential backoff with jitter, ``max_attempts``); past that the spool's delivery loop retries the
whole segment with its own backoff, for as long as the spool has room. The sink is synchronous and runs on the
spool's delivery thread, never on the proxy's event loop.

Credentials: the standard boto3 chain (environment, web identity / IRSA, instance profile ...), or access key
files mounted from a Kubernetes secret. Server-side encryption: SSE-S3 (``AES256``) or SSE-KMS (``aws:kms`` with an
optional key id).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3  # type: ignore[import-untyped]
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import Health, SinkStats
from infertap.logger.sinks.file import partition_dir
from infertap.logger.sinks.settings import S3Settings, ServerSideEncryption

_HOUR_US = 3_600_000_000
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


class S3Sink:
    """Uploads record batches as zstd Parquet objects.

    Args:
        bucket: destination bucket.
        prefix: key prefix (no leading or trailing ``/`` needed).
        pod: identifies this writer in object names.
        endpoint_url: endpoint override (MinIO, a test server).
        region: region name; default from the boto3 chain.
        force_path_style: path-style addressing.
        access_key_id / secret_access_key / session_token: explicit credentials; default the boto3 chain.
        sse: server-side encryption.
        sse_kms_key_id: KMS key id with :attr:`ServerSideEncryption.SSE_KMS`.
        ca_bundle: CA bundle file to verify the endpoint.
        multipart_threshold_bytes / multipart_chunk_bytes / max_concurrency: the managed transfer's settings.
        max_attempts: botocore's attempts per request (standard retry mode).
        connect_timeout_s / read_timeout_s: per-request timeouts.
        compression: Parquet codec.
    """

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        pod: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        force_path_style: bool = False,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        sse: ServerSideEncryption = ServerSideEncryption.NONE,
        sse_kms_key_id: str | None = None,
        ca_bundle: Path | None = None,
        multipart_threshold_bytes: int = 16 << 20,
        multipart_chunk_bytes: int = 8 << 20,
        max_concurrency: int = 4,
        max_attempts: int = 3,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        compression: str = "zstd",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.pod = quote(pod or "local", safe="")
        self.endpoint_url = endpoint_url
        self.region = region
        self.force_path_style = force_path_style
        self._credentials = (access_key_id, secret_access_key, session_token)
        self.sse = ServerSideEncryption(sse)
        self.sse_kms_key_id = sse_kms_key_id
        self.ca_bundle = ca_bundle
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold_bytes,
            multipart_chunksize=multipart_chunk_bytes,
            max_concurrency=max_concurrency,
            use_threads=max_concurrency > 1,
        )
        self.max_attempts = max_attempts
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.compression = compression
        self.spool_threshold_bytes = multipart_threshold_bytes
        self.stats = SinkStats()
        self._client: Any = None
        self._pending: list[pa.RecordBatch] = []
        self._seq = 0
        self._start = time.strftime("%Y%m%dT%H%M%S", time.gmtime())

    @classmethod
    def from_settings(cls, settings: S3Settings, *, pod: str) -> S3Sink:
        """A sink configured by :class:`infertap.logger.sinks.settings.S3Settings`; secret files are read here."""

        def secret(path: Path | None) -> str | None:
            return path.read_text().strip() if path is not None else None

        return cls(
            settings.bucket,
            prefix=settings.prefix,
            pod=pod,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            force_path_style=settings.force_path_style,
            access_key_id=secret(settings.access_key_id_file),
            secret_access_key=secret(settings.secret_access_key_file),
            session_token=secret(settings.session_token_file),
            sse=settings.sse,
            sse_kms_key_id=settings.sse_kms_key_id,
            ca_bundle=settings.ca_bundle_file,
            multipart_threshold_bytes=settings.multipart_threshold_bytes,
            multipart_chunk_bytes=settings.multipart_chunk_bytes,
            max_concurrency=settings.max_concurrency,
            max_attempts=settings.max_attempts,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            compression=settings.compression,
        )

    # --- Sink protocol --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the S3 client (no request is made; see :meth:`healthcheck`)."""
        key_id, secret, token = self._credentials
        try:
            session = boto3.session.Session(
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                aws_session_token=token,
                region_name=self.region,
            )
            self._client = session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                verify=str(self.ca_bundle) if self.ca_bundle is not None else None,
                config=Config(
                    retries={"mode": "standard", "max_attempts": self.max_attempts},
                    connect_timeout=self.connect_timeout_s,
                    read_timeout=self.read_timeout_s,
                    s3={"addressing_style": "path" if self.force_path_style else "auto"},
                ),
            )
        except (BotoCoreError, ClientError, ValueError) as exc:
            raise SinkError(f"cannot create the S3 client: {exc}", sink=self.name) from exc

    def write(self, batch: pa.RecordBatch) -> None:
        """Keep ``batch`` until :meth:`flush` uploads it."""
        if batch.num_rows:
            self._pending.append(batch)

    def flush(self) -> None:
        """Upload what :meth:`write` kept, one object per model and UTC hour."""
        if not self._pending:
            return
        self._seq += 1
        self._upload_batches(self._pending, f"{self._start}-{self._seq:06d}")
        self._pending = []

    def close(self) -> None:
        """Flush and drop the client; :meth:`start` makes a new one."""
        try:
            self.flush()
        finally:
            self._client = None

    def healthcheck(self) -> Health:
        """Whether the bucket can be reached with these credentials (``HeadBucket``)."""
        if self._client is None:
            return Health(False, "not started")
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            return Health(False, f"s3://{self.bucket}: {exc}")
        return Health(True)

    # --- SegmentSink ----------------------------------------------------------------------------------------
    def write_segment(self, segment_id: str, batches: Sequence[pa.RecordBatch]) -> None:
        """Upload one spool segment under keys derived from ``segment_id``; a retry overwrites."""
        self._upload_batches(batches, quote(segment_id, safe=""))

    # --- internals ------------------------------------------------------------------------------------------
    def key(self, rel_dir: str, name: str) -> str:
        """Object key of file ``name`` in partition directory ``rel_dir``."""
        return "/".join(p for p in (self.prefix, rel_dir, name) if p)

    def _upload_batches(self, batches: Sequence[pa.RecordBatch], tag: str) -> None:
        if self._client is None:
            raise SinkError("not started", sink=self.name)
        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        try:
            table = pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="default")
        except pa.ArrowException as exc:
            raise SinkError(f"cannot combine batches: {exc}", sink=self.name) from exc
        name = f"part-{self.pod}-{tag}.parquet"
        for rel_dir, part in _partitions(table):
            self._upload(self.key(rel_dir, name), part)

    def _upload(self, key: str, table: pa.Table) -> None:
        extra: dict[str, str] = {"ContentType": PARQUET_CONTENT_TYPE}
        if self.sse is not ServerSideEncryption.NONE:
            extra["ServerSideEncryption"] = self.sse.value
            if self.sse is ServerSideEncryption.SSE_KMS and self.sse_kms_key_id:
                extra["SSEKMSKeyId"] = self.sse_kms_key_id
        with tempfile.SpooledTemporaryFile(max_size=self.spool_threshold_bytes) as buf:
            try:
                pq.write_table(table, buf, compression=self.compression, write_statistics=True)
                size = buf.tell()
                buf.seek(0)
                self._client.upload_fileobj(buf, self.bucket, key, ExtraArgs=extra, Config=self.transfer)
            except (BotoCoreError, ClientError, OSError, pa.ArrowException) as exc:
                self.stats.errors += 1
                raise SinkError(f"uploading s3://{self.bucket}/{key}: {exc}", sink=self.name) from exc
        self.stats.records_sent += table.num_rows
        self.stats.bytes_sent += size


def _partitions(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """``table`` split by model and UTC hour of ``request_time``, with each part's partition directory."""
    models = table.column("model_name").to_numpy(zero_copy_only=False)
    hours = pc.cast(table.column("request_time"), pa.int64()).to_numpy() // _HOUR_US
    out: list[tuple[str, pa.Table]] = []
    for model in sorted(set(models.tolist())):
        for hour in np.unique(hours[models == model]):
            mask = (models == model) & (hours == hour)
            part = table if mask.all() else table.filter(pa.array(mask))
            out.append((partition_dir(str(model), int(hour) * _HOUR_US), part))
    return out
