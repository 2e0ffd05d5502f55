"""``infertap drift canary`` on captured generative records: the generative checks in the canary document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infertap.logger.cli import main
from tests.unit.drift import capture
from tests.unit.drift.test_generative import calls


def _capture(root: Path, revision: str, *, completion: float = 40, ttft: float = 0.05, length_share: float = 0.1,
             seed: int) -> None:  # fmt: skip
    gen = calls(60, completion=completion, ttft=ttft, length_share=length_share, tokens=False, seed=seed)
    tbl = capture.table(np.zeros((gen.num_rows, 1)), revision=revision)
    for name in gen.column_names:
        tbl = tbl.set_column(tbl.schema.get_field_index(name), name, gen.column(name))
    capture.write(root, tbl, f"{revision}.parquet")


def _canary(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["drift", "canary", str(root), "--model", "m", "--stable", "r1", "--canary", "r2"])
    out, err = capsys.readouterr()
    assert code != 2, err
    return code, json.loads(out)


def _checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"] if c["name"].startswith("generative:")}


def test_shorter_answers_fail_the_canary_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _capture(tmp_path, "r1", completion=40, seed=1)
    _capture(tmp_path, "r2", completion=12, seed=2)
    code, doc = _canary(tmp_path, capsys)
    checks = _checks(doc)
    assert (code, doc["verdict"]) == (1, "Fail")
    shorter = checks["generative:completion_length"]
    assert not shorter["passed"]
    assert shorter["critical"]
    assert shorter["reason"].startswith("answers shorter (median chars)")
    assert shorter["test"] == "ks"
    assert shorter["n_reference"] == shorter["n_current"] == 60


def test_early_stops_fail_the_canary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _capture(tmp_path, "r1", length_share=0.05, seed=1)
    _capture(tmp_path, "r2", length_share=0.7, seed=3)
    code, doc = _canary(tmp_path, capsys)
    stops = _checks(doc)["generative:finish_reason"]
    assert (code, doc["verdict"]) == (1, "Fail")
    assert stops["reason"].startswith("stops early: share of 'length' finishes")
    assert stops["canary_length_share"] > stops["stable_length_share"]


def test_slower_first_token_is_flagged_marginal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _capture(tmp_path, "r1", ttft=0.05, seed=1)
    _capture(tmp_path, "r2", ttft=0.4, seed=4)
    code, doc = _canary(tmp_path, capsys)
    slow = _checks(doc)["generative:time_to_first_token"]
    assert not slow["passed"]
    assert not slow["critical"]
    assert slow["reason"].startswith("slows its first token (median seconds)")
    assert doc["verdict"] == "Marginal"
    assert code == 3
    assert doc["score"] < 100


def test_same_behaviour_passes_every_generative_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _capture(tmp_path, "r1", seed=1)
    _capture(tmp_path, "r2", seed=5)
    code, doc = _canary(tmp_path, capsys)
    checks = _checks(doc)
    assert set(checks) == {
        "generative:completion_length", "generative:finish_reason", "generative:time_to_first_token",
    }  # fmt: skip
    assert all(c["passed"] for c in checks.values())
    assert (code, doc["verdict"]) == (0, "Pass")


def test_tensor_records_get_no_generative_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    for rev in ("r1", "r2"):
        capture.write(tmp_path, capture.table(rng.normal(size=(50, 2)), revision=rev), f"{rev}.parquet")
    _, doc = _canary(tmp_path, capsys)
    assert _checks(doc) == {}


def _embeddings(root: Path, revision: str, shift: float, seed: int) -> None:
    vectors = np.random.default_rng(seed).normal(size=(80, 8)) + shift
    tbl = capture.table(np.zeros((80, 1)), vectors, revision=revision)
    tbl = tbl.rename_columns(["output.embedding" if c == "output.y" else c for c in tbl.column_names])
    capture.write(root, tbl, f"{revision}.parquet")


def test_shifted_embeddings_fail_with_the_mmd_test_and_its_citation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _embeddings(tmp_path, "r1", 0.0, 1)
    _embeddings(tmp_path, "r2", 0.8, 2)
    code, doc = _canary(tmp_path, capsys)
    emb = _checks(doc)["generative:embeddings"]
    assert (code, doc["verdict"]) == (1, "Fail")
    assert not emb["passed"]
    assert emb["test"] == "mmd"
    assert emb["citation"].startswith("Gretton")
    assert emb["score"] < emb["threshold"]
    assert (emb["n_stable"], emb["n_canary"], emb["dimensions"]) == (80, 80, 8)
    assert emb["reason"].startswith("the canary's embedding vectors differ")


def test_same_embeddings_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _embeddings(tmp_path, "r1", 0.0, 1)
    _embeddings(tmp_path, "r2", 0.0, 2)
    _, doc = _canary(tmp_path, capsys)
    emb = _checks(doc)["generative:embeddings"]
    assert emb["passed"]
    assert emb["reason"] == ""
