"""Every serving command refuses a bad setting the same way: one line naming the variable, exit code 2.

Real ``infertap`` subprocesses with a clean environment; the proxy's own start-up failures are in test_startup.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INFERTAP = Path(sys.executable).parent / "infertap"


def _fails(command: str, env: dict[str, str], *args: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFERTAP_")}
    done = subprocess.run(
        [str(INFERTAP), command, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("proxy", "INFERTAP_LISTEN_PORT"),
        ("collector", "INFERTAP_COLLECTOR_LISTEN_PORT"),
        ("webhook", "INFERTAP_WEBHOOK_PORT"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(command: str, variable: str) -> None:
    line = _fails(command, {variable: "not-a-port"})
    assert line.startswith(f"infertap {command}: invalid settings: {variable}: ")
    assert "(got 'not-a-port')" in line


@pytest.mark.parametrize(
    ("command", "flag", "variable"),
    [
        ("proxy", "--admin-port", "INFERTAP_ADMIN_PORT"),
        ("collector", "--admin-port", "INFERTAP_COLLECTOR_ADMIN_PORT"),
        ("webhook", "--admin-port", "INFERTAP_WEBHOOK_ADMIN_PORT"),
    ],
)
def test_bad_flag_value_is_named_by_its_variable(command: str, flag: str, variable: str) -> None:
    line = _fails(command, {}, flag, "70000")
    assert line.startswith(f"infertap {command}: invalid settings: {variable}: ")
    assert "(got 70000)" in line
