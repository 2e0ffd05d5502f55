"""S3 sink against moto's S3 server: hive layout, deterministic keys, multipart, encryption, credentials."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infertap.logger.sinks.delivery import SpoolDelivery
from infertap.logger.sinks.s3 import S3Credentials, S3Sink
from infertap.logger.sinks.segments import Spool
from infertap.logger.sinks.settings import S3Settings, ServerSideEncryption
from tests.integration.sinks.components import S3Endpoint, s3_keys, s3_table
from tests.integration.sinks.records import T0_US, batch, request_ids

pytestmark = pytest.mark.integration


def make_sink(endpoint: S3Endpoint, bucket: str, **kw: object) -> S3Sink:
    sink = S3Sink(
        S3Settings(bucket=bucket, prefix="prod/records/", endpoint_url=endpoint.url, region=endpoint.region, **kw),  # type: ignore[arg-type]
        pod="iris-pod-1",
        credentials=S3Credentials(endpoint.access_key_id, endpoint.secret_access_key),
    )
    sink.start()
    return sink


def test_keys_follow_the_hive_layout_and_the_segment_id(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    sink = make_sink(s3_endpoint, s3_bucket)
    sink.write_segment("ab12cd34-000000000007", [batch(0, 2), batch(2, 2, time_us=T0_US + 3_600_000_000)])
    assert s3_keys(s3_endpoint, s3_bucket) == [
        "prod/records/model=iris/date=2026-11-21/hour=09/part-iris-pod-1-ab12cd34-000000000007.parquet",
        "prod/records/model=iris/date=2026-11-21/hour=10/part-iris-pod-1-ab12cd34-000000000007.parquet",
    ]


def test_redelivered_segment_overwrites(s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append(batch(0, 3))
    spool.seal()
    (seg,) = spool.segments()
    sink = make_sink(s3_endpoint, s3_bucket)
    # a first attempt that uploaded but whose acknowledgement was lost (crash before ack) ...
    sink.write_segment(seg.id, spool.read(seg))
    # ... is replayed after the restart
    SpoolDelivery(spool, sink).deliver_pending()
    table = s3_table(s3_endpoint, s3_bucket)
    assert table is not None
    assert sorted(request_ids(table)) == ["req-0", "req-1", "req-2"]


def test_large_files_use_multipart(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    sink = make_sink(s3_endpoint, s3_bucket, multipart_threshold_bytes=5 << 20, multipart_chunk_bytes=5 << 20)
    big = batch(0, 12, body=True)
    rng = np.random.default_rng(0)
    blobs = [rng.bytes(600_000) for _ in range(12)]  # incompressible, ~7 MB
    import pyarrow as pa

    big = big.set_column(big.schema.get_field_index("request_body"), "request_body", pa.array(blobs, pa.binary()))
    sink.write_segment("mp-000000000001", [big])
    (key,) = s3_keys(s3_endpoint, s3_bucket)
    head = s3_endpoint.client().head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentLength"] > 5 << 20
    assert head["ETag"].strip('"').endswith("-2")  # an S3 multipart ETag: <md5 of md5s>-<parts>


@pytest.mark.parametrize(
    ("sse", "kms_key"), [(ServerSideEncryption.SSE_S3, None), (ServerSideEncryption.SSE_KMS, "alias/infertap")]
)
def test_server_side_encryption(
    s3_endpoint: S3Endpoint, s3_bucket: str, sse: ServerSideEncryption, kms_key: str | None
) -> None:
    sink = make_sink(s3_endpoint, s3_bucket, sse=sse, sse_kms_key_id=kms_key)
    sink.write_segment("sse-000000000001", [batch(0, 1)])
    (key,) = s3_keys(s3_endpoint, s3_bucket)
    head = s3_endpoint.client().head_object(Bucket=s3_bucket, Key=key)
    assert head["ServerSideEncryption"] == sse.value
    if kms_key:
        assert kms_key in head["SSEKMSKeyId"]


def test_settings_with_mounted_secret_files(
    s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text(s3_endpoint.access_key_id + "\n")
    (tmp_path / "secret").write_text(s3_endpoint.secret_access_key + "\n")
    monkeypatch.setenv("INFERTAP_S3_BUCKET", s3_bucket)
    monkeypatch.setenv("INFERTAP_S3_PREFIX", "from-env")
    monkeypatch.setenv("INFERTAP_S3_ENDPOINT_URL", s3_endpoint.url)
    monkeypatch.setenv("INFERTAP_S3_REGION", s3_endpoint.region)
    monkeypatch.setenv("INFERTAP_S3_FORCE_PATH_STYLE", "true")
    monkeypatch.setenv("INFERTAP_S3_ACCESS_KEY_ID_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("INFERTAP_S3_SECRET_ACCESS_KEY_FILE", str(tmp_path / "secret"))
    sink = S3Sink(S3Settings(), pod="p")  # type: ignore[call-arg]
    sink.start()
    assert sink.healthcheck().ok
    sink.write(batch(0, 2))
    sink.flush()
    assert len(s3_keys(s3_endpoint, s3_bucket, "from-env/model=iris/")) == 1


def test_missing_bucket_is_unhealthy(s3_endpoint: S3Endpoint) -> None:
    sink = make_sink(s3_endpoint, "infertap-does-not-exist")
    assert not sink.healthcheck().ok


def test_partition_values_are_sanitised_and_capped(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    from infertap.logger.sinks.partitions import ModelPartitions

    sink = make_sink(s3_endpoint, s3_bucket)
    sink.partitions = ModelPartitions(max_models=2)
    sink.write_segment("ab12cd34-000000000009", [batch(0, 2, model=".."), batch(2, 2, model="b"),
                                                 batch(4, 3, model="c/d"), batch(7, 1, model="e")])  # fmt: skip
    keys = s3_keys(s3_endpoint, s3_bucket)
    assert [k.split("/")[2] for k in keys] == ["model=%2E.", "model=__other__", "model=b"]
    other = s3_table(s3_endpoint, s3_bucket, "prod/records/model=__other__/")
    assert other is not None
    # two models beyond the cap share one object without overwriting each other
    assert sorted(other.column("model_name").to_pylist()) == ["c/d"] * 3 + ["e"]
