"""A coarse histogram of a feature's reference and current summaries, for verdicts and reports.

Numeric features: at most ``buckets`` intervals whose bounds are baseline edges picked evenly by edge index (so,
for quantile edges, buckets of about equal reference mass), plus one bucket below the first bound and one above
the last. Each bucket's count is exact: the summaries count every edge as a point bin, so the mass up to and
including an edge is a prefix sum of the bin counts. Categorical features: the ``buckets`` categories most
frequent on both sides together, and the rest as ``"(other)"``. Shares are of the finite (numeric) or
non-missing (categorical) values of each side.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from infertap.drift.summary import CategoricalSummary, NumericSummary, Summary, category_key


def histogram(ref: Summary, cur: Summary, buckets: int = 20) -> dict[str, Any]:
    """``{"labels": [str], "reference": [share], "current": [share]}``: equal-length lists, shares in [0, 1].

    Raises:
        TypeError: the summaries are not of one kind.
    """
    if isinstance(ref, NumericSummary) and isinstance(cur, NumericSummary):
        return _numeric(ref, cur, buckets)
    if isinstance(ref, CategoricalSummary) and isinstance(cur, CategoricalSummary):
        return _categorical(ref, cur, buckets)
    raise TypeError(f"cannot compare {type(ref).__name__} with {type(cur).__name__}")


def _shares(counts: np.ndarray[Any, Any]) -> list[float]:
    total = counts.sum()
    return [float(v) for v in (counts / total if total else counts.astype(np.float64))]


def _numeric(ref: NumericSummary, cur: NumericSummary, buckets: int) -> dict[str, Any]:
    k = ref.edges.size
    pick = np.unique(np.linspace(0, k - 1, min(buckets + 1, k)).round().astype(np.intp))
    bounds = ref.edges[pick]
    out: dict[str, Any] = {"labels": [f"<= {bounds[0]:.4g}"]}
    out["labels"] += [f"({a:.4g}, {b:.4g}]" for a, b in itertools.pairwise(bounds)]
    out["labels"].append(f"> {bounds[-1]:.4g}")
    for side, s in (("reference", ref), ("current", cur)):
        cum = np.cumsum(s.counts)
        upto = cum[2 * pick + 1]  # values <= each picked edge
        counts = np.diff(np.concatenate([[0], upto, [cum[-1]]]))
        out[side] = _shares(counts)
    return out


def _categorical(ref: CategoricalSummary, cur: CategoricalSummary, buckets: int) -> dict[str, Any]:
    both: dict[str, int] = dict(ref.counts)
    for key, c in cur.counts.items():
        both[key] = both.get(key, 0) + c
    top = sorted(both, key=lambda key: (-both[key], key))[:buckets]
    rest = len(both) > len(top)
    out: dict[str, Any] = {"labels": [category_key(t) for t in top] + (["(other)"] if rest else [])}
    for side, s in (("reference", ref), ("current", cur)):
        counts = [s.counts.get(t, 0) for t in top]
        if rest:
            counts.append(s.n - sum(counts))
        out[side] = _shares(np.asarray(counts, np.int64))
    return out
