"""The wheel installs the charter's folders under the project's own name (docs/architecture.md, "Import names")."""

from __future__ import annotations

import ast
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"infertap.logger": "logger", "infertap.drift": "drift", "infertap.demo": "logger/demo"}


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
        # a folder mapped under a name of its own (logger/demo -> infertap.demo) is not also a subpackage
        nested = [ROOT / other for other in FOLDERS.values() if other != folder and other.startswith(folder + "/")]
        for init in (ROOT / folder).rglob("__init__.py"):
            if any(init.is_relative_to(n) for n in nested):
                continue
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert set(cfg["packages"]) == found  # type: ignore[arg-type]


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; the project uses no relative imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(folder: str, *, skip: str | None = None) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if skip is None or not f.is_relative_to(ROOT / skip)]


def test_imports_point_one_way() -> None:
    """demo -> drift -> logger: the runtime packages never import the demo, logger never imports drift, and drift
    takes from the sidecar only the record schema, the shared errors, the pandas guard and the command line
    (docs/architecture.md)."""
    # the record schema, the shared errors, the pandas guard (drift/cli.py), and the `infertap` command itself
    # (drift/submit.py, spark-submit's driver)
    allowed = {"infertap.logger.record", "infertap.logger.errors", "infertap.logger.nopandas", "infertap.logger.cli"}
    for path in _sources("logger", skip="logger/demo"):
        bad = {m for m in _imports(path) if m.startswith(("infertap.demo", "infertap.drift"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    for path in _sources("drift"):
        imported = _imports(path)
        assert not {m for m in imported if m.startswith("infertap.demo")}, path
        # `from infertap.logger import record` names the package and `infertap.logger.record`
        bad = {
            m
            for m in imported
            if m.startswith("infertap.logger.") and not any(m == a or m.startswith(a + ".") for a in allowed)
        }
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} from the sidecar"
    for path in [*_sources("logger"), *_sources("drift"), *_sources("tests"), *_sources("benchmarks")]:
        stale = {m for m in _imports(path) if m.startswith("infertap.logger.demo")}
        assert not stale, f"{path.relative_to(ROOT)} imports the demo under its folder's name: {sorted(stale)}"


@pytest.mark.integration
def test_wheel_has_no_top_level_logger_or_drift(tmp_path: Path) -> None:
    """``pip install infertap`` must not overwrite (or be overwritten by) the PyPI projects named logger and drift."""
    import shutil
    import subprocess
    import sys

    # a clean copy of what the wheel is built from: setuptools reuses a stale build/ folder of the working tree
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ("logger", "drift"):
        shutil.copytree(ROOT / folder, src / folder, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("infertap-*.whl")
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"infertap", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "infertap/logger/proxy.py" in names
    assert "infertap/drift/stats.py" in names
    assert "infertap/demo/run.py" in names
    assert not any(n.startswith("infertap/logger/demo/") for n in names)
    assert not any(n.startswith(("logger/", "drift/")) for n in names)
