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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from infertap.drift.baseline import is_numeric
from infertap.drift.errors import DataError
from infertap.drift.features import FeatureSpec, batch_matrices, extract

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
        if p.suffix in (".parquet", ".pq") or p.is_dir():
            t = pq.read_table(p)
        elif p.suffix in (".csv", ".gz"):
            t = pacsv.read_csv(p)
        else:
            raise DataError(f"unknown reference data format {p.suffix!r} (Parquet, CSV or .npz)")
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"cannot read {p}: {exc}") from None
    cols = {n: t.column(n).to_numpy(zero_copy_only=False) for n in t.column_names}
    return cols, list(t.column_names), []


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


def default_table_specs(
    columns: Columns,
    features: Sequence[str],
    predictions: Sequence[str] = (),
    *,
    tensor: str = "input-0",
    output: str = "output-0",
    categorical: Sequence[str] = (),
) -> list[FeatureSpec]:
    """Specs mapping table columns to tensor elements in order (see the module docstring).

    Non-numeric columns and those in ``categorical`` are categorical; ``label`` is kept untested.
    """
    specs = []
    for i, n in enumerate(features):
        kind = "categorical" if n in categorical or not is_numeric(columns[n]) else "numeric"
        specs.append(FeatureSpec(n, f"input.{tensor}", i, None, kind))
    for i, n in enumerate(predictions):
        kind = "categorical" if n in categorical or not is_numeric(columns[n]) else "numeric"
        specs.append(FeatureSpec(n, f"output.{output}", i, None, kind))
    if "label" in columns and "label" not in features:
        specs.append(FeatureSpec("label", "", 0, None, "numeric" if is_numeric(columns["label"]) else "categorical"))
    return specs


def columns_from_batches(batches: Any, specs: Sequence[FeatureSpec]) -> Columns:
    """Feature values of captured record batches, concatenated in memory (for a baseline from a window)."""
    parts: dict[str, list[np.ndarray[Any, Any]]] = {s.name: [] for s in specs}
    cols = sorted({s.column for s in specs if s.column})
    for batch in batches:
        for col, mat in batch_matrices(batch, cols).items():
            if mat.shape[0]:
                for s in specs:
                    if s.column == col:
                        parts[s.name].append(np.asarray(extract(s, mat)))
    empty = [n for n, p in parts.items() if not p]
    if empty:
        raise DataError(f"the captured window has no values for features {empty}")
    return {n: np.concatenate(p) for n, p in parts.items()}
