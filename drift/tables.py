"""Reading reference (training) data: Parquet, CSV, NumPy ``.npz``, or a captured window.

Tables (Parquet, CSV) give one feature per column. ``.npz`` files hold ``X`` (or ``features``), an
``(rows, features)`` matrix, optional ``feature_names``, optional ``predictions`` (or ``y_pred``) and optional
``labels`` (or ``y``). Without a feature map, table columns / ``X`` columns map to elements ``0..n-1`` of the input
tensor ``input.<tensor>`` in order, predictions to ``output.<output>``, and labels are kept in the baseline but not
tested (they are not captured).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from infertap.drift.baseline import is_numeric
from infertap.drift.errors import ConfigError, DataError
from infertap.drift.features import FeatureSpec, batch_matrices, extract

if TYPE_CHECKING:  # pyarrow.dataset (the reader's) imports pandas: not for reading a table
    from infertap.drift.engine import FileMapper, ReadFile
    from infertap.drift.reader import Scan

Columns = dict[str, np.ndarray[Any, Any]]


def read_table(path: Path) -> tuple[Columns, list[str], list[str]]:
    """Read reference data; returns ``(columns, feature names, prediction names)`` (labels as ``label*``).

    Raises:
        DataError: unreadable file or unknown extension.
    """
    p = Path(path)
    try:
        if p.suffix == ".npz":
            return _read_npz(p)
        if p.is_dir():
            t = pq.read_table(p)
        elif p.suffix in (".parquet", ".pq"):
            # one file: its reader alone (pq.read_table goes through pyarrow.dataset, which imports pandas)
            t = pq.ParquetFile(p, pre_buffer=True).read(use_threads=True)
        elif p.suffix in (".csv", ".gz"):
            t = pacsv.read_csv(p)
        else:
            raise DataError(f"unknown reference data format {p.suffix!r} (Parquet, CSV or .npz)")
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"cannot read {p}: {exc}") from None
    cols = {n: column_values(t.column(n)) for n in t.column_names}
    return cols, list(t.column_names), []


def column_values(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """A table column as a 1-D NumPy array: a read-only view of the Arrow buffer for a single chunk of a numeric
    type without nulls, else a copy (nulls of floating columns as NaN, strings as objects).

    Numeric chunks are wrapped with ``np.frombuffer`` rather than ``to_numpy``, whose first call imports pandas
    (a fifth of a second of a baseline's start-up).
    """
    parts = [_chunk_values(c) for c in column.chunks]
    if not parts:
        return np.asarray(column.to_numpy())
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _chunk_values(chunk: pa.Array) -> np.ndarray[Any, Any]:
    t = chunk.type
    if chunk.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        dtype = np.dtype(t.to_pandas_dtype())
        buf = chunk.buffers()[1]
        return np.frombuffer(buf, dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)
    return np.asarray(chunk.to_numpy(zero_copy_only=False))


def _read_npz(p: Path) -> tuple[Columns, list[str], list[str]]:
    with np.load(p, allow_pickle=False) as z:
        keys = set(z.files)
        xk = "X" if "X" in keys else "features" if "features" in keys else None
        if xk is None:
            raise DataError(f"{p} has no 'X' or 'features' array (has {sorted(keys)})")
        x = np.asarray(z[xk])
        if x.ndim == 1:
            x = x[:, None]
        x = x.reshape(x.shape[0], -1)
        names = (
            [str(n) for n in z["feature_names"]] if "feature_names" in keys else [f"x{i}" for i in range(x.shape[1])]
        )
        if len(names) != x.shape[1]:
            raise DataError(f"{p}: {len(names)} feature_names for {x.shape[1]} columns")
        cols: Columns = {n: x[:, i] for i, n in enumerate(names)}
        preds: list[str] = []
        pk = "predictions" if "predictions" in keys else "y_pred" if "y_pred" in keys else None
        if pk is not None:
            y = np.asarray(z[pk]).reshape(x.shape[0], -1)
            for i in range(y.shape[1]):
                preds.append(f"prediction[{i}]")
                cols[preds[-1]] = y[:, i]
        lk = "labels" if "labels" in keys else "y" if "y" in keys else None
        if lk is not None:
            cols["label"] = np.asarray(z[lk]).ravel()
    return cols, names, preds


LAYOUTS = ("auto", "positional", "v1", "named")


def default_table_specs(
    columns: Columns,
    features: Sequence[str],
    predictions: Sequence[str] = (),
    *,
    tensor: str = "input-0",
    output: str = "output-0",
    categorical: Sequence[str] = (),
    layout: str = "auto",
) -> list[FeatureSpec]:
    """Specs mapping table columns to the tensors a model server captures (see the module docstring).

    Layouts: ``positional`` -- feature columns in order are the elements of ``input.<tensor>``, predictions those of
    ``output.<output>`` (a V2 request with one tensor, MLServer's default names ``input-0`` / ``predict``);
    ``v1`` -- the same into KServe V1's ``input.instances`` and ``output.predictions``; ``named`` -- each column is
    its own tensor ``input.<column>`` / ``output.<column>`` (V2 named tensors, V1 row-format objects);
    ``auto`` -- ``positional``, or ``named`` when the table mixes numeric and non-numeric feature columns (one
    tensor cannot hold both: V1 and V2 give a tensor one datatype).

    Non-numeric columns and those in ``categorical`` are categorical; ``label`` is kept untested.

    Raises:
        ConfigError: an unknown layout, or a positional layout asked to put non-numeric columns and numeric ones
            into one tensor (the columns are named).
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, not {layout!r}")

    def kind(n: str) -> str:
        return "categorical" if n in categorical or not is_numeric(columns[n]) else "numeric"

    strings = [n for n in features if not is_numeric(columns[n])]
    mixed = bool(strings) and len(strings) < len(features)
    if layout == "auto":
        layout = "named" if mixed else "positional"
    if layout == "v1":
        tensor, output = "instances", "predictions"
    if mixed and layout != "named":
        numbers = [n for n in features if n not in strings]
        raise ConfigError(
            f"non-numeric columns {strings} and numeric columns {numbers[:10]} cannot be elements of one tensor "
            f"input.{tensor}; use --layout named (one tensor per column) or a feature map"
        )
    specs = []
    for i, n in enumerate(features):
        col, idx = (f"input.{n}", 0) if layout == "named" else (f"input.{tensor}", i)
        specs.append(FeatureSpec(n, col, idx, None, kind(n)))
    for i, n in enumerate(predictions):
        col, idx = (f"output.{n}", 0) if layout == "named" else (f"output.{output}", i)
        specs.append(FeatureSpec(n, col, idx, None, kind(n)))
    if "label" in columns and "label" not in features:
        specs.append(FeatureSpec("label", "", 0, None, "numeric" if is_numeric(columns["label"]) else "categorical"))
    return specs


def columns_from_batches(batches: Any, specs: Sequence[FeatureSpec]) -> Columns:
    """Feature values of captured record batches, concatenated in memory (for a baseline from a window).

    Raises:
        DataError: a feature without values.
    """
    return joined_values(feature_values(batches, specs))


def feature_values(batches: Any, specs: Sequence[FeatureSpec]) -> dict[str, list[np.ndarray[Any, Any]]]:
    """Feature name -> its values in ``batches``, one 1-D array per batch that has some (in batch order)."""
    parts: dict[str, list[np.ndarray[Any, Any]]] = {s.name: [] for s in specs}
    cols = sorted({s.column for s in specs if s.column})
    for batch in batches:
        for col, mat in batch_matrices(batch, cols).items():
            if mat.shape[0]:
                for s in specs:
                    if s.column == col:
                        parts[s.name].append(np.asarray(extract(s, mat)))
    return parts


def joined_values(parts: dict[str, list[np.ndarray[Any, Any]]]) -> Columns:
    """The :func:`feature_values` of a window (or their :func:`append_values` over files) as one array per feature.

    Raises:
        DataError: a feature without values.
    """
    empty = [n for n, p in parts.items() if not p]
    if empty:
        raise DataError(f"the captured window has no values for features {empty}")
    return {n: np.concatenate(p) for n, p in parts.items()}


def append_values(
    a: dict[str, list[np.ndarray[Any, Any]]], b: dict[str, list[np.ndarray[Any, Any]]]
) -> dict[str, list[np.ndarray[Any, Any]]]:
    """The :func:`feature_values` of the rows of ``a`` followed by those of ``b``."""
    return {name: a[name] + b[name] for name in a}


def capture_columns(scan: Scan, specs: Sequence[FeatureSpec], map_files: FileMapper | None = None) -> Columns:
    """The values of ``specs`` in a captured window, in file and row order (a baseline's reference data).

    Args:
        map_files: the engine that reads the files (:mod:`infertap.drift.engine`); default: this process.

    Raises:
        DataError: a feature without values; a file that cannot be read.
    """
    cols = sorted({s.column for s in specs if s.column} & set(scan.schema.names))
    if map_files is None:
        return columns_from_batches(scan.batches(cols), specs)
    chosen = list(specs)

    def reduce_file(index: int, read: ReadFile) -> dict[str, list[np.ndarray[Any, Any]]]:
        return feature_values(read(cols, 65_536), chosen)

    return joined_values(map_files(scan, reduce_file, append_values) or {s.name: [] for s in specs})
