"""The demo, end to end: train, serve behind sidecars, send traffic, read back what was captured, summarise."""

from __future__ import annotations

import shutil
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from infertap.demo import models, predictors, readback, traffic

#: Extra demo stages (``infertap demo`` passes :func:`infertap.demo.drift_step.run`): each is called with the
#: :class:`DemoContext` after capture and returns a JSON-able section for ``summary.json``.
DemoStep = Callable[["DemoContext"], dict[str, Any]]


@dataclass
class DemoContext:
    """What the demo made, for later stages.

    Attributes:
        output: the demo's output directory.
        data_dir: root of the captured Parquet (``output / "data"``).
        log_dir: where process logs go.
        models: the trained models by name.
        traffic: every request sent.
    """

    output: Path
    data_dir: Path
    log_dir: Path
    models: dict[str, models.DemoModel]
    traffic: traffic.TrafficLog


STABLE_REVISION = "breast-cancer-predictor-00001"
CANARY_REVISION = "breast-cancer-predictor-00002"


def _identity(isvc: str, revision: str, endpoint: str) -> dict[str, str]:
    return {
        "INFERTAP_INFERENCE_SERVICE": isvc,
        "INFERTAP_NAMESPACE": "demo",
        "INFERTAP_COMPONENT": "predictor",
        "INFERTAP_REVISION": revision,
        "INFERTAP_ENDPOINT": endpoint,
        "INFERTAP_FLUSH_INTERVAL_S": "5",
        "INFERTAP_BATCH_MAX_DELAY_S": "0.5",
    }


def _scrape(admin_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as resp:
        text: str = resp.read().decode()
    return text


def _canary_period(
    stack: ExitStack,
    stable: models.DemoModel,
    stable_car: predictors.Running,
    output: Path,
    data_dir: Path,
    log_dir: Path,
    log: traffic.TrafficLog,
    batch: int,
    metrics_text: dict[str, str],
) -> None:
    """Serve the defective canary revision beside the stable one and split in-distribution traffic 50/50.

    Like a KServe canary rollout (``canaryTrafficPercent: 50``): a second MLServer (revision ``...-00002``, model
    version ``v2``, endpoint ``canary``) with its own sidecar; requests alternate between the two revisions.
    """
    canary = models.train_breast_cancer_canary(output / "models" / "breast-cancer-canary")
    mls = predictors.start_mlserver(canary.path.parent, log_dir, log_name="mlserver-canary")
    stack.callback(mls.process.stop)
    car = predictors.start_sidecar(
        mls,
        "breast-cancer-predictor-canary-0",
        data_dir,
        log_dir,
        _identity("breast-cancer", CANARY_REVISION, "canary"),
    )
    stack.callback(car.process.stop)
    rows = np.random.default_rng(1).permutation(stable.holdout_x)
    with log.period("canary"):
        for i, start in enumerate(range(0, len(rows), 4 * batch)):
            chunk = rows[start : start + 4 * batch]
            target, arm = (stable_car, "stable") if i % 2 == 0 else (car, "canary")
            traffic.send_v2(target.host_port, stable, chunk, period="canary", binary=False, batch=batch, log=log,
                            tag=f"{arm}-{start:04d}-")  # fmt: skip
    metrics_text[car.process.name] = _scrape(car.admin_port)
    car.process.stop()


def run(
    output: Path,
    *,
    per_period: int = 120,
    batch: int = 4,
    canary: bool = True,
    steps: list[DemoStep] | None = None,
) -> dict[str, Any]:
    """Run the demo into ``output`` and return the summary (also written as ``output/summary.json``).

    Args:
        output: directory for everything (emptied first).
        per_period: instances sent per model and traffic period (in-distribution, then drifted).
        batch: instances per request.
        canary: also serve a defective canary revision of the tabular model beside the stable one, with a 50/50
            traffic split (period ``canary``).
        steps: extra stages run after capture (see :data:`DemoStep`).

    Raises:
        RuntimeError: a predictor or sidecar did not start (the message has its log's tail).
        FileNotFoundError: a predictor virtual environment is missing.
    """
    t_start = time.monotonic()
    if output.exists():
        shutil.rmtree(output)
    data_dir, log_dir = output / "data", output / "logs"
    data_dir.mkdir(parents=True)
    tabular = models.train_breast_cancer(output / "models" / "breast-cancer")
    images = models.train_digits(output / "models" / "digits")
    log = traffic.TrafficLog()
    metrics_text: dict[str, str] = {}
    with ExitStack() as stack:
        mls = predictors.start_mlserver(tabular.path.parent, log_dir)
        stack.callback(mls.process.stop)
        ks = predictors.start_kserve(images.path, images.name, "1", log_dir)
        stack.callback(ks.process.stop)
        car_tab = predictors.start_sidecar(
            mls, "breast-cancer-predictor-0", data_dir, log_dir, _identity("breast-cancer", STABLE_REVISION, "default")
        )
        stack.callback(car_tab.process.stop)
        car_img = predictors.start_sidecar(
            ks, "digits-predictor-0", data_dir, log_dir, _identity("digits", "digits-predictor-00001", "default")
        )
        stack.callback(car_img.process.stop)
        for period, tab_rows, img_rows in (
            ("in-distribution", tabular.holdout_x, images.holdout_x),
            ("drifted", tabular.shifted_x, images.shifted_x),
        ):
            with log.period(period):
                traffic.send_v2(car_tab.host_port, tabular, tab_rows[:per_period], period=period, binary=False,
                                batch=batch, log=log)  # fmt: skip
                traffic.send_v2(car_img.host_port, images, img_rows[:per_period], period=period, binary=True,
                                batch=batch, log=log)  # fmt: skip
        with log.period("malformed"):
            traffic.send_malformed(car_tab.url, tabular.name, log)
            traffic.send_malformed(car_img.url, images.name, log)
        if canary:
            _canary_period(stack, tabular, car_tab, output, data_dir, log_dir, log, batch, metrics_text)
        for car in (car_tab, car_img):
            metrics_text[car.process.name] = _scrape(car.admin_port)
        exit_codes = {car.process.name: car.process.stop() for car in (car_tab, car_img)}
    ctx = DemoContext(output, data_dir, log_dir, {tabular.name: tabular, images.name: images}, log)
    summary = readback.summarise(ctx.data_dir, log, metrics_text)
    summary["sidecar_exit_codes"] = exit_codes
    for step in steps or []:
        summary.update(step(ctx))
    summary["duration_s"] = round(time.monotonic() - t_start, 1)
    readback.write_summary(output / "summary.json", summary)
    return summary
