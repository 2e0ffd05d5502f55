"""Canary checks on synthetic data: error-rate two-proportion test, Mann-Whitney U latency with a tolerance band,
p50/p99 ratios, critical checks forcing Fail, and the Pass / Marginal / Fail cut-offs of the Kayenta-style score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sst

from infertap.drift.canary import CanaryConfig, compare, error_check, latency_checks, score_checks
from infertap.drift.errors import ConfigError, EmptyWindowError
from infertap.drift.verdict import ArmCounts, Check
from infertap.logger.cli import main
from tests.unit.drift import capture

CFG = CanaryConfig()


def test_error_rate_two_proportion_z() -> None:
    s, c = ArmCounts(4000, 40), ArmCounts(3000, 75)
    got = error_check(s, c, CFG).to_json()
    p1, p2 = 40 / 4000, 75 / 3000
    pooled = 115 / 7000
    z = (p2 - p1) / np.sqrt(pooled * (1 - pooled) * (1 / 4000 + 1 / 3000))
    assert got["statistic"] == pytest.approx(z, rel=1e-12)
    assert got["p_value"] == pytest.approx(sst.norm.sf(z), rel=1e-9)
    assert (got["passed"], got["critical"], got["n_stable"], got["n_canary"]) == (False, True, 4000, 3000)
    assert got["threshold"] == {"alpha": 0.05, "max_increase": 0.01}


def test_error_rate_within_tolerance_or_not_significant_passes() -> None:
    assert error_check(ArmCounts(100_000, 1000), ArmCounts(100_000, 1500), CFG).passed  # significant, +0.5 pt < 1 pt
    assert error_check(ArmCounts(100, 1), ArmCounts(100, 3), CFG).passed  # +2 pt, not significant
    assert error_check(ArmCounts(100, 0), ArmCounts(100, 0), CFG).passed  # no errors at all: z = 0
    assert error_check(ArmCounts(1000, 50), ArmCounts(1000, 10), CFG).passed  # canary better


def test_error_rate_empty_arm() -> None:
    with pytest.raises(EmptyWindowError, match="an arm has no requests"):
        error_check(ArmCounts(0, 0), ArmCounts(10, 0), CFG)


def _lat(rng: np.random.Generator, n: int, scale: float = 1.0) -> Any:
    return rng.gamma(4.0, 0.005, n) * scale


def test_latency_slower_canary_fails_mann_whitney_and_p50() -> None:
    rng = np.random.default_rng(1)
    s, c = _lat(rng, 3000), _lat(rng, 3000, 1.5)
    checks = {ch.name: ch.to_json() for ch in latency_checks(s, c, CFG)}
    mw = sst.mannwhitneyu(c, s, alternative="greater")
    got = checks["latency_mannwhitney"]
    assert (got["statistic"], got["p_value"]) == pytest.approx((mw.statistic, mw.pvalue), rel=1e-9)
    assert not got["passed"]
    assert checks["latency_p50_ratio"]["statistic"] == pytest.approx(np.median(c) / np.median(s))
    assert not checks["latency_p50_ratio"]["passed"]
    assert not checks["latency_p99_ratio"]["critical"]


def test_latency_tolerance_band() -> None:
    rng = np.random.default_rng(2)
    s, c = _lat(rng, 50_000), _lat(rng, 50_000, 1.05)  # 5 % slower: significant, but inside the 10 % band
    checks = {ch.name: ch.to_json() for ch in latency_checks(s, c, CFG)}
    assert checks["latency_mannwhitney"]["p_value"] < 1e-6
    assert all(ch["passed"] for ch in checks.values())
    strict = {ch.name: ch.to_json() for ch in latency_checks(s, c, CanaryConfig(latency_tolerance=0.02))}
    assert not strict["latency_mannwhitney"]["passed"]


def test_latency_p99_ratio_alone() -> None:
    rng = np.random.default_rng(3)
    s = _lat(rng, 20_000)
    c = _lat(rng, 20_000)
    c[rng.random(c.size) < 0.03] *= 4  # a slow tail: p50 unchanged, p99 up
    checks = {ch.name: ch.to_json() for ch in latency_checks(s, c, CFG)}
    assert checks["latency_p50_ratio"]["passed"]
    assert not checks["latency_p99_ratio"]["passed"]
    assert checks["latency_p99_ratio"]["statistic"] == pytest.approx(np.quantile(c, 0.99) / np.quantile(s, 0.99))


def _checks(passed: int, failed: int, critical_failed: bool = False) -> list[Check]:
    out = [Check(f"ok{i}", True, False) for i in range(passed)]
    out += [Check(f"bad{i}", False, critical_failed and i == 0) for i in range(failed)]
    return out


@pytest.mark.parametrize(
    ("passed", "failed", "critical", "score", "verdict"),
    [
        (20, 0, False, 100.0, "Pass"),
        (19, 1, False, 95.0, "Pass"),
        (18, 2, False, 90.0, "Marginal"),
        (3, 1, False, 75.0, "Marginal"),
        (7, 3, False, 70.0, "Fail"),
        (39, 1, True, 97.5, "Fail"),  # a failed critical check forces Fail
    ],
)
def test_score_and_verdict(passed: int, failed: int, critical: bool, score: float, verdict: str) -> None:
    assert score_checks(_checks(passed, failed, critical), CFG) == (pytest.approx(score), verdict)


def test_no_checks() -> None:
    with pytest.raises(EmptyWindowError, match="no canary checks could be run"):
        score_checks([], CFG)


def _arms(
    tmp_path: Path, *, lat_scale: float = 1.0, tail: bool = False, errors: float = 0.0, shift: float = 0.0
) -> str:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8000, 3))
    lat = _lat(rng, 8000)
    cl = lat[4000:] * lat_scale
    if tail:
        cl[rng.random(4000) < 0.03] *= 4
    status = np.where(rng.random(4000) < errors, 500, 200)
    s = capture.table(x[:4000], x[:4000, 0], revision="s", latency_s=lat[:4000])
    c = capture.table(
        x[4000:], x[4000:, 0] + shift, revision="c", latency_s=cl, status=status, t0_us=capture.T0_US + 9000
    )
    capture.write(tmp_path, s, "s.parquet")
    capture.write(tmp_path, c, "c.parquet")
    return str(tmp_path)


def test_canary_same_arms_pass(tmp_path: Path) -> None:
    out = compare(_arms(tmp_path), "m", stable="s", canary="c")
    assert (out["verdict"], out["score"]) == ("Pass", 100.0)
    names = [c["name"] for c in out["checks"]]
    assert names == [
        "error_rate",
        "latency_mannwhitney",
        "latency_p50_ratio",
        "latency_p99_ratio",
        "output_drift:output.y[0]",
        "input_drift",
    ]
    assert out["stable"]["requests"] == out["canary"]["requests"] == 4000


def test_canary_slow_tail_is_marginal(tmp_path: Path) -> None:
    out = compare(_arms(tmp_path, tail=True), "m", stable="s", canary="c")
    failed = [c["name"] for c in out["checks"] if not c["passed"]]
    assert failed == ["latency_p99_ratio"]
    assert out["score"] == pytest.approx(100 * 5 / 6)
    assert out["verdict"] == "Marginal"


def test_canary_errors_force_fail(tmp_path: Path) -> None:
    out = compare(_arms(tmp_path, errors=0.05), "m", stable="s", canary="c")
    failed = [c["name"] for c in out["checks"] if not c["passed"]]
    assert failed == ["error_rate"]
    assert out["canary"]["errors"] > 150
    assert out["stable"]["errors"] == 0
    assert out["score"] == pytest.approx(100 * 5 / 6)
    assert out["verdict"] == "Fail"


def test_canary_slow_fails_on_score(tmp_path: Path) -> None:
    out = compare(_arms(tmp_path, lat_scale=1.6), "m", stable="s", canary="c")
    failed = {c["name"] for c in out["checks"] if not c["passed"]}
    assert failed == {"latency_mannwhitney", "latency_p50_ratio", "latency_p99_ratio"}
    assert out["score"] == pytest.approx(50.0)
    assert out["verdict"] == "Fail"


def test_canary_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _arms(tmp_path / "tail", tail=True)
    args = ["drift", "canary", root, "--model", "m", "--stable", "s", "--canary", "c", "-o", str(tmp_path / "v.json")]
    assert main(args) == 3  # Marginal
    assert main([*args[:-2], "--p99-tolerance", "10"]) == 0
    assert main(["drift", "canary", root, "--model", "m", "--stable", "s", "--canary", "s"]) == 2
    assert "stable and canary are the same" in capsys.readouterr().err


def test_canary_bad_group_by(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="group_by must be one of"):
        compare(str(tmp_path), "m", group_by="pod", stable="a", canary="b")
