"""Halves written alone, joined by request id when the data is read.

With more than one collector replica, the request and the response of one exchange may reach different replicas
(a Service balances each POST; a Kafka consumer group splits partitions, and KServe's events carry no key). Each
replica writes a half whose partner did not come within its pairing window as a record with the other side null:
a **request half** has ``response_time`` null, a **response half** has ``request_time`` null. Nothing is lost, and
:func:`join_halves` (or the SQL query in docs/collector.md) merges a request half and a response half of the same
``request_id`` into one record, as if one replica had joined them.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: Core columns that come from the response half when two halves are merged; every other one from the request half.
RESPONSE_COLUMNS: frozenset[str] = frozenset(
    {
        "response_time",
        "status_code",
        "response_bytes",
        "response_headers",
        "response_truncated",
        "response_parameters",
        "response_body",
        "model_name",
        "model_version",
    }
)


def is_half(table: pa.Table) -> pa.ChunkedArray:
    """Boolean mask of the rows that are halves (exactly one of ``request_time`` / ``response_time`` null)."""
    return pc.xor(pc.is_null(table.column("request_time")), pc.is_null(table.column("response_time")))


def join_halves(table: pa.Table) -> pa.Table:
    """``table`` (record schema) with each request half merged with the response half of the same ``request_id``.

    Rows that are not halves are kept as they are, first; then the merged rows (``capture_mode`` ``"all"``); then
    the halves without a partner. When a side was written more than once (at-least-once delivery) the first copy
    of the response half is used for every copy of the request half; remove duplicates by ``request_id``.

    Raises:
        KeyError: ``table`` lacks ``request_id``, ``request_time`` or ``response_time``.
    """
    req_null = pc.is_null(table.column("request_time"))
    resp_null = pc.is_null(table.column("response_time"))
    requests = table.filter(pc.and_(resp_null, pc.invert(req_null)))
    responses = table.filter(pc.and_(req_null, pc.invert(resp_null)))
    rest = table.filter(pc.invert(is_half(table)))
    if not requests.num_rows or not responses.num_rows:
        return table
    first_response: dict[str, int] = {}
    for j, rid in enumerate(responses.column("request_id").to_pylist()):
        first_response.setdefault(rid, j)
    req_idx: list[int] = []
    resp_idx: list[int] = []
    for i, rid in enumerate(requests.column("request_id").to_pylist()):
        match = first_response.get(rid)
        if match is not None:
            req_idx.append(i)
            resp_idx.append(match)
    if not req_idx:
        return table
    q = requests.take(pa.array(req_idx, pa.int64()))
    r = responses.take(pa.array(resp_idx, pa.int64()))
    columns = []
    for f in table.schema:
        from_response = f.name in RESPONSE_COLUMNS or f.name.startswith("output.")
        if f.name == "capture_mode":
            columns.append(pa.chunked_array([pa.array(["all"] * len(req_idx), f.type)]))
        elif f.name == "decode_error":
            columns.append(pc.coalesce(q.column(f.name), r.column(f.name)))
        else:
            columns.append((r if from_response else q).column(f.name))
    merged = pa.Table.from_arrays(columns, schema=table.schema)
    joined_requests = pc.is_in(requests.column("request_id"), value_set=q.column("request_id").combine_chunks())
    joined_responses = pc.is_in(responses.column("request_id"), value_set=q.column("request_id").combine_chunks())
    lone = [requests.filter(pc.invert(joined_requests)), responses.filter(pc.invert(joined_responses))]
    return pa.concat_tables([rest, merged, *lone])
