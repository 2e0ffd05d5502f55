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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3  # type: ignore[import-untyped]
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import Health, SinkStats
from infertap.logger.sinks.partitions import HOUR_US, ModelPartitions, row_hours
from infertap.logger.sinks.settings import S3Settings, ServerSideEncryption

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """Explicit credentials, instead of the secret files of :class:`S3Settings` or the standard boto3 chain."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class S3Sink:
    """Uploads record batches as zstd Parquet objects.

    Args:
        settings: bucket, prefix, endpoint, encryption, transfer, retry and timeout settings
            (:class:`infertap.logger.sinks.settings.S3Settings`); its secret files are read here.
        pod: identifies this writer in object names.
        credentials: explicit credentials; default the secret files of ``settings``, else the boto3 chain.

    Raises:
        OSError: a secret file of ``settings`` cannot be read.
    """

    name = "s3"

    def __init__(self, settings: S3Settings, *, pod: str = "", credentials: S3Credentials | None = None) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix.strip("/")
        self.pod = quote(pod or "local", safe="")
        if credentials is None and settings.access_key_id_file is not None:
            credentials = S3Credentials(
                _read(settings.access_key_id_file),
                _read(settings.secret_access_key_file) if settings.secret_access_key_file else "",
                _read(settings.session_token_file) if settings.session_token_file else None,
            )
        self._credentials = credentials
        self.transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold_bytes,
            multipart_chunksize=settings.multipart_chunk_bytes,
            max_concurrency=settings.max_concurrency,
            use_threads=settings.max_concurrency > 1,
        )
        self.partitions = ModelPartitions()
        self.stats = SinkStats()
        self._client: Any = None
        self._pending: list[pa.RecordBatch] = []
        self._seq = 0
        self._start = time.strftime("%Y%m%dT%H%M%S", time.gmtime())

    # --- Sink protocol --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the S3 client (no request is made; see :meth:`healthcheck`)."""
        st, creds = self.settings, self._credentials
        try:
            session = boto3.session.Session(
                aws_access_key_id=creds.access_key_id if creds else None,
                aws_secret_access_key=creds.secret_access_key if creds else None,
                aws_session_token=creds.session_token if creds else None,
                region_name=st.region,
            )
            self._client = session.client(
                "s3",
                endpoint_url=st.endpoint_url,
                verify=str(st.ca_bundle_file) if st.ca_bundle_file is not None else None,
                config=Config(
                    retries={"mode": "standard", "max_attempts": st.max_attempts},
                    connect_timeout=st.connect_timeout_s,
                    read_timeout=st.read_timeout_s,
                    s3={"addressing_style": "path" if st.force_path_style else "auto"},
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
        for rel_dir, part in _partitions(table, self.partitions):
            self._upload(self.key(rel_dir, name), part)

    def _upload(self, key: str, table: pa.Table) -> None:
        extra: dict[str, str] = {"ContentType": PARQUET_CONTENT_TYPE}
        st = self.settings
        if st.sse is not ServerSideEncryption.NONE:
            extra["ServerSideEncryption"] = st.sse.value
            if st.sse is ServerSideEncryption.SSE_KMS and st.sse_kms_key_id:
                extra["SSEKMSKeyId"] = st.sse_kms_key_id
        with tempfile.SpooledTemporaryFile(max_size=st.multipart_threshold_bytes) as buf:
            try:
                pq.write_table(table, buf, compression=st.compression, write_statistics=True)
                size = buf.tell()
                buf.seek(0)
                self._client.upload_fileobj(buf, self.bucket, key, ExtraArgs=extra, Config=self.transfer)
            except (BotoCoreError, ClientError, OSError, pa.ArrowException) as exc:
                self.stats.errors += 1
                raise SinkError(f"uploading s3://{self.bucket}/{key}: {exc}", sink=self.name) from exc
        self.stats.records_sent += table.num_rows
        self.stats.bytes_sent += size


def _partitions(table: pa.Table, partitions: ModelPartitions) -> list[tuple[str, pa.Table]]:
    """``table`` split by partition directory (model after the cap, UTC hour of ``request_time``)."""
    models = table.column("model_name").to_numpy(zero_copy_only=False)
    hours = row_hours(table)
    dirs = np.empty(len(models), dtype=object)
    for model in dict.fromkeys(models.tolist()):  # in order of appearance: the cap admits the first seen
        for hour in np.unique(hours[models == model]):
            dirs[(models == model) & (hours == hour)] = partitions.directory(str(model), int(hour) * HOUR_US)
    out: list[tuple[str, pa.Table]] = []
    for rel_dir in sorted(set(dirs.tolist())):
        mask = dirs == rel_dir
        out.append((rel_dir, table if mask.all() else table.filter(pa.array(mask))))
    return out


def _read(path: Path) -> str:
    return path.read_text().strip()
