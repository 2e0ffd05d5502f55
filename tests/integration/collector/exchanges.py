"""Inference exchanges as a KServe agent would log them, and checks of the records they must become."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from infertap.logger import record
from tests.integration.collector.agent import REQUEST, RESPONSE, Agent

T0 = dt.datetime(2026, 11, 21, 9, 0, 0, tzinfo=dt.UTC)


@dataclass
class Exchange:
    """One V2 (or V1) exchange: its id, bodies and the times the agent stamps on its two events."""

    id: str
    features: list[float]
    label: int
    v1: bool = False
    start: dt.datetime = T0

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(milliseconds=3)

    def request_body(self) -> bytes:
        if self.v1:
            return orjson.dumps({"instances": [self.features]})
        return orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": self.features}]})

    def response_body(self) -> bytes:
        if self.v1:
            return orjson.dumps({"predictions": [self.label]})
        out = {"name": "label", "shape": [1], "datatype": "INT64", "data": [self.label]}
        return orjson.dumps({"model_name": "iris", "model_version": "2", "outputs": [out]})

    def events(self, agent: Agent) -> tuple[Any, Any]:
        """The request and response CloudEvents of this exchange."""
        return (
            agent.event(REQUEST, self.id, self.request_body(), time=self.start),
            agent.event(RESPONSE, self.id, self.response_body(), time=self.end),
        )


def exchanges(prefix: str, n: int, *, v1: bool = False, seed: int = 0) -> list[Exchange]:
    """``n`` exchanges with ids ``<prefix>-<i>``, random features and labels, 10 ms apart."""
    rng = np.random.default_rng(seed)
    return [
        Exchange(
            f"{prefix}-{i}",
            [float(np.float32(v)) for v in rng.normal(size=4)],
            int(rng.integers(0, 3)),
            v1,
            T0 + dt.timedelta(milliseconds=10 * i),
        )
        for i in range(n)
    ]


def rows_by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Rows keyed by request id; fails on a duplicate id."""
    rows = table.to_pylist()
    by_id = {r["request_id"]: r for r in rows}
    assert len(by_id) == len(rows), "duplicate request ids"
    return by_id


def check_joined(table: pa.Table, ex: Exchange, row: dict[str, Any]) -> None:
    """``row`` is the full record of ``ex``: times, status, nulls for what events lack, tensors element by element."""
    assert row["request_time"] == ex.start
    assert row["response_time"] == ex.end
    assert row["status_code"] == 200
    assert row["upstream_latency_s"] is None
    assert row["total_latency_s"] is None
    assert row["request_bytes"] == len(ex.request_body())
    assert row["response_bytes"] == len(ex.response_body())
    assert row["decode_error"] is None
    assert row["capture_mode"] == "all"
    assert row["schema_version"] == record.SCHEMA_VERSION
    check_request_side(table, ex, row)
    if ex.v1:
        assert row["protocol"] == "v1"
        (out,) = [c for c in row if c.startswith("output.") and row[c] is not None]
        assert row[out]["data"] == [ex.label]
    else:
        assert (row["protocol"], row["model_name"], row["model_version"]) == ("v2", "iris", "2")
        assert row["output.label"] == {"shape": [1], "data": [ex.label]}


def check_request_side(table: pa.Table, ex: Exchange, row: dict[str, Any]) -> None:
    """The request tensor of ``row`` holds ``ex``'s features, element by element, with their V2 datatype."""
    if ex.v1:
        (col,) = [c for c in row if c.startswith("input.") and row[c] is not None]
        assert row[col]["shape"] == [1, 4]
        assert row[col]["data"] == ex.features
        assert table.schema.field(col).metadata[record.DATATYPE_KEY] == b"FP64"
    else:
        assert row["input.x"] == {"shape": [1, 4], "data": ex.features}
        assert table.schema.field("input.x").metadata[record.DATATYPE_KEY] == b"FP32"
