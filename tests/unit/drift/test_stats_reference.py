"""Every statistic against Evidently 0.7's own stattest functions and scipy on small known cases; the binned KS and
Wasserstein against the exact statistics on large continuous data (the quantile-bin path); merge associativity
over random splits; family-wise corrections changing verdicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests import chisquare_stattest as ev_chi
from evidently.legacy.calculations.stattests import jensenshannon as ev_js
from evidently.legacy.calculations.stattests import ks_stattest as ev_ks
from evidently.legacy.calculations.stattests import psi as ev_psi
from evidently.legacy.calculations.stattests import wasserstein_distance_norm as ev_wd
from evidently.legacy.calculations.stattests import z_stattest as ev_z
from evidently.legacy.core import ColumnType
from scipy import stats as sst
from scipy.spatial import distance

from infertap.drift import stats
from infertap.drift.baseline import build_baseline
from infertap.drift.errors import DataError
from infertap.drift.evaluate import DriftConfig, evaluate
from infertap.drift.features import FeatureSpec
from infertap.drift.summary import CategoricalSummary, NumericSummary, Summary, make_edges, reference_summary

NUM, CAT = ColumnType.Numerical, ColumnType.Categorical
EVIDENTLY: dict[str, Callable[..., tuple[float, bool]]] = {
    "ks": ev_ks._ks_stat_test,
    "chisquare": ev_chi._chi_stat_test,
    "z": ev_z._z_stat_test,
    "wasserstein": ev_wd._wasserstein_distance_norm,
    "jensenshannon": ev_js._jensenshannon,
    "psi": ev_psi._psi,
}


def summaries(ref: Any, cur: Any, kind: ColumnType) -> tuple[Summary, Summary]:
    if kind == CAT:
        r, c = CategoricalSummary(), CategoricalSummary()
        r.add(list(ref))
        c.add(list(cur))
        return r, c
    edges, _ = make_edges(np.asarray(ref, np.float64))
    rn, cn = NumericSummary.empty(edges), NumericSummary.empty(edges)
    rn.add(ref)
    cn.add(cur)
    return rn, cn


_rng = np.random.default_rng(11)
CASES: dict[str, tuple[Any, Any, ColumnType]] = {
    "normal-shift": (_rng.normal(size=400), _rng.normal(0.3, 1.2, size=300), NUM),
    "normal-same": (_rng.normal(size=400), _rng.normal(size=350), NUM),
    "integers": (_rng.integers(0, 40, 900).astype(float), _rng.integers(3, 45, 600).astype(float), NUM),
    "few-values": (_rng.integers(0, 4, 500).astype(float), _rng.integers(0, 5, 400).astype(float), NUM),
    "binary": (_rng.integers(0, 2, 300).astype(float), (_rng.random(250) < 0.65).astype(float), NUM),
    "categories": (
        np.array(list("aabbbccd") * 40, dtype=object),
        np.array(list("abbccccde") * 30, dtype=object),
        CAT,
    ),
}
# (test, case): those whose binned computation is exact (few distinct values, or every reference value an edge)
EXACT = {
    ("ks", "normal-shift"),
    ("ks", "normal-same"),
    ("ks", "integers"),
    ("ks", "few-values"),
    ("ks", "binary"),
    ("chisquare", "few-values"),
    ("chisquare", "binary"),
    ("chisquare", "categories"),
    ("chisquare", "integers"),
    ("z", "binary"),
    ("z", "few-values"),
    ("z", "categories"),
    ("wasserstein", "integers"),
    ("wasserstein", "few-values"),
    ("wasserstein", "binary"),
    ("jensenshannon", "few-values"),
    ("jensenshannon", "binary"),
    ("jensenshannon", "categories"),
    ("jensenshannon", "integers"),
    ("psi", "few-values"),
    ("psi", "binary"),
    ("psi", "categories"),
    ("psi", "integers"),
}
CONTINUOUS = {"normal-shift", "normal-same"}


PAIRS = [
    (test, case)
    for test in sorted(EVIDENTLY)
    for case in sorted(CASES)
    if not (CASES[case][2] == CAT and test in ("ks", "wasserstein"))  # numeric-only tests
]


@pytest.mark.parametrize(("test", "case"), PAIRS)
def test_statistic_matches_evidently(test: str, case: str) -> None:
    ref, cur, kind = CASES[case]
    r, c = summaries(ref, cur, kind)
    thr = stats.DEFAULT_THRESHOLDS[test]
    if test in ("chisquare", "z") and case in CONTINUOUS:
        # Evidently would count 700 distinct values; the bins know no exact value counts: a clear error
        with pytest.raises(DataError, match=f"test '{test}' needs exact value counts"):
            stats.run_test(test, r, c, thr)
        return
    with np.errstate(divide="ignore"):  # Evidently's chi-squared divides by a zero expectation (new category)
        want, want_drift = EVIDENTLY[test](pd.Series(ref), pd.Series(cur), kind, thr)
    got = stats.run_test(test, r, c, thr)
    if (test, case) in EXACT:
        assert got.score == pytest.approx(float(want), rel=1e-9, abs=1e-12)
    else:  # values of the window between two reference values: placed at their mean / spread over Sturges buckets
        assert got.score == pytest.approx(float(want), abs=0.01)
    assert got.drifted == bool(want_drift)


@pytest.mark.parametrize("case", ["normal-shift", "integers", "few-values"])
def test_numeric_statistics_match_scipy(case: str) -> None:
    ref, cur, _ = CASES[case]
    r, c = summaries(ref, cur, NUM)
    assert isinstance(r, NumericSummary)
    assert isinstance(c, NumericSummary)
    ks = sst.ks_2samp(ref, cur)
    got = stats.ks(r, c)
    assert got.statistic == pytest.approx(ks.statistic, abs=1e-12)
    assert got.score == pytest.approx(ks.pvalue, rel=1e-9)
    wd = sst.wasserstein_distance(ref, cur) / np.std(ref)
    tol = 0.01 if case in CONTINUOUS else 1e-9 * wd  # continuous: window values between edges sit at their mean
    assert stats.wasserstein_norm(r, c).score == pytest.approx(wd, abs=tol)


def test_categorical_statistics_match_scipy() -> None:
    ref, cur, _ = CASES["categories"]
    r, c = summaries(ref, cur, CAT)
    keys = sorted(set(ref) | set(cur))
    rc = np.array([np.sum(ref == k) for k in keys], float)
    cc = np.array([np.sum(cur == k) for k in keys], float)
    with np.errstate(divide="ignore"):  # 'e' is new in the window: expectation 0, statistic inf, p = 0
        chi = sst.chisquare(cc, rc * cc.sum() / rc.sum())
    got = stats.run_test("chisquare", r, c)
    assert (got.statistic, got.score) == pytest.approx((chi.statistic, chi.pvalue), rel=1e-12)
    assert stats.jensenshannon(r, c).score == pytest.approx(distance.jensenshannon(rc, cc), rel=1e-12)
    rs, cs = rc / rc.sum(), cc / cc.sum()  # PSI = sum((r - c) ln(r / c)); "e" is absent from the reference
    rs[rs == 0] = 0.0001
    assert stats.psi(r, c).score == pytest.approx(float(np.sum((rs - cs) * np.log(rs / cs))), rel=1e-12)
    # Z: two-proportion test on the share of the first sorted category
    n1, n2 = rc.sum(), cc.sum()
    p1, p2 = 1 - rc[0] / n1, 1 - cc[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    got = stats.run_test("z", r, c)
    assert got.statistic == pytest.approx(z, rel=1e-12)
    assert got.score == pytest.approx(2 * sst.norm.sf(abs(z)), rel=1e-9)


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_binned_ks_and_wasserstein_within_001_of_exact_on_200k_values(dist: str) -> None:
    rng = np.random.default_rng(12)
    gen = rng.normal if dist == "normal" else rng.lognormal
    ref = gen(0.0, 1.0, 200_000)
    edges, exact = make_edges(ref)
    assert not exact
    assert edges.size > 1000
    r = NumericSummary.empty(edges)
    r.add(ref)
    for shift in (0.0, 0.02, 0.1, 0.5):
        cur = gen(shift, 1.0, 150_000)
        c = NumericSummary.empty(edges)
        c.add(cur)
        ks = sst.ks_2samp(ref, cur)
        got = stats.ks(r, c)
        assert abs(got.statistic - ks.statistic) <= 0.01
        assert abs(got.statistic - ks.statistic) <= (got.resolution or 0) + 1e-12
        assert got.resolution is not None
        assert got.resolution < 0.01
        assert got.drifted == (ks.pvalue <= 0.05)
        wd = sst.wasserstein_distance(ref, cur) / np.std(ref)
        assert abs(stats.wasserstein_norm(r, c).score - wd) <= 0.01
        js, _ = ev_js._jensenshannon(pd.Series(ref), pd.Series(cur), NUM, 0.1)
        assert abs(stats.jensenshannon(r, c).score - js) <= 0.01


def test_reference_summary_equals_make_edges_then_add() -> None:
    rng = np.random.default_rng(13)
    for x in (rng.normal(size=50_000), rng.integers(0, 9, 5000).astype(float), np.array([3.0])):
        s, exact, xs = reference_summary(x)
        edges, exact2 = make_edges(x)
        t = NumericSummary.empty(edges)
        t.add(x)
        np.testing.assert_array_equal(s.edges, edges)
        np.testing.assert_array_equal(s.counts, t.counts)
        np.testing.assert_allclose(s.sums, t.sums, rtol=1e-12, atol=1e-12)
        assert (exact, s.mean, s.m2, s.min, s.max, s.new_values) == (exact2, t.mean, t.m2, t.min, t.max, t.new_values)
        np.testing.assert_array_equal(xs, np.sort(x))


# --- merge associativity ---------------------------------------------------------------------------------------


def _random_tree_merge(parts: list[Any], rng: np.random.Generator) -> Any:
    parts = list(parts)
    while len(parts) > 1:
        i = int(rng.integers(len(parts) - 1))
        parts[i : i + 2] = [parts[i].merge(parts[i + 1]) if rng.random() < 0.5 else parts[i + 1].merge(parts[i])]
    return parts[0]


@pytest.mark.parametrize("seed", range(25))
def test_numeric_merge_of_any_split_equals_one_pass(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kind = seed % 3
    ref = rng.normal(size=3000) if kind else rng.integers(0, 12, 3000).astype(float)
    edges, _ = make_edges(ref if kind != 2 else rng.normal(size=5000))  # kind 2: quantile edges
    base = NumericSummary.empty(edges)
    base.add(ref)
    n = int(rng.integers(1, 6000))
    data = rng.normal(0.2, 1.1, n) if kind else rng.integers(0, 14, n).astype(float)
    data[rng.random(n) < 0.01] = np.nan
    data[rng.random(n) < 0.005] = np.inf
    whole = NumericSummary.empty(edges)
    whole.add(data)
    cuts = np.sort(rng.integers(0, n + 1, int(rng.integers(0, 12))))  # empty parts allowed
    order = rng.permutation(n) if rng.random() < 0.5 else np.arange(n)
    parts = []
    for chunk in np.split(data[order], cuts):
        s = NumericSummary.empty(edges)
        s.add(chunk)
        parts.append(s)
    m = _random_tree_merge(parts, rng)
    np.testing.assert_array_equal(m.counts, whole.counts)
    np.testing.assert_allclose(m.sums, whole.sums, rtol=1e-9, atol=1e-9)
    assert (m.n_nan, m.n_inf, m.min, m.max, m.new_values) == (
        whole.n_nan,
        whole.n_inf,
        whole.min,
        whole.max,
        whole.new_values,
    )
    assert m.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-12)
    assert m.m2 == pytest.approx(whole.m2, rel=1e-9, abs=1e-9)
    if whole.n:
        for test in ("ks", "wasserstein", "jensenshannon", "psi"):
            a, b = stats.run_test(test, base, m), stats.run_test(test, base, whole)
            assert (a.statistic, a.score) == pytest.approx((b.statistic, b.score), rel=1e-9, abs=1e-12)
            assert a.drifted == b.drifted


@pytest.mark.parametrize("seed", range(10))
def test_categorical_merge_of_any_split_equals_one_pass(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    data = rng.choice(np.array(["a", "b", "c", "d", None], dtype=object), n, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    whole = CategoricalSummary()
    whole.add(data)
    parts = []
    for chunk in np.split(data, np.sort(rng.integers(0, n + 1, int(rng.integers(0, 10))))):
        s = CategoricalSummary()
        s.add(chunk)
        parts.append(s)
    m = _random_tree_merge(parts, rng)
    assert (m.counts, m.n_missing) == (whole.counts, whole.n_missing)


# --- family-wise corrections -------------------------------------------------------------------------------------


def test_bonferroni_and_bh_change_the_verdicts_as_expected() -> None:
    rng = np.random.default_rng(7)
    k, n = 12, 400
    cols = {f"f{i}": rng.normal(size=n) for i in range(k)}
    specs = [FeatureSpec(name, "input.x", i) for i, name in enumerate(cols)]
    base = build_baseline(cols, specs, model_name="m")  # 400 rows: KS (p-value) on every feature
    shifts = [0.35, 0.25, 0.2, 0.17, 0.15] + [0.0] * (k - 5)
    cur = {}
    for bf, s in zip(base.features, shifts, strict=True):
        c = bf.empty_summary()
        c.add(rng.normal(s, 1.0, n))
        cur[bf.spec.name] = c
    raw = evaluate(base, cur)
    ps = np.array([f["p_value"] for f in raw["features"]])
    assert [f["test"] for f in raw["features"]] == ["ks"] * k
    want_raw = ps <= 0.05
    want_bonf = np.minimum(ps * k, 1) <= 0.05
    want_bh = sst.false_discovery_control(ps, method="bh") <= 0.05
    # the case is chosen so that the three rules give three different sets, nested
    assert want_bonf.sum() < want_bh.sum() < want_raw.sum()
    for cfg, want in (("none", want_raw), ("bonferroni", want_bonf), ("bh", want_bh)):
        out = evaluate(base, cur, DriftConfig(correction=cfg))
        assert [f["drifted"] for f in out["features"]] == want.tolist(), cfg
        assert out["n_drifted"] == int(want.sum())
        assert out["correction"] == cfg
        if cfg != "none":
            adj = [f["p_value_adjusted"] for f in out["features"]]
            assert [f["score"] for f in out["features"]] == adj
            assert all(f["p_value"] == p for f, p in zip(out["features"], ps, strict=True))
            assert all("(adjusted)" in f["reason"] for f in out["features"])


def test_correction_leaves_distance_tests_alone() -> None:
    rng = np.random.default_rng(22)
    cols = {f"f{i}": rng.normal(size=3000) for i in range(4)}
    base = build_baseline(cols, [FeatureSpec(n, "input.x", i) for i, n in enumerate(cols)], model_name="m")
    cur = {}
    for i, bf in enumerate(base.features):
        c = bf.empty_summary()
        c.add(rng.normal(0.3 * (i % 2), 1, 3000))
        cur[bf.spec.name] = c
    a, b = evaluate(base, cur), evaluate(base, cur, DriftConfig(correction="bonferroni"))
    assert [f["test"] for f in a["features"]] == ["wasserstein"] * 4
    assert [f["drifted"] for f in a["features"]] == [f["drifted"] for f in b["features"]] == [False, True, False, True]
    assert all(f["p_value_adjusted"] is None for f in b["features"])
