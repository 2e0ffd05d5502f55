"""Reduce stage: captured record batches -> mergeable partial results (per file, row group or partition).

A partial is what one unit of data reduces to; partials of any split of a window merge with :meth:`merge` into the
partial of the whole window (the summaries' own ``merge``: counts add, moments combine with Chan's update,
reservoirs keep the bottom-k priorities). The local engine reduces each file and merges; a distributed engine runs
the same functions on its partitions. Columns are read by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infertap.drift.baseline import Baseline
from infertap.drift.errors import DataError
from infertap.drift.features import (
    BAD_ROW,
    NULL_ROW,
    FeatureSpec,
    extract,
    instance_widths,
    specs_from_schema,
)
from infertap.drift.parallel import parallel_map
from infertap.drift.summary import CategoricalSummary, NumericSummary, Reservoir, Summary
from infertap.drift.verdict import ArmCounts, Malformed
from infertap.logger import record

#: The reservoir key of per-request latencies in a canary arm.
LATENCY = "__latency__"


def merge_summary(a: Summary, b: Summary) -> Summary:
    """``a.merge(b)`` for two summaries of one feature.

    Raises:
        TypeError: one is numeric and the other categorical.
        DataError: numeric summaries over different edges.
    """
    if isinstance(a, NumericSummary) and isinstance(b, NumericSummary):
        return a.merge(b)
    if isinstance(a, CategoricalSummary) and isinstance(b, CategoricalSummary):
        return a.merge(b)
    raise TypeError(f"cannot merge {type(a).__name__} with {type(b).__name__}")


def merge_summaries(a: Mapping[str, Summary], b: Mapping[str, Summary]) -> dict[str, Summary]:
    """Feature-wise merge of two ``{feature: summary}`` maps (a feature in only one side is kept as is)."""
    out = dict(a)
    for name, s in b.items():
        out[name] = merge_summary(out[name], s) if name in out else s
    return out


#: Request ids of malformed records kept per tensor column and width (and named in the verdict, in all).
MALFORMED_IDS_CAP = 20
#: Distinct per-instance widths of one tensor column tracked apart in a partial; rows of further widths are
#: counted as malformed at once.
MAX_WIDTHS = 8


@dataclass(slots=True)
class WidthGroup:
    """The rows of one tensor column whose instances have one width (elements per instance).

    Attributes:
        records: records (rows) in the group.
        summaries: feature name -> summary of the column's features that fit the width.
        unfit: features whose element index is beyond the width.
        ids: request ids of the first :data:`MALFORMED_IDS_CAP` records (named if the group turns out malformed).
    """

    records: int = 0
    summaries: dict[str, Summary] = field(default_factory=dict)
    unfit: set[str] = field(default_factory=set)
    ids: list[str] = field(default_factory=list)

    def merge(self, other: WidthGroup) -> WidthGroup:
        """The group of the rows of both."""
        return WidthGroup(
            self.records + other.records,
            merge_summaries(self.summaries, other.summaries),
            self.unfit | other.unfit,
            (self.ids + other.ids)[:MALFORMED_IDS_CAP],
        )


@dataclass(slots=True)
class ColumnPartial:
    """One tensor column over some rows: a :class:`WidthGroup` per instance width, and the corrupt rows
    (``data`` not holding ``prod(shape)`` elements, or past :data:`MAX_WIDTHS` widths)."""

    groups: dict[int, WidthGroup] = field(default_factory=dict)
    corrupt: int = 0
    corrupt_ids: list[str] = field(default_factory=list)

    def merge(self, other: ColumnPartial) -> ColumnPartial:
        """The column over the rows of both."""
        out = ColumnPartial(dict(self.groups), self.corrupt + other.corrupt, self.corrupt_ids + other.corrupt_ids)
        for w, g in other.groups.items():
            out.groups[w] = out.groups[w].merge(g) if w in out.groups else g
        while len(out.groups) > MAX_WIDTHS:  # drop the smallest group (fewest records, then narrowest)
            w = min(out.groups, key=lambda k: (out.groups[k].records, k))
            g = out.groups.pop(w)
            out.corrupt += g.records
            out.corrupt_ids += g.ids
        out.corrupt_ids = out.corrupt_ids[:MALFORMED_IDS_CAP]
        return out

    def width(self) -> int | None:
        """The column's width: the one most records have (ties: the wider); ``None`` without rows."""
        if not self.groups:
            return None
        return max(self.groups, key=lambda k: (self.groups[k].records, k))


@dataclass(slots=True)
class WindowPartial:
    """What a drift run keeps of some rows: per tensor column and instance width, per-feature summaries in the
    baseline's bins; rows read; an optional sample.

    Attributes:
        columns: tensor column -> its partial; columns without a non-null value are absent.
        rows: records read (after the window's filters).
        reservoir: optional bounded sample of feature values.
    """

    columns: dict[str, ColumnPartial] = field(default_factory=dict)
    rows: int = 0
    reservoir: Reservoir | None = None

    def merge(self, other: WindowPartial) -> WindowPartial:
        """The partial of the rows of both (associative and commutative up to float rounding of sums/moments)."""
        res = self.reservoir
        if res is None:
            res = other.reservoir
        elif other.reservoir is not None:
            res = res.merge(other.reservoir)
        cols = dict(self.columns)
        for c, p in other.columns.items():
            cols[c] = cols[c].merge(p) if c in cols else p
        return WindowPartial(cols, self.rows + other.rows, res)

    def resolve(self, max_share: float = 1.0) -> tuple[dict[str, Summary], Malformed]:
        """The summaries of the window and its malformed records.

        Each column's width is the one most of its records have; records of other widths, and corrupt ones,
        are malformed: skipped, counted, named (first :data:`MALFORMED_IDS_CAP` request ids).

        Raises:
            DataError: a feature index beyond its column's width.
        """
        summaries: dict[str, Summary] = {}
        bad = Malformed(max_share=max_share)
        for col in sorted(self.columns):
            cp = self.columns[col]
            n_bad, ids = cp.corrupt, list(cp.corrupt_ids)
            width = cp.width()
            for w, g in sorted(cp.groups.items()):
                if w != width:
                    n_bad += g.records
                    ids += g.ids
            if width is not None:
                g = cp.groups[width]
                if g.unfit:
                    name = sorted(g.unfit)[0]
                    raise DataError(f"index beyond the instance width {width} of {col}", feature=name)
                summaries.update(g.summaries)
            if n_bad:
                bad.records += n_bad
                bad.columns[col] = n_bad
                bad.request_ids += ids
        bad.request_ids = bad.request_ids[:MALFORMED_IDS_CAP]
        return summaries, bad


def column_specs(baseline: Baseline) -> dict[str, list[FeatureSpec]]:
    """The baseline's tested features grouped by tensor column (features without a column are not captured)."""
    out: dict[str, list[FeatureSpec]] = {}
    for bf in baseline.features:
        if bf.spec.column:
            out.setdefault(bf.spec.column, []).append(bf.spec)
    return out


def reduce_window(
    baseline: Baseline,
    batches: Iterable[pa.RecordBatch],
    *,
    reservoir: Reservoir | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> WindowPartial:
    """Count the features of ``batches`` into empty summaries with the baseline's bins, per instance width.

    Args:
        baseline: fixes the features, their tensor columns (read by name) and the bins.
        batches: record batches holding (some of) the baseline's tensor columns, and ``request_id`` (optional:
            names malformed records).
        reservoir: receives every feature's values (a bounded sample).
        on_batch: called with each batch's row count (progress).

    Returns:
        The partial of these rows.
    """
    by_col = column_specs(baseline)
    feats = {bf.spec.name: bf for bf in baseline.features}
    out = WindowPartial(reservoir=reservoir)
    for batch in batches:
        out.rows += batch.num_rows
        names = batch.schema.names
        ids = batch.column("request_id") if "request_id" in names else None
        for col, specs in by_col.items():
            if col not in names:
                continue
            column = batch.column(col)
            widths = instance_widths(column)
            cp = out.columns.get(col)
            for w in _distinct_widths(widths):
                if cp is None:
                    cp = out.columns[col] = ColumnPartial()
                mask = widths == w
                n = int(np.count_nonzero(mask))
                if w == BAD_ROW or (w not in cp.groups and len(cp.groups) >= MAX_WIDTHS):
                    cp.corrupt += n
                    cp.corrupt_ids = (cp.corrupt_ids + _ids(ids, mask, MALFORMED_IDS_CAP))[:MALFORMED_IDS_CAP]
                    continue
                g = cp.groups.setdefault(w, WidthGroup())
                g.records += n
                if len(g.ids) < MALFORMED_IDS_CAP:
                    g.ids += _ids(ids, mask, MALFORMED_IDS_CAP - len(g.ids))
                part = column if n == len(widths) else column.filter(pa.array(mask))
                _count(_instances(part, w), w, specs, feats, g, reservoir)
        if on_batch is not None:
            on_batch(batch.num_rows)
    return out


def _distinct_widths(widths: np.ndarray[Any, np.dtype[np.int64]]) -> list[int]:
    """The distinct widths of the rows that hold the column, ascending (one compare when every row has one)."""
    if widths.size and (widths == widths[0]).all():
        return [] if widths[0] == NULL_ROW else [int(widths[0])]
    return [int(w) for w in np.unique(widths[widths != NULL_ROW])]


def _instances(column: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray[Any, Any]:
    """The ``(instances, width)`` matrix of tensor rows that :func:`instance_widths` found all ``width`` wide and
    none null: the ``data`` values reshaped, a view of the Arrow buffer for a numeric datatype without null elements
    (:func:`infertap.logger.record.instances` for the rest)."""
    if isinstance(column, pa.StructArray) and width > 0:
        values = column.field("data").flatten()
        t = values.type
        if values.null_count == 0 and (pa.types.is_floating(t) or pa.types.is_integer(t)):
            return np.asarray(values.to_numpy()).reshape(-1, width)
    return record.instances(column)


def _count(
    mat: np.ndarray[Any, Any],
    width: int,
    specs: list[FeatureSpec],
    feats: Mapping[str, Any],
    g: WidthGroup,
    reservoir: Reservoir | None,
) -> None:
    fit = [s for s in specs if s.summary is not None or (s.index is not None and s.index < width)]
    g.unfit.update(s.name for s in specs if s not in fit)
    if mat.shape[0] == 0:
        return
    for spec in fit:
        if spec.name not in g.summaries:
            g.summaries[spec.name] = feats[spec.name].empty_summary()

    def count(spec: FeatureSpec) -> None:
        g.summaries[spec.name].add(extract(spec, mat))

    parallel_map(count, fit, big=mat.shape[0] >= 50_000)
    if reservoir is not None:
        for spec in fit:
            reservoir.add(spec.name, extract(spec, mat))


def _ids(ids: pa.ChunkedArray | pa.Array | None, mask: np.ndarray[Any, Any], cap: int) -> list[str]:
    if ids is None or cap <= 0:
        return []
    where = np.flatnonzero(mask)[:cap]
    return [str(v) for v in ids.take(pa.array(where)).to_pylist()]


def summaries_from_columns(baseline: Baseline, columns: Mapping[str, Any]) -> dict[str, Summary]:
    """Current summaries from in-memory values (feature name -> 1-D values), for tables and tests."""
    out: dict[str, Summary] = {bf.spec.name: bf.empty_summary() for bf in baseline.features if bf.spec.name in columns}

    def count(name: str) -> None:
        out[name].add(np.asarray(columns[name]))

    parallel_map(count, list(out), big=True)
    return out


@dataclass(slots=True)
class ArmPartial:
    """What a canary run keeps of one arm over some rows: exact counts, a sample per feature and of latencies.

    Attributes:
        counts: requests, errors (5xx or a transport error) and malformed records per tensor column (instances of
            another width than the column's, or data not filling the shape: skipped, counted).
        reservoir: at most ``k`` values per feature and of ``total_latency_s`` (key :data:`LATENCY`).
        widths: tensor column -> elements per instance: the commonest in the first batch that has the column.
    """

    counts: ArmCounts
    reservoir: Reservoir
    widths: dict[str, int] = field(default_factory=dict)

    def merge(self, other: ArmPartial) -> ArmPartial:
        """The partial of the rows of both (same arm)."""
        bad = dict(self.counts.malformed)
        for col, n in other.counts.malformed.items():
            bad[col] = bad.get(col, 0) + n
        c = ArmCounts(
            self.counts.requests + other.counts.requests,
            self.counts.errors + other.counts.errors,
            self.counts.value,
            bad,
        )
        return ArmPartial(c, self.reservoir.merge(other.reservoir), {**other.widths, **self.widths})


def canary_columns(group_by: str) -> list[str]:
    """The core columns a canary reduction reads, by name."""
    return [group_by, "status_code", "error", "total_latency_s"]


def reduce_arms(
    batches: Iterable[pa.RecordBatch],
    *,
    group_by: str,
    arms: Sequence[str],
    tensor_columns: Sequence[str],
    schema: pa.Schema,
    specs: Sequence[FeatureSpec] | None,
    sample_size: int,
    seed: int | Sequence[int] = 0,
) -> dict[str, ArmPartial]:
    """Split ``batches`` into arms by ``group_by`` and reduce each arm to an :class:`ArmPartial`.

    Args:
        batches: record batches with :func:`canary_columns` and ``tensor_columns``.
        arms: the values of ``group_by`` to keep (others are ignored).
        tensor_columns: tensor columns whose features are sampled.
        schema: the record schema (default features when ``specs`` is ``None``).
        specs: features to sample, or ``None`` for every element of every tensor column.
        sample_size: values kept per feature and arm.
        seed: base seed of the arms' reservoirs (arm ``i`` uses ``[*seed, i]``).

    Returns:
        Arm value -> partial (every arm present, possibly with zero requests).
    """
    base = [seed] if isinstance(seed, int) else list(seed)
    out = {a: ArmPartial(ArmCounts(value=a), Reservoir(sample_size, [*base, i + 1])) for i, a in enumerate(arms)}
    for batch in batches:
        groups = batch.column(group_by)
        for value, arm in out.items():
            part = batch.filter(pc.equal(groups, value))
            if part.num_rows == 0:
                continue
            arm.counts.requests += part.num_rows
            err = pc.or_(pc.greater_equal(part.column("status_code"), 500), pc.is_valid(part.column("error")))
            arm.counts.errors += int(pc.sum(err).as_py() or 0)
            lat = part.column("total_latency_s").to_numpy(zero_copy_only=False).astype(np.float64)
            arm.reservoir.add(LATENCY, lat)
            for col in tensor_columns:
                if col not in part.schema.names:
                    continue
                column = part.column(col)
                widths = instance_widths(column)
                seen = widths[widths >= 0]
                if seen.size == 0:
                    continue
                width = arm.widths.setdefault(col, int(np.bincount(seen).argmax()))  # the batch's commonest
                keep = widths == width
                bad = int(np.count_nonzero((widths != NULL_ROW) & ~keep))
                if bad:  # instances of another width, or data not filling its shape: skipped, counted
                    arm.counts.malformed[col] = arm.counts.malformed.get(col, 0) + bad
                mat = record.instances(column if bad == 0 and seen.size == len(widths) else column.filter(keep))
                if mat.shape[0] == 0:
                    continue
                for spec in _specs_for(col, specs, width, schema):
                    arm.reservoir.add(spec.name, np.asarray(extract(spec, mat)))
    return out


def _specs_for(col: str, specs: Sequence[FeatureSpec] | None, width: int, schema: pa.Schema) -> list[FeatureSpec]:
    if specs is not None:
        return [s for s in specs if s.column == col]
    return [s for s in specs_from_schema(schema, {col: width}) if s.column == col]
