"""Feature maps: which value of which captured tensor column each drift feature is.

A :class:`FeatureSpec` names a feature and says where it lives in the record schema: the tensor column
(``input.<tensor>`` / ``output.<tensor>``), the element ``index`` within an instance (row-major flattened), or a
per-instance ``summary`` of the whole instance (``mean``, ``std``, ``min``, ``max``) for tensors with many elements
(images, embeddings): testing each pixel separately would raise thousands of correlated alarms, while the
per-instance brightness, contrast and range capture the shifts that matter (exposure, sensor, preprocessing) at
the cost of missing purely spatial changes. :data:`MAX_ELEMENTWISE` decides the default.

Feature map file (JSON)::

    {"features": [{"name": "petal_length", "column": "input.input-0", "index": 2},
                  {"name": "colour", "column": "input.colour", "index": 0, "kind": "categorical"},
                  {"name": "image.mean", "column": "input.image", "summary": "mean"}]}

or the compact form ``{"tensors": {"input.input-0": ["sepal_length", "sepal_width", ...]}}`` (names by index).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from infertap.drift.errors import ConfigError, DataError
from infertap.logger import record

#: Tensors with more elements per instance than this are summarised per instance by default.
MAX_ELEMENTWISE = 256
SUMMARIES = ("mean", "std", "min", "max")
KINDS = ("numeric", "categorical")


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Where a feature is found.

    Attributes:
        name: the feature's name in baselines and verdicts.
        column: the tensor column (``input.x`` / ``output.y``), or ``""`` for a feature that is not captured
            (labels): kept in the baseline, not tested.
        index: element index within one instance (flattened row-major), or ``None`` with ``summary``.
        summary: ``"mean"``, ``"std"``, ``"min"`` or ``"max"`` of each whole instance, or ``None``.
        kind: ``"numeric"`` or ``"categorical"``.
    """

    name: str
    column: str
    index: int | None = 0
    summary: str | None = None
    kind: str = "numeric"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"feature {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.summary is not None and self.summary not in SUMMARIES:
            raise ConfigError(f"feature {self.name!r}: summary must be one of {SUMMARIES}")
        if (self.summary is None) == (self.index is None):
            raise ConfigError(f"feature {self.name!r}: give exactly one of index and summary")
        if self.summary is not None and self.kind != "numeric":
            raise ConfigError(f"feature {self.name!r}: a per-instance summary is numeric")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def parse_feature_map(doc: Mapping[str, Any]) -> list[FeatureSpec]:
    """Feature specs from a parsed feature map document (see the module docstring).

    Raises:
        ConfigError: unknown keys, duplicate names, invalid entries.
    """
    out: list[FeatureSpec] = []
    if "features" in doc:
        for item in doc["features"]:
            try:
                out.append(FeatureSpec(**item))
            except TypeError as exc:
                raise ConfigError(f"bad feature entry {item!r}: {exc}") from None
    for column, names in (doc.get("tensors") or {}).items():
        if not isinstance(names, list):
            raise ConfigError(f"tensors.{column} must be a list of names")
        out.extend(FeatureSpec(str(n), column, i) for i, n in enumerate(names))
    unknown = set(doc) - {"features", "tensors"}
    if unknown:
        raise ConfigError(f"unknown feature map keys: {sorted(unknown)}")
    _check_unique(out)
    return out


def load_feature_map(path: Path) -> list[FeatureSpec]:
    """Read a JSON feature map file.

    Raises:
        ConfigError: unreadable file or invalid content.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read feature map {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"feature map {path} must be a JSON object")
    return parse_feature_map(doc)


def _check_unique(specs: Sequence[FeatureSpec]) -> None:
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ConfigError(f"duplicate feature name {s.name!r}")
        seen.add(s.name)


def default_specs(
    column: str, width: int, *, categorical: bool = False, names: Sequence[str] = ()
) -> list[FeatureSpec]:
    """Default features of a tensor column with ``width`` elements per instance.

    ``width <= MAX_ELEMENTWISE``: one feature per element, named ``names[i]`` or ``"<column>[i]"``; else the
    per-instance summaries ``"<column>.mean"`` etc. BYTES tensors (``categorical``) are one categorical feature
    per element.
    """
    if categorical:
        return [
            FeatureSpec(names[i] if i < len(names) else f"{column}[{i}]", column, i, None, "categorical")
            for i in range(width)
        ]
    if width <= MAX_ELEMENTWISE:
        return [FeatureSpec(names[i] if i < len(names) else f"{column}[{i}]", column, i) for i in range(width)]
    return [FeatureSpec(f"{column}.{s}", column, None, s) for s in SUMMARIES]


def specs_from_schema(schema: pa.Schema, widths: Mapping[str, int]) -> list[FeatureSpec]:
    """Default features of every tensor column of a record schema; ``widths`` gives elements per instance.

    Columns missing from ``widths`` (never seen non-null) are skipped.
    """
    out: list[FeatureSpec] = []
    for tc in record.tensor_columns(schema):
        if tc.column in widths:
            out.extend(default_specs(tc.column, widths[tc.column], categorical=tc.datatype == "BYTES"))
    return out


def summarise_instances(mat: np.ndarray[Any, Any], how: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per-instance summary of an ``(instances, elements)`` matrix: ``(instances,)`` float64.

    NaN elements propagate (the instance's summary is NaN and is counted as missing).
    """
    m = np.asarray(mat, dtype=np.float64)
    if m.shape[0] == 0:
        return np.empty(0)
    if how in SUMMARIES:
        out: np.ndarray[Any, np.dtype[np.float64]] = np.asarray(getattr(m, how)(axis=1), dtype=np.float64)
        return out
    raise ConfigError(f"unknown summary {how!r}")


def extract(spec: FeatureSpec, mat: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The values of feature ``spec`` from its column's ``(instances, elements)`` matrix (one per instance).

    Raises:
        DataError: the index is beyond the instance width.
    """
    if spec.summary is not None:
        return summarise_instances(mat, spec.summary)
    assert spec.index is not None
    if mat.ndim != 2 or spec.index >= mat.shape[1]:
        width = mat.shape[1] if mat.ndim == 2 else 0
        raise DataError(f"index {spec.index} is beyond the instance width {width} of {spec.column}", feature=spec.name)
    return mat[:, spec.index]


def batch_matrices(batch: pa.RecordBatch | pa.Table, columns: Iterable[str]) -> dict[str, np.ndarray[Any, Any]]:
    """``(instances, elements)`` matrices of the tensor ``columns`` present in ``batch``
    (:func:`infertap.logger.record.instances`). Columns absent from the batch are absent from the result."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    names = set(batch.schema.names)
    for c in columns:
        if c in names:
            out[c] = record.instances(batch.column(c))
    return out


#: :func:`instance_widths` of a row where the tensor column is null.
NULL_ROW = -1
#: :func:`instance_widths` of a row whose ``data`` does not hold ``prod(shape)`` elements.
BAD_ROW = -2


def instance_widths(column: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Elements per instance of every row of a tensor column: ``(rows,)`` int64.

    A row of shape ``[b, d1, d2 ...]`` holds ``b`` instances of ``d1 * d2 * ...`` elements (a scalar, shape ``[]``,
    is one instance of one element), as :func:`infertap.logger.record.instances` reads them. Rows where the column
    is null are :data:`NULL_ROW`; rows whose ``data`` does not hold ``b * d1 * d2 ...`` elements are
    :data:`BAD_ROW`. Vectorised (no Python loop over rows).
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    for chunk in chunks:
        w = np.full(len(chunk), NULL_ROW, np.int64)
        valid = np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        if valid.any():
            c = chunk if valid.all() else chunk.filter(pa.array(valid))
            shape = c.field("shape")
            offsets = shape.offsets.to_numpy()
            dims = shape.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]].astype(np.int64)
            ndim = np.diff(offsets)
            has_batch = ndim > 0
            starts = (offsets[:-1] - offsets[0])[has_batch]
            batch = np.ones(len(ndim), np.int64)
            batch[has_batch] = dims[starts]
            sizes = np.ones(len(ndim), np.int64)
            if starts.size:
                rest = dims.copy()
                rest[starts] = 1
                sizes[has_batch] = np.multiply.reduceat(rest, starts)
            lengths = c.field("data").value_lengths().fill_null(0)
            elements = np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)
            w[valid] = np.where(elements == batch * sizes, sizes, BAD_ROW)
        out.append(w)
    return np.concatenate(out) if out else np.empty(0, np.int64)
