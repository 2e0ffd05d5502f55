"""Drift statistics computed from mergeable summaries, with the tests themselves from scipy.

Each function compares a reference summary with a current one and returns a :class:`TestResult`. The
definitions follow Evidently 0.7's legacy stattests (``evidently/legacy/calculations/stattests``) so that verdicts
agree with its ``DataDriftPreset``:

=================  ======================================================  =================  ===============
test               statistic / score                                        drift when         default thr.
=================  ======================================================  =================  ===============
``ks``             two-sample KS ``D``; score = p-value (``ks_2samp``)      p <= threshold     0.05
``chisquare``      Pearson chi-squared of current vs scaled reference;      p < threshold      0.05
                   score = p-value (``scipy.stats.chisquare``)
``z``              two-proportion Z of the first (sorted) category;         p < threshold      0.05
                   score = two-sided p-value (``scipy.stats.norm``)
``wasserstein``    ``wasserstein_distance / max(std_ref, 0.001)``           score >= threshold 0.1
``jensenshannon``  Jensen-Shannon distance (natural log) of the binned      score >= threshold 0.1
                   shares (``scipy.spatial.distance.jensenshannon``)
``psi``            population stability index of the binned shares          score >= threshold 0.1
=================  ======================================================  =================  ===============

For numeric features, JS and PSI bin like Evidently: by value when the reference has at most 20 distinct values,
else into Sturges bins over the combined range (here each fine baseline bin's mass is placed at its mean value).

scipy is imported by the tests that use it, when they run: importing ``scipy.stats`` costs a command-line run
more than counting a million rows, and the default test of large references (Wasserstein) needs none of it
(:func:`wasserstein_1`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infertap.drift.errors import DataError, EmptyWindowError
from infertap.drift.summary import CategoricalSummary, NumericSummary, Summary

P_VALUE_TESTS = frozenset({"ks", "chisquare", "z"})
DISTANCE_TESTS = frozenset({"wasserstein", "jensenshannon", "psi"})
ALL_TESTS = P_VALUE_TESTS | DISTANCE_TESTS
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
    "psi": 0.1,
}
_KS_EXACT_MAX_N = 10_000  # scipy.stats.ks_2samp(method="auto") is exact up to this sample size


@dataclass(slots=True)
class TestResult:
    """One test of one feature.

    Attributes:
        test: test name (see the module table).
        score: the number compared with ``threshold``: the p-value of p-value tests, else the distance.
        statistic: the test statistic (KS ``D``, chi-squared, Z, or the distance again).
        threshold: the threshold applied.
        drifted: the decision (see :func:`decide`).
        n_reference: finite reference values used.
        n_current: finite current values used.
        resolution: upper bound on the error of ``statistic`` due to binning (KS only), else ``None``.
        detail: test-specific extras (degrees of freedom, categories, locations).
    """

    __test__ = False  # not a pytest class

    test: str
    score: float
    statistic: float
    threshold: float
    drifted: bool
    n_reference: int
    n_current: int
    resolution: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def is_pvalue(self) -> bool:
        """Whether ``score`` is a p-value (smaller means more drift)."""
        return self.test in P_VALUE_TESTS


def decide(test: str, score: float, threshold: float) -> bool:
    """Evidently's decision rule: ``ks`` p <= thr; ``chisquare``/``z`` p < thr; distances >= thr; NaN: no drift."""
    if math.isnan(score):
        return False
    if test == "ks":
        return score <= threshold
    if test in P_VALUE_TESTS:
        return score < threshold
    return score >= threshold


def _sizes(ref: Summary, cur: Summary) -> tuple[int, int]:
    n1, n2 = ref.n, cur.n
    if n1 == 0:
        raise EmptyWindowError("reference has no finite values")
    if n2 == 0:
        raise EmptyWindowError("current window has no finite values")
    return n1, n2


def ks(ref: NumericSummary, cur: NumericSummary, threshold: float = 0.05) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test from bin counts (two-sided).

    ``D`` is the largest ECDF difference at bin ends; exact when the reference has no mass inside interval bins,
    else within ``resolution``. The p-value is scipy's ``ks_2samp(method="auto")`` for the same ``D`` and sizes:
    exact for sizes <= 10,000 (computed by ``ks_2samp`` on two two-valued samples realising ``D``), else
    ``scipy.stats.kstwo.sf(D, round(n1*n2/(n1+n2)))``.

    Raises:
        EmptyWindowError: either side has no finite values.
        DataError: the summaries have different edges.
    """
    if ref.counts.shape != cur.counts.shape:
        raise DataError("reference and current summaries have different bins")
    n1, n2 = _sizes(ref, cur)
    cr = np.cumsum(ref.counts)
    cc = np.cumsum(cur.counts)
    diff = cr / n1 - cc / n2
    imax, imin = int(np.argmax(diff)), int(np.argmin(diff))
    max_s, min_s = float(diff[imax]), float(np.clip(-diff[imin], 0, 1))
    i = imin if min_s > max_s else imax
    d = max(min_s, max_s)
    a, b = int(cr[i]), int(cc[i])
    resolution = float(np.max(np.minimum(ref.counts[0::2] / n1, cur.counts[0::2] / n2)))
    p = ks_pvalue(a, b, n1, n2)
    return TestResult("ks", p, d, threshold, decide("ks", p, threshold), n1, n2, resolution)


def ks_pvalue(a: int, b: int, n1: int, n2: int) -> float:
    """p-value of scipy's two-sided ``ks_2samp(method="auto")`` for ``D = |a/n1 - b/n2|``.

    ``a`` (``b``) is the number of reference (current) values at or below the point where ``D`` is attained.
    """
    from scipy import stats as sst

    if max(n1, n2) <= _KS_EXACT_MAX_N:
        x = np.repeat(np.array([0.0, 1.0]), [a, n1 - a])
        y = np.repeat(np.array([0.0, 1.0]), [b, n2 - b])
        return float(sst.ks_2samp(x, y).pvalue)
    d = abs(a / n1 - b / n2)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(sst.kstwo.sf(d, np.round(en)), 0, 1))


def chisquare(ref: Mapping[Any, int], cur: Mapping[Any, int], threshold: float = 0.05) -> TestResult:
    """Pearson chi-squared of the current category counts against the reference ones scaled to the current size.

    Categories are the union of both sides; a category absent from the reference has expectation 0, so the
    statistic is infinite and p = 0, as in Evidently.

    Raises:
        EmptyWindowError: either side has no values.
    """
    n1, n2 = sum(ref.values()), sum(cur.values())
    if n1 == 0 or n2 == 0:
        raise EmptyWindowError("chi-squared needs values on both sides")
    from scipy import stats as sst

    keys = list(set(ref) | set(cur))
    k = n2 / n1
    f_exp = np.array([ref.get(key, 0) * k for key in keys], dtype=np.float64)
    f_obs = np.array([cur.get(key, 0) for key in keys], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = sst.chisquare(f_obs, f_exp)
    p, stat = float(res.pvalue), float(res.statistic)
    detail = {"categories": len(keys), "dof": len(keys) - 1}
    return TestResult("chisquare", p, stat, threshold, decide("chisquare", p, threshold), n1, n2, None, detail)


def z_proportions(ref: Mapping[Any, int], cur: Mapping[Any, int], threshold: float = 0.05) -> TestResult:
    """Two-proportion Z-test on the share of values not equal to the first (sorted) category, two-sided.

    p = 1 when both sides hold the same single category; p is NaN (no drift) when the pooled share is 0 or 1.

    Raises:
        EmptyWindowError: either side has no values.
    """
    n1, n2 = sum(ref.values()), sum(cur.values())
    if n1 == 0 or n2 == 0:
        raise EmptyWindowError("Z-test needs values on both sides")
    rk = [k for k, v in ref.items() if v]
    ck = [k for k, v in cur.items() if v]
    if len(rk) == 1 and len(ck) == 1 and rk[0] == ck[0]:
        return TestResult("z", 1.0, 0.0, threshold, False, n1, n2, None, {"category": _jsonable(rk[0])})
    key = sorted(set(rk) | set(ck))[0]
    p1 = (n1 - ref.get(key, 0)) / n1
    p2 = (n2 - cur.get(key, 0)) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = float((p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2)))
    from scipy.special import ndtr  # the standard normal CDF, what scipy.stats.norm.cdf evaluates

    p = float(2 * (1 - ndtr(abs(z)))) if not math.isnan(z) else float("nan")
    detail = {"category": _jsonable(key), "share_reference": 1 - p1, "share_current": 1 - p2}
    return TestResult("z", p, z, threshold, decide("z", p, threshold), n1, n2, None, detail)


def wasserstein_norm(ref: NumericSummary, cur: NumericSummary, threshold: float = 0.1) -> TestResult:
    """Wasserstein-1 distance divided by ``max(std(reference), 0.001)`` (:func:`wasserstein_1` of the bin means
    weighted by bin counts; Evidently's ``wasserstein_distance_norm`` calls ``scipy.stats.wasserstein_distance``,
    which computes the same integral).

    Raises:
        EmptyWindowError: either side has no finite values.
    """
    n1, n2 = _sizes(ref, cur)
    u, uw = ref.representatives()
    v, vw = cur.representatives()
    norm = max(ref.std, 0.001)
    w = wasserstein_1(u, uw, v, vw) / norm
    return TestResult("wasserstein", w, w, threshold, w >= threshold, n1, n2, None, {"norm": norm})


def wasserstein_1(
    u: np.ndarray[Any, Any], u_weights: np.ndarray[Any, Any], v: np.ndarray[Any, Any], v_weights: np.ndarray[Any, Any]
) -> float:
    """Wasserstein-1 distance of two weighted point sets on the real line: ``integral |U(t) - V(t)| dt``, ``U`` and
    ``V`` their CDFs (weights normalised to sum 1), the one-dimensional closed form (Ramdas, Garcia and Cuturi, "On
    Wasserstein two-sample testing and related families of nonparametric tests", Entropy 19(2), 2017).

    Both CDFs are step functions that only change at the points, so the integral is the sum over consecutive
    distinct points ``t_j < t_j+1`` of both sets of ``|U(t_j) - V(t_j)| * (t_j+1 - t_j)``.

    Args:
        u, v: ``(m,)`` and ``(n,)`` finite float64 values, any order, m, n >= 1.
        u_weights, v_weights: their non-negative weights (``(m,)``, ``(n,)``, positive sums).

    Returns:
        The distance, in the unit of the values.
    """
    t = np.unique(np.concatenate([u, v]))
    if t.size < 2:
        return 0.0

    def cdf(x: np.ndarray[Any, Any], w: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        order = np.argsort(x, kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(np.asarray(w, np.float64)[order])])
        out: np.ndarray[Any, Any] = cum[np.searchsorted(x[order], t[:-1], side="right")] / cum[-1]
        return out

    return float(np.dot(np.abs(cdf(u, u_weights) - cdf(v, v_weights)), np.diff(t)))


def shares(ref: Summary, cur: Summary, *, fill_zeroes: bool) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Reference and current shares per bucket as Evidently's ``get_binned_data`` makes them.

    Categorical features and numeric ones whose reference has at most 20 distinct values: one bucket per value
    (the union of both sides). Other numeric features: Sturges bins over the combined range. With
    ``fill_zeroes`` empty buckets get a small share (``min share / 1e6``, or 1e-4 when the min share is larger).

    Raises:
        EmptyWindowError: either side has no finite values.
    """
    n1, n2 = _sizes(ref, cur)
    rc, cc = _value_counts(ref), _value_counts(cur)
    if isinstance(ref, NumericSummary) and isinstance(cur, NumericSummary):
        few = rc is not None and len(rc) <= 20
        if not few or cc is None:
            return _sturges_shares(ref, cur, n1, n2, fill_zeroes)
    assert rc is not None
    assert cc is not None
    keys = list(set(rc) | set(cc))
    r = np.array([rc.get(k, 0) / n1 for k in keys])
    c = np.array([cc.get(k, 0) / n2 for k in keys])
    return (_fill(r), _fill(c)) if fill_zeroes else (r, c)


def _sturges_shares(
    ref: NumericSummary, cur: NumericSummary, n1: int, n2: int, fill_zeroes: bool
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    lo, hi = min(ref.min, cur.min), max(ref.max, cur.max)
    n = n1 + n2
    ptp = hi - lo
    if ptp == 0:
        edges = np.linspace(lo - 0.5, hi + 0.5, 2)
    else:
        width = ptp / (np.log2(n) + 1.0)
        edges = np.linspace(lo, hi, int(np.ceil(ptp / width)) + 1)
    r = sturges_counts(ref, edges) / n1
    c = sturges_counts(cur, edges) / n2
    return (_fill(r), _fill(c)) if fill_zeroes else (r, c)


def sturges_counts(s: NumericSummary, bins: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Counts of ``s``'s finite values in ``np.histogram`` bins ``bins`` (``(m+1,)`` increasing float64 covering
    the values; ``[t_j, t_j+1)``, the last one closed), as ``(m,)`` float64.

    Exact when the summary knows its value counts (few distinct values); otherwise each point bin's count lands
    where its value is and each interval bin's count is spread uniformly over the interval (clamped to the
    summary's min..max), i.e. the ECDF is interpolated linearly between edges.
    """
    vc = s.value_counts()
    if vc is not None:
        v = np.fromiter(vc.keys(), np.float64, len(vc))
        w = np.fromiter(vc.values(), np.float64, len(vc))
        return np.histogram(v, bins, weights=w)[0].astype(np.float64)
    e = s.edges
    t = np.asarray(bins, np.float64)[:-1]
    pts = np.concatenate([[0.0], np.cumsum(s.counts[1::2], dtype=np.float64)])
    below = pts[np.searchsorted(e, t, side="left")]  # point masses strictly below each bin start
    a = np.maximum(np.concatenate([[s.min], e]), s.min)
    b = np.minimum(np.concatenate([e, [s.max]]), s.max)
    cnt = s.counts[0::2]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(cnt > 0, s.sums[0::2] / cnt, (a + b) / 2)
    half = np.where(cnt > 1, np.clip(np.minimum(mean - a, b - mean), 0.0, None), 0.0)
    a, b = mean - half, mean + half
    width = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(width > 0, (t[:, None] - a) / width, (t[:, None] > a).astype(np.float64))
    below += np.clip(frac, 0.0, 1.0) @ cnt.astype(np.float64)
    return np.diff(np.append(below, float(s.n)))


def _fill(p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    p = p.astype(np.float64)
    nz = p[p != 0]
    if nz.size == 0:
        return p
    m = float(nz.min())
    np.place(p, p == 0, m / 10**6 if m <= 0.0001 else 0.0001)
    return p


def jensenshannon(ref: Summary, cur: Summary, threshold: float = 0.1) -> TestResult:
    """Jensen-Shannon distance of the binned shares: ``scipy.spatial.distance.jensenshannon(r, c)`` (natural
    logarithm, so in ``[0, sqrt(ln 2)]``), shares from :func:`shares` without zero filling -- Evidently 0.7's
    ``jensenshannon`` stattest. Drift when the distance is ``>= threshold`` (default 0.1).

    Raises:
        EmptyWindowError: either side has no finite values.
    """
    from scipy.spatial import distance

    r, c = shares(ref, cur, fill_zeroes=False)
    js = float(distance.jensenshannon(r, c))
    return TestResult("jensenshannon", js, js, threshold, decide("jensenshannon", js, threshold), ref.n, cur.n)


def psi(ref: Summary, cur: Summary, threshold: float = 0.1) -> TestResult:
    """Population stability index ``PSI = sum_i (r_i - c_i) * ln(r_i / c_i)`` over the buckets of :func:`shares`
    (reference shares ``r``, current shares ``c``), empty buckets filled with ``min share / 1e6`` (or 1e-4) as
    Evidently 0.7's ``psi`` stattest does. Dimensionless, >= 0; drift when ``>= threshold`` (default 0.1; 0.1-0.25
    is the usual "moderate shift" band).

    Raises:
        EmptyWindowError: either side has no finite values.
    """
    r, c = shares(ref, cur, fill_zeroes=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = float(np.sum((r - c) * np.log(r / c)))
    return TestResult("psi", v, v, threshold, decide("psi", v, threshold), ref.n, cur.n)


def _value_counts(s: Summary) -> dict[Any, int] | None:
    if isinstance(s, CategoricalSummary):
        return {k: v for k, v in s.counts.items() if v}
    return s.value_counts()


def value_counts(s: Summary) -> dict[Any, int] | None:
    """Exact counts per distinct value (categories for categorical features), or ``None`` when unknown."""
    return _value_counts(s)


def run_test(test: str, ref: Summary, cur: Summary, threshold: float | None = None) -> TestResult:
    """Run test ``test`` (a name from the module table) with ``threshold`` (default: the test's default).

    Raises:
        DataError: the test does not apply to the feature (KS or Wasserstein on a categorical feature, or
            chi-squared / Z on a numeric feature whose value counts are unknown).
        EmptyWindowError: either side has no finite values.
    """
    thr = DEFAULT_THRESHOLDS[test] if threshold is None else threshold
    if test in ("ks", "wasserstein"):
        if not (isinstance(ref, NumericSummary) and isinstance(cur, NumericSummary)):
            raise DataError(f"test {test!r} needs a numeric feature")
        return ks(ref, cur, thr) if test == "ks" else wasserstein_norm(ref, cur, thr)
    if test in ("chisquare", "z"):
        rc, cc = _value_counts(ref), _value_counts(cur)
        if rc is None or cc is None:
            raise DataError(f"test {test!r} needs exact value counts; the feature has too many distinct values")
        return chisquare(rc, cc, thr) if test == "chisquare" else z_proportions(rc, cc, thr)
    if test == "jensenshannon":
        return jensenshannon(ref, cur, thr)
    if test == "psi":
        return psi(ref, cur, thr)
    raise DataError(f"unknown test {test!r}; known: {sorted(ALL_TESTS)}")


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
