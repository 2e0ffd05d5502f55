"""The wheel installs the charter's folders under the project's own name (docs/architecture.md, "Import names")."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"infertap.logger": "logger", "infertap.drift": "drift"}


def _config() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        setuptools_cfg: dict[str, object] = tomllib.load(fh)["tool"]["setuptools"]
    return setuptools_cfg


def test_every_package_folder_is_listed_under_infertap() -> None:
    """A new subpackage left out of pyproject.toml would be missing from the wheel while tests pass in the tree."""
    cfg = _config()
    assert cfg["package-dir"] == FOLDERS
    found = set()
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert set(cfg["packages"]) == found  # type: ignore[arg-type]


@pytest.mark.integration
def test_wheel_has_no_top_level_logger_or_drift(tmp_path: Path) -> None:
    """``pip install infertap`` must not overwrite (or be overwritten by) the PyPI projects named logger and drift."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("infertap-*.whl")
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"infertap", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "infertap/logger/proxy.py" in names
    assert "infertap/drift/stats.py" in names
    assert not any(n.startswith(("logger/", "drift/")) for n in names)
