"""What an ``infertap drift`` process loads: no pandas with the local engine (pyarrow.dataset would import it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infertap.drift.baseline import build_baseline
from infertap.drift.features import FeatureSpec
from tests.unit.drift import capture

ROOT = Path(__file__).resolve().parents[3]
SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)]


def _in_new_process(*argv: str) -> tuple[int, bool]:
    """``infertap`` ``argv`` run by ``main`` in a fresh interpreter: its exit code and whether pandas was loaded."""
    code = (
        "import json, sys\n"
        "from infertap.logger.cli import main\n"
        "rc = main(json.loads(sys.argv[1]))\n"
        "print(json.dumps([rc, 'pandas' in sys.modules]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(argv))], capture_output=True, text=True, cwd=ROOT, check=True
    )
    rc, loaded = json.loads(proc.stdout.splitlines()[-1])
    return int(rc), bool(loaded)


def test_drift_run_and_canary_do_not_load_pandas(tmp_path: Path) -> None:
    pytest.importorskip("pandas")  # installed with the drift extra: there is something to keep out
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2000, 3))
    base = build_baseline({s.name: ref[:, i] for i, s in enumerate(SPECS)}, SPECS, model_name="m", model_version="1")
    base.save(tmp_path / "b.json")
    cur = rng.normal(size=(1500, 3))
    cur += 1.0
    capture.write(tmp_path / "cap", capture.table(cur), "part-0.parquet")
    capture.write(tmp_path / "cap", capture.table(cur, revision="r2"), "part-1.parquet")
    run = ["drift", "run", str(tmp_path / "cap"), "--baseline", str(tmp_path / "b.json"), "--no-progress"]
    assert _in_new_process(*run, "-o", str(tmp_path / "v.json")) == (1, False)  # drift found, pandas not loaded
    assert json.loads((tmp_path / "v.json").read_text())["n_drifted"] == 3
    canary = ["drift", "canary", str(tmp_path / "cap"), "--model", "m", "--stable", "r1", "--canary", "r2"]
    assert _in_new_process(*canary, "-o", str(tmp_path / "c.json")) == (0, False)


def test_pandas_is_refused_only_inside_the_block() -> None:
    pytest.importorskip("pandas")
    code = (
        "import sys\n"
        "from infertap.logger.nopandas import pandas_refused\n"
        "with pandas_refused('this test'):\n"
        "    try:\n"
        "        import pandas\n"
        "    except ModuleNotFoundError as exc:\n"
        "        print('refused', 'this test' in str(exc))\n"
        "import pandas\n"
        "print('loaded', 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["refused", "True", "loaded", "True"]
