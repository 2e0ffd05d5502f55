"""The alert rules pass ``promtool check rules`` and their ``promtool test rules`` unit tests, and every alert has a
severity, a summary and a runbook section that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm" / "infertap" / "files" / "prometheus-rules.yaml"
RULE_TESTS = ROOT / "tests" / "data" / "prometheus" / "rules.test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/infertap/infertap/blob/main/docs/runbooks.md#"


def _promtool() -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make test-deps` installs Debian's prometheus package"
    return binary


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_promtool_check_rules() -> None:
    out = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = subprocess.run([_promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_changed_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests pin behaviour: raising the decode-error threshold to 50% makes its firing case fail."""
    rules = RULES.read_text()
    assert "> 0.05" in rules
    (tmp_path / "rules.yaml").write_text(rules.replace("> 0.05", "> 0.5"))
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(tmp_path / "rules.yaml")]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    out = subprocess.run(
        [_promtool(), "test", "rules", str(tmp_path / "tests.yaml")], capture_output=True, text=True, check=False
    )
    assert out.returncode != 0
    assert "InfertapDecodeErrors" in out.stdout + out.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    cases: dict[str, list[list[Any]]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(case["exp_alerts"])
    for rule in _alerts():
        exp = cases.get(rule["alert"], [])
        assert any(exp), f"{rule['alert']}: no case where it fires"
        assert any(not e for e in exp), f"{rule['alert']}: no case where it stays quiet"


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: str(r["alert"]))
def test_alert_has_severity_summary_and_runbook_section(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]
    url = rule["annotations"]["runbook_url"]
    assert url == RUNBOOK_BASE + rule["alert"].lower()
    assert rule["alert"].lower() in _anchors(RUNBOOKS.read_text()), f"docs/runbooks.md has no ## {rule['alert']}"
