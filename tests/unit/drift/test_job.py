"""The windowed job, canary, baseline files, CLI and outputs over captured Parquet; bad input gets clear errors."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infertap.drift.baseline import build_baseline, load_baseline
from infertap.drift.canary import compare
from infertap.drift.errors import BaselineError, DataError, EmptyWindowError
from infertap.drift.features import FeatureSpec
from infertap.drift.job import run_window
from infertap.drift.outputs import alert_event, send_alert, write_metrics
from infertap.drift.reader import Window
from infertap.drift.report import write_report
from infertap.logger.cli import main
from tests.unit.drift import capture

SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)] + [FeatureSpec("pred", "output.y", 0)]


def _baseline(version: str | None = "1", model: str = "m") -> Any:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3000, 3))
    cols = {"f0": ref[:, 0], "f1": ref[:, 1], "f2": ref[:, 2], "pred": 2 * ref[:, 0]}
    return build_baseline(cols, SPECS, model_name=model, model_version=version)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 3))
    capture.write(tmp_path, capture.table(x, 2 * x[:, 0]), "calm.parquet")
    later = capture.T0_US + 2 * 3_600_000_000
    y = rng.normal(size=(4000, 3)) + np.array([1.0, 1.0, 0.0])
    capture.write(tmp_path, capture.table(y, 2 * y[:, 0], t0_us=later), "drift.parquet")
    return tmp_path


def _t(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC)


def test_window_without_drift_and_with_drift(root: Path) -> None:
    base = _baseline()
    calm = run_window(base, str(root), window=Window(_t(capture.T0_US), _t(capture.T0_US + 3_600_000_000)))
    assert calm["verdict"] == "no_drift"
    assert calm["window"]["records"] == 4000
    late = run_window(base, str(root), window=Window(_t(capture.T0_US + 2 * 3_600_000_000), None))
    assert late["dataset_drift"] is True
    drifted = {f["name"] for f in late["features"] if f["drifted"]}
    assert drifted == {"f0", "f1", "pred"}
    for f in late["features"]:
        assert f["test"] == "wasserstein"
        assert f["reason"]


def test_baseline_roundtrip(tmp_path: Path) -> None:
    base = _baseline()
    path = base.save(tmp_path / "b.json.gz")
    again = load_baseline(path)
    assert again.id == base.id
    assert [f.spec for f in again.features] == SPECS
    np.testing.assert_array_equal(again.features[0].summary.counts, base.features[0].summary.counts)  # type: ignore[union-attr]


def test_bad_baseline_files(tmp_path: Path) -> None:
    p = tmp_path / "b.json"
    p.write_text(json.dumps({"format": "infertap.baseline", "version": 99}))
    with pytest.raises(BaselineError, match="version 99"):
        load_baseline(p)
    p.write_text("{}")
    with pytest.raises(BaselineError, match="not an infertap baseline"):
        load_baseline(p)


def test_nonfinite_reference_is_an_error() -> None:
    with pytest.raises(DataError, match="NaN/inf"):
        build_baseline({"a": np.array([1.0, np.nan, 2.0])}, [FeatureSpec("a", "input.x", 0)], model_name="m")
    with pytest.raises(DataError, match="lacks feature columns"):
        build_baseline({"a": np.ones(3)}, [FeatureSpec("b", "input.x", 0)], model_name="m")


def test_nonfinite_window_values_flag_the_feature(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(size=(2000, 3))
    x[:50, 1] = np.nan
    x[50:60, 1] = np.inf
    capture.write(tmp_path, capture.table(x, 2 * x[:, 0]))
    out = run_window(_baseline(), str(tmp_path))
    f1 = next(f for f in out["features"] if f["name"] == "f1")
    assert f1["drifted"]
    assert f1["n_nonfinite"] == 60
    assert "NaN/inf" in f1["reason"]


def test_empty_and_mismatched_windows(root: Path, tmp_path: Path) -> None:
    base = _baseline()
    with pytest.raises(EmptyWindowError):
        run_window(base, str(root), window=Window(_t(capture.T0_US + 50 * 3_600_000_000), None))
    with pytest.raises(DataError, match="nothing-here"):
        run_window(base, str(tmp_path / "nothing-here"))
    with pytest.raises(BaselineError, match="model"):
        run_window(_baseline(model="other"), str(root), model="m")
    with pytest.raises(BaselineError, match=r"version '7'.*\['1'\]"):
        run_window(_baseline(version="7"), str(root))


def test_missing_tensor_column_is_an_error(tmp_path: Path) -> None:
    x = np.random.default_rng(3).normal(size=(100, 3))
    capture.write(tmp_path, capture.table(x))  # no output column
    with pytest.raises(DataError, match=r"1 baseline features have no data in the window.*\['pred'\].*output\.y"):
        run_window(_baseline(), str(tmp_path))
    out = run_window(_baseline(), str(tmp_path), allow_missing_columns=True)
    assert out["missing_columns"] == ["output.y"]
    assert out["missing_features"] == ["pred"]
    assert out["n_features"] == 3
    base = build_baseline({"z": np.ones(10)}, [FeatureSpec("z", "input.zz", 0)], model_name="m", model_version="1")
    with pytest.raises(EmptyWindowError, match="none of the baseline's tensor columns"):
        run_window(base, str(tmp_path))


def test_canary_fails_on_output_shift_and_passes_on_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6000, 3))
    lat = rng.gamma(2.0, 0.01, 6000)
    capture.write(tmp_path, capture.table(x[:3000], x[:3000, 0], revision="s", latency_s=lat[:3000]), "s.parquet")
    t1 = capture.T0_US + 5000
    bad = capture.table(x[3000:], 0.5 * x[3000:, 0] + 1, revision="c", latency_s=lat[3000:], t0_us=t1)
    capture.write(tmp_path, bad, "c.parquet")
    out = compare(str(tmp_path), "m", stable="s", canary="c")
    assert out["verdict"] == "Fail"
    failed = [c["name"] for c in out["checks"] if not c["passed"]]
    assert failed == ["output_drift:output.y[0]"]
    assert out["canary"]["requests"] == 3000
    same = tmp_path / "same"
    capture.write(same, capture.table(x[:3000], x[:3000, 0], revision="s", latency_s=lat[:3000]), "s.parquet")
    good = capture.table(x[3000:], x[3000:, 0], revision="c", latency_s=lat[3000:], t0_us=t1)
    capture.write(same, good, "c.parquet")
    ok = compare(str(same), "m", stable="s", canary="c")
    assert ok["verdict"] == "Pass", ok["checks"]
    assert ok["score"] == 100.0


def test_cli_exit_codes(root: Path, tmp_path: Path) -> None:
    bpath = tmp_path / "b.json"
    _baseline().save(bpath)
    start = _t(capture.T0_US + 2 * 3_600_000_000).isoformat()
    prom = tmp_path / "drift.prom"
    out = tmp_path / "v.json"
    rc = main(
        [
            "drift",
            "run",
            str(root),
            "--baseline",
            str(bpath),
            "--start",
            start,
            "-o",
            str(out),
            "--metrics-textfile",
            str(prom),
            "--no-progress",
        ]
    )
    assert rc == 1
    assert json.loads(out.read_text())["dataset_drift"] is True
    assert 'infertap_drift_dataset_drifted{model="m"} 1.0' in prom.read_text()
    end = _t(capture.T0_US + 3_600_000_000).isoformat()
    assert main(["drift", "run", str(root), "--baseline", str(bpath), "--end", end, "-o", str(out)]) == 0
    assert main(["drift", "run", str(tmp_path / "none"), "--baseline", str(bpath)]) == 2


def test_cli_baseline_from_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    np.savez(
        tmp_path / "train.npz",
        X=rng.normal(size=(500, 3)),
        predictions=rng.normal(size=500),
        labels=rng.integers(0, 2, 500),
    )
    out = tmp_path / "b.json"
    assert (
        main(
            [
                "drift",
                "baseline",
                str(tmp_path / "train.npz"),
                "-o",
                str(out),
                "--model",
                "m",
                "--tensor",
                "x",
                "--output-tensor",
                "y",
            ]
        )
        == 0
    )
    b = load_baseline(out)
    assert [(f.spec.name, f.spec.column) for f in b.features] == [
        ("x0", "input.x"),
        ("x1", "input.x"),
        ("x2", "input.x"),
        ("prediction[0]", "output.y"),
        ("label", ""),
    ]


def test_report_metrics_and_alert(root: Path, tmp_path: Path) -> None:
    base = _baseline()
    v = run_window(base, str(root), window=Window(_t(capture.T0_US + 2 * 3_600_000_000), None))
    html = write_report(v, tmp_path / "r.html")
    assert html.stat().st_size > 10_000
    reg = write_metrics(v, tmp_path / "m.prom")
    assert reg.get_sample_value("infertap_drift_drifted_share", {"model": "m"}) == pytest.approx(0.75)
    msg = alert_event(v)
    body = json.loads(msg.body)
    assert body["type"] == "io.infertap.drift.detected"
    assert body["data"]["dataset_drift"] is True
    got: list[bytes] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    th = threading.Thread(target=srv.handle_request)
    th.start()
    try:
        assert send_alert(v, f"http://127.0.0.1:{srv.server_port}/hook") == 202
    finally:
        th.join(10)
        srv.server_close()
    assert json.loads(got[0])["source"] == "/infertap/drift"


def test_cli_canary_exit_code(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2000, 3))
    capture.write(tmp_path, capture.table(x[:1000], x[:1000, 0], revision="s"), "s.parquet")
    bad = capture.table(x[1000:], x[1000:, 0] + 2, revision="c", t0_us=capture.T0_US + 5000)
    capture.write(tmp_path, bad, "c.parquet")
    out = tmp_path / "v.json"
    args = ["drift", "canary", str(tmp_path), "--model", "m", "--stable", "s", "--canary", "c", "-o", str(out)]
    assert main(args) == 1
    assert json.loads(out.read_text())["verdict"] == "Fail"
    assert main(["drift", "canary", str(tmp_path), "--model", "m", "--stable", "s", "--canary", "nope"]) == 2
