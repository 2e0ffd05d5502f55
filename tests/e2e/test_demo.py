"""The demo end to end with the real predictors: MLServer (V2 JSON) and KServe's ModelServer (V2 binary), traffic
from tritonclient, Parquet read back with pyarrow and compared with what was sent, element by element."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from infertap.demo.drift_step import run as drift_step
from infertap.demo.readback import read_records
from infertap.demo.run import run
from infertap.demo.traffic import MALFORMED
from infertap.logger import record

pytestmark = pytest.mark.integration
PER_PERIOD = 120


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("demo")
    return out, run(out, per_period=PER_PERIOD, batch=4, steps=[drift_step])


def test_every_element_sent_is_in_parquet(demo: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, summary = demo
    assert summary["requests_missing"] == 0
    # two periods x 40 instances x (64 pixels + 30 features), plus the canary split of the tabular holdout
    assert summary["elements_sent"] > 2 * PER_PERIOD * (64 + 30)
    assert summary["elements_matched"] == summary["elements_sent"]
    assert summary["predictions_received"] > 2 * 2 * PER_PERIOD // 4
    assert summary["predictions_matched"] == summary["predictions_received"]


def test_one_record_per_request_and_errors_captured(demo: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, summary = demo
    assert summary["records_written"] == summary["requests_sent"]
    assert summary["requests_sent"] - summary["requests_ok"] == 2 * len(MALFORMED)
    assert summary["records_with_decode_error"] == 2 * len(MALFORMED)
    assert sum(v for k, v in summary["records_by_status"].items() if k != "200") == 2 * len(MALFORMED)
    written = json.loads((out / "summary.json").read_text())
    for key in ("requests_sent", "requests_ok", "records_written", "parquet_files", "decoded_columns", "latency_ms"):
        assert key in written
    assert set(written["latency_ms"]) == {"p50", "p99"}


def test_scraped_metrics_agree_with_what_was_read_back(demo: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, summary = demo
    metrics = summary["metrics"]
    assert metrics["infertap_capture_written_records_total"] == summary["records_written"]
    assert metrics["infertap_capture_records_total"] == summary["records_written"]
    assert metrics["infertap_capture_dropped_total"] == 0


def test_every_sidecar_exit_code_is_reported(demo: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, summary = demo
    assert summary["sidecar_exit_codes"] == {
        "sidecar-breast-cancer-predictor-0": 0,
        "sidecar-breast-cancer-predictor-canary-0": 0,
        "sidecar-digits-predictor-0": 0,
        "collector-0": 0,  # the digits sidecar runs in forward mode through it
    }


def test_tensor_columns_typed_by_protocol(demo: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, _ = demo
    tables, files = read_records(out / "data")
    assert {f.parent.parent.parent.name for f in files} == {"model=breast-cancer", "model=digits"}
    tab, img = tables["breast-cancer"], tables["digits"]
    assert {c.column: c.datatype for c in record.tensor_columns(tab.schema)} == {
        "input.input-0": "FP64", "output.predict": "INT64",
    }  # fmt: skip
    assert {c.column: c.datatype for c in record.tensor_columns(img.schema)} == {
        "input.input-0": "FP32", "output.predict": "INT64",
    }  # fmt: skip
    ok = img.filter(np.array(img.column("status_code").to_pylist()) == 200)
    assert set(ok.column("protocol").to_pylist()) == {"v2-binary"}
    assert record.instances(ok.column("input.input-0")).shape == (2 * PER_PERIOD, 64)
    revisions = tab.column("revision").to_pylist()
    assert set(revisions) == {"breast-cancer-predictor-00001", "breast-cancer-predictor-00002"}
    canary = tab.filter(np.array([r.endswith("00002") for r in revisions]))
    assert set(canary.column("endpoint").to_pylist()) == {"canary"}
    assert set(canary.column("model_version").to_pylist()) == {"v2"}
    assert set(record.instances(canary.column("output.predict")).reshape(-1).tolist()) == {0}  # the defect
    malformed = tab.filter(np.array([e is not None for e in tab.column("decode_error").to_pylist()]))
    assert all(b for b in malformed.column("request_body").to_pylist())  # raw body kept when undecodable
    for f in files:
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"


def test_drift_flags_the_drifted_period_only(demo: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, summary = demo
    verdicts = {(w["model"], w["window"]): w for w in summary["drift"]}
    for model in ("breast-cancer", "digits"):
        assert verdicts[(model, "in-distribution")]["dataset_drift"] is False
        assert verdicts[(model, "drifted")]["dataset_drift"] is True
        assert verdicts[(model, "drifted")]["drifted_share"] >= 0.5
        assert (out / "drift" / f"report-{model}-drifted.html").stat().st_size > 10_000
    assert "mean texture" in verdicts[("breast-cancer", "drifted")]["drifted_features"]  # the split feature
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test-deps` installs Debian's prometheus package"
    textfiles = sorted((out / "drift").glob("*.prom"))
    assert len(textfiles) == 5
    for path in textfiles:
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=path.read_bytes(), capture_output=True, check=False
        )
        assert checked.returncode == 0, (path, checked.stdout, checked.stderr)


def test_canary_with_lost_preprocessing_fails(demo: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    _, summary = demo
    canary = summary["canary"]
    assert canary["verdict"] == "Fail"
    failed = [c for c in canary["checks"] if not c["passed"]]
    assert any(c["critical"] and c["name"].startswith("output_drift") for c in failed)
    assert {"name": "error_rate", "passed": True}.items() <= next(
        c for c in canary["checks"] if c["name"] == "error_rate"
    ).items()
    types = sorted(a["type"] for a in summary["alerts"])
    assert types == ["io.infertap.canary.verdict", "io.infertap.drift.detected", "io.infertap.drift.detected"]
