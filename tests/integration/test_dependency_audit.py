"""The dependency audit: pip-audit on what requirements.lock pins, against PyPI's vulnerability data (OSV).

Policy (docs/operations.md, "Dependencies"): a known vulnerability with a fixed release in a **runtime**
dependency (what ``pip install infertap`` installs, without extras) fails ``make test``; every other finding
(extras, dev tools, or no fix released yet) is reported in the test summary without failing. When the vulnerability
service cannot be reached or answers without data — it must know CVE-2018-18074 of requests 2.19.0 — the audit is
skipped with that reason, visible in the summary (``-ra``): the build does not fail for that alone.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
#: A release with a known, fixed vulnerability: the service must report it, or its answers mean nothing.
PROBE = ("requests", "2.19.0", "CVE-2018-18074")


def _audit(requirements: Path, *extra: str) -> dict[str, Any]:
    """pip-audit's JSON report of ``requirements`` (no resolution: every requirement is pinned)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--disable-pip", "-f", "json",
         "--progress-spinner", "off", "--desc", "off", *extra],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode not in (0, 1) or not done.stdout.strip():  # 1: vulnerabilities found
        pytest.skip(f"pip-audit could not run (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _runtime_closure() -> set[str]:
    """Canonical names of infertap's runtime dependencies, transitively, as installed here (no extras)."""
    seen: set[str] = set()
    todo = ["infertap"]
    while todo:
        name = todo.pop()
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_locked_dependencies_have_no_fixable_vulnerability_at_run_time(tmp_path: Path) -> None:
    assert LOCK.exists(), "requirements.lock is missing: `make lock` writes it"
    probe = tmp_path / "probe.txt"
    probe.write_text(f"{PROBE[0]}=={PROBE[1]}\n")
    known = _audit(probe, "--no-deps")
    ids = {
        alias
        for dep in known.get("dependencies", [])
        for vuln in dep.get("vulns", [])
        for alias in [vuln["id"], *vuln.get("aliases", [])]
    }
    if PROBE[2] not in ids:
        pytest.skip(
            f"vulnerability service without data here: it does not report {PROBE[2]} of {PROBE[0]} {PROBE[1]} "
            f"(skip reasons: {[d.get('skip_reason') for d in known.get('dependencies', [])]}); audit not possible"
        )
    report = _audit(LOCK)
    failing, reported = classify(report, _runtime_closure())
    skipped = [f"{d['name']}: {d['skip_reason']}" for d in report.get("dependencies", []) if d.get("skip_reason")]
    print("\n".join(["audit: reported, not failing:", *reported, "audit: not audited:", *skipped]))
    assert not failing, "fixable vulnerabilities at run time (update, then `make lock`):\n" + "\n".join(failing)


def classify(report: dict[str, Any], runtime: set[str]) -> tuple[list[str], list[str]]:
    """Split pip-audit's findings: ``(failing, reported)``; failing = runtime dependency with a fixed release."""
    failing, reported = [], []
    for dep in report.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            line = f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {', '.join(vuln['fix_versions']) or '-'})"
            is_runtime = canonicalize_name(dep["name"]) in runtime
            (failing if is_runtime and vuln["fix_versions"] else reported).append(line)
    return failing, reported


def test_the_policy_fails_only_fixable_runtime_findings() -> None:
    """The policy on a report in pip-audit's JSON format (the audit itself may be skipped here, the policy is not)."""
    report = {
        "dependencies": [
            {"name": "aiohttp", "version": "3.8.0", "vulns": [
                {"id": "GHSA-1", "fix_versions": ["3.9.2"], "aliases": []},
                {"id": "GHSA-2", "fix_versions": [], "aliases": []},
            ]},
            {"name": "Moto", "version": "4.0", "vulns": [{"id": "GHSA-3", "fix_versions": ["5.0"], "aliases": []}]},
            {"name": "numpy", "version": "2.0", "vulns": []},
            {"name": "weird", "skip_reason": "Dependency not found on PyPI"},
        ]
    }  # fmt: skip
    failing, reported = classify(report, {"aiohttp", "numpy"})
    assert failing == ["aiohttp 3.8.0: GHSA-1 (fixed in 3.9.2)"]
    assert reported == ["aiohttp 3.8.0: GHSA-2 (fixed in -)", "Moto 4.0: GHSA-3 (fixed in 5.0)"]
    assert "aiohttp" in _runtime_closure()
    assert "moto" not in _runtime_closure()


def test_the_lock_pins_every_declared_dependency() -> None:
    """A dependency added to pyproject.toml without `make lock` would be installed unpinned (or not at all)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    for extra in ("drift", "demo", "dev"):
        declared += [Requirement(r) for r in project["optional-dependencies"].get(extra, [])]
    pinned = {
        canonicalize_name(m.group(1))
        for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", LOCK.read_text(), flags=re.MULTILINE)
    }
    missing = sorted(
        r.name
        for r in declared
        if canonicalize_name(r.name) not in pinned and (r.marker is None or r.marker.evaluate({"extra": ""}))
    )
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
