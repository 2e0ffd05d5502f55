"""Drift of a plain table (a batch-scoring output, a feature-store export) against a baseline.

A Parquet file or directory, or a CSV file, whose columns are named like the baseline's features: each file is
reduced batch by batch to the baseline's summaries (the same ``add`` as captured records), the files' summaries
merge, and the same tests and verdict document follow (``window`` is open, ``records`` the table's rows).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from infertap.drift.baseline import Baseline
from infertap.drift.errors import DataError
from infertap.drift.evaluate import DriftConfig, assess
from infertap.drift.reader import Window
from infertap.drift.reduce import merge_summaries
from infertap.drift.summary import Summary
from infertap.drift.verdict import DriftVerdict, Envelope


def open_table(path: Path) -> ds.Dataset:
    """The table at ``path``: ``.csv`` (or ``.csv.gz``) as CSV, anything else as Parquet (a file or a directory).

    Raises:
        DataError: it cannot be read.
    """
    fmt = "csv" if str(path).endswith((".csv", ".csv.gz")) else "parquet"
    try:
        return ds.dataset(str(path), format=fmt)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path}: {' '.join(str(exc).split())}") from None


def drift_table(
    baseline: Baseline,
    path: Path,
    *,
    config: DriftConfig | None = None,
    allow_missing_columns: bool = False,
    batch_rows: int = 65_536,
) -> DriftVerdict:
    """Drift verdict of a table whose columns are the baseline's features (by name).

    Raises:
        DataError: unreadable table; baseline features absent from it (unless ``allow_missing_columns``; the
            error lists the table's columns); a numeric feature whose column holds strings.
        EmptyWindowError: the table has no rows, or a feature without finite values.
    """
    started = dt.datetime.now(dt.UTC)
    table = open_table(path)
    names = set(table.schema.names)
    tested = [bf for bf in baseline.features if bf.spec.column]
    present = [bf for bf in tested if bf.spec.name in names]
    absent = [bf.spec.name for bf in tested if bf.spec.name not in names]
    if not present or (absent and not allow_missing_columns):
        raise DataError(
            f"{len(absent)} baseline features are not columns of {path}: {absent}; its columns: "
            f"{table.schema.names}" + ("" if not present else "; pass --allow-missing-columns to test the others")
        )
    wrong = [
        bf.spec.name
        for bf in present
        if bf.spec.kind == "numeric" and not _numeric(table.schema.field(bf.spec.name).type)
    ]
    if wrong:
        types = {n: str(table.schema.field(n).type) for n in wrong}
        raise DataError(f"numeric baseline features are not numeric columns in {path}: {types}")
    total: dict[str, Summary] = {}
    rows = 0
    try:
        for fragment in table.get_fragments():
            part = {bf.spec.name: bf.empty_summary() for bf in present}
            for batch in fragment.to_batches(columns=[bf.spec.name for bf in present], batch_size=batch_rows):
                rows += batch.num_rows
                for bf in present:
                    col = batch.column(bf.spec.name)
                    part[bf.spec.name].add(col.to_numpy(zero_copy_only=False))
            total = merge_summaries(total, part)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {path}: {' '.join(str(exc).split())}") from None
    result = assess(baseline, total, config or DriftConfig())
    envelope = Envelope("drift", str(path), Window(), rows, started, baseline)
    return DriftVerdict(envelope, [], absent, result, current=total)


def _numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))
