"""Every statistic against scipy / Evidently 0.7 on small cases; bin-merge associativity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests import chisquare_stattest as ev_chi
from evidently.legacy.calculations.stattests import jensenshannon as ev_js
from evidently.legacy.calculations.stattests import psi as ev_psi
from evidently.legacy.calculations.stattests import wasserstein_distance_norm as ev_wd
from evidently.legacy.calculations.stattests import z_stattest as ev_z
from evidently.legacy.calculations.stattests.registry import _get_default_stattest
from evidently.legacy.core import ColumnType
from scipy import stats as sst

from infertap.drift import stats
from infertap.drift.baseline import build_baseline
from infertap.drift.evaluate import DriftConfig, default_test, evaluate
from infertap.drift.features import FeatureSpec
from infertap.drift.summary import CategoricalSummary, NumericSummary, make_edges

NUM, CAT = ColumnType.Numerical, ColumnType.Categorical


def num(ref: np.ndarray, cur: np.ndarray, **kw: int) -> tuple[NumericSummary, NumericSummary]:
    edges, _ = make_edges(ref, **kw)
    r, c = NumericSummary.empty(edges), NumericSummary.empty(edges)
    r.add(ref)
    c.add(cur)
    return r, c


def cat(ref: list[str], cur: list[str]) -> tuple[CategoricalSummary, CategoricalSummary]:
    r, c = CategoricalSummary(), CategoricalSummary()
    r.add(ref)
    c.add(cur)
    return r, c


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("integers", [False, True])
def test_ks_matches_scipy_exactly_for_small_reference(seed: int, integers: bool) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=300)
    cur = rng.normal(0.2, 1.1, size=450)
    if integers:
        ref, cur = np.round(ref * 3), np.round(cur * 3)
    r, c = num(ref, cur)
    got = stats.ks(r, c)
    want = sst.ks_2samp(ref, cur)
    assert got.statistic == pytest.approx(want.statistic, abs=1e-12)
    assert got.score == pytest.approx(want.pvalue, rel=1e-9, abs=1e-12)
    assert got.resolution == 0.0


def test_ks_from_quantile_bins_within_resolution_and_asymptotic_p() -> None:
    rng = np.random.default_rng(1)
    ref = rng.lognormal(size=50_000)
    cur = rng.lognormal(0.05, 1.0, size=20_000)
    r, c = num(ref, cur, quantile_bins=1000)
    got = stats.ks(r, c)
    want = sst.ks_2samp(ref, cur)
    assert abs(got.statistic - want.statistic) <= max(got.resolution or 0, 1e-12) + 1e-12
    assert abs(got.statistic - want.statistic) < 0.01
    assert got.score == pytest.approx(want.pvalue, rel=0.2, abs=1e-6)


def test_wasserstein_matches_evidently() -> None:
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=5000), rng.normal(0.3, 1.2, size=4000)
    r, c = num(ref, cur)
    want, _ = ev_wd._wasserstein_distance_norm(pd.Series(ref), pd.Series(cur), NUM, 0.1)
    got = stats.wasserstein_norm(r, c)
    assert abs(got.score - want) < 0.01


def test_wasserstein_exact_for_few_valued_data() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.integers(0, 50, 3000).astype(float), rng.integers(5, 60, 2000).astype(float)
    r, c = num(ref, cur)
    want, _ = ev_wd._wasserstein_distance_norm(pd.Series(ref), pd.Series(cur), NUM, 0.1)
    assert stats.wasserstein_norm(r, c).score == pytest.approx(want, rel=1e-9)


def test_chisquare_matches_evidently() -> None:
    ref = ["a"] * 30 + ["b"] * 50 + ["c"] * 20
    cur = ["a"] * 20 + ["b"] * 40 + ["c"] * 40
    r, c = cat(ref, cur)
    want, drifted = ev_chi._chi_stat_test(pd.Series(ref), pd.Series(cur), CAT, 0.05)
    got = stats.run_test("chisquare", r, c)
    assert got.score == pytest.approx(want, rel=1e-12)
    assert got.drifted == drifted
    assert got.statistic == pytest.approx(sst.chisquare([20, 40, 40], [30, 50, 20]).statistic)


def test_chisquare_new_category_is_drift() -> None:
    r, c = cat(["a", "b"] * 20, ["a", "b", "z"] * 10)
    assert stats.run_test("chisquare", r, c).drifted


@pytest.mark.parametrize(("ref", "cur"), [(["x"] * 40 + ["y"] * 60, ["x"] * 60 + ["y"] * 40), (["x"] * 10, ["x"] * 7)])
def test_z_matches_evidently(ref: list[str], cur: list[str]) -> None:
    r, c = cat(ref, cur)
    want, drifted = ev_z._z_stat_test(pd.Series(ref), pd.Series(cur), CAT, 0.05)
    got = stats.run_test("z", r, c)
    assert got.score == pytest.approx(want, rel=1e-12)
    assert got.drifted == drifted


def test_jensenshannon_and_psi_match_evidently_categorical() -> None:
    ref = ["a"] * 300 + ["b"] * 500 + ["c"] * 200
    cur = ["a"] * 200 + ["b"] * 300 + ["c"] * 450 + ["d"] * 50
    r, c = cat(ref, cur)
    js, _ = ev_js._jensenshannon(pd.Series(ref), pd.Series(cur), CAT, 0.1)
    ps, _ = ev_psi._psi(pd.Series(ref), pd.Series(cur), CAT, 0.1)
    assert stats.jensenshannon(r, c).score == pytest.approx(js, rel=1e-9)
    assert stats.psi(r, c).score == pytest.approx(ps, rel=1e-9)


def test_jensenshannon_and_psi_numeric_close_to_evidently() -> None:
    rng = np.random.default_rng(4)
    ref, cur = rng.normal(size=3000), rng.normal(0.4, 1.0, size=2000)
    r, c = num(ref, cur)
    js, _ = ev_js._jensenshannon(pd.Series(ref), pd.Series(cur), NUM, 0.1)
    ps, _ = ev_psi._psi(pd.Series(ref), pd.Series(cur), NUM, 0.1)
    assert abs(stats.jensenshannon(r, c).score - js) < 0.01
    assert abs(stats.psi(r, c).score - ps) < 0.02


@pytest.mark.parametrize(
    ("ref", "cur", "kind"),
    [
        (np.arange(500) % 3, np.arange(400) % 3, NUM),
        (np.arange(500) % 2, np.arange(400) % 2, NUM),
        (np.arange(500) % 50, np.arange(400) % 50, NUM),
        (np.arange(1500) % 50, np.arange(400) % 50, NUM),
        (np.arange(1500) % 4, np.arange(400) % 4, NUM),
        (np.arange(500) % 7, np.arange(400) % 7, CAT),
        (np.arange(1500) % 7, np.arange(400) % 7, CAT),
    ],
)
def test_default_test_follows_evidently(ref: np.ndarray, cur: np.ndarray, kind: ColumnType) -> None:
    rs, cs = pd.Series(ref.astype(float)), pd.Series(cur.astype(float))
    want = _get_default_stattest(rs, cs, kind).name
    if kind == NUM:
        r, c = num(ref.astype(float), cur.astype(float))
        assert default_test(r, c) == want
    else:
        r2, c2 = cat([str(v) for v in ref], [str(v) for v in cur])
        assert default_test(r2, c2) == want


def test_merge_is_associative_and_matches_one_pass() -> None:
    rng = np.random.default_rng(5)
    data = np.concatenate([rng.normal(size=4000), rng.integers(0, 3, 500).astype(float), [np.nan, np.inf]])
    edges, _ = make_edges(rng.normal(size=3000))
    whole = NumericSummary.empty(edges)
    whole.add(data)
    parts = []
    for chunk in np.array_split(rng.permutation(data), 7):
        s = NumericSummary.empty(edges)
        s.add(chunk)
        parts.append(s)
    left = parts[0]
    for p in parts[1:]:
        left = left.merge(p)
    right = parts[-1]
    for p in reversed(parts[:-1]):
        right = p.merge(right)
    for m in (left, right):
        np.testing.assert_array_equal(m.counts, whole.counts)
        np.testing.assert_allclose(m.sums, whole.sums, rtol=1e-9, atol=1e-9)
        assert m.mean == pytest.approx(whole.mean)
        assert m.std == pytest.approx(whole.std)
        assert (m.n_nan, m.n_inf, m.min, m.max) == (whole.n_nan, whole.n_inf, whole.min, whole.max)
    ref = NumericSummary.empty(edges)
    ref.add(rng.normal(size=3000))
    assert stats.ks(ref, left).statistic == stats.ks(ref, whole).statistic


def test_categorical_merge() -> None:
    a, b = cat(["x", "y", "y"], ["y", "z", None])  # type: ignore[list-item]
    m = a.merge(b)
    assert m.counts == {"x": 1, "y": 3, "z": 1}
    assert m.n_missing == 1


def test_family_wise_corrections() -> None:
    rng = np.random.default_rng(6)
    cols = {f"f{i}": rng.normal(size=300) for i in range(10)}
    specs = [FeatureSpec(n, "input.x", i) for i, n in enumerate(cols)]
    base = build_baseline(cols, specs, model_name="m")
    cur = {n: rng.normal(0.15 if i < 3 else 0, 1, 300) for i, n in enumerate(cols)}
    summ = {}
    for bf in base.features:
        s = bf.empty_summary()
        s.add(cur[bf.spec.name])
        summ[bf.spec.name] = s
    raw = evaluate(base, summ)
    bonf = evaluate(base, summ, DriftConfig(correction="bonferroni"))
    bh = evaluate(base, summ, DriftConfig(correction="bh"))
    ps = np.array([f["p_value"] for f in raw["features"]])
    np.testing.assert_allclose([f["p_value_adjusted"] for f in bonf["features"]], np.minimum(ps * 10, 1))
    np.testing.assert_allclose([f["p_value_adjusted"] for f in bh["features"]], sst.false_discovery_control(ps))
    assert bonf["n_drifted"] <= bh["n_drifted"] <= raw["n_drifted"]


def test_per_feature_override() -> None:
    rng = np.random.default_rng(7)
    cols = {"a": rng.normal(size=2000), "b": rng.normal(size=2000)}
    base = build_baseline(cols, [FeatureSpec("a", "input.x", 0), FeatureSpec("b", "input.x", 1)], model_name="m")
    summ = {}
    for bf in base.features:
        s = bf.empty_summary()
        s.add(rng.normal(0.05, 1, 2000))
        summ[bf.spec.name] = s
    out = evaluate(base, summ, DriftConfig(per_feature={"b": {"test": "psi", "threshold": 0.5}}))
    tests = {f["name"]: (f["test"], f["threshold"]) for f in out["features"]}
    assert tests == {"a": ("wasserstein", 0.1), "b": ("psi", 0.5)}
