"""Record batches in the record schema, built the way the pipeline builds them (CapturedRecord -> to_batches)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from infertap.logger import batching
from infertap.logger.codecs import datatypes
from infertap.logger.codecs.tensor import Tensor
from infertap.logger.config import ServingIdentity
from infertap.logger.record import CapturedRecord

IDENTITY = ServingIdentity(
    inference_service="iris",
    namespace="models",
    component="predictor",
    revision="iris-predictor-00001",
    endpoint="default",
    pod="iris-predictor-7d9f-abcde",
)
#: 2026-11-21T09:00:00Z in microseconds.
T0_US = 1_795_251_600_000_000


def captured(i: int, *, model: str = "iris", time_us: int = T0_US, body: bool = False) -> CapturedRecord:
    """Record number ``i``: request id ``req-<i>``, one FP32 [1, 4] input and one INT64 [1] output."""
    fp32, int64 = datatypes.lookup("FP32"), datatypes.lookup("INT64")
    inp = Tensor.build("input-0", fp32, (1, 4), np.arange(4, dtype=np.float32) + i)
    out = Tensor.build("predict", int64, (1,), np.array([i % 3], dtype=np.int64))
    return CapturedRecord(
        request_id=f"req-{i}",
        inference_id=f"inf-{i}",
        request_time_us=time_us + i * 1000,
        response_time_us=time_us + i * 1000 + 500,
        model_name=model,
        model_version="1",
        **dataclasses.asdict(IDENTITY),
        protocol="v2",
        method="POST",
        path=f"/v2/models/{model}/infer",
        query="",
        status_code=200,
        upstream_latency_s=0.001,
        total_latency_s=0.0012,
        request_bytes=100,
        response_bytes=80,
        capture_mode="all",
        sample_rate=1.0,
        request_headers=[("content-type", "application/json")],
        response_headers=[("content-type", "application/json")],
        error=None,
        decode_error=None,
        request_truncated=False,
        response_truncated=False,
        request_parameters=None,
        response_parameters=None,
        request_body=b'{"inputs": []}' if body else None,
        response_body=b'{"outputs": []}' if body else None,
        inputs=(inp,),
        outputs=(out,),
    )


def batch(start: int, n: int, *, model: str = "iris", time_us: int = T0_US, body: bool = False) -> pa.RecordBatch:
    """One batch of records ``start .. start + n - 1`` of ``model``."""
    (b,) = batching.to_batches([captured(i, model=model, time_us=time_us, body=body) for i in range(start, start + n)])
    return b


def request_ids(batches: list[pa.RecordBatch] | pa.Table) -> list[str]:
    """Request ids of ``batches`` in order."""
    if isinstance(batches, pa.Table):
        return [str(v) for v in batches.column("request_id").to_pylist()]
    return [str(v) for b in batches for v in b.column(b.schema.get_field_index("request_id")).to_pylist()]
