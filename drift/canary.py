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
  is higher, failing when significant and higher by more than ``error_tolerance`` (absolute);
- **generative calls** (when the records carry the record schema's ``gen_*`` columns, version 2):
  :func:`infertap.drift.generative.canary_checks` as checks ``generative:completion_length`` ("answers shorter",
  critical), ``generative:finish_reason`` ("stops early", critical) and ``generative:time_to_first_token``
  ("slows its first token"), and the MMD test of the arms' embedding vectors (``generative:embeddings``, critical
  as output drift), each with its test, statistic, threshold, sample sizes and reason.

Score (Kayenta-style) = 100 x passed checks / checks. Verdict: a failed critical check -> ``Fail``; else
``Pass`` when score >= ``pass_score`` (95), ``Marginal`` when >= ``marginal_score`` (75), else ``Fail``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from scipy import stats as sst

from infertap.drift import generative
from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.engine import FileMapper, ReadFile, local_files
from infertap.drift.errors import ConfigError, EmptyWindowError
from infertap.drift.evaluate import DriftConfig, assess
from infertap.drift.features import FeatureSpec, specs_from_schema
from infertap.drift.reader import Scan, Window, open_scan
from infertap.drift.reduce import LATENCY, ArmPartial, canary_columns, reduce_arms, summaries_from_columns
from infertap.drift.summary import Reservoir
from infertap.drift.verdict import ArmCounts, CanaryVerdict, Check, DatasetVerdict, Envelope
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
    critical: tuple[str, ...] = (
        "output_drift", "error_rate", "generative:completion_length", "generative:finish_reason",
    )  # fmt: skip


def _ratio(canary: float, stable: float) -> float:
    return canary / stable if stable > 0 else float("inf") if canary > 0 else 1.0


def _ratio_check(
    quantile: str, stable: float, canary: float, tolerance: float, critical: bool, n: dict[str, int]
) -> Check:
    """``latency_<quantile>_ratio``: canary / stable of one latency quantile (seconds); fails above 1 + tolerance."""
    r = _ratio(canary, stable)
    return Check(
        f"latency_{quantile}_ratio",
        r <= 1 + tolerance,
        critical,
        {
            "statistic": r,
            "stable": stable,
            "canary": canary,
            "threshold": 1 + tolerance,
            "reason": f"{quantile} {canary:.4g}s vs {stable:.4g}s = x{r:.3f}",
            **n,
        },
    )


def latency_checks(stable: np.ndarray[Any, Any], canary: np.ndarray[Any, Any], cfg: CanaryConfig) -> list[Check]:
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
        Check(
            "latency_mannwhitney",
            not (p < cfg.alpha and r50 > 1 + cfg.latency_tolerance),
            crit,
            {
                "test": "mannwhitneyu(greater)",
                "statistic": float(mw.statistic),
                "p_value": p,
                "threshold": {"alpha": cfg.alpha, "median_ratio_max": 1 + cfg.latency_tolerance},
                "reason": f"U={float(mw.statistic):.4g}, p={p:.3g} (alpha {cfg.alpha}), median ratio {r50:.3f} "
                f"(tolerance {1 + cfg.latency_tolerance:.2f})",
                **n,
            },
        ),
        _ratio_check("p50", s50, c50, cfg.p50_tolerance, crit, n),
        _ratio_check("p99", s99, c99, cfg.p99_tolerance, crit, n),
    ]


def error_check(stable: ArmCounts, canary: ArmCounts, cfg: CanaryConfig) -> Check:
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
    return Check(
        "error_rate",
        not failed,
        "error_rate" in cfg.critical,
        {
            "test": "two-proportion z (greater)",
            "statistic": z,
            "p_value": p,
            "threshold": {"alpha": cfg.alpha, "max_increase": cfg.error_tolerance},
            "stable": p1,
            "canary": p2,
            "n_stable": n1,
            "n_canary": n2,
            "reason": f"error rate {p2:.4%} vs {p1:.4%}, z={z:.3g}, p={p:.3g}",
        },
    )


def score_checks(checks: Sequence[Check], cfg: CanaryConfig) -> tuple[float, str]:
    """Kayenta-style ``(score, verdict)`` of a list of checks.

    As Kayenta's canary judge: score = 100 x passed / all checks (0-100); a failed critical check gives ``Fail``
    whatever the score; else ``Pass`` at ``score >= cfg.pass_score``, ``Marginal`` at ``>= cfg.marginal_score``,
    else ``Fail``.

    Raises:
        EmptyWindowError: no checks.
    """
    if not checks:
        raise EmptyWindowError("no canary checks could be run")
    score = 100.0 * sum(c.passed for c in checks) / len(checks)
    if any(c.critical and not c.passed for c in checks):
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
    map_files: FileMapper | None = None,
) -> dict[str, Any]:
    """The JSON document (``docs/verdict-schema.md``) of :func:`canary_verdict` (same arguments)."""
    return canary_verdict(
        source,
        model,
        group_by=group_by,
        stable=stable,
        canary=canary,
        window=window,
        specs=specs,
        config=config,
        drift_config=drift_config,
        endpoint=endpoint,
        batch_rows=batch_rows,
        map_files=map_files,
    ).to_json()


def canary_verdict(
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
    map_files: FileMapper | None = None,
) -> CanaryVerdict:
    """Canary verdict of ``canary`` against ``stable`` (values of ``group_by``) for ``model`` in ``window``.

    Stages: scan (arms filtered by ``group_by``) -> reduce each file per arm
    (:func:`infertap.drift.reduce.reduce_arms`) -> merge -> checks (:func:`canary_checks`) -> document.

    Args:
        source: local directory or ``s3://bucket/prefix`` (:mod:`infertap.drift.reader`).
        specs: features to compare (default: every tensor column, :func:`infertap.drift.features.specs_from_schema`).
        map_files: the engine that reduces the files (:mod:`infertap.drift.engine`; default: this process). The
            generative columns, when captured, are read by this process.

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
    scan = open_scan(source, model, window, endpoint=endpoint, extra_filter=ds.field(group_by).isin([stable, canary]))
    tensor_cols = [tc.column for tc in record.tensor_columns(scan.schema)]
    use_cols = tensor_cols if specs is None else sorted({s.column for s in specs if s.column} & set(tensor_cols))
    read, schema, sample_size = canary_columns(group_by) + use_cols, scan.schema, cfg.sample_size

    def reduce_file(index: int, read_file: ReadFile) -> dict[str, ArmPartial]:
        return reduce_arms(
            read_file(read, batch_rows),
            group_by=group_by,
            arms=[stable, canary],
            tensor_columns=use_cols,
            schema=schema,
            specs=specs,
            sample_size=sample_size,
            seed=index,
        )

    arms = (map_files or local_files)(scan, reduce_file, merge_arms) or {
        a: ArmPartial(ArmCounts(value=a), Reservoir(cfg.sample_size)) for a in (stable, canary)
    }
    rows = sum(arm.counts.requests for arm in arms.values())
    for name, arm in arms.items():
        if arm.counts.requests == 0:
            raise EmptyWindowError(f"no records with {group_by}={name!r} for model {model!r} in the window")
    widths = {**arms[canary].widths, **arms[stable].widths}
    feature_specs = specs if specs is not None else specs_from_schema(scan.schema, widths)
    checks, distributions = canary_checks(model, arms[stable], arms[canary], feature_specs, cfg, drift_config)
    if "gen_api" in scan.schema.names:
        calls = generative_arms(scan, group_by, stable, canary, batch_rows=batch_rows)
        checks.extend(generative_checks(calls[stable], calls[canary], cfg))
    score, verdict = score_checks(checks, cfg)
    return CanaryVerdict(
        Envelope("canary", source, window, rows, started),
        model,
        group_by,
        arms[stable].counts,
        arms[canary].counts,
        asdict(cfg),
        score,
        verdict,
        checks,
        distributions,
    )


def merge_arms(a: dict[str, ArmPartial], b: dict[str, ArmPartial]) -> dict[str, ArmPartial]:
    """Arm-wise merge of two files' (or runs of files') :func:`infertap.drift.reduce.reduce_arms` results, ``a``
    before ``b`` in file order (both hold the same arms)."""
    return {name: arm.merge(b[name]) for name, arm in a.items()}


def canary_checks(
    model: str,
    stable: ArmPartial,
    canary: ArmPartial,
    feature_specs: list[FeatureSpec],
    cfg: CanaryConfig,
    drift_config: DriftConfig | None = None,
) -> tuple[list[Check], dict[str, DatasetVerdict]]:
    """The checks of a canary against the stable arm, in order: error rate, latency, output drift per output
    feature, input drift (see the module docstring); and the distribution tests by ``"output"`` / ``"input"``.

    Raises:
        EmptyWindowError: an arm without requests or latencies.
    """
    checks = [error_check(stable.counts, canary.counts, cfg)]
    s_smp, c_smp = stable.reservoir, canary.reservoir
    checks.extend(latency_checks(s_smp.get(LATENCY), c_smp.get(LATENCY), cfg))
    inputs = [s for s in feature_specs if s.column.startswith("input.") and s_smp.get(s.name).size]
    outputs = [s for s in feature_specs if s.column.startswith("output.") and s_smp.get(s.name).size]
    distributions: dict[str, DatasetVerdict] = {}
    for io, group in (("output", outputs), ("input", inputs)):
        group = [s for s in group if c_smp.get(s.name).size]
        if not group:
            continue
        base = _arm_baseline(model, group, s_smp)
        res = assess(base, summaries_from_columns(base, {s.name: c_smp.get(s.name) for s in group}), drift_config)
        distributions[io] = res
        if io == "output":
            for f in res.features:
                checks.append(
                    Check(
                        f"output_drift:{f.name}",
                        not f.drifted,
                        "output_drift" in cfg.critical,
                        {
                            "test": f.test,
                            "statistic": f.statistic,
                            "score": f.score,
                            "threshold": f.threshold,
                            "n_stable": f.n_reference,
                            "n_canary": f.n_current,
                            "reason": f.reason,
                        },
                    )
                )
        else:
            checks.append(
                Check(
                    "input_drift",
                    not res.dataset_drift,
                    "input_drift" in cfg.critical,
                    {
                        "statistic": res.drifted_share,
                        "threshold": res.drift_share_threshold,
                        "drifted": [f.name for f in res.features if f.drifted],
                        "reason": f"{res.n_drifted}/{res.n_features} input features differ "
                        f"(share {res.drifted_share:.2f}); a difference means a biased traffic split",
                    },
                )
            )
    return checks, distributions


def _arm_baseline(model: str, group: list[FeatureSpec], smp: Reservoir) -> Baseline:
    return build_baseline(
        {s.name: smp.get(s.name) for s in group}, group, model_name=model, sample_size=0, allow_nonfinite=True
    )


def generative_arms(
    scan: Scan, group_by: str, stable: str, canary: str, *, batch_rows: int = 65_536
) -> dict[str, pa.Table]:
    """The generative columns (:data:`infertap.drift.generative.COLUMNS`) and embedding vectors
    (:data:`infertap.drift.generative.EMBEDDING`) of each arm's records, one table per arm (``stable``,
    ``canary``); the columns a file lacks are null."""
    names = set(scan.schema.names)
    cols = [c for c in (*generative.COLUMNS, generative.EMBEDDING) if c in names]
    batches = list(scan.batches([group_by, *cols], batch_rows=batch_rows))
    schema = pa.schema([scan.schema.field(c) for c in (group_by, *cols)])
    table = pa.Table.from_batches(batches, schema=schema)
    return {
        arm: table.filter(pc.equal(table.column(group_by), arm)).drop_columns([group_by]) for arm in (stable, canary)
    }


def generative_checks(stable: pa.Table, canary: pa.Table, cfg: CanaryConfig) -> list[Check]:
    """The generative checks of a canary (see the module docstring); none when neither arm has a generative call
    or two embedding vectors.

    Args:
        stable, canary: each arm's :func:`generative_arms` table.
    """
    out: list[Check] = []
    if generative.calls(stable) or generative.calls(canary):
        for c in generative.canary_checks(stable, canary, alpha=cfg.alpha):
            name = f"generative:{c.name}"
            out.append(Check(name, c.passed, name in cfg.critical, {**c.fields, "reason": c.reason}))
    a, b = generative.embeddings(stable), generative.embeddings(canary)
    if len(a) >= 2 and len(b) >= 2:
        r = generative.mmd_test(a, b, alpha=cfg.alpha)
        reason = f"the canary's embedding vectors differ: MMD p-value {r.p_value:.4f} < {r.alpha}" if r.drifted else ""
        fields = {
            "test": "mmd", "method": r.method, "citation": generative.MMD_CITATION, "statistic": r.mmd2u,
            "score": r.p_value, "threshold": r.alpha, "sigma": r.sigma, "permutations": r.permutations,
            "evidently_drifted": r.evidently_drifted, "n_stable": r.n_reference, "n_canary": r.n_current,
            "dimensions": r.dimensions, "reason": reason,
        }  # fmt: skip
        out.append(Check("generative:embeddings", not r.drifted, "output_drift" in cfg.critical, fields))
    return out
