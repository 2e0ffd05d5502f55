"""Mergeable per-feature summaries: counts in bins fixed by the baseline, category counts, moments.

A window, a pod's share of it, or a Parquet partition is reduced to one :class:`NumericSummary` or
:class:`CategoricalSummary` per feature; summaries of the same feature merge by adding counts
(:meth:`NumericSummary.merge` is associative and commutative), so the drift job streams over data larger than
memory and could run on a distributed engine.

Numeric bin layout. The baseline fixes ``k`` sorted, distinct edges ``e_0 < ... < e_{k-1}`` (float64). They make
``2k + 1`` bins: bin ``2i`` is the open interval ``(e_{i-1}, e_i)`` (bin 0 is ``(-inf, e_0)``, bin ``2k`` is
``(e_{k-1}, +inf)``) and bin ``2i + 1`` is the single point ``{e_i}``. Edges are values of the reference data (all
of its distinct values when there are few, else its quantiles) plus tail edges beyond its range, so:

- both ECDFs are known exactly at every edge, and when the reference has no mass inside intervals (it had few
  distinct values) the Kolmogorov-Smirnov statistic from bins is exact; otherwise its error is at most the largest
  ``min(reference mass, current mass)`` of an interval bin (:func:`infertap.drift.stats.ks`, ``resolution``);
- each bin also keeps the sum of its values, so the Wasserstein distance is computed with every bin's mass at the
  bin's mean (exact for point bins);
- values in interval bins are tracked exactly while there are few distinct ones (``NEW_VALUES_CAP``), so value
  counts -- what chi-squared, Z and the Evidently selection rules need -- are exact for few-valued features.

NaN and +-inf are counted (``n_nan``, ``n_inf``) and left out of bins and moments, as Evidently drops them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from infertap.drift.errors import DataError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Most distinct values of a numeric feature tracked exactly outside the baseline's point bins.
NEW_VALUES_CAP = 64
#: Most categories counted for a categorical feature; further categories go to :data:`OTHER`.
CATEGORIES_CAP = 10_000
#: The bucket of categories past :data:`CATEGORIES_CAP`.
OTHER = "\x00other"


@dataclass(slots=True)
class NumericSummary:
    """Mergeable summary of one numeric feature over some rows.

    Attributes:
        edges: ``(k,)`` float64, sorted and distinct, shared with the baseline (not copied on merge).
        counts: ``(2k+1,)`` int64, values per bin (layout in the module docstring).
        sums: ``(2k+1,)`` float64, sum of the values per bin.
        n_nan: NaN values seen (not in ``counts``).
        n_inf: +-inf values seen (not in ``counts``).
        mean: mean of the finite values (0.0 when none).
        m2: sum of squared deviations from ``mean`` (Chan's parallel update on merge).
        min: smallest finite value (+inf when none).
        max: largest finite value (-inf when none).
        new_values: exact counts of values that fell in interval bins, or ``None`` once more than
            :data:`NEW_VALUES_CAP` distinct ones were seen.
    """

    edges: F64
    counts: I64
    sums: F64
    n_nan: int = 0
    n_inf: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    new_values: dict[float, int] | None = field(default_factory=dict)

    @classmethod
    def empty(cls, edges: F64) -> NumericSummary:
        """An empty summary over ``edges`` (``(k,)`` float64, sorted, distinct, k >= 1)."""
        nb = 2 * len(edges) + 1
        return cls(edges, np.zeros(nb, np.int64), np.zeros(nb, np.float64))

    @property
    def n(self) -> int:
        """Number of finite values."""
        return int(self.counts.sum())

    @property
    def std(self) -> float:
        """Population standard deviation (``ddof=0``, as ``np.std``) of the finite values."""
        n = self.n
        return float(np.sqrt(self.m2 / n)) if n else 0.0

    def add(self, values: npt.ArrayLike) -> None:
        """Count ``values`` (any shape, converted to float64; NaN and +-inf are counted apart) into the bins.

        Each value's bin comes from :func:`bin_index` (no sort: a few vectorised passes over the values), counts and
        sums from ``np.bincount``. The moments are computed in the values' own order, so they do not depend on how
        the data was split.

        Raises:
            DataError: ``values`` are not numeric.
        """
        try:
            x = np.asarray(values, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise DataError(f"numeric feature got non-numeric values: {exc}") from None
        finite = np.isfinite(x)
        if not finite.all():
            bad = x[~finite]
            nan = int(np.isnan(bad).sum())
            self.n_nan += nan
            self.n_inf += int(bad.size - nan)
            x = x[finite]
        if x.size == 0:
            return
        self._add_moments(x)
        b = bin_index(self.edges, x)
        cnt = np.bincount(b, minlength=self.counts.size)
        self.counts += cnt
        self.sums += np.bincount(b, weights=x, minlength=self.counts.size)
        if self.new_values is not None:
            self._track_new(x, cnt, b)
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    def _add_sorted(self, xs: F64) -> None:
        """Count finite values sorted ascending into the bins (counts, sums, exact interval values)."""
        k = self.edges.size
        nb = 2 * k + 1
        bounds = np.empty(nb + 1, np.intp)
        bounds[0], bounds[-1] = 0, xs.size
        bounds[1:-1:2] = np.searchsorted(xs, self.edges, side="left")
        bounds[2:-1:2] = np.searchsorted(xs, self.edges, side="right")
        cnt = np.diff(bounds)
        self.counts += cnt
        busy = np.flatnonzero(cnt)
        self.sums[busy] += np.add.reduceat(xs, bounds[busy])  # each non-empty bin is a run of xs: one pass
        if self.new_values is not None:
            self._track_new(xs, cnt, None)
        self.min = min(self.min, float(xs[0]))
        self.max = max(self.max, float(xs[-1]))

    def _add_moments(self, x: F64) -> None:
        nb = x.size
        mb = float(x.mean())
        d = x - mb
        # not np.dot: a BLAS call, whose threads spin-wait for each other on a busy machine (20 ms for 65k values)
        np.multiply(d, d, out=d)
        m2b = float(d.sum())
        na = self.n  # counts do not include the new values yet
        if na == 0:
            self.mean, self.m2 = mb, m2b
            return
        n = na + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * na * nb / n

    def _track_new(self, x: F64, cnt: I64, b: npt.NDArray[np.intp] | None) -> None:
        """Exact counts of the values that fell in interval bins, while there are few distinct ones.

        ``b`` is the bin of each value of ``x``, or ``None`` when ``x`` is sorted (bins are then runs)."""
        assert self.new_values is not None
        busy = int(np.count_nonzero(cnt[0::2]))
        if busy == 0:
            return
        if busy > NEW_VALUES_CAP:  # each non-empty interval bin holds at least one distinct value
            self.new_values = None
            return
        if b is None:
            b = np.repeat(np.arange(cnt.size, dtype=np.intp), cnt)
        iv = np.sort(x[(b & 1) == 0])
        starts = np.flatnonzero(np.concatenate([[True], iv[1:] != iv[:-1]]))
        if starts.size > NEW_VALUES_CAP:
            self.new_values = None
            return
        counts = np.diff(np.append(starts, iv.size))
        for v, c in zip(iv[starts].tolist(), counts.tolist(), strict=True):
            self.new_values[v] = self.new_values.get(v, 0) + c
        if len(self.new_values) > NEW_VALUES_CAP:
            self.new_values = None

    def merge(self, other: NumericSummary) -> NumericSummary:
        """A new summary of the rows of both ``self`` and ``other``.

        Raises:
            DataError: the two summaries have different edges (built from different baselines).
        """
        if self.edges is not other.edges and not np.array_equal(self.edges, other.edges):
            raise DataError("cannot merge numeric summaries with different bin edges")
        out = NumericSummary(
            self.edges,
            self.counts + other.counts,
            self.sums + other.sums,
            self.n_nan + other.n_nan,
            self.n_inf + other.n_inf,
            self.mean,
            self.m2,
            min(self.min, other.min),
            max(self.max, other.max),
            None,
        )
        na, nb = self.n, other.n
        if na == 0:
            out.mean, out.m2 = other.mean, other.m2
        elif nb:
            n = na + nb
            delta = other.mean - self.mean
            out.mean = self.mean + delta * nb / n
            out.m2 = self.m2 + other.m2 + delta * delta * na * nb / n
        if self.new_values is not None and other.new_values is not None:
            merged = dict(self.new_values)
            for v, c in other.new_values.items():
                merged[v] = merged.get(v, 0) + c
            out.new_values = merged if len(merged) <= NEW_VALUES_CAP else None
        return out

    def value_counts(self) -> dict[float, int] | None:
        """Exact counts per distinct finite value, or ``None`` when too many distinct values fell between edges."""
        if self.new_values is None:
            return None
        out = dict(self.new_values)
        pts = self.counts[1::2]
        for i in np.flatnonzero(pts).tolist():
            v = float(self.edges[i])
            out[v] = out.get(v, 0) + int(pts[i])
        return out

    def representatives(self) -> tuple[F64, I64]:
        """Non-empty bins as ``(values, counts)``: each bin's mean value (the edge for point bins) and count."""
        nz = np.flatnonzero(self.counts)
        cnt = self.counts[nz]
        return self.sums[nz] / cnt, cnt

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (edges are not included; they belong to the baseline)."""
        nv = None if self.new_values is None else [[v, c] for v, c in sorted(self.new_values.items())]
        return {
            "counts": self.counts.tolist(),
            "sums": self.sums.tolist(),
            "n_nan": self.n_nan,
            "n_inf": self.n_inf,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min if self.n else None,
            "max": self.max if self.n else None,
            "new_values": nv,
        }

    @classmethod
    def from_json(cls, edges: F64, doc: dict[str, Any]) -> NumericSummary:
        """Inverse of :meth:`to_json` given the baseline's ``edges``.

        Raises:
            DataError: array lengths do not match ``edges``.
        """
        counts = np.asarray(doc["counts"], np.int64)
        sums = np.asarray(doc["sums"], np.float64)
        if counts.shape != (2 * len(edges) + 1,) or sums.shape != counts.shape:
            raise DataError(f"summary has {counts.size} bins, edges need {2 * len(edges) + 1}")
        nv = doc.get("new_values")
        return cls(
            edges,
            counts,
            sums,
            int(doc["n_nan"]),
            int(doc["n_inf"]),
            float(doc["mean"]),
            float(doc["m2"]),
            float("inf") if doc["min"] is None else float(doc["min"]),
            float("-inf") if doc["max"] is None else float(doc["max"]),
            None if nv is None else {float(v): int(c) for v, c in nv},
        )


@dataclass(slots=True)
class CategoricalSummary:
    """Mergeable summary of one categorical feature: counts per category (categories as ``str``).

    Attributes:
        counts: category -> count; at most :data:`CATEGORIES_CAP` categories, later ones counted under
            :data:`OTHER`.
        n_missing: null / NaN values seen (not in ``counts``).
    """

    counts: dict[str, int] = field(default_factory=dict)
    n_missing: int = 0

    @property
    def n(self) -> int:
        """Number of non-missing values."""
        return sum(self.counts.values())

    def add(self, values: npt.ArrayLike) -> None:
        """Count ``values`` (any 1-D array-like; ``None`` / NaN are missing; bytes are decoded as UTF-8)."""
        arr = np.asarray(values, dtype=object).ravel()
        keys: list[str] = []
        for v in arr.tolist():
            if v is None or (isinstance(v, float) and v != v):
                self.n_missing += 1
            elif isinstance(v, bytes):
                keys.append(v.decode("utf-8", "replace"))
            else:
                keys.append(category_key(v))
        for k, c in Counter(keys).items():
            self._bump(k, c)

    def _bump(self, key: str, c: int) -> None:
        if key not in self.counts and len(self.counts) >= CATEGORIES_CAP:
            key = OTHER
        self.counts[key] = self.counts.get(key, 0) + c

    def merge(self, other: CategoricalSummary) -> CategoricalSummary:
        """A new summary of the rows of both."""
        out = CategoricalSummary(dict(self.counts), self.n_missing + other.n_missing)
        for k, c in other.counts.items():
            out._bump(k, c)
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"counts": dict(sorted(self.counts.items())), "n_missing": self.n_missing}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CategoricalSummary:
        """Inverse of :meth:`to_json`."""
        return cls({str(k): int(v) for k, v in doc["counts"].items()}, int(doc["n_missing"]))


def category_key(v: object) -> str:
    """The string key of a category value: integers and integral floats print without a fraction (``1.0`` ->
    ``"1"``) so that the same category read from CSV, Parquet or a tensor gets one key."""
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


Summary = NumericSummary | CategoricalSummary


def bin_index(edges: F64, x: F64) -> npt.NDArray[np.intp]:
    """The bin of every value in the layout of the module docstring: ``2i`` for the interval below edge ``i``,
    ``2i + 1`` for the point ``edges[i]``.

    Equal to ``2 * np.searchsorted(edges, x) + (x == edges[that index])``, without a binary search per value: a
    uniform grid over the middle edges maps each value to a cell by arithmetic, the cell's first edge comes from a
    table, and a vectorised walk of a step or two over the edges inside the cell finishes the search (a value
    below ``edges[i]`` in the cell of ``edges[i]`` needs no step); values the walk leaves unfinished (in crowded
    cells, or beyond the grid) get ``np.searchsorted``. Exact: the cell of a value is a non-decreasing function of
    it computed the same way for edges and values, so every edge of an earlier cell is below the value and every
    edge of a later cell above it.

    Args:
        edges: ``(k,)`` float64, sorted and distinct, ``k >= 1``.
        x: ``(n,)`` finite float64 values.

    Returns:
        ``(n,)`` bin indices in ``[0, 2k]``.
    """
    g = _grid(edges)
    idx = g.first[g.cell(x)]
    for _ in range(g.steps):
        np.add(idx, g.edges_inf[idx] < x, out=idx)  # never past k: edges_inf[k] is +inf
    at = g.edges_inf[idx]
    left = np.flatnonzero(at < x)
    if left.size:
        idx[left] = np.searchsorted(edges, x[left], side="left")
        at[left] = g.edges_inf[idx[left]]
    idx *= 2
    np.add(idx, at == x, out=idx)
    return idx


@dataclass(frozen=True, slots=True)
class _Grid:
    """:func:`bin_index`'s lookup structure for one edges array: ``cells`` equal cells from ``lo`` (values below
    and above the grid are clamped into the end cells), ``first[c]`` = edges in cells before ``c``."""

    edges_inf: F64
    lo: float
    scale: float
    cells: int
    first: npt.NDArray[np.intp]
    steps: int

    def cell(self, x: F64) -> npt.NDArray[np.intp]:
        """The cell of every value: ``clip(floor((x - lo) * scale), 0, cells - 1)``, non-decreasing in ``x``."""
        with np.errstate(over="ignore"):  # a value far beyond the grid becomes +-inf, clamped below
            t = np.subtract(x, self.lo)
            np.multiply(t, self.scale, out=t)
        np.clip(t, 0, self.cells - 1, out=t)
        return t.astype(np.intp)


_GRIDS: dict[int, tuple[F64, _Grid]] = {}
#: Most walk steps :func:`bin_index` takes before leaving a value to ``np.searchsorted``.
_MAX_STEPS = 3


def _grid(edges: F64) -> _Grid:
    """The grid of ``edges``, made once per edges array (a baseline's features keep theirs for the whole run)."""
    hit = _GRIDS.get(id(edges))
    if hit is not None and hit[0] is edges:
        return hit[1]
    k = edges.size
    cut = k // 32  # the grid spans the middle edges: tail edges far out would leave the rest crowded in few cells
    lo, hi = float(edges[cut]), float(edges[k - 1 - cut])
    cells = min(max(4 * k, 64), 1 << 16)
    scale = cells / (hi - lo) if hi > lo else 0.0
    if not np.isfinite(scale):
        scale = 0.0
    g = _Grid(np.append(edges, np.inf), lo, scale, cells, np.empty(0, np.intp), 0)
    first = np.searchsorted(g.cell(edges), np.arange(cells + 1), side="left").astype(np.intp)
    spans = np.diff(first)[1:-1] if cells > 2 else np.diff(first)
    steps = int(min(_MAX_STEPS, max(1, int(spans.max()) if spans.size else 1)))
    g = _Grid(g.edges_inf, lo, scale, cells, first, steps)
    if len(_GRIDS) >= 4096:
        _GRIDS.clear()
    _GRIDS[id(edges)] = (edges, g)
    return g


def make_edges(values: F64, *, max_exact: int = 2000, quantile_bins: int = 1000) -> tuple[F64, bool]:
    """Bin edges for a numeric feature from its reference values.

    Args:
        values: finite reference values, any shape (flattened), converted to float64; non-empty.
        max_exact: when the reference has at most this many distinct values every one of them is an edge.
        quantile_bins: otherwise, ``quantile_bins + 1`` quantiles of the reference (``method="inverted_cdf"``:
            each is a reference value) are the edges.

    Returns:
        ``(edges, exact)``: ``edges`` ``(k,)`` float64, sorted and distinct; ``exact`` is true when every distinct
        reference value is an edge (the reference then has no mass inside interval bins, so KS and value counts
        are exact). Tail edges at ``min - s*std`` and ``max + s*std`` for s in {0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30,
        100} (``std``: ``np.std`` of the values) are added so that values beyond the reference range keep some
        resolution for the Wasserstein distance.

    Raises:
        DataError: ``values`` is empty or not finite.
    """
    x = _finite_reference(values)
    return _edges_of_sorted(np.sort(x), float(np.std(x)), max_exact, quantile_bins)


def reference_summary(
    values: F64, *, max_exact: int = 2000, quantile_bins: int = 1000
) -> tuple[NumericSummary, bool, F64]:
    """The edges of :func:`make_edges` and the summary of the same values in them, sorting the values once.

    Equal to ``s = NumericSummary.empty(make_edges(values)[0]); s.add(values)`` (same counts, edges and moments;
    sums equal up to rounding), about three times faster on large references.

    Args:
        values: finite reference values, any shape (flattened), converted to float64; non-empty.
        max_exact / quantile_bins: as for :func:`make_edges`.

    Returns:
        ``(summary, exact, sorted_values)``: the summary, :func:`make_edges`'s ``exact`` flag, and the values
        sorted ascending (``(n,)`` float64, for quantiles).

    Raises:
        DataError: ``values`` is empty or not finite.
    """
    x = _finite_reference(values)
    std = float(np.std(x))
    s = NumericSummary.empty(np.zeros(1))
    s._add_moments(x)  # before sorting: the moments of the values in their own order, as add() computes them
    if isinstance(values, np.ndarray) and np.may_share_memory(x, values):
        xs = np.sort(x)
    else:  # x is our own copy: sort it in place
        x.sort()
        xs = x
    s.edges, exact = _edges_of_sorted(xs, std, max_exact, quantile_bins)
    s.counts = np.zeros(2 * s.edges.size + 1, np.int64)
    s.sums = np.zeros(2 * s.edges.size + 1, np.float64)
    s._add_sorted(xs)
    return s, exact, xs


def _finite_reference(values: npt.ArrayLike) -> F64:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise DataError("cannot build bins from no values")
    if not np.isfinite(x).all():
        raise DataError("cannot build bins from non-finite values")
    return x


def _edges_of_sorted(xs: F64, std: float, max_exact: int, quantile_bins: int) -> tuple[F64, bool]:
    distinct = np.empty(xs.size, dtype=bool)
    distinct[0] = True
    np.not_equal(xs[1:], xs[:-1], out=distinct[1:])
    n_unique = int(np.count_nonzero(distinct))
    exact = n_unique <= max_exact
    if exact:
        core = xs[distinct]
    else:
        # inverted_cdf quantiles of the sorted values: the smallest value with ECDF >= q
        pos = np.ceil(np.linspace(0.0, 1.0, quantile_bins + 1) * xs.size).astype(np.int64) - 1
        core = np.unique(xs[np.clip(pos, 0, xs.size - 1)])
    lo, hi = float(xs[0]), float(xs[-1])
    scale = std or max(abs(lo), abs(hi), 1.0)
    steps = np.array([0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]) * scale
    tails = np.concatenate([lo - steps[::-1], hi + steps])
    edges = np.unique(np.concatenate([core, [lo, hi], tails[np.isfinite(tails)]]))
    return edges.astype(np.float64), exact


class Reservoir:
    """A uniform random sample of at most ``k`` values per key, mergeable (bottom-k of random priorities).

    Every offered value gets a uniform random priority in ``[0, 1)``; the reservoir keeps the ``k`` values of
    smallest priority per key. The union of two reservoirs cut back to the ``k`` smallest priorities is a uniform
    sample of the union of their rows (the bottom-k sketch of Cohen and Kaplan, "Summarizing data using bottom-k
    sketches", PODC 2007), so reservoirs of files, partitions or pods merge like the summaries do.

    Attributes:
        k: most values kept per key (``0`` keeps none).
        priorities: key -> ``(m,)`` float64 priorities of the kept values (``m <= k``).
        values: key -> ``(m,)`` kept values (any dtype), aligned with ``priorities``.
    """

    __slots__ = ("k", "priorities", "rng", "values")

    def __init__(self, k: int, seed: int | Sequence[int] = 0) -> None:
        self.k = k
        self.rng = np.random.default_rng(seed)
        self.priorities: dict[str, F64] = {}
        self.values: dict[str, np.ndarray[Any, Any]] = {}

    def add(self, name: str, values: np.ndarray[Any, Any]) -> None:
        """Offer ``values`` (1-D, any dtype) for key ``name``."""
        if self.k <= 0 or values.size == 0:
            return
        self._keep(name, self.rng.random(values.size), values)

    def _keep(self, name: str, pri: F64, values: np.ndarray[Any, Any]) -> None:
        if name in self.priorities:
            pri = np.concatenate([self.priorities[name], pri])
            values = np.concatenate([self.values[name], values])
        if pri.size > self.k:
            keep = np.argpartition(pri, self.k - 1)[: self.k]
            pri, values = pri[keep], values[keep]
        self.priorities[name], self.values[name] = pri, values

    def merge(self, other: Reservoir) -> Reservoir:
        """A new reservoir holding a uniform sample of the rows of both (``k`` of ``self``); inputs unchanged."""
        out = Reservoir(self.k, 0)
        out.rng = self.rng
        out.priorities, out.values = dict(self.priorities), dict(self.values)
        for name, pri in other.priorities.items():
            out._keep(name, pri, other.values[name])
        return out

    def get(self, name: str) -> np.ndarray[Any, Any]:
        """The sample of ``name``: ``(m,)`` values, ``m <= k`` (empty float64 when none)."""
        return self.values.get(name, np.empty(0))
