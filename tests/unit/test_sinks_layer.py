"""The sinks layer's imports point one way (docs/architecture.md): settings <- base <- partitions, segment_files <-
segments <- delivery <- spooled <- factory; the sinks import no spool module and no settings module builds
anything."""

from __future__ import annotations

import ast
from pathlib import Path

SINKS = Path(__file__).resolve().parents[2] / "logger" / "sinks"
PREFIX = "infertap.logger.sinks."
# what each module of the layer may import from the layer
ALLOWED: dict[str, set[str]] = {
    "settings": set(),
    "base": {"settings"},
    "partitions": set(),
    "segment_files": set(),
    "segments": {"settings", "base", "segment_files"},
    "delivery": {"settings", "base", "segment_files", "segments"},
    "spooled": {"settings", "base", "segment_files", "segments", "delivery"},
    "metrics": {"base", "segments", "delivery"},
    "events": set(),
    "loop_thread": set(),
    "memory": {"base"},
    "file": {"base", "partitions"},
    "s3": {"base", "partitions", "settings"},
    "kafka": {"base", "settings", "events", "loop_thread"},
    "cloudevents_http": {"base", "settings", "events", "loop_thread"},
    "factory": {"base", "settings", "spooled", "file", "s3", "kafka", "cloudevents_http"},
}


def layer_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(PREFIX):
                found.add(node.module.removeprefix(PREFIX))
            elif node.module == PREFIX.rstrip("."):
                found.update(alias.name for alias in node.names)
    return found


def test_every_module_is_known() -> None:
    assert {p.stem for p in SINKS.glob("*.py")} - {"__init__"} == set(ALLOWED)


def test_imports_point_one_way() -> None:
    wrong = {m: sorted(layer_imports(SINKS / f"{m}.py") - allowed) for m, allowed in ALLOWED.items()}
    assert {m: w for m, w in wrong.items() if w} == {}
