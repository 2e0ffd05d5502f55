"""Reading back what the demo captured, checking it against what was sent, and the summary."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from infertap.demo.traffic import TrafficLog
from infertap.logger import record


def read_records(data_dir: Path) -> tuple[dict[str, pa.Table], list[Path]]:
    """Every record under ``data_dir`` (Hive-partitioned Parquet), one table per ``model=`` partition.

    Models have different tensor columns, so each model's files are read with their own unified schema.

    Raises:
        FileNotFoundError: no Parquet file there.
    """
    files = sorted(data_dir.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files under {data_dir}")
    tables: dict[str, pa.Table] = {}
    for model_dir in sorted(data_dir.glob("model=*")):
        mfiles = sorted(model_dir.rglob("*.parquet"))
        schema = pa.unify_schemas([pq.read_schema(f) for f in mfiles])
        tables[unquote(model_dir.name.removeprefix("model="))] = ds.dataset(
            [str(f) for f in mfiles], schema=schema, format="parquet"
        ).to_table()
    return tables, files


def _percentiles_ms(values: list[float] | np.ndarray[Any, np.dtype[Any]]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64) * 1000.0
    if arr.size == 0:
        return {"p50": float("nan"), "p99": float("nan")}
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p99": round(float(np.percentile(arr, 99)), 3)}


def verify_elements(tables: dict[str, pa.Table], log: TrafficLog) -> dict[str, int]:
    """Compare every tensor element sent with the captured ``input.input-0`` of the same request id.

    The predictions the client received are compared with the captured ``output.predict`` likewise.

    Returns:
        ``elements_sent``, ``elements_matched``, ``predictions_received``, ``predictions_matched`` and
        ``requests_missing`` (sent with a tensor, no record found).
    """
    index = {rid: (model, i) for model, t in tables.items() for i, rid in enumerate(t.column("request_id").to_pylist())}
    column = record.tensor_column_name(record.INPUT, "input-0")
    out_column = record.tensor_column_name(record.OUTPUT, "predict")
    sent = matched = missing = received = received_matched = 0
    for s in log.sent:
        if s.inputs is None:
            continue
        expected = s.inputs.reshape(len(s.inputs), -1)
        sent += expected.size
        where = index.get(s.request_id)
        if where is None:
            missing += 1
            continue
        table = tables[where[0]]
        got = record.instances(table.column(column).slice(where[1], 1))
        if got.shape == expected.shape:
            matched += int(np.sum(got == expected))
        if s.outputs is not None:
            received += s.outputs.size
            if out_column in table.column_names:
                captured = record.instances(table.column(out_column).slice(where[1], 1)).reshape(-1)
                if captured.shape == s.outputs.reshape(-1).shape:
                    received_matched += int(np.sum(captured == s.outputs.reshape(-1)))
    return {
        "elements_sent": sent,
        "elements_matched": matched,
        "predictions_received": received,
        "predictions_matched": received_matched,
        "requests_missing": missing,
    }


def _metric_totals(metrics_text: dict[str, str]) -> dict[str, Any]:
    requests: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for text in metrics_text.values():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "infertap_requests_total":
                    requests[sample.labels["code"]] += int(sample.value)
                elif sample.name in (
                    "infertap_capture_records_total",
                    "infertap_capture_decode_errors_total",
                    "infertap_capture_dropped_total",
                    "infertap_capture_written_records_total",
                ):
                    other[sample.name] += int(sample.value)
    return {"infertap_requests_total_by_code": dict(sorted(requests.items())), **dict(sorted(other.items()))}


def summarise(data_dir: Path, log: TrafficLog, metrics_text: dict[str, str]) -> dict[str, Any]:
    """The demo summary: requests, records, files, decoded columns, latencies, metrics, element check.

    ``metrics_text`` holds each sidecar's exposition scraped once its capture pipeline had caught up, so
    ``metrics.infertap_capture_written_records_total`` is the ``records_written`` read back from Parquet.
    """
    tables, files = read_records(data_dir)
    for table in tables.values():
        record.check_schema(table.schema)
    decoded = sorted(
        f"{model}: {c.column} ({c.datatype})" for model, t in tables.items() for c in record.tensor_columns(t.schema)
    )
    periods = Counter(s.period for s in log.sent)
    statuses = Counter(str(v) for t in tables.values() for v in t.column("status_code").to_pylist())
    decode_errors = sum(int(pc.sum(pc.is_valid(t.column("decode_error"))).as_py() or 0) for t in tables.values())
    total = np.concatenate([t.column("total_latency_s").to_numpy() for t in tables.values()])
    upstream = np.concatenate([t.column("upstream_latency_s").to_numpy() for t in tables.values()])
    return {
        "requests_sent": len(log.sent),
        "requests_ok": sum(s.ok for s in log.sent),
        "requests_by_period": dict(periods),
        "records_written": sum(t.num_rows for t in tables.values()),
        "records_by_model": {m: t.num_rows for m, t in tables.items()},
        "records_by_status": dict(sorted(statuses.items())),
        "records_with_decode_error": decode_errors,
        "parquet_files": len(files),
        "decoded_columns": decoded,
        "latency_ms": _percentiles_ms([s.latency_s for s in log.sent]),
        "captured_latency_ms": {
            "total": _percentiles_ms(total),
            "upstream": _percentiles_ms(upstream),
            "sidecar_share": _percentiles_ms(total - upstream),
        },
        "metrics": _metric_totals(metrics_text),
        **verify_elements(tables, log),
    }


def _short(value: Any) -> str:
    """One table cell: dicts as ``key: value`` lines, lists of dicts by count (they have tables of their own)."""
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_short(v)}" for k, v in value.items())
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return f"{len(value)} entries (see summary.json)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write ``summary`` as JSON and print it as a table (nested sections shortened; the file has them all)."""
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    table = Table(title=f"infertap demo — {path}", show_header=True)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for key, value in summary.items():
        table.add_row(key, _short(value))
    Console().print(table)
