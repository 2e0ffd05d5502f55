"""The generative demo end to end: llama.cpp behind a stable and a canary sidecar, openai-client traffic, Parquet
read back and compared with what the clients received."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from infertap.demo.generative import CANARY, STABLE, run_generative
from infertap.demo.predictors import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_generative_demo_reads_back_what_clients_received(tmp_path: Path) -> None:
    subprocess.run(["make", "-s", "llm"], cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=1500)
    summary = run_generative(tmp_path / "out", rounds=1)
    gen = summary["generative"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["generative"] == gen
    assert gen["records_captured"] == gen["requests_sent"] == 2 * 7
    assert gen["all_equal"], gen["mismatches"]
    assert gen["completions_equal_to_client"] == "12/12"
    assert gen["streams_equal_delta_by_delta"] == "8/8"
    assert gen["embeddings_equal_to_client"] == "2/2"
    assert gen["embedding_dimensions"] == 384
    stable, canary = gen["by_revision"][STABLE], gen["by_revision"][CANARY]
    assert (stable["endpoint"], canary["endpoint"]) == ("default", "canary")
    # the canary's clients ask for 5 tokens instead of 16: it answers shorter
    assert canary["completion_tokens_reported"] < stable["completion_tokens_reported"]
    assert canary["completion_chars_mean"] < stable["completion_chars_mean"]
    assert stable["time_to_first_token_p50_ms"] > 0
    assert set(summary["sidecar_exit_codes"].values()) == {0}
    # the generative canary check names what changed
    assert any(f.startswith("completion_length: answers shorter") for f in gen["canary"]["flagged"])
    assert gen["canary"]["embedding_drift_stable_vs_canary"]["drifted"] is False  # same inputs, same vectors
