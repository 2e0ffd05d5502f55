"""Starting the real predictors (MLServer, KServe's ModelServer) and sidecars in front of them, as subprocesses.

Each predictor runs from its own virtual environment, as it would from its own container: ``.venv-mlserver`` and
``.venv-kserve`` at the project root (``make venvs`` creates them), or the directories named by
``INFERTAP_MLSERVER_VENV`` / ``INFERTAP_KSERVE_VENV``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from infertap.demo.processes import ManagedProcess, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KSERVE_SCRIPT = Path(__file__).with_name("kserve_predictor.py")


def venv_dir(kind: str) -> Path:
    """The virtual environment of predictor ``kind`` (``"mlserver"`` or ``"kserve"``).

    Raises:
        FileNotFoundError: it does not exist (run ``make venvs``).
    """
    path = Path(os.environ.get(f"INFERTAP_{kind.upper()}_VENV", PROJECT_ROOT / f".venv-{kind}"))
    if not (path / "bin" / "python").exists():
        raise FileNotFoundError(f"no {kind} virtual environment at {path}; run `make venvs`")
    return path


@dataclass
class Running:
    """A started process and where it answers: ``url`` is ``http://127.0.0.1:<port>``."""

    process: ManagedProcess
    port: int
    admin_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"


def _ready(running: Running, path: str, timeout_s: float) -> Running:
    """``running`` once ``path`` answers 2xx (on the admin port when it has one); stopped, and raises, if not."""
    port = running.admin_port or running.port
    try:
        running.process.wait_http(f"http://127.0.0.1:{port}{path}", timeout_s=timeout_s)
    except RuntimeError:
        running.process.stop()
        raise
    return running


def start_mlserver(model_dir: Path, log_dir: Path, log_name: str = "mlserver") -> Running:
    """Start MLServer serving the model folder ``model_dir`` (with its ``model-settings.json``); wait until ready."""
    port = free_port()
    env = {
        "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()),
        "MLSERVER_PARALLEL_WORKERS": "0",
        "MLSERVER_HOST": "127.0.0.1",
    }
    proc = ManagedProcess(
        log_name,
        [str(venv_dir("mlserver") / "bin" / "mlserver"), "start", str(model_dir)],
        log_dir / f"{log_name}.log",
        env,
    )
    return _ready(Running(proc, port), "/v2/health/ready", 120)


def start_kserve(model_path: Path, name: str, version: str, log_dir: Path) -> Running:
    """Start KServe's ModelServer serving the joblib model at ``model_path`` as ``name``; wait until ready."""
    port = free_port()
    argv = [
        str(venv_dir("kserve") / "bin" / "python"), str(KSERVE_SCRIPT), "--model_name", name,
        "--model_path", str(model_path), "--version", version, "--http_port", str(port),
    ]  # fmt: skip
    proc = ManagedProcess(f"kserve-{name}", argv, log_dir / f"kserve-{name}.log")
    return _ready(Running(proc, port), f"/v2/models/{name}/ready", 120)


def sidecar_identity(isvc: str, revision: str, endpoint: str) -> dict[str, str]:
    """The ``INFERTAP_*`` variables that say which InferenceService, revision and endpoint a demo sidecar stands
    in front of (what KServe's pod would carry), with flush intervals short enough for a demo run."""
    return {
        "INFERTAP_INFERENCE_SERVICE": isvc,
        "INFERTAP_NAMESPACE": "demo",
        "INFERTAP_COMPONENT": "predictor",
        "INFERTAP_REVISION": revision,
        "INFERTAP_ENDPOINT": endpoint,
        "INFERTAP_FLUSH_INTERVAL_S": "5",
        "INFERTAP_BATCH_MAX_DELAY_S": "0.5",
    }


def start_sidecar(upstream: Running, name: str, data_dir: Path, log_dir: Path, env: dict[str, str]) -> Running:
    """Start ``infertap proxy`` in front of ``upstream``, writing Parquet under ``data_dir``; wait until ready.

    ``env`` adds ``INFERTAP_*`` settings (identity, flush interval ...).
    """
    port, admin = free_port(), free_port()
    settings = {
        "INFERTAP_UPSTREAM_URL": upstream.url,
        "INFERTAP_LISTEN_HOST": "127.0.0.1",
        "INFERTAP_LISTEN_PORT": str(port),
        "INFERTAP_ADMIN_PORT": str(admin),
        "INFERTAP_OUTPUT_DIR": str(data_dir),
        "INFERTAP_POD_NAME": name,
        **env,
    }
    proc = ManagedProcess(
        f"sidecar-{name}",
        [sys.executable, "-m", "infertap.logger.cli", "proxy"],
        log_dir / f"sidecar-{name}.log",
        settings,
    )
    return _ready(Running(proc, port, admin), "/readyz", 60)


def start_collector(name: str, data_dir: Path, work_dir: Path, log_dir: Path) -> Running:
    """Start ``infertap collector`` writing Parquet under ``data_dir`` (journal under ``work_dir``); wait until ready.

    Forward-mode sidecars (:func:`start_sidecar` with ``INFERTAP_CAPTURE_PLACEMENT=forward``) ship to its
    ``url``.
    """
    port, admin = free_port(), free_port()
    settings = {
        "INFERTAP_COLLECTOR_LISTEN_HOST": "127.0.0.1",
        "INFERTAP_COLLECTOR_LISTEN_PORT": str(port),
        "INFERTAP_COLLECTOR_ADMIN_PORT": str(admin),
        "INFERTAP_COLLECTOR_OUTPUT_DIR": str(data_dir),
        "INFERTAP_COLLECTOR_JOURNAL_DIR": str(work_dir / "journal"),
        "INFERTAP_COLLECTOR_POD_NAME": name,
        "INFERTAP_COLLECTOR_BATCH_MAX_DELAY_S": "0.2",
    }
    proc = ManagedProcess(name, [sys.executable, "-m", "infertap.logger.cli", "collector"], log_dir / f"{name}.log",
                          settings)  # fmt: skip
    return _ready(Running(proc, port, admin), "/readyz", 60)
