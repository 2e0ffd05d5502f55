"""Arrow encoding: a list of :class:`infertap.logger.record.CapturedRecord` to record batches in the record schema.

Core columns are built by name from :data:`infertap.logger.record.CORE_FIELDS`, each from the row attribute of that
name (:func:`infertap.logger.record.attribute_name`), so the column order is the schema's and nothing is zipped by
position. The generative columns follow, from each record's decoded call (:mod:`infertap.logger.genai.columns`).
Tensor columns follow the request's order: inputs as the client listed them, then outputs as the
predictor listed them (a tensor first seen in a later record comes after those seen before).

Records are grouped by model, one batch per model, with the union of the model's tensor columns (null where a
record lacks a tensor). When records of one model disagree on a tensor's datatype, the model's records are split
into one batch per tensor signature so that no value is cast. A batch is also split when its tensor elements and
body bytes would exceed :data:`MAX_BATCH_WEIGHT`, so that no list or binary column outgrows Arrow's 32-bit offsets.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from infertap.logger import record
from infertap.logger.codecs.tensor import Tensor
from infertap.logger.genai import columns as generative
from infertap.logger.record import CapturedRecord

generative.check_builders(record.GENERATIVE_FIELDS)

#: Most tensor elements plus body and BYTES bytes in one batch (Arrow list/binary offsets are int32).
MAX_BATCH_WEIGHT = 1 << 30


def to_batches(records: list[CapturedRecord]) -> list[pa.RecordBatch]:
    """Encode ``records`` as record batches, one per model (more when tensor datatypes conflict or data is huge).

    Each batch has the schema :func:`infertap.logger.record.schema`, tensor columns in first-seen order (inputs,
    then outputs).
    """
    by_model: dict[str, list[CapturedRecord]] = defaultdict(list)
    for rec in records:
        by_model[rec.model_name].append(rec)
    out: list[pa.RecordBatch] = []
    for group in by_model.values():
        for part, uniform in _split_conflicts(group):
            out.extend(_encode(chunk, uniform) for chunk in _split_weight(part))
    return out


def _weight(rec: CapturedRecord) -> int:
    weight = len(rec.request_body or b"") + len(rec.response_body or b"")
    for t in (*rec.inputs, *rec.outputs):
        weight += t.data.size
        if t.datatype.name == "BYTES":
            weight += sum(map(len, t.data.tolist()))
    return weight


def _split_weight(recs: list[CapturedRecord]) -> list[list[CapturedRecord]]:
    chunks: list[list[CapturedRecord]] = [[]]
    total = 0
    for rec in recs:
        weight = _weight(rec)
        if chunks[-1] and total + weight > MAX_BATCH_WEIGHT:
            chunks.append([])
            total = 0
        chunks[-1].append(rec)
        total += weight
    return chunks


def _tensor_key(rec: CapturedRecord) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """``(name, datatype)`` of the record's inputs and outputs, in order: records with equal keys share columns."""
    return tuple([(t.name, t.datatype.name) for t in rec.inputs]), tuple(
        [(t.name, t.datatype.name) for t in rec.outputs]
    )


def _signature(key: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]) -> dict[str, str]:
    sig = {record.tensor_column_name(record.INPUT, name): dt for name, dt in key[0]}
    sig.update({record.tensor_column_name(record.OUTPUT, name): dt for name, dt in key[1]})
    return sig


def _split_conflicts(group: list[CapturedRecord]) -> list[tuple[list[CapturedRecord], bool]]:
    """The group's records split so that no tensor column has two datatypes, in order; with each part, whether all
    its records have the same tensors in the same order (its columns can be taken by position).

    Records join the first part whose columns agree with theirs. Records of one tensor key (the same tensors, in
    order) always land in the same part, so the parts are found once per distinct key, not once per record.
    """
    keys = [_tensor_key(rec) for rec in group]
    part_of: dict[Any, int] = {}
    known_parts: list[dict[str, str]] = []
    keys_in: list[int] = []
    for key in dict.fromkeys(keys):
        sig = _signature(key)
        for i, known in enumerate(known_parts):
            if all(known.get(col, dt) == dt for col, dt in sig.items()):
                known.update(sig)
                part_of[key] = i
                keys_in[i] += 1
                break
        else:
            part_of[key] = len(known_parts)
            known_parts.append(dict(sig))
            keys_in.append(1)
    if len(known_parts) == 1:
        return [(group, keys_in[0] == 1)]
    parts: list[list[CapturedRecord]] = [[] for _ in known_parts]
    for rec, key in zip(group, keys, strict=True):
        parts[part_of[key]].append(rec)
    return [(members, keys_in[i] == 1) for i, members in enumerate(parts)]


def _encoder_column(field: pa.Field, n: int) -> pa.Array:
    if field.name == "schema_version":
        return pa.array(np.full(n, record.SCHEMA_VERSION, dtype=np.int16))
    raise AssertionError(f"no encoder for column {field.name!r}")  # record.ENCODER_COLUMNS lists only these


#: ``(field, getter)`` of every core column, in schema order; ``getter`` is ``None`` for the encoder's columns.
_CORE: tuple[tuple[pa.Field, Callable[[CapturedRecord], Any] | None], ...] = tuple(
    (f, None if f.name in record.ENCODER_COLUMNS else operator.attrgetter(record.attribute_name(f)))
    for f in record.CORE_FIELDS
)


def _encode(recs: list[CapturedRecord], uniform: bool) -> pa.RecordBatch:
    """One record batch of ``recs``; ``uniform``: every record has the same tensors in the same order."""
    n = len(recs)
    arrays = [_encoder_column(f, n) if get is None else pa.array(list(map(get, recs)), f.type) for f, get in _CORE]
    arrays += generative.arrays(record.GENERATIVE_FIELDS, [r.generation for r in recs])
    columns: dict[str, list[Tensor | None]] = {}
    if uniform:  # column j of each side is the j-th tensor of every record
        first = recs[0]
        for io, tensors, get_side in ((record.INPUT, first.inputs, _INPUTS), (record.OUTPUT, first.outputs, _OUTPUTS)):
            sides = list(map(get_side, recs))
            for j, t in enumerate(tensors):
                columns[record.tensor_column_name(io, t.name)] = [side[j] for side in sides]
    else:
        for row, rec in enumerate(recs):
            for io, tensors in ((record.INPUT, rec.inputs), (record.OUTPUT, rec.outputs)):
                for t in tensors:
                    col = record.tensor_column_name(io, t.name)
                    if col not in columns:
                        columns[col] = [None] * n
                    columns[col][row] = t
        # inputs first, then outputs, each in first-seen order
        columns = {c: v for c, v in columns.items() if c.startswith(_INPUT_PREFIX)} | {
            c: v for c, v in columns.items() if not c.startswith(_INPUT_PREFIX)
        }
    fields = [record.tensor_field(*_io_tensor(col), _datatype(rows)) for col, rows in columns.items()]
    arrays += [_tensor_column(columns[f.name], f.type) for f in fields]
    return pa.RecordBatch.from_arrays(arrays, schema=record.schema(fields))


_INPUTS = operator.attrgetter("inputs")
_OUTPUTS = operator.attrgetter("outputs")
_INPUT_PREFIX = record.tensor_column_name(record.INPUT, "")


def _datatype(rows: list[Tensor | None]) -> str:
    """The V2 datatype of a column: its last row's (the parts of :func:`_split_conflicts` agree on it)."""
    return next(t for t in reversed(rows) if t is not None).datatype.name


def _io_tensor(column: str) -> tuple[str, str]:
    io, _, tensor = column.partition(".")
    return io, tensor


def _offsets(sizes: list[int]) -> pa.Array:
    offs = np.zeros(len(sizes) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offs[1:])
    return pa.array(offs)


def _tensor_column(present: list[Tensor | None], struct_type: pa.StructType) -> pa.Array:
    """A ``struct<shape, data>`` column, one row per item of ``present``; ``None`` rows are null (empty lists)."""
    n = len(present)
    tensors = [t for t in present if t is not None]
    nulls = n - len(tensors)
    shape_sizes = [len(t.shape) if t is not None else 0 for t in present]
    shape_values = pa.array(list(chain.from_iterable(t.shape for t in tensors)), pa.int64())
    shape_arr = pa.ListArray.from_arrays(_offsets(shape_sizes), shape_values)
    data_type = struct_type.field("data").type
    sizes = [t.data.size if t is not None else 0 for t in present]
    chunks: list[np.ndarray[Any, np.dtype[Any]]] = [t.data for t in tensors]
    if pa.types.is_binary(data_type.value_type):
        values = pa.array([v for c in chunks for v in c.tolist()], pa.binary())
    else:
        flat = np.concatenate(chunks) if chunks else np.empty(0)
        values = pa.array(flat, data_type.value_type)
    data_arr = pa.ListArray.from_arrays(_offsets(sizes), values, type=data_type)
    # the validity bitmap is built here rather than from a ``mask``, which pyarrow inverts with pyarrow.compute (a
    # library of about 13 MB the sidecar otherwise does without)
    bitmap = None
    if nulls:
        valid = np.fromiter((t is not None for t in present), dtype=np.bool_, count=n)
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StructArray.from_buffers(struct_type, n, [bitmap], null_count=nulls, children=[shape_arr, data_arr])
