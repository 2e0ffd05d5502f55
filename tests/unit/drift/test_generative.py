"""Drift and canary tests on generative records; the MMD statistic checked against Evidently's."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from infertap.drift import generative
from infertap.logger import record

_FIELDS = {f.name: f for f in record.GENERATIVE_FIELDS}


def calls(n: int, *, completion: float, ttft: float, length_share: float, tokens: bool, seed: int) -> pa.Table:
    """``n`` generative records (the columns the features read) plus one record that is not generative."""
    rng = np.random.default_rng(seed)
    comp = np.maximum(1, rng.normal(completion, completion / 5, n)).round()
    cols: dict[str, list[Any]] = {
        "gen_api": ["chat"] * n + [None],
        "gen_prompt_tokens": ([int(v) for v in rng.integers(5, 30, n)] if tokens else [None] * n) + [None],
        "gen_completion_tokens": ([int(v) for v in comp] if tokens else [None] * n) + [None],
        "gen_prompt_chars": [int(v) for v in rng.integers(20, 120, n)] + [None],
        "gen_completion_chars": [int(v * 4) for v in comp] + [None],
        "gen_finish_reason": ["length" if u < length_share else "stop" for u in rng.random(n)] + [None],
        "gen_ttft_s": [float(v) for v in rng.gamma(4, ttft / 4, n)] + [None],
        "gen_output_tokens_per_s": [float(v) for v in rng.normal(50, 5, n)] + [None],
    }
    return pa.table({k: pa.array(v, _FIELDS[k].type) for k, v in cols.items()})


def test_length_unit_and_features() -> None:
    with_tokens = calls(20, completion=20, ttft=0.05, length_share=0.2, tokens=True, seed=1)
    without = calls(20, completion=20, ttft=0.05, length_share=0.2, tokens=False, seed=2)
    assert generative.length_unit(with_tokens, with_tokens) == "tokens"
    assert generative.length_unit(with_tokens, without) == "chars"  # one unit for both samples
    f = generative.features(without, "chars")
    assert f["completion_length"].shape == (20,)  # the record that is not generative is left out
    np.testing.assert_array_equal(f["completion_length"], without.column("gen_completion_chars").to_numpy()[:20])
    assert set(f["finish_reason"].tolist()) <= {"length", "stop"}
    v1 = pa.table({"request_id": ["a"]})  # a version-1 file: no generative columns, no calls
    assert generative.features(v1.append_column("gen_api", pa.nulls(1, pa.string())), "chars")["ttft_s"].size == 0


def test_same_behaviour_passes_and_a_shorter_slower_early_stopping_canary_fails_with_reasons() -> None:
    stable = calls(200, completion=40, ttft=0.05, length_share=0.1, tokens=False, seed=3)
    same = calls(200, completion=40, ttft=0.05, length_share=0.1, tokens=False, seed=4)
    checks = generative.canary_checks(stable, same)
    assert [c.name for c in checks] == ["completion_length", "time_to_first_token", "finish_reason"]
    assert all(c.passed for c in checks), [c.to_json() for c in checks]
    bad = calls(200, completion=15, ttft=0.12, length_share=0.6, tokens=False, seed=5)
    checks = {c.name: c for c in generative.canary_checks(stable, bad)}
    assert not any(c.passed for c in checks.values())
    assert checks["completion_length"].reason.startswith("answers shorter")
    assert checks["time_to_first_token"].reason.startswith("slows its first token")
    assert checks["finish_reason"].reason.startswith("stops early")
    doc = checks["completion_length"].to_json()
    assert (doc["test"], doc["n_reference"], doc["n_current"], doc["drifted"]) == ("ks", 200, 200, True)
    # a canary that answers longer is not flagged as shorter
    longer = calls(200, completion=80, ttft=0.05, length_share=0.1, tokens=False, seed=6)
    assert next(c for c in generative.canary_checks(stable, longer) if c.name == "completion_length").passed


def test_too_few_calls_is_said_not_failed() -> None:
    few = calls(3, completion=10, ttft=0.05, length_share=0.5, tokens=True, seed=7)
    checks = generative.canary_checks(few, few)
    assert all(c.passed and c.reason.startswith("too few calls") for c in checks)


def _evidently_mmd(ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> tuple[float, bool]:
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import mmd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score, drifted, _ = mmd()(pd.DataFrame(cur.astype(np.float64)), pd.DataFrame(ref.astype(np.float64)))
    return float(score), bool(drifted)


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_mmd_statistic_and_rule_agree_with_evidently(shift: float) -> None:
    rng = np.random.default_rng(11)
    ref = rng.normal(0, 1, (120, 16)).astype(np.float32)
    cur = (rng.normal(0, 1, (100, 16)) + shift).astype(np.float32)
    got = generative.mmd_test(ref, cur, permutations=50)
    score, drifted = _evidently_mmd(ref, cur)
    assert got.mmd2u == pytest.approx(score, rel=1e-6, abs=1e-9)
    assert got.evidently_drifted == drifted
    assert (got.n_reference, got.n_current, got.dimensions) == (120, 100, 16)


def test_mmd_permutation_test_holds_its_level_and_detects_a_shift() -> None:
    null_p, shifted_p = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ref = rng.normal(0, 1, (60, 8))
        null_p.append(generative.mmd_test(ref, rng.normal(0, 1, (50, 8)), permutations=100, seed=seed).p_value)
        shifted = rng.normal(0, 1, (50, 8)) + 0.6
        shifted_p.append(generative.mmd_test(ref, shifted, permutations=100, seed=seed).p_value)
    assert np.mean(np.asarray(null_p) < 0.05) <= 0.2  # about 5 % expected; 20 draws
    assert np.mean(np.asarray(shifted_p) < 0.05) == 1.0


def test_mmd_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="different shapes"):
        generative.mmd_test(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least two"):
        generative.mmd_test(np.zeros((1, 3)), np.zeros((5, 3)))
