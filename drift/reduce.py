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
from infertap.drift.features import FeatureSpec, batch_matrices, extract, specs_from_schema
from infertap.drift.parallel import parallel_map
from infertap.drift.summary import CategoricalSummary, NumericSummary, Reservoir, Summary
from infertap.drift.verdict import ArmCounts

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


@dataclass(slots=True)
class WindowPartial:
    """What a drift run keeps of some rows: per-feature summaries in the baseline's bins, rows read, a sample.

    Attributes:
        summaries: feature name -> summary; features whose column had no value are absent.
        rows: records read (after the window's filters).
        reservoir: optional bounded sample of feature values (reports).
    """

    summaries: dict[str, Summary] = field(default_factory=dict)
    rows: int = 0
    reservoir: Reservoir | None = None

    def merge(self, other: WindowPartial) -> WindowPartial:
        """The partial of the rows of both (associative and commutative up to float rounding of sums/moments)."""
        res = self.reservoir
        if res is None:
            res = other.reservoir
        elif other.reservoir is not None:
            res = res.merge(other.reservoir)
        return WindowPartial(merge_summaries(self.summaries, other.summaries), self.rows + other.rows, res)


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
    """Count the features of ``batches`` into empty summaries with the baseline's bins.

    Args:
        baseline: fixes the features, their tensor columns (read by name) and the bins.
        batches: record batches holding (some of) the baseline's tensor columns.
        reservoir: receives every feature's values (a bounded sample).
        on_batch: called with each batch's row count (progress).

    Returns:
        The partial of these rows.

    Raises:
        SchemaError: a tensor column whose rows disagree on the instance shape.
        DataError: a feature index beyond the instance width.
    """
    by_col = column_specs(baseline)
    edges = {bf.spec.name: bf for bf in baseline.features}
    summaries: dict[str, Summary] = {}
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for col, mat in batch_matrices(batch, by_col).items():
            if mat.shape[0] == 0:
                continue
            specs = by_col[col]
            for spec in specs:
                if spec.name not in summaries:
                    summaries[spec.name] = edges[spec.name].empty_summary()

            def count(spec: FeatureSpec, mat: np.ndarray[Any, Any] = mat) -> None:
                summaries[spec.name].add(extract(spec, mat))

            parallel_map(count, specs, big=mat.shape[0] >= 50_000)
            if reservoir is not None:
                for spec in specs:
                    reservoir.add(spec.name, extract(spec, mat))
        if on_batch is not None:
            on_batch(batch.num_rows)
    return WindowPartial(summaries, rows, reservoir)


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
        counts: requests and errors (5xx or a transport error).
        reservoir: at most ``k`` values per feature and of ``total_latency_s`` (key :data:`LATENCY`).
        widths: tensor column -> elements per instance, as first seen.
    """

    counts: ArmCounts
    reservoir: Reservoir
    widths: dict[str, int] = field(default_factory=dict)

    def merge(self, other: ArmPartial) -> ArmPartial:
        """The partial of the rows of both (same arm)."""
        c = ArmCounts(
            self.counts.requests + other.counts.requests, self.counts.errors + other.counts.errors, self.counts.value
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
            for col, mat in batch_matrices(part, tensor_columns).items():
                if mat.shape[0] == 0:
                    continue
                arm.widths.setdefault(col, mat.shape[1])
                for spec in _specs_for(col, specs, arm.widths[col], schema):
                    arm.reservoir.add(spec.name, np.asarray(extract(spec, mat)))
    return out


def _specs_for(col: str, specs: Sequence[FeatureSpec] | None, width: int, schema: pa.Schema) -> list[FeatureSpec]:
    if specs is not None:
        return [s for s in specs if s.column == col]
    return [s for s in specs_from_schema(schema, {col: width}) if s.column == col]
