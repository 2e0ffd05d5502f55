"""Helpers: captured Parquet in the record schema, written in the file sink's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infertap.logger import record
from infertap.logger.sinks.partitions import partition_dir

T0_US = 1_795_000_000 * 1_000_000  # 2026-11-19T... UTC, on an hour boundary below
T0_US -= T0_US % 3_600_000_000


def _tensor(mat: np.ndarray[Any, Any], dtype: pa.DataType) -> pa.Array:
    n, f = mat.shape
    shape = pa.array([[1, f]] * n, pa.list_(pa.int64()))
    offs = pa.array(np.arange(n + 1, dtype=np.int32) * f)
    data = pa.ListArray.from_arrays(offs, pa.array(mat.ravel(), dtype))
    return pa.StructArray.from_arrays([shape, data], names=["shape", "data"])


def table(
    inputs: np.ndarray[Any, Any],
    outputs: np.ndarray[Any, Any] | None = None,
    *,
    model: str = "m",
    version: str = "1",
    revision: str = "r1",
    t0_us: int = T0_US,
    latency_s: np.ndarray[Any, Any] | None = None,
    status: np.ndarray[Any, Any] | None = None,
) -> pa.Table:
    """Records, one instance each: ``inputs`` ``(n, F)`` FP64 as ``input.x``, ``outputs`` ``(n,)`` as ``output.y``."""
    n = inputs.shape[0]
    times = pa.array(np.arange(n, dtype=np.int64) + t0_us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    cols: dict[str, pa.Array] = {}
    for f in record.CORE_FIELDS:
        t = f.type
        if f.name in ("request_time", "response_time"):
            cols[f.name] = times
        elif f.name == "model_name":
            cols[f.name] = pa.array([model] * n, t)
        elif f.name == "model_version":
            cols[f.name] = pa.array([version] * n, t)
        elif f.name == "revision":
            cols[f.name] = pa.array([revision] * n, t)
        elif f.name == "total_latency_s":
            cols[f.name] = pa.array(latency_s if latency_s is not None else np.full(n, 0.01), t)
        elif f.name == "status_code":
            cols[f.name] = pa.array(status if status is not None else np.full(n, 200), t)
        elif f.name == "request_id":
            cols[f.name] = pa.array([f"{revision}-{i}" for i in range(n)], t)
        elif not f.nullable:
            if pa.types.is_string(t):
                cols[f.name] = pa.array([""] * n, t)
            elif pa.types.is_boolean(t):
                cols[f.name] = pa.array([False] * n, t)
            elif pa.types.is_floating(t):
                cols[f.name] = pa.array(np.zeros(n), t)
            else:
                cols[f.name] = pa.array(np.ones(n, dtype=np.int64), pa.int64()).cast(t)
        else:
            cols[f.name] = pa.nulls(n, t)
    cols.update({f.name: pa.nulls(n, f.type) for f in record.GENERATIVE_FIELDS})  # not generative calls
    fields = [record.tensor_field("input", "x", "FP64")]
    arrays = [_tensor(np.asarray(inputs, np.float64).reshape(n, -1), pa.float64())]
    if outputs is not None:
        fields.append(record.tensor_field("output", "y", "FP64"))
        arrays.append(_tensor(np.asarray(outputs, np.float64).reshape(n, -1), pa.float64()))
    sch = record.schema(fields)
    return pa.Table.from_arrays([*cols.values(), *arrays], schema=sch)


def write(root: Path, tbl: pa.Table, name: str = "part-0.parquet") -> Path:
    """Write ``tbl`` (one model, one hour) under ``root`` in the file sink's layout."""
    model = tbl.column("model_name")[0].as_py()
    t = tbl.column("request_time")[0].value
    d = root / partition_dir(model, t - t % 3_600_000_000)
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(tbl, d / name)
    return d / name
