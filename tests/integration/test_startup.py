"""``infertap proxy`` as a user starts it (a real process): start-up failures are one line and exit code 2, the
start-up log line says where records go, and the metrics include the process's own and no ``_created`` series."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infertap.demo.processes import free_port

pytestmark = pytest.mark.integration
INFERTAP = str(Path(sys.executable).with_name("infertap"))


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERTAP_")}
    env.update({"INFERTAP_LISTEN_HOST": "127.0.0.1", "INFERTAP_UPSTREAM_URL": "http://127.0.0.1:9"})
    env.update(settings)
    return env


def _fails(**settings: str) -> str:
    """Run ``infertap proxy`` expecting a start-up failure; returns its stderr."""
    done = subprocess.run([INFERTAP, "proxy"], env=_env(**settings), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_proxy_port_in_use(busy_port: int, tmp_path: Path) -> None:
    line = _fails(INFERTAP_LISTEN_PORT=str(busy_port), INFERTAP_ADMIN_PORT="0", INFERTAP_OUTPUT_DIR=str(tmp_path))
    assert line == (
        f"infertap proxy: cannot listen on 127.0.0.1:{busy_port} for the proxy port (INFERTAP_LISTEN_PORT): "
        "address already in use"
    )


def test_admin_port_in_use(busy_port: int, tmp_path: Path) -> None:
    line = _fails(INFERTAP_LISTEN_PORT="0", INFERTAP_ADMIN_PORT=str(busy_port), INFERTAP_OUTPUT_DIR=str(tmp_path))
    assert "for the admin port (INFERTAP_ADMIN_PORT): address already in use" in line


def test_unusable_output_directory(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    line = _fails(INFERTAP_LISTEN_PORT="0", INFERTAP_ADMIN_PORT="0", INFERTAP_OUTPUT_DIR=str(tmp_path / "a-file" / "x"))
    assert line.startswith("infertap proxy: the file sink cannot start (INFERTAP_OUTPUT_DIR): ")
    assert "Not a directory" in line


def test_http_sink_without_a_url(tmp_path: Path) -> None:
    line = _fails(INFERTAP_LISTEN_PORT="0", INFERTAP_ADMIN_PORT="0", INFERTAP_SINK="http")
    assert line == "infertap proxy: invalid settings: INFERTAP_HTTP_SINK_URL: Field required"


def test_comma_separated_list_and_misspelling(tmp_path: Path) -> None:
    line = _fails(INFERTAP_HEADER_ALLOWLIST="x-foo,x-bar", INFERTAP_OUTPUTDIR=str(tmp_path))
    assert line.endswith(
        "INFERTAP_OUTPUTDIR (did you mean INFERTAP_OUTPUT_DIR?); every setting is listed in docs/operations.md"
    )


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text: str = resp.read().decode()
    return text


def test_started_sidecar_logs_its_sink_and_exports_process_metrics(tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    out = tmp_path / "records"
    proc = subprocess.Popen(
        [INFERTAP, "proxy"],
        env=_env(
            INFERTAP_LISTEN_PORT=str(port),
            INFERTAP_ADMIN_PORT=str(admin),
            INFERTAP_OUTPUT_DIR=str(out),
            INFERTAP_HEADER_ALLOWLIST="x-foo, X-Bar",
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        started = ""
        for line in proc.stderr:  # the log line comes once both ports listen
            if "proxy on" in line:
                started = line
                break
        assert f"proxy on 127.0.0.1:{port} -> http://127.0.0.1:9, admin on :{admin}" in started
        assert f"sink file: Parquet under {out.resolve()}" in started
        text = _get(f"http://127.0.0.1:{admin}/metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "process_resident_memory_bytes " in text
    assert "process_cpu_seconds_total " in text
    assert "_created" not in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test-deps` installs Debian's prometheus package"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
