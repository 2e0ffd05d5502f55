"""The images' lock files (docker/requirements*.lock) pin the same versions as the project's requirements.lock, so
an image runs exactly what the tests ran."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-drift.lock"])
def test_image_lock_agrees_with_the_project_lock(lock: str) -> None:
    image = _pins(ROOT / "docker" / lock)
    project = _pins(ROOT / "requirements.lock")
    assert len(image) > 30
    different = {name: (version, project.get(name)) for name, version in image.items() if project.get(name) != version}
    assert not different, f"docker/{lock} differs from requirements.lock (image, project): {different}"


def test_drift_lock_holds_the_sidecar_lock() -> None:
    sidecar = _pins(ROOT / "docker" / "requirements.lock")
    drift = _pins(ROOT / "docker" / "requirements-drift.lock")
    assert sidecar.items() <= drift.items()
    assert {"scipy", "pandas", "evidently", "jinja2"} <= drift.keys()


def test_image_locks_hold_every_declared_runtime_dependency() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = re.compile(r"^[A-Za-z0-9_.-]+")

    def names(requirements: list[str]) -> set[str]:
        found = set()
        for r in requirements:
            m = name.match(r)
            assert m, r
            found.add(m.group(0).lower().replace("_", "-"))
        return found

    sidecar = _pins(ROOT / "docker" / "requirements.lock").keys()
    drift = _pins(ROOT / "docker" / "requirements-drift.lock").keys()
    assert names(project["dependencies"]) - sidecar == set()
    assert names(project["dependencies"] + project["optional-dependencies"]["drift"]) - drift == set()
