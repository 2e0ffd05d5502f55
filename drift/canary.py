"""Canary analysis: compare a canary arm with the stable arm on outputs, inputs, latency and errors.

Records of one model in a window are split into arms by a grouping column (``revision``, ``model_version`` or
``endpoint``). One streaming pass keeps, per arm, exact request and error counts and a uniform random sample of at
most ``sample_size`` values per feature and of per-request latencies (memory stays bounded). Then:

- **output distributions** (critical): every output feature is tested with the drift tests, stable as reference
  (same default choice as the drift job); a drifted output fails the check;
- **input distributions**: the inputs' dataset drift; a difference means the traffic split is biased;
- **latency**: one-sided Mann-Whitney U (``scipy.stats.mannwhitneyu``, canary greater) on ``total_latency_s``; the
  check fails only when significant *and* the median ratio exceeds ``1 + latency_tolerance``; the p50 and p99
  ratios are checks of their own against ``1 + p50_tolerance`` / ``1 + p99_tolerance``;
- **error rate** (critical): one-sided two-proportion Z-test that the canary's error rate (5xx or transport error)
  is higher, failing when significant and higher by more than ``error_tolerance`` (absolute).

Score (Kayenta-style) = 100 x passed checks / checks. Verdict: a failed critical check -> ``Fail``; else
``Pass`` when score >= ``pass_score`` (95), ``Marginal`` when >= ``marginal_score`` (75), else ``Fail``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
from scipy import stats as sst

from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.errors import ConfigError, EmptyWindowError
from infertap.drift.evaluate import DriftConfig, evaluate
from infertap.drift.features import FeatureSpec, batch_matrices, extract, specs_from_schema
from infertap.drift.job import Sampler, summaries_from_columns, verdict_envelope
from infertap.drift.reader import Window, open_scan
from infertap.logger import record

GROUP_COLUMNS = ("revision", "model_version", "endpoint")
EXIT_CODES = {"Pass": 0, "Fail": 1, "Marginal": 3}


@dataclass(slots=True)
class CanaryConfig:
    """Thresholds of the canary checks (see the module docstring)."""

    alpha: float = 0.05
    latency_tolerance: float = 0.1
    p50_tolerance: float = 0.2
    p99_tolerance: float = 0.5
    error_tolerance: float = 0.01
    pass_score: float = 95.0
    marginal_score: float = 75.0
    sample_size: int = 100_000
    critical: tuple[str, ...] = ("output_drift", "error_rate")


@dataclass(slots=True)
class Arm:
    """What one pass keeps about one arm."""

    requests: int = 0
    errors: int = 0


def _check(name: str, passed: bool, critical: bool, **kw: Any) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "critical": critical, **kw}


def _ratio(canary: float, stable: float) -> float:
    return canary / stable if stable > 0 else float("inf") if canary > 0 else 1.0


def _ratio_check(
    quantile: str, stable: float, canary: float, tolerance: float, critical: bool, n: dict[str, int]
) -> dict[str, Any]:
    """``latency_<quantile>_ratio``: canary / stable of one latency quantile (seconds); fails above 1 + tolerance."""
    r = _ratio(canary, stable)
    return _check(
        f"latency_{quantile}_ratio",
        r <= 1 + tolerance,
        critical,
        statistic=r,
        stable=stable,
        canary=canary,
        threshold=1 + tolerance,
        reason=f"{quantile} {canary:.4g}s vs {stable:.4g}s = x{r:.3f}",
        **n,
    )


def latency_checks(
    stable: np.ndarray[Any, Any], canary: np.ndarray[Any, Any], cfg: CanaryConfig
) -> list[dict[str, Any]]:
    """Mann-Whitney U and p50/p99 ratio checks on per-request latencies (seconds, 1-D float64).

    ``scipy.stats.mannwhitneyu(canary, stable, alternative="greater")``; that check fails only when ``p < alpha``
    *and* the median ratio canary/stable exceeds ``1 + latency_tolerance`` (the tolerance band). The p50 and p99
    ratios (``np.median``, ``np.quantile(.., 0.99)``, linear) fail above ``1 + p50_tolerance`` / ``1 + p99_tolerance``.

    Raises:
        EmptyWindowError: an arm has no latencies.
    """
    if stable.size == 0 or canary.size == 0:
        raise EmptyWindowError("an arm has no requests with a latency")
    mw = sst.mannwhitneyu(canary, stable, alternative="greater")
    s50, c50 = float(np.median(stable)), float(np.median(canary))
    s99, c99 = float(np.quantile(stable, 0.99)), float(np.quantile(canary, 0.99))
    r50 = _ratio(c50, s50)
    n = {"n_stable": int(stable.size), "n_canary": int(canary.size)}
    p = float(mw.pvalue)
    crit = "latency" in cfg.critical
    return [
        _check(
            "latency_mannwhitney",
            not (p < cfg.alpha and r50 > 1 + cfg.latency_tolerance),
            crit,
            test="mannwhitneyu(greater)",
            statistic=float(mw.statistic),
            p_value=p,
            threshold={"alpha": cfg.alpha, "median_ratio_max": 1 + cfg.latency_tolerance},
            reason=f"U={float(mw.statistic):.4g}, p={p:.3g} (alpha {cfg.alpha}), median ratio {r50:.3f} "
            f"(tolerance {1 + cfg.latency_tolerance:.2f})",
            **n,
        ),
        _ratio_check("p50", s50, c50, cfg.p50_tolerance, crit, n),
        _ratio_check("p99", s99, c99, cfg.p99_tolerance, crit, n),
    ]


def error_check(stable: Arm, canary: Arm, cfg: CanaryConfig) -> dict[str, Any]:
    """One-sided two-proportion Z-test that the canary's error rate is higher (by more than the tolerance).

    ``z = (p_c - p_s) / sqrt(P (1 - P) (1/n_s + 1/n_c))`` with the pooled rate ``P``, p-value ``scipy.stats.norm.sf(z)``
    (``z = 0`` when no arm has an error). Fails when ``p < alpha`` and ``p_c - p_s > error_tolerance`` (absolute).

    Raises:
        EmptyWindowError: an arm has no requests.
    """
    n1, n2 = stable.requests, canary.requests
    if n1 == 0 or n2 == 0:
        raise EmptyWindowError("an arm has no requests")
    p1, p2 = stable.errors / n1, canary.errors / n2
    pooled = (stable.errors + canary.errors) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = float((p2 - p1) / se) if se > 0 else 0.0
    p = float(sst.norm.sf(z))
    failed = p < cfg.alpha and p2 - p1 > cfg.error_tolerance
    return _check(
        "error_rate",
        not failed,
        "error_rate" in cfg.critical,
        test="two-proportion z (greater)",
        statistic=z,
        p_value=p,
        threshold={"alpha": cfg.alpha, "max_increase": cfg.error_tolerance},
        stable=p1,
        canary=p2,
        n_stable=n1,
        n_canary=n2,
        reason=f"error rate {p2:.4%} vs {p1:.4%}, z={z:.3g}, p={p:.3g}",
    )


def score_checks(checks: list[dict[str, Any]], cfg: CanaryConfig) -> tuple[float, str]:
    """Kayenta-style ``(score, verdict)`` of a list of checks (each a dict with bool ``passed`` and ``critical``).

    As Kayenta's canary judge: score = 100 x passed / all checks (0-100); a failed critical check gives ``Fail``
    whatever the score; else ``Pass`` at ``score >= cfg.pass_score``, ``Marginal`` at ``>= cfg.marginal_score``,
    else ``Fail``.

    Raises:
        EmptyWindowError: no checks.
    """
    if not checks:
        raise EmptyWindowError("no canary checks could be run")
    score = 100.0 * sum(c["passed"] for c in checks) / len(checks)
    if any(c["critical"] and not c["passed"] for c in checks):
        return score, "Fail"
    if score >= cfg.pass_score:
        return score, "Pass"
    return score, "Marginal" if score >= cfg.marginal_score else "Fail"


def compare(
    source: str,
    model: str,
    *,
    group_by: str = "revision",
    stable: str,
    canary: str,
    window: Window | None = None,
    specs: list[FeatureSpec] | None = None,
    config: CanaryConfig | None = None,
    drift_config: DriftConfig | None = None,
    endpoint: str | None = None,
    batch_rows: int = 65_536,
) -> dict[str, Any]:
    """Canary verdict of ``canary`` against ``stable`` (values of ``group_by``) for ``model`` in ``window``.

    Args:
        source: local directory or ``s3://bucket/prefix`` (:mod:`infertap.drift.reader`).
        specs: features to compare (default: every tensor column, :func:`infertap.drift.features.specs_from_schema`).

    Returns:
        The canary verdict document (``docs/verdict-schema.md``): ``verdict``, ``score``, ``checks`` ...

    Raises:
        ConfigError: bad ``group_by`` or identical arms.
        EmptyWindowError: an arm has no records.
    """
    cfg = config or CanaryConfig()
    window = window or Window()
    if group_by not in GROUP_COLUMNS:
        raise ConfigError(f"group_by must be one of {GROUP_COLUMNS}")
    if stable == canary:
        raise ConfigError("stable and canary are the same")
    started = dt.datetime.now(dt.UTC)
    arm_filter = ds.field(group_by).isin([stable, canary])
    scan = open_scan(source, model, window, endpoint=endpoint, extra_filter=arm_filter)
    tensor_cols = [tc.column for tc in record.tensor_columns(scan.schema)]
    core = [group_by, "status_code", "error", "total_latency_s"]
    arms = {stable: Arm(), canary: Arm()}
    samplers = {stable: Sampler(cfg.sample_size, 1), canary: Sampler(cfg.sample_size, 2)}
    widths: dict[str, int] = {}
    rows = 0
    use_cols = tensor_cols if specs is None else sorted({s.column for s in specs if s.column} & set(tensor_cols))
    for batch in scan.batches(core + use_cols, batch_rows=batch_rows):
        rows += batch.num_rows
        groups = batch.column(0)
        for arm_name, arm in arms.items():
            mask = pc.equal(groups, arm_name)
            part = batch.filter(mask)
            if part.num_rows == 0:
                continue
            arm.requests += part.num_rows
            err = pc.or_(pc.greater_equal(part.column(1), 500), pc.is_valid(part.column(2)))
            arm.errors += int(pc.sum(err).as_py() or 0)
            smp = samplers[arm_name]
            smp.add("__latency__", part.column(3).to_numpy(zero_copy_only=False).astype(np.float64))
            for col, mat in batch_matrices(part, use_cols).items():
                if mat.shape[0] == 0:
                    continue
                widths.setdefault(col, mat.shape[1])
                for spec in _specs_for(col, specs, widths[col], scan):
                    smp.add(spec.name, np.asarray(extract(spec, mat)))
    for name, arm in arms.items():
        if arm.requests == 0:
            raise EmptyWindowError(f"no records with {group_by}={name!r} for model {model!r} in the window")
    feature_specs = specs if specs is not None else specs_from_schema(scan.schema, widths)
    checks: list[dict[str, Any]] = []
    s_smp, c_smp = samplers[stable], samplers[canary]
    checks.append(error_check(arms[stable], arms[canary], cfg))
    checks.extend(latency_checks(s_smp.get("__latency__"), c_smp.get("__latency__"), cfg))
    inputs = [s for s in feature_specs if s.column.startswith("input.") and s_smp.get(s.name).size]
    outputs = [s for s in feature_specs if s.column.startswith("output.") and s_smp.get(s.name).size]
    drift_details: dict[str, Any] = {}
    for io, group in (("output", outputs), ("input", inputs)):
        group = [s for s in group if c_smp.get(s.name).size]
        if not group:
            continue
        base = _arm_baseline(model, group, s_smp)
        res = evaluate(base, summaries_from_columns(base, {s.name: c_smp.get(s.name) for s in group}), drift_config)
        drift_details[io] = res
        if io == "output":
            for f in res["features"]:
                checks.append(
                    _check(
                        f"output_drift:{f['name']}",
                        not f["drifted"],
                        "output_drift" in cfg.critical,
                        test=f["test"],
                        statistic=f["statistic"],
                        score=f["score"],
                        threshold=f["threshold"],
                        n_stable=f["n_reference"],
                        n_canary=f["n_current"],
                        reason=f["reason"],
                    )
                )
        else:
            checks.append(
                _check(
                    "input_drift",
                    not res["dataset_drift"],
                    "input_drift" in cfg.critical,
                    statistic=res["drifted_share"],
                    threshold=res["drift_share_threshold"],
                    drifted=[f["name"] for f in res["features"] if f["drifted"]],
                    reason=f"{res['n_drifted']}/{res['n_features']} input features differ "
                    f"(share {res['drifted_share']:.2f}); a difference means a biased traffic split",
                )
            )
    score, verdict = score_checks(checks, cfg)
    doc = verdict_envelope("canary", None, source, window, rows, started)
    doc.update(
        {
            "model": {"name": model},
            "group_by": group_by,
            "stable": {"value": stable, "requests": arms[stable].requests, "errors": arms[stable].errors},
            "canary": {"value": canary, "requests": arms[canary].requests, "errors": arms[canary].errors},
            "config": asdict(cfg),
            "score": score,
            "verdict": verdict,
            "checks": checks,
            "distributions": drift_details,
        }
    )
    return doc


def _specs_for(col: str, specs: list[FeatureSpec] | None, width: int, scan: Any) -> list[FeatureSpec]:
    if specs is not None:
        return [s for s in specs if s.column == col]
    return [s for s in specs_from_schema(scan.schema, {col: width}) if s.column == col]


def _arm_baseline(model: str, group: list[FeatureSpec], smp: Sampler) -> Baseline:
    return build_baseline(
        {s.name: smp.get(s.name) for s in group}, group, model_name=model, sample_size=0, allow_nonfinite=True
    )
