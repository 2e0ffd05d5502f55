"""The drift job's stage of ``infertap demo`` (passed to :func:`infertap.demo.run.run` by ``infertap demo``).

After the sidecars captured the demo's traffic, this stage:

1. builds a baseline per model from its training split (features, and the model's own predictions on it):
   breast-cancer feature by feature (30 FP64 features), digits per image instance (mean, std, min, max of the 64
   pixels, see :mod:`infertap.drift.features`), and each model's predicted class as a categorical feature;
2. runs the windowed drift job over each traffic period the demo timed (``in-distribution``, ``drifted``);
3. compares the canary revision of breast-cancer with the stable one over the ``canary`` period;
4. writes the verdicts, an HTML report of each drifted window, and the Prometheus textfile under
   ``demo-output/drift/``; returns the ``drift`` and ``canary`` sections of ``summary.json``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import joblib
import numpy as np
from cloudevents.core.bindings import http as ce_http
from rich.console import Console
from rich.table import Table

from infertap.demo.models import DemoModel
from infertap.demo.run import CANARY_REVISION, STABLE_REVISION, DemoContext
from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.canary import compare
from infertap.drift.features import SUMMARIES, FeatureSpec
from infertap.drift.job import run_window
from infertap.drift.outputs import dump_verdict, send_alert, write_metrics
from infertap.drift.reader import Window
from infertap.drift.report import write_report

INPUT, OUTPUT = "input.input-0", "output.predict"


def _baseline(model: DemoModel) -> Baseline:
    """Baseline of ``model`` from its training split."""
    x = model.train_x.reshape(len(model.train_x), -1)
    predicted = np.asarray(joblib.load(model.path).predict(x)).astype(np.int64)
    columns: dict[str, np.ndarray[Any, Any]] = {"predicted_class": predicted}
    specs = [FeatureSpec("predicted_class", OUTPUT, 0, None, "categorical")]
    if x.shape[1] > 32:  # an image: per-instance summaries
        for how in SUMMARIES:
            columns[f"image.{how}"] = getattr(np, how)(x.astype(np.float64), axis=1)
            specs.append(FeatureSpec(f"image.{how}", INPUT, None, how))
    else:
        for i, name in enumerate(model.feature_names):
            columns[name] = x[:, i]
            specs.append(FeatureSpec(name, INPUT, i))
    return build_baseline(columns, specs, model_name=model.name, source=f"demo training split of {model.name}")


def run(ctx: DemoContext) -> dict[str, Any]:
    """Run the drift stage on what the demo captured; returns ``{"drift": [...], "canary": {...}}``."""
    out = ctx.output / "drift"
    out.mkdir(parents=True, exist_ok=True)
    source = str(ctx.data_dir)
    windows: list[dict[str, Any]] = []
    webhook = _Webhook()
    for name, model in ctx.models.items():
        baseline = _baseline(model)
        baseline.save(out / f"baseline-{name}.json")
        for period in ("in-distribution", "drifted"):
            start, end = ctx.traffic.periods[period]
            verdict = run_window(baseline, source, window=Window(start, end), progress=False)
            if verdict["dataset_drift"]:
                verdict["report"] = str(write_report(verdict, out / f"report-{name}-{period}.html"))
            dump_verdict(verdict, out / f"verdict-{name}-{period}.json")
            write_metrics(verdict, textfile=out / f"drift-{name}-{period}.prom")
            if verdict["dataset_drift"]:
                send_alert(verdict, webhook.url)
            windows.append(
                {
                    "model": name,
                    "window": period,
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "dataset_drift": verdict["dataset_drift"],
                    "drifted_share": round(verdict["drifted_share"], 3),
                    "drifted_features": [f["name"] for f in verdict["features"] if f["drifted"]],
                }
            )
    start, end = ctx.traffic.periods["canary"]
    canary = compare(
        source, "breast-cancer", group_by="revision", stable=STABLE_REVISION, canary=CANARY_REVISION,
        window=Window(start, end),
    )  # fmt: skip
    dump_verdict(canary, out / "verdict-canary.json")
    write_metrics(canary, textfile=out / "canary-breast-cancer.prom")
    send_alert(canary, webhook.url)
    webhook.close()
    _print(windows, canary)
    checks = [
        {k: c.get(k) for k in ("name", "passed", "critical", "statistic", "threshold", "reason")}
        for c in canary["checks"]
    ]
    return {
        "drift": windows,
        "canary": {"verdict": canary["verdict"], "score": round(canary["score"], 1), "checks": checks},
        "alerts": webhook.received,
    }


class _Webhook:
    """A local HTTP endpoint standing for the retraining trigger: records the CloudEvents it is sent."""

    def __init__(self) -> None:
        received: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                event = ce_http.from_http_event(ce_http.HTTPMessage(dict(self.headers.items()), body))
                attrs = event.get_attributes()
                received.append({"type": str(attrs.get("type")), "subject": str(attrs.get("subject", ""))})
                self.send_response(202)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _print(windows: list[dict[str, Any]], canary: dict[str, Any]) -> None:
    console = Console()
    table = Table(title="drift windows (baseline: training split)")
    for col in ("model", "window", "dataset drift", "drifted share", "drifted features"):
        table.add_column(col)
    for w in windows:
        shown = ", ".join(w["drifted_features"][:6]) + (" ..." if len(w["drifted_features"]) > 6 else "")
        table.add_row(w["model"], w["window"], str(w["dataset_drift"]), f"{w['drifted_share']:.2f}", shown)
    console.print(table)
    checks = Table(title=f"canary {CANARY_REVISION} vs stable: {canary['verdict']} (score {canary['score']:.2f})")
    for col in ("check", "passed", "critical", "reason"):
        checks.add_column(col, overflow="fold")
    for c in canary["checks"]:
        checks.add_row(str(c.get("name")), str(c.get("passed")), str(c.get("critical")), str(c.get("reason", "")))
    console.print(checks)
