"""The capture record schema, version 2: one row per request/response exchange.

This module is the one definition of the schema. Every sink writes it and the drift job reads it; it is documented
in ``docs/record-schema.md``.

Columns: the fixed :data:`CORE_FIELDS`, then one column per decoded tensor, named ``input.<tensor>`` or
``output.<tensor>``, of type ``struct<shape: list<int64>, data: list<T>>`` where ``T`` is the Arrow type of the
tensor's V2 datatype (field metadata ``v2_datatype`` keeps the V2 name, so BYTES and UINT8 stay apart). ``data``
holds the tensor's elements flat in row-major order, so the elements of all rows of a column are one contiguous
Arrow buffer and :func:`instances` turns them into an ``(instances, features)`` NumPy matrix without copying.

The schema's metadata carries ``infertap.schema_version``; readers call :func:`check_schema`, which accepts every
version in :data:`SUPPORTED_VERSIONS` (a file of an older version lacks the columns added since, see
:data:`ADDED_IN`).

Between the core and the tensor columns come the :data:`GENERATIVE_FIELDS` (``gen_*``, version 2): what a
generative call (OpenAI-compatible API, V2 generate) was asked and answered, null in other records.

:class:`CapturedRecord` is the row before Arrow encoding. It is tied to :data:`CORE_FIELDS` by name (the rule is
:func:`attribute_name`): :func:`check_row_type` runs at import, so a column added to one and not the other, or a
nullable column whose attribute cannot hold ``None`` (and the reverse), fails every import of this module.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from infertap.logger.codecs import datatypes
from infertap.logger.codecs.tensor import Tensor
from infertap.logger.errors import RegistryError, SchemaError
from infertap.logger.genai.model import Generation

SCHEMA_VERSION = 2
#: Versions :func:`check_schema` accepts.
SUPPORTED_VERSIONS: tuple[int, ...] = (1, 2)
SCHEMA_VERSION_KEY = b"infertap.schema_version"
DATATYPE_KEY = b"v2_datatype"
INPUT, OUTPUT = "input", "output"

_ts = pa.timestamp("us", tz="UTC")
_headers = pa.map_(pa.string(), pa.string())

#: Fixed columns of every record, in order. Nullable ones are null when unknown or not captured.
CORE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("schema_version", pa.int16(), nullable=False),
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("inference_id", pa.string()),
    pa.field("request_time", _ts),
    pa.field("response_time", _ts),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("inference_service", pa.string(), nullable=False),
    pa.field("namespace", pa.string(), nullable=False),
    pa.field("component", pa.string(), nullable=False),
    pa.field("revision", pa.string(), nullable=False),
    pa.field("endpoint", pa.string(), nullable=False),
    pa.field("pod", pa.string(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("method", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("query", pa.string(), nullable=False),
    pa.field("status_code", pa.int32()),
    pa.field("upstream_latency_s", pa.float64()),
    pa.field("total_latency_s", pa.float64()),
    pa.field("request_bytes", pa.int64()),
    pa.field("response_bytes", pa.int64()),
    pa.field("capture_mode", pa.string(), nullable=False),
    pa.field("sample_rate", pa.float64(), nullable=False),
    pa.field("request_headers", _headers),
    pa.field("response_headers", _headers),
    pa.field("error", pa.string()),
    pa.field("decode_error", pa.string()),
    pa.field("request_truncated", pa.bool_(), nullable=False),
    pa.field("response_truncated", pa.bool_(), nullable=False),
    pa.field("request_parameters", pa.string()),
    pa.field("response_parameters", pa.string()),
    pa.field("request_body", pa.binary()),
    pa.field("response_body", pa.binary()),
)
CORE_NAMES: frozenset[str] = frozenset(f.name for f in CORE_FIELDS)
#: Core columns added after version 1, with the version that added them: older files lack them.
ADDED_IN: dict[str, int] = {"inference_id": 2}
#: Core columns written by the encoder, not taken from a row attribute.
ENCODER_COLUMNS: frozenset[str] = frozenset({"schema_version"})
#: Row attributes that become tensor columns, not core columns.
TENSOR_ATTRIBUTES: frozenset[str] = frozenset({"inputs", "outputs"})
#: The row attribute that becomes the generative columns.
GENERATION_ATTRIBUTE = "generation"

_f64, _i64, _i32, _str = pa.float64(), pa.int64(), pa.int32(), pa.string()
_tool_call = pa.struct([("id", _str), ("type", _str), ("name", _str), ("arguments", _str)])
#: Generative columns (version 2), all nullable: null in records that are not generative calls, and where the call
#: did not say (a stream without usage has null token counts; a request without ``temperature`` a null one).
#: Text columns are null when ``INFERTAP_GENAI_TEXT=lengths`` (the ``*_chars`` lengths and all timings stay).
GENERATIVE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("gen_api", _str),
    pa.field("gen_stream", pa.bool_()),
    pa.field("gen_text_redacted", pa.bool_()),
    pa.field("gen_messages", pa.list_(pa.struct([("role", _str), ("content", _str)]))),
    pa.field("gen_prompts", pa.list_(_str)),
    pa.field("gen_prompt_chars", _i64),
    pa.field("gen_max_tokens", _i64),
    pa.field("gen_temperature", _f64),
    pa.field("gen_top_p", _f64),
    pa.field("gen_stop", pa.list_(_str)),
    pa.field("gen_n", _i64),
    pa.field("gen_seed", _i64),
    pa.field("gen_tools", _str),
    pa.field("gen_parameters", _str),
    pa.field("gen_response_id", _str),
    pa.field(
        "gen_choices",
        pa.list_(
            pa.struct(
                [
                    ("index", _i32),
                    ("role", _str),
                    ("text", _str),
                    ("finish_reason", _str),
                    ("tool_calls", pa.list_(_tool_call)),
                ]
            )
        ),
    ),
    pa.field("gen_finish_reason", _str),
    pa.field("gen_completion_chars", _i64),
    pa.field("gen_prompt_tokens", _i64),
    pa.field("gen_completion_tokens", _i64),
    pa.field("gen_total_tokens", _i64),
    pa.field("gen_events", _i32),
    pa.field("gen_deltas", pa.list_(pa.struct([("choice", _i32), ("text", _str), ("at_s", _f64)]))),
    pa.field("gen_ttft_s", _f64),
    pa.field("gen_gap_count", _i32),
    pa.field("gen_gap_mean_s", _f64),
    pa.field("gen_gap_p50_s", _f64),
    pa.field("gen_gap_p99_s", _f64),
    pa.field("gen_gap_max_s", _f64),
    pa.field("gen_generation_s", _f64),
    pa.field("gen_output_tokens_per_s", _f64),
)
GENERATIVE_NAMES: frozenset[str] = frozenset(f.name for f in GENERATIVE_FIELDS)
GENERATIVE_TYPES: dict[str, pa.DataType] = {f.name: f.type for f in GENERATIVE_FIELDS}
ADDED_IN.update(dict.fromkeys(GENERATIVE_NAMES, 2))


@dataclass(slots=True)
class CapturedRecord:
    """One row of the record schema before Arrow encoding.

    Every attribute but ``inputs`` / ``outputs`` is the core column of the same name (see :func:`attribute_name`
    for timestamps), with the column's meaning and unit (docs/record-schema.md); ``request_time_us`` /
    ``response_time_us`` are microseconds since the Unix epoch, UTC. ``inputs`` / ``outputs`` become the
    ``input.<name>`` / ``output.<name>`` tensor columns, in this order; ``generation`` (a decoded generative
    call, else ``None``) becomes the :data:`GENERATIVE_FIELDS`.
    """

    request_id: str
    inference_id: str | None
    request_time_us: int | None
    response_time_us: int | None
    model_name: str
    model_version: str
    inference_service: str
    namespace: str
    component: str
    revision: str
    endpoint: str
    pod: str
    protocol: str
    method: str
    path: str
    query: str
    status_code: int | None
    upstream_latency_s: float | None
    total_latency_s: float | None
    request_bytes: int | None
    response_bytes: int | None
    capture_mode: str
    sample_rate: float
    request_headers: list[tuple[str, str]] | None
    response_headers: list[tuple[str, str]] | None
    error: str | None
    decode_error: str | None
    request_truncated: bool
    response_truncated: bool
    request_parameters: str | None
    response_parameters: str | None
    request_body: bytes | None
    response_body: bytes | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    generation: Generation | None = None


def attribute_name(field: pa.Field) -> str:
    """The :class:`CapturedRecord` attribute of core column ``field``: its name, ``_us`` appended for timestamps."""
    return f"{field.name}_us" if pa.types.is_timestamp(field.type) else field.name


def check_row_type(row_type: type, fields: Sequence[pa.Field] = CORE_FIELDS) -> None:
    """Check that ``row_type`` (a dataclass) has exactly one attribute per core column of ``fields``, by name.

    Columns in :data:`ENCODER_COLUMNS` have no attribute; attributes in :data:`TENSOR_ATTRIBUTES` no core column.
    An attribute's annotation must admit ``None`` exactly when its column is nullable.

    Raises:
        SchemaError: a column without attribute, an attribute without column, or a nullability mismatch.
    """
    hints = typing.get_type_hints(row_type)
    expected = {attribute_name(f): f for f in fields if f.name not in ENCODER_COLUMNS}
    attributes = set(hints) - TENSOR_ATTRIBUTES - {GENERATION_ATTRIBUTE}
    if missing := sorted(expected.keys() - attributes):
        raise SchemaError(f"{row_type.__name__} has no attribute for column(s) {', '.join(missing)}")
    if extra := sorted(attributes - expected.keys()):
        raise SchemaError(f"{row_type.__name__} attribute(s) {', '.join(extra)} have no column in the schema")
    for attr, f in expected.items():
        admits_none = type(None) in typing.get_args(hints[attr]) or hints[attr] is types.NoneType
        if admits_none != f.nullable:
            nullable = "nullable" if f.nullable else "not nullable"
            raise SchemaError(f"column {f.name!r} is {nullable} but {row_type.__name__}.{attr} is {hints[attr]}")


check_row_type(CapturedRecord)


@dataclass(frozen=True, slots=True)
class TensorColumn:
    """A tensor column of a record schema: ``io`` is ``"input"`` or ``"output"``; ``datatype`` the V2 name."""

    column: str
    io: str
    tensor: str
    datatype: str


def tensor_column_name(io: str, tensor: str) -> str:
    """Column name of tensor ``tensor`` of side ``io`` (``"input"`` / ``"output"``)."""
    return f"{io}.{tensor}"


def tensor_field(io: str, tensor: str, datatype: str) -> pa.Field:
    """The Arrow field of a tensor column (``struct<shape: list<int64>, data: list<T>>``, nullable).

    Raises:
        RegistryError: unknown V2 datatype.
    """
    element = datatypes.lookup(datatype).arrow
    struct = pa.struct([pa.field("shape", pa.list_(pa.int64())), pa.field("data", pa.list_(element))])
    return pa.field(tensor_column_name(io, tensor), struct, metadata={DATATYPE_KEY: datatype.encode()})


def schema(tensor_fields: list[pa.Field] | tuple[pa.Field, ...] = ()) -> pa.Schema:
    """The record schema: core columns, generative columns, then the given tensor columns; tagged with the version."""
    return pa.schema(
        [*CORE_FIELDS, *GENERATIVE_FIELDS, *tensor_fields],
        metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()},
    )


def check_schema(sch: pa.Schema) -> None:
    """Check that ``sch`` is a record schema of a supported version (:data:`SUPPORTED_VERSIONS`).

    A schema without the ``infertap.schema_version`` metadata is accepted when its core columns match (readers that
    merge files, or add partition columns, may drop schema metadata); the ``schema_version`` column still says
    which version each row is. A column added after version 1 (:data:`ADDED_IN`) may be missing when the schema
    is of an older version or says none; readers then treat it as null.

    Raises:
        SchemaError: an unsupported schema version, or a core column missing or of another type.
    """
    meta = sch.metadata or {}
    raw = meta.get(SCHEMA_VERSION_KEY)
    version: int | None = None
    if raw is not None:
        text = raw.decode(errors="replace")
        if not text.isdigit() or int(text) not in SUPPORTED_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_VERSIONS))
            raise SchemaError(f"record schema version {text} is not supported (this reads {supported})")
        version = int(text)
    for f in (*CORE_FIELDS, *GENERATIVE_FIELDS):
        idx = sch.get_field_index(f.name)
        if idx < 0:
            added = ADDED_IN.get(f.name, 1)
            if added > 1 and (version is None or version < added):
                continue
            raise SchemaError(f"record schema lacks column {f.name!r}")
        if not sch.field(idx).type.equals(f.type):
            raise SchemaError(f"column {f.name!r} is {sch.field(idx).type}, expected {f.type}")


def tensor_columns(sch: pa.Schema) -> list[TensorColumn]:
    """The tensor columns of a record schema, in schema order.

    A column named ``input.<x>`` / ``output.<x>`` without ``v2_datatype`` metadata gets the datatype of its Arrow
    element type (``binary`` is BYTES).

    Raises:
        SchemaError: such a column that is not a ``struct<shape, data: list<T>>``, or whose ``v2_datatype`` (or
            element type) is no V2 datatype.
    """
    out: list[TensorColumn] = []
    for f in sch:
        if f.name in CORE_NAMES:
            continue
        io, sep, tensor = f.name.partition(".")
        if not sep or io not in (INPUT, OUTPUT):
            continue
        if not pa.types.is_struct(f.type) or f.type.get_field_index("data") < 0:
            raise SchemaError(f"column {f.name!r} is not a tensor column: {f.type}")
        data_type = f.type.field("data").type
        if not pa.types.is_list(data_type):
            raise SchemaError(f"column {f.name!r} is not a tensor column: data is {data_type}")
        dt = (f.metadata or {}).get(DATATYPE_KEY)
        try:
            if dt is None:
                name = datatypes.from_arrow(data_type.value_type).name
            else:
                name = datatypes.lookup(dt.decode()).name
        except RegistryError as exc:
            raise SchemaError(f"column {f.name!r}: {exc}") from None
        out.append(TensorColumn(f.name, io, tensor, name))
    return out


def _instance_sizes(chunk: pa.StructArray) -> list[tuple[int, int]]:
    """Distinct ``(elements per instance, instances)`` pairs of a chunk's rows (no null rows), vectorised.

    A row of shape ``[b, d1, d2 ...]`` has ``b`` instances of ``d1 * d2 * ...`` elements; a scalar (shape ``[]``)
    is one instance of one element.

    Raises:
        SchemaError: a row whose ``data`` does not hold ``prod(shape)`` elements.
    """
    shape = chunk.field("shape")
    offsets = shape.offsets.to_numpy()
    dims = shape.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]].astype(np.int64)
    ndim = np.diff(offsets)
    has_batch = ndim > 0
    starts = (offsets[:-1] - offsets[0])[has_batch]
    batch = np.ones(len(ndim), dtype=np.int64)
    batch[has_batch] = dims[starts]
    sizes = np.ones(len(ndim), dtype=np.int64)
    if starts.size:
        rest = dims.copy()
        rest[starts] = 1  # the product of each row's dimensions after the first
        sizes[has_batch] = np.multiply.reduceat(rest, starts)
    elements = chunk.field("data").value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    bad = np.flatnonzero(elements != batch * sizes)
    if bad.size:
        i = int(bad[0])
        raise SchemaError(f"row {i} holds {elements[i]} elements, its shape needs {batch[i] * sizes[i]}")
    return [(int(size), int(batch[sizes == size].sum())) for size in np.unique(sizes)]


def instances(column: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, np.dtype[Any]]:
    """The instances of a tensor column as a 2-D matrix, ``(instances, features)``.

    The first dimension of each row's shape is its batch dimension; the remaining dimensions are flattened into
    ``features``, which must be the same in every non-null row. Rows where the column is null contribute nothing.
    For a single chunk without null rows, of a numeric datatype, the result is a view of the Arrow buffer (no
    copy); null rows, several chunks, BOOL and BYTES mean a copy (BYTES as an object array of ``bytes``).

    Raises:
        SchemaError: ``column`` is not a tensor column, or rows disagree on the per-instance shape.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts: list[np.ndarray[Any, np.dtype[Any]]] = []
    features: int | None = None
    rows = 0
    for chunk in chunks:
        if not pa.types.is_struct(chunk.type) or chunk.type.get_field_index("data") < 0:
            raise SchemaError(f"not a tensor column: {chunk.type}")
        if chunk.null_count:
            chunk = chunk.filter(chunk.is_valid())
        if len(chunk) == 0:
            continue
        for f, n in _instance_sizes(chunk):
            if features is None:
                features = f
            elif f != features:
                raise SchemaError(f"rows disagree on instance size: {features} vs {f} elements")
            rows += n
        values = chunk.field("data").flatten()
        zero_copy = values.null_count == 0 and not (pa.types.is_boolean(values.type) or pa.types.is_binary(values.type))
        parts.append(values.to_numpy(zero_copy_only=zero_copy))
    if features is None:
        return np.empty((0, 0))
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if flat.size != rows * features:
        raise SchemaError(f"tensor data holds {flat.size} elements, shapes say {rows} x {features}")
    return flat.reshape(rows, features)
