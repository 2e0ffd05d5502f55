"""``infertap genai-drift`` over captured Parquet in the file sink's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from infertap.logger.cli import main
from tests.unit.drift import capture
from tests.unit.drift.test_generative import calls


def _capture(root: Path, revision: str, completion: float, seed: int, t0_us: int = capture.T0_US) -> None:
    gen = calls(60, completion=completion, ttft=0.05, length_share=0.1, tokens=False, seed=seed)
    tbl = capture.table(np.zeros((gen.num_rows, 1)), revision=revision, t0_us=t0_us)
    for name in gen.column_names:
        tbl = tbl.set_column(tbl.schema.get_field_index(name), name, gen.column(name))
    capture.write(root, tbl, f"{revision}.parquet")


def test_window_against_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hour = 3_600_000_000
    _capture(tmp_path, "r1", 40, 1)
    _capture(tmp_path, "r1b", 15, 4, t0_us=capture.T0_US + hour)
    t = [pa.scalar(capture.T0_US + k * hour, pa.timestamp("us", tz="UTC")).as_py().isoformat() for k in range(3)]
    code = main(["genai-drift", "window", str(tmp_path), "--model", "m", "--reference-start", t[0],
                 "--reference-end", t[1], "--start", t[1], "--end", t[2]])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["length_unit"] == "chars"
    assert "completion_length" in doc["drifted"]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["genai-drift", "window", str(tmp_path / "nothing"), "--model", "m", "--reference-start",
                 "2026-01-01T00:00Z", "--reference-end", "2026-01-01T01:00Z", "--start", "2026-01-01T01:00Z",
                 "--end", "2026-01-01T02:00Z"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("infertap genai-drift: error:")
    assert len(err.strip().splitlines()) == 1
