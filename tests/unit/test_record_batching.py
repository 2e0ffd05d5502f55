"""Records to Arrow batches in the record schema, and the zero-copy instance matrix the drift job reads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infertap.logger import batching, record
from infertap.logger.errors import SchemaError
from infertap.logger.record import CapturedRecord
from tests.unit.conftest import CapturerFactory, make_exchange


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def captured(
    make_capturer: CapturerFactory,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]] | None = None,
    *,
    model: str = "m",
    rid: str = "r",
    status: int = 200,
) -> CapturedRecord:
    rec = make_capturer().process(
        make_exchange(
            request_id=rid,
            path=f"/v2/models/{model}/infer",
            status_code=status,
            request_body=json.dumps({"inputs": inputs}).encode(),
            response_body=json.dumps({"outputs": outputs or []}).encode(),
        )
    )
    assert rec is not None
    assert rec.decode_error is None
    return rec


def only_batch(records: list[CapturedRecord]) -> pa.RecordBatch:
    batches = batching.to_batches(records)
    assert len(batches) == 1
    return batches[0]


def test_core_columns_and_schema(make_capturer: CapturerFactory) -> None:
    batch = only_batch([captured(make_capturer, [tensor("x", "FP32", [1, 2], [1, 2])], rid="a")])
    record.check_schema(batch.schema)
    assert batch.schema.names[: len(record.CORE_FIELDS)] == [f.name for f in record.CORE_FIELDS]
    assert batch.schema.metadata[record.SCHEMA_VERSION_KEY] == b"2"
    row = batch.to_pylist()[0]
    assert row["schema_version"] == 2
    assert row["request_id"] == "a"
    assert row["request_time"].isoformat() == "2023-11-14T22:13:20.123456+00:00"
    assert (row["model_name"], row["protocol"], row["status_code"]) == ("m", "v2", 200)
    assert row["request_headers"] == [("content-type", "application/json")]
    assert (row["inference_service"], row["revision"], row["pod"]) == ("isvc", "isvc-predictor-00001", "pod-0")
    assert row["input.x"] == {"shape": [1, 2], "data": [1.0, 2.0]}


def test_row_type_matches_the_schema_by_name() -> None:
    record.check_row_type(record.CapturedRecord)  # also run at import: a mismatch fails every test
    attributes = {f.name for f in dataclasses.fields(record.CapturedRecord)}
    columns = [record.attribute_name(f) for f in record.CORE_FIELDS if f.name not in record.ENCODER_COLUMNS]
    assert attributes == set(columns) | record.TENSOR_ATTRIBUTES | {record.GENERATION_ATTRIBUTE}


def test_a_column_added_to_one_side_only_is_caught() -> None:
    extra_column = (*record.CORE_FIELDS, pa.field("tenant", pa.string()))
    with pytest.raises(SchemaError, match=r"CapturedRecord has no attribute for column\(s\) tenant"):
        record.check_row_type(record.CapturedRecord, extra_column)
    without_query = tuple(f for f in record.CORE_FIELDS if f.name != "query")
    with pytest.raises(SchemaError, match=r"CapturedRecord attribute\(s\) query have no column"):
        record.check_row_type(record.CapturedRecord, without_query)

    @dataclasses.dataclass
    class Extra(record.CapturedRecord):
        tenant: str = ""

    with pytest.raises(SchemaError, match=r"Extra attribute\(s\) tenant have no column"):
        record.check_row_type(Extra)


def test_nullability_must_agree() -> None:
    error_not_null = tuple(
        pa.field("error", pa.string(), nullable=False) if f.name == "error" else f for f in record.CORE_FIELDS
    )
    with pytest.raises(SchemaError, match=r"column 'error' is not nullable but CapturedRecord\.error is"):
        record.check_row_type(record.CapturedRecord, error_not_null)
    query_nullable = tuple(pa.field("query", pa.string()) if f.name == "query" else f for f in record.CORE_FIELDS)
    with pytest.raises(SchemaError, match=r"column 'query' is nullable but CapturedRecord\.query is"):
        record.check_row_type(record.CapturedRecord, query_nullable)


def test_core_columns_are_filled_by_name_not_position(make_capturer: CapturerFactory) -> None:
    # Two string columns next to each other: each holds its own value whatever the order of the field list.
    rec = captured(make_capturer, [tensor("x", "FP32", [1], [1])])
    rec.method, rec.path, rec.query = "PUT", "/v2/models/m/infer", "a=1"
    row = only_batch([rec]).to_pylist()[0]
    assert (row["method"], row["path"], row["query"]) == ("PUT", "/v2/models/m/infer", "a=1")
    assert (row["namespace"], row["component"], row["endpoint"]) == ("ns", "predictor", "default")


def test_tensor_columns_keep_the_request_order(make_capturer: CapturerFactory) -> None:
    rec = captured(
        make_capturer,
        [tensor("zeta", "FP32", [1], [1]), tensor("alpha", "FP32", [1], [2]), tensor("mid", "INT64", [1], [3])],
        [tensor("score", "FP64", [1], [0.5]), tensor("label", "INT64", [1], [1])],
    )
    later = captured(make_capturer, [tensor("beta", "FP32", [1], [4]), tensor("zeta", "FP32", [1], [5])], rid="2")
    batch = only_batch([rec, later])
    assert [c.column for c in record.tensor_columns(batch.schema)] == [
        "input.zeta", "input.alpha", "input.mid", "input.beta", "output.score", "output.label",
    ]  # fmt: skip


def test_different_tensor_sets_share_one_batch_with_nulls(make_capturer: CapturerFactory) -> None:
    recs = [
        captured(make_capturer, [tensor("a", "INT32", [2], [1, 2])], [tensor("y", "FP64", [1], [0.5])], rid="1"),
        captured(make_capturer, [tensor("b", "BYTES", [1], ["hi"])], rid="2"),
        captured(make_capturer, [tensor("a", "INT32", [1], [3]), tensor("b", "BYTES", [2], ["x", ""])], rid="3"),
    ]
    batch = only_batch(recs)
    assert [n for n in batch.schema.names if "." in n] == ["input.a", "input.b", "output.y"]
    rows = batch.to_pylist()
    assert [r["input.a"] for r in rows] == [{"shape": [2], "data": [1, 2]}, None, {"shape": [1], "data": [3]}]
    assert [r["input.b"] for r in rows] == [None, {"shape": [1], "data": [b"hi"]}, {"shape": [2], "data": [b"x", b""]}]
    assert [r["output.y"] for r in rows] == [{"shape": [1], "data": [0.5]}, None, None]
    cols = {c.column: c for c in record.tensor_columns(batch.schema)}
    assert (cols["input.a"].datatype, cols["input.b"].datatype, cols["output.y"].io) == ("INT32", "BYTES", "output")


def test_datatype_conflict_splits_the_batch_without_casting(make_capturer: CapturerFactory) -> None:
    recs = [
        captured(make_capturer, [tensor("x", "FP32", [1], [1.5])], rid="1"),
        captured(make_capturer, [tensor("x", "INT64", [1], [2**62 + 1])], rid="2"),
        captured(make_capturer, [tensor("x", "FP32", [1], [2.5])], rid="3"),
    ]
    batches = batching.to_batches(recs)
    assert len(batches) == 2
    by_type = {record.tensor_columns(b.schema)[0].datatype: b for b in batches}
    assert by_type["FP32"].column("request_id").to_pylist() == ["1", "3"]
    assert by_type["INT64"].to_pylist()[0]["input.x"]["data"] == [2**62 + 1]  # exact, never went through float


def test_uint8_and_bytes_stay_apart(make_capturer: CapturerFactory) -> None:
    rec = captured(make_capturer, [tensor("u", "UINT8", [2], [1, 2]), tensor("s", "BYTES", [1], ["q"])])
    schema = only_batch([rec]).schema
    assert {c.tensor: c.datatype for c in record.tensor_columns(schema)} == {"s": "BYTES", "u": "UINT8"}


def test_every_datatype_survives_parquet(make_capturer: CapturerFactory, tmp_path: Path) -> None:
    values = {
        "BOOL": [True, False], "UINT8": [0, 255], "UINT16": [0, 65535], "UINT32": [0, 2**32 - 1],
        "UINT64": [0, 2**64 - 1], "INT8": [-128, 127], "INT16": [-(2**15), 1], "INT32": [-(2**31), 1],
        "INT64": [-(2**63), 2**63 - 1], "FP16": [0.5, -2.0], "FP32": [0.25, 2.0**100], "FP64": [1e-300, 2.0],
        "BYTES": ["a", "\u0000b"],
    }  # fmt: skip
    rec = captured(make_capturer, [tensor(dt.lower(), dt, [2], v) for dt, v in values.items()])
    pq.write_table(pa.Table.from_batches([only_batch([rec])]), tmp_path / "r.parquet")
    table = pq.read_table(tmp_path / "r.parquet")
    record.check_schema(table.schema)
    assert {c.tensor: c.datatype for c in record.tensor_columns(table.schema)} == {k.lower(): k for k in values}
    row = table.to_pylist()[0]
    for dt, v in values.items():
        expected = [s.encode() for s in v] if dt == "BYTES" else v
        assert row[f"input.{dt.lower()}"] == {"shape": [2], "data": expected}


def test_records_of_several_models_become_one_batch_each(make_capturer: CapturerFactory) -> None:
    recs = [
        captured(make_capturer, [tensor("x", "FP32", [1], [1])], model="a", rid="1"),
        captured(make_capturer, [tensor("x", "FP32", [1], [1])], model="b", rid="2"),
        captured(make_capturer, [tensor("x", "FP32", [1], [1])], model="a", rid="3"),
    ]
    batches = batching.to_batches(recs)
    assert sorted((b.column("model_name")[0].as_py(), b.num_rows) for b in batches) == [("a", 2), ("b", 1)]


def test_records_without_tensors(make_capturer: CapturerFactory) -> None:
    rec = make_capturer().process(make_exchange(request_body=b"{", status_code=500, error="boom"))
    assert rec is not None
    batch = only_batch([rec])
    assert not record.tensor_columns(batch.schema)
    row = batch.to_pylist()[0]
    assert (row["request_body"], row["error"], row["status_code"]) == (b"{", "boom", 500)
    assert row["decode_error"].startswith("request: invalid JSON")
    assert batching.to_batches([]) == []


def feature_batch(make_capturer: CapturerFactory, rows: list[np.ndarray[Any, Any] | None]) -> pa.RecordBatch:
    recs = []
    for i, arr in enumerate(rows):
        if arr is None:
            inputs = [tensor("other", "INT8", [1], [0])]
        else:
            dt = "FP32" if arr.dtype == np.float32 else "INT64"
            inputs = [tensor("f", dt, list(arr.shape), arr.tolist())]
        recs.append(captured(make_capturer, inputs, rid=str(i)))
    return only_batch(recs)


def test_instances_is_a_zero_copy_matrix(make_capturer: CapturerFactory) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(100, 109, dtype=np.float32).reshape(3, 3)
    column = feature_batch(make_capturer, [a, b]).column("input.f")
    matrix = record.instances(column)
    assert matrix.shape == (5, 3)
    np.testing.assert_array_equal(matrix, np.vstack([a, b]))
    values_buffer = column.field("data").values.buffers()[1]
    arrow_values = np.frombuffer(values_buffer, dtype=np.float32)
    assert np.shares_memory(matrix, arrow_values)


def test_instances_of_higher_rank_tensors_flatten_features(make_capturer: CapturerFactory) -> None:
    imgs = np.arange(2 * 2 * 4, dtype=np.int64).reshape(2, 2, 4)  # 2 images of 2x4
    matrix = record.instances(feature_batch(make_capturer, [imgs]).column("input.f"))
    np.testing.assert_array_equal(matrix, imgs.reshape(2, 8))


def test_instances_skip_null_rows(make_capturer: CapturerFactory) -> None:
    a = np.array([[1, 2]], dtype=np.int64)
    b = np.array([[3, 4], [5, 6]], dtype=np.int64)
    column = feature_batch(make_capturer, [None, a, None, b]).column("input.f")
    assert column.null_count == 2
    np.testing.assert_array_equal(record.instances(column), [[1, 2], [3, 4], [5, 6]])


def test_instances_of_a_chunked_column(make_capturer: CapturerFactory, tmp_path: Path) -> None:
    a = np.array([[1.0, 2.0]], dtype=np.float32)
    b = np.array([[3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    first = feature_batch(make_capturer, [a]).column("input.f")
    second = feature_batch(make_capturer, [None, b]).column("input.f")  # null first row
    column = pa.chunked_array([first, second])
    assert column.num_chunks == 2
    np.testing.assert_array_equal(record.instances(column), [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(record.instances(column.slice(1, 2)), [[3, 4], [5, 6]])


def test_instances_of_a_sliced_chunk_reads_only_that_row(make_capturer: CapturerFactory) -> None:
    rows = [np.full((1, 2), i, dtype=np.int64) for i in range(4)]
    column = feature_batch(make_capturer, rows).column("input.f")
    np.testing.assert_array_equal(record.instances(column.slice(2, 1)), [[2, 2]])


def test_instances_of_bool_and_bytes(make_capturer: CapturerFactory) -> None:
    rec = captured(
        make_capturer, [tensor("b", "BOOL", [2, 1], [[True], [False]]), tensor("s", "BYTES", [1, 2], [["a", "b"]])]
    )
    batch = only_batch([rec])
    np.testing.assert_array_equal(record.instances(batch.column("input.b")), [[True], [False]])
    assert record.instances(batch.column("input.s")).tolist() == [[b"a", b"b"]]


def test_instances_of_scalars_and_vectors(make_capturer: CapturerFactory) -> None:
    vec = captured(make_capturer, [tensor("v", "INT64", [3], [7, 8, 9])])
    assert record.instances(only_batch([vec]).column("input.v")).tolist() == [[7], [8], [9]]


def test_instances_with_zero_features(make_capturer: CapturerFactory) -> None:
    rec = captured(make_capturer, [tensor("e", "FP32", [3, 0], [])])
    assert record.instances(only_batch([rec]).column("input.e")).shape == (3, 0)


def test_instances_errors(make_capturer: CapturerFactory) -> None:
    a = np.zeros((1, 2), dtype=np.float32)
    b = np.zeros((1, 3), dtype=np.float32)
    with pytest.raises(SchemaError, match="rows disagree on instance size: 2 vs 3 elements"):
        record.instances(feature_batch(make_capturer, [a, b]).column("input.f"))
    with pytest.raises(SchemaError, match="not a tensor column"):
        record.instances(pa.array([1, 2]))
    empty = record.instances(feature_batch(make_capturer, [None]).column("input.other").filter(pa.array([False])))
    assert empty.shape == (0, 0)


def test_instances_rejects_data_that_does_not_fill_its_shape() -> None:
    """A file written by another tool: shape [2, 3] but only 4 elements must not pass as 2 x 2."""
    field = record.tensor_field("input", "x", "FP32")
    shape = pa.array([[2, 3]], pa.list_(pa.int64()))
    data = pa.array([[1.0, 2.0, 3.0, 4.0]], pa.list_(pa.float32()))
    column = pa.StructArray.from_arrays([shape, data], fields=list(field.type))
    with pytest.raises(SchemaError, match="row 0 holds 4 elements, its shape needs 6"):
        record.instances(column)


def test_check_schema_errors(make_capturer: CapturerFactory) -> None:
    schema = only_batch([captured(make_capturer, [tensor("x", "FP32", [1], [1])])]).schema
    for bad in (b"3", b"0", b"x"):
        with pytest.raises(SchemaError, match=f"record schema version {bad.decode()} is not supported"):
            record.check_schema(schema.with_metadata({record.SCHEMA_VERSION_KEY: bad}))
    without_id = schema.remove(schema.get_field_index("inference_id"))
    with pytest.raises(SchemaError, match="record schema lacks column 'inference_id'"):
        record.check_schema(without_id)  # a version-2 schema must have it
    with pytest.raises(SchemaError, match="record schema lacks column 'request_id'"):
        record.check_schema(schema.remove(schema.get_field_index("request_id")))
    with pytest.raises(SchemaError, match="column 'status_code' is int64, expected int32"):
        record.check_schema(schema.set(schema.get_field_index("status_code"), pa.field("status_code", pa.int64())))
    record.check_schema(schema.remove_metadata())  # files merged by a reader may lose the metadata


def test_tensor_columns_errors() -> None:
    base = record.schema()
    with pytest.raises(SchemaError, match=r"column 'input\.x' is not a tensor column: int64"):
        record.tensor_columns(base.append(pa.field("input.x", pa.int64())))
    odd = pa.field(
        "output.y",
        pa.struct([pa.field("shape", pa.list_(pa.int64())), pa.field("data", pa.list_(pa.float32()))]),
        metadata={record.DATATYPE_KEY: b"FP99"},
    )
    with pytest.raises(SchemaError, match="unknown V2 datatype 'FP99'"):
        record.tensor_columns(base.append(odd))
    plain = pa.field(
        "output.y", pa.struct([pa.field("shape", pa.list_(pa.int64())), pa.field("data", pa.list_(pa.binary()))])
    )
    assert record.tensor_columns(base.append(plain))[0].datatype == "BYTES"
    assert record.tensor_columns(base.append(pa.field("model", pa.string()))) == []  # hive partition column


def test_huge_batches_are_split_and_keep_every_row(
    make_capturer: CapturerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batching, "MAX_BATCH_WEIGHT", 10)
    recs = [captured(make_capturer, [tensor("x", "INT32", [4], [i, i, i, i])], rid=str(i)) for i in range(7)]
    batches = batching.to_batches(recs)
    assert [b.num_rows for b in batches] == [2, 2, 2, 1]
    assert [r for b in batches for r in b.column("request_id").to_pylist()] == [str(i) for i in range(7)]


def test_version_1_files_are_still_read(make_capturer: CapturerFactory, tmp_path: Path) -> None:
    """A file written before version 2 has no ``inference_id``: readers accept it and see no such column."""
    batch = only_batch([captured(make_capturer, [tensor("x", "FP32", [1], [1])])])
    v1 = batch.drop_columns(["inference_id"]).replace_schema_metadata({record.SCHEMA_VERSION_KEY: b"1"})
    pq.write_table(pa.Table.from_batches([v1]), tmp_path / "v1.parquet")
    table = pq.read_table(tmp_path / "v1.parquet")
    record.check_schema(table.schema)
    record.check_schema(table.schema.remove_metadata())
    assert "inference_id" not in table.schema.names
    assert record.instances(table.column("input.x")).tolist() == [[1.0]]


def test_v2_request_id_is_kept_as_inference_id(make_capturer: CapturerFactory) -> None:
    body = {"id": "client-42", "inputs": [tensor("x", "FP32", [1], [1])]}
    rec = make_capturer().process(make_exchange(request_body=json.dumps(body).encode()))
    assert rec is not None
    assert (rec.request_id, rec.inference_id) == ("rid-1", "client-42")
    row = only_batch([rec]).to_pylist()[0]
    assert (row["request_id"], row["inference_id"]) == ("rid-1", "client-42")
    # no id in the request: the response's (servers echo or make one); none at all: null
    echoed = make_capturer().process(make_exchange(response_body=b'{"id": "srv-1", "outputs": []}'))
    assert echoed is not None
    assert echoed.inference_id == "srv-1"
    assert only_batch([captured(make_capturer, [tensor("x", "FP32", [1], [1])])]).to_pylist()[0]["inference_id"] is None
