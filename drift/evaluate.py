"""Choosing and running the test of each feature, family-wise correction, and the dataset-level decision.

Default test choice (Evidently 0.7 ``_get_default_stattest``; ``n_ref`` = finite reference values,
``n_values`` = distinct values of reference and current together):

- ``n_ref <= 1000``: numeric with ``n_values > 5`` -> ``ks``; otherwise ``chisquare`` when ``n_values > 2``, else
  ``z``;
- ``n_ref > 1000``: numeric with ``n_values > 5`` -> ``wasserstein``; otherwise ``jensenshannon``.

The dataset drifts when the share of drifted features is ``>= drift_share`` (0.5). A test and threshold can be set
for all features or per feature. With ``correction`` ``"bonferroni"`` or ``"bh"`` (Benjamini-Hochberg,
``scipy.stats.false_discovery_control``) the p-values of the p-value tests are adjusted over the features tested
with one before the thresholds are applied. A feature whose current values are non-finite (NaN/inf) in a share above
``max_nonfinite_share`` is reported drifted with test ``"nonfinite"``: bad data never passes silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infertap.drift.baseline import Baseline
from infertap.drift.errors import ConfigError, EmptyWindowError
from infertap.drift.histogram import histogram
from infertap.drift.stats import ALL_TESTS, DEFAULT_THRESHOLDS, TestResult, decide, run_test, value_counts
from infertap.drift.summary import NumericSummary, Summary
from infertap.drift.verdict import DatasetVerdict, FeatureVerdict

CORRECTIONS = ("none", "bonferroni", "bh")


@dataclass(slots=True)
class DriftConfig:
    """How features are tested.

    Attributes:
        drift_share: dataset drift when the share of drifted features is at least this.
        test: a test name for every feature instead of the default choice.
        threshold: a threshold for every feature instead of the test's default.
        per_feature: feature name -> ``{"test": ..., "threshold": ...}`` (either key optional).
        correction: ``"none"``, ``"bonferroni"`` or ``"bh"``.
        max_nonfinite_share: largest tolerated share of NaN/inf among a feature's current values.
        max_malformed_share: largest tolerated share of malformed records in a window (skipped, counted and
            named in the verdict); above it the run fails (exit 2).
    """

    drift_share: float = 0.5
    test: str | None = None
    threshold: float | None = None
    per_feature: dict[str, dict[str, Any]] = field(default_factory=dict)
    correction: str = "none"
    max_nonfinite_share: float = 0.0
    max_malformed_share: float = 0.01

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"correction must be one of {CORRECTIONS}, not {self.correction!r}")
        for t in [self.test, *(o.get("test") for o in self.per_feature.values())]:
            if t is not None and t not in ALL_TESTS:
                raise ConfigError(f"unknown test {t!r}; known: {sorted(ALL_TESTS)}")
        if not 0 < self.drift_share <= 1:
            raise ConfigError("drift_share must be in (0, 1]")
        if not 0 <= self.max_malformed_share <= 1:
            raise ConfigError("max_malformed_share must be in [0, 1]")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "drift_share": self.drift_share,
            "test": self.test,
            "threshold": self.threshold,
            "per_feature": self.per_feature,
            "correction": self.correction,
            "max_nonfinite_share": self.max_nonfinite_share,
            "max_malformed_share": self.max_malformed_share,
        }


def n_distinct(ref: Summary, cur: Summary) -> float:
    """Distinct finite values over both sides; ``inf`` when a side has too many to count exactly."""
    rc, cc = value_counts(ref), value_counts(cur)
    if rc is None or cc is None:
        return math.inf
    return float(len({k for k, v in rc.items() if v} | {k for k, v in cc.items() if v}))


def default_test(ref: Summary, cur: Summary) -> str:
    """Evidently 0.7's default test for a feature (see the module docstring)."""
    numeric = isinstance(ref, NumericSummary)
    n_values = n_distinct(ref, cur)
    if ref.n <= 1000:
        if numeric and n_values > 5:
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if numeric and n_values > 5:
        return "wasserstein"
    return "jensenshannon"


def _nonfinite(cur: Summary) -> int:
    return cur.n_nan + cur.n_inf if isinstance(cur, NumericSummary) else cur.n_missing


def evaluate(baseline: Baseline, current: Mapping[str, Summary], config: DriftConfig | None = None) -> dict[str, Any]:
    """The JSON form of :func:`assess` (``{"dataset_drift", "drifted_share", ..., "features": [...]}``)."""
    return assess(baseline, current, config).to_json()


def assess(baseline: Baseline, current: Mapping[str, Summary], config: DriftConfig | None = None) -> DatasetVerdict:
    """Test every baseline feature present in ``current`` and decide dataset drift.

    Args:
        baseline: the reference.
        current: feature name -> current summary (built with the baseline's bins).
        config: test choice; defaults to Evidently's rules.

    Returns:
        The typed result; each feature entry is documented in ``docs/verdict-schema.md``.

    Raises:
        EmptyWindowError: ``current`` has no features, or a feature has no finite values.
        ConfigError: an override names a test that does not apply, or an unknown feature.
    """
    cfg = config or DriftConfig()
    unknown = set(cfg.per_feature) - {f.spec.name for f in baseline.features}
    if unknown:
        raise ConfigError(f"per-feature settings for features not in the baseline: {sorted(unknown)}")
    rows: list[FeatureVerdict] = []
    results: list[TestResult] = []
    for bf in baseline.features:
        name = bf.spec.name
        if not bf.spec.column or name not in current:
            continue
        cur = current[name]
        bad = _nonfinite(cur)
        total = cur.n + bad
        if cur.n == 0:
            raise EmptyWindowError(f"no finite values in the window ({bad} NaN/inf/missing)", feature=name)
        over = cfg.per_feature.get(name, {})
        test = over.get("test") or cfg.test or default_test(bf.summary, cur)
        thr = over.get("threshold", cfg.threshold)
        if thr is None:
            thr = DEFAULT_THRESHOLDS[test]
        try:
            res = run_test(test, bf.summary, cur, float(thr))
        except EmptyWindowError:
            raise
        except Exception as exc:
            raise ConfigError(f"feature {name!r}: {exc}") from exc
        row = FeatureVerdict(
            name=name,
            column=bf.spec.column,
            index=bf.spec.index,
            summary=bf.spec.summary,
            kind=bf.spec.kind,
            test=res.test,
            statistic=_num(res.statistic),
            score=_num(res.score),
            p_value=_num(res.score) if res.is_pvalue else None,
            p_value_adjusted=None,
            threshold=res.threshold,
            drifted=res.drifted,
            n_reference=res.n_reference,
            n_current=res.n_current,
            n_nonfinite=bad,
            resolution=res.resolution,
            detail=res.detail,
            histogram=histogram(bf.summary, cur),
        )
        if bad and bad / total > cfg.max_nonfinite_share:
            row.drifted = True
            row.nonfinite = True
        rows.append(row)
        results.append(res)
    if not rows:
        raise EmptyWindowError("no baseline feature has data in the window")
    _correct(rows, results, cfg.correction)
    for row in rows:
        row.reason = _reason(row, cfg.max_nonfinite_share)
    n_drifted = sum(1 for r in rows if r.drifted)
    share = n_drifted / len(rows)
    return DatasetVerdict(
        dataset_drift=share >= cfg.drift_share,
        drifted_share=share,
        n_features=len(rows),
        n_drifted=n_drifted,
        drift_share_threshold=cfg.drift_share,
        correction=cfg.correction,
        features=rows,
    )


def _correct(rows: list[FeatureVerdict], results: list[TestResult], how: str) -> None:
    idx = [i for i, r in enumerate(results) if r.is_pvalue and not math.isnan(r.score)]
    if how == "none" or not idx:
        return
    from scipy import stats as sst  # only here: importing scipy.stats takes longer than most runs' counting

    ps = np.array([results[i].score for i in idx])
    adj = np.minimum(ps * len(ps), 1.0) if how == "bonferroni" else sst.false_discovery_control(ps, method="bh")
    for i, p in zip(idx, adj.tolist(), strict=True):
        row = rows[i]
        row.p_value_adjusted = p
        row.score = p
        row.drifted = decide(row.test, p, row.threshold) or row.nonfinite


def _num(v: float) -> float | None:
    return None if math.isnan(v) else (v if math.isfinite(v) else (1e308 if v > 0 else -1e308))


_OPS = {"ks": "<=", "chisquare": "<", "z": "<"}


def _reason(row: FeatureVerdict, max_bad: float) -> str:
    n = f"n_ref={row.n_reference}, n_cur={row.n_current}"
    if row.nonfinite:
        share = row.n_nonfinite / (row.n_current + row.n_nonfinite)
        return f"{row.n_nonfinite} NaN/inf/missing values ({share:.2%}) exceed the tolerated {max_bad:.2%}; {n}"
    test, score, thr = row.test, row.score, row.threshold
    if score is None:
        return f"{test}: undefined (constant data); no drift; {n}"
    if test in _OPS:
        op = _OPS[test] if row.drifted else {"<=": ">", "<": ">="}[_OPS[test]]
        adj = " (adjusted)" if row.p_value_adjusted is not None else ""
        return f"{test} p{adj}={score:.4g} {op} {thr} (statistic {row.statistic or 0.0:.4g}); {n}"
    op = ">=" if row.drifted else "<"
    return f"{test}={score:.4g} {op} {thr}; {n}"
