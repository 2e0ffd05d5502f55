"""llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) with the locally made models, as a subprocess.

The server runs from its own virtual environment, ``.venv-llama`` at the project root (``make llm`` creates it
and the models), or the directory named by ``INFERTAP_LLAMA_VENV``. The models are made by
``docker/predictors/make_llm_models.py`` into ``.cache/llm-models`` (or ``INFERTAP_LLM_MODELS``) and kept there.

Served models: :data:`CHAT_MODEL` (a tiny random-weight Llama with a ChatML template: completions and chat
completions, streamed and not) and :data:`EMBEDDING_MODEL` (all-MiniLM-L6-v2, 384-dimensional embeddings).
``interrupt_requests`` is off: by default a second request cuts a running stream short in this server.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from infertap.demo.predictors import PROJECT_ROOT, Running, venv_dir
from infertap.demo.processes import ManagedProcess, free_port

CHAT_MODEL = "tiny-llama"
EMBEDDING_MODEL = "minilm"
MODEL_SCRIPT = PROJECT_ROOT / "docker" / "predictors" / "make_llm_models.py"
_FILES = {CHAT_MODEL: "tiny-llama.gguf", EMBEDDING_MODEL: "all-minilm-l6-v2.gguf"}


def models_dir() -> Path:
    """Where the GGUF files are kept between runs."""
    return Path(os.environ.get("INFERTAP_LLM_MODELS", PROJECT_ROOT / ".cache" / "llm-models"))


def ensure_models() -> Path:
    """The models folder, after making any model missing from it (seconds; the files are then reused).

    Raises:
        FileNotFoundError: no llama virtual environment (run ``make llm``).
        subprocess.CalledProcessError: the model script failed.
    """
    out = models_dir()
    if not all((out / f).exists() for f in _FILES.values()):
        python = venv_dir("llama") / "bin" / "python"
        subprocess.run([str(python), str(MODEL_SCRIPT), str(out)], check=True, capture_output=True, timeout=600)
    return out


def start_llama(log_dir: Path, *, timeout_s: float = 120.0) -> Running:
    """Start the server on a free loopback port serving both models; returns once ``/v1/models`` answers.

    Raises:
        FileNotFoundError: no llama virtual environment.
        RuntimeError: the server exited or was not ready within ``timeout_s``.
    """
    models = ensure_models()
    python = venv_dir("llama") / "bin" / "python"
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "interrupt_requests": False,
        "models": [
            {"model": str(models / _FILES[CHAT_MODEL]), "model_alias": CHAT_MODEL, "n_ctx": 2048, "n_threads": 1,
             "seed": 13, "verbose": False},
            {"model": str(models / _FILES[EMBEDDING_MODEL]), "model_alias": EMBEDDING_MODEL, "embedding": True,
             "n_ctx": 512, "n_threads": 1, "verbose": False},
        ],
    }  # fmt: skip
    log_dir.mkdir(parents=True, exist_ok=True)
    cfg = log_dir / f"llama-{port}.json"
    cfg.write_text(json.dumps(config))
    proc = ManagedProcess(
        "llama.cpp server", [str(python), "-m", "llama_cpp.server", "--config_file", str(cfg)], log_dir / "llama.log"
    )
    running = Running(proc, port)
    try:
        proc.wait_http(f"{running.url}/v1/models", timeout_s=timeout_s)
    except RuntimeError:
        proc.stop()
        raise
    return running
