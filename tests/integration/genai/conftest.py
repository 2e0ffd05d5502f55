"""A real llama.cpp OpenAI-compatible server (tiny random-weight Llama + all-MiniLM-L6-v2) for the session."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infertap.demo.llama import start_llama
from infertap.demo.predictors import PROJECT_ROOT


@pytest.fixture(scope="session")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a started llama.cpp server; ``make llm`` makes its environment and models (kept between runs)."""
    subprocess.run(["make", "-s", "llm"], cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=1500)
    server = start_llama(Path(tmp_path_factory.mktemp("llama")))
    try:
        yield server.url
    finally:
        server.process.stop()
