"""``infertap demo --output``: a previous demo output is replaced, anything else is refused without --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from infertap.demo.run import MARKER, OutputInUse, _prepare_output
from infertap.logger.cli import main


def test_a_foreign_folder_is_refused_and_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    assert main(["demo", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"infertap demo: {tmp_path} is not empty and is not a previous demo output: pass --force to replace it\n"
    )
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputInUse, match="is not a folder"):
        _prepare_output(tmp_path / "f", force=True)
    assert (tmp_path / "f").read_text() == "x"


def test_a_previous_demo_output_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    _prepare_output(out, force=False)
    (out / "summary.json").write_text("{}")
    _prepare_output(out, force=False)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]


def test_force_replaces_any_folder_and_new_or_empty_ones_are_used(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x").write_text("x")
    _prepare_output(tmp_path / "old", force=True)
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == [MARKER]
    (tmp_path / "empty").mkdir()
    _prepare_output(tmp_path / "empty", force=False)
    _prepare_output(tmp_path / "new" / "deeper", force=False)
    assert (tmp_path / "new" / "deeper" / MARKER).exists()
