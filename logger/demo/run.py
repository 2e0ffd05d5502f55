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
from prometheus_client.parser import text_string_to_metric_families

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


#: Marks a folder as a demo's output, which ``infertap demo`` may empty without ``--force``.
MARKER = ".infertap-demo"


class OutputInUse(ValueError):
    """``--output`` is a non-empty folder that is not a previous demo output (and ``--force`` was not given)."""


def _prepare_output(output: Path, force: bool) -> None:
    """Empty ``output`` if it is a previous demo output (or ``force``), refuse any other non-empty folder.

    Raises:
        OutputInUse: ``output`` exists, is not empty, holds no :data:`MARKER` and ``force`` is false.
    """
    if output.exists() and not output.is_dir():
        raise OutputInUse(f"{output} exists and is not a folder")
    if output.exists() and any(output.iterdir()):
        if not (force or (output / MARKER).exists()):
            raise OutputInUse(f"{output} is not empty and is not a previous demo output: pass --force to replace it")
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / MARKER).write_text("written by infertap demo; the next run may replace this folder\n")


def _scrape(admin_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as resp:
        text: str = resp.read().decode()
    return text


def _settled_scrape(admin_port: int, timeout_s: float = 30.0) -> str:
    """The sidecar's metrics once its capture pipeline has caught up: queue empty and every captured record
    written or dropped, so the scraped written-record count is the one read back from Parquet."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = _scrape(admin_port)
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        caught_up = totals.get("infertap_capture_queue_depth", 0.0) == 0.0 and totals.get(
            "infertap_capture_written_records_total", 0.0
        ) + totals.get("infertap_capture_dropped_total", 0.0) >= totals.get("infertap_capture_records_total", 0.0)
        if caught_up or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


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
) -> tuple[str, int]:
    """Serve the defective canary revision beside the stable one and split in-distribution traffic 50/50.

    Like a KServe canary rollout (``canaryTrafficPercent: 50``): a second MLServer (revision ``...-00002``, model
    version ``v2``, endpoint ``canary``) with its own sidecar; requests alternate between the two revisions.

    Returns:
        the canary sidecar's name and exit code (0: drained completely).
    """
    canary = models.train_breast_cancer_canary(output / "models" / "breast-cancer-canary")
    mls = predictors.start_mlserver(canary.path.parent, log_dir, log_name="mlserver-canary")
    stack.callback(mls.process.stop)
    car = predictors.start_sidecar(
        mls,
        "breast-cancer-predictor-canary-0",
        data_dir,
        log_dir,
        predictors.sidecar_identity("breast-cancer", CANARY_REVISION, "canary"),
    )
    stack.callback(car.process.stop)
    rows = np.random.default_rng(1).permutation(stable.holdout_x)
    with log.period("canary"):
        for i, start in enumerate(range(0, len(rows), 4 * batch)):
            chunk = rows[start : start + 4 * batch]
            target, arm = (stable_car, "stable") if i % 2 == 0 else (car, "canary")
            traffic.send_v2(target.host_port, stable, chunk, period="canary", binary=False, batch=batch, log=log,
                            tag=f"{arm}-{start:04d}-")  # fmt: skip
    metrics_text[car.process.name] = _settled_scrape(car.admin_port)
    return car.process.name, car.process.stop()


def run(
    output: Path,
    *,
    per_period: int = 120,
    batch: int = 4,
    canary: bool = True,
    steps: list[DemoStep] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run the demo into ``output`` and return the summary (also written as ``output/summary.json``).

    Args:
        output: directory for everything: created, or emptied first when it is a previous demo output.
        per_period: instances sent per model and traffic period (in-distribution, then drifted).
        batch: instances per request.
        canary: also serve a defective canary revision of the tabular model beside the stable one, with a 50/50
            traffic split (period ``canary``).
        steps: extra stages run after capture (see :data:`DemoStep`).
        force: empty ``output`` even when it is not a previous demo output.

    Raises:
        OutputInUse: ``output`` is a non-empty folder of something else and ``force`` is false.
        RuntimeError: a predictor or sidecar did not start (the message has its log's tail).
        FileNotFoundError: a predictor virtual environment is missing.
    """
    t_start = time.monotonic()
    _prepare_output(output, force)
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
            mls,
            "breast-cancer-predictor-0",
            data_dir,
            log_dir,
            predictors.sidecar_identity("breast-cancer", STABLE_REVISION, "default"),
        )
        stack.callback(car_tab.process.stop)
        collector = predictors.start_collector("collector-0", data_dir, output / "collector", log_dir)
        stack.callback(collector.process.stop)
        forward = {  # the digits predictor's sidecar runs in forward mode: the collector decodes and writes
            "INFERTAP_CAPTURE_PLACEMENT": "forward",
            "INFERTAP_FORWARD_COLLECTOR_URL": collector.url,
            "INFERTAP_FORWARD_SPOOL_DIR": str(output / "forward-spool" / "digits-predictor-0"),
            "INFERTAP_BATCH_MAX_DELAY_S": "0.2",
        }
        car_img = predictors.start_sidecar(
            ks, "digits-predictor-0", data_dir, log_dir,
            predictors.sidecar_identity("digits", "digits-predictor-00001", "default") | forward,
        )  # fmt: skip
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
        exit_codes: dict[str, int] = {}
        if canary:
            name, code = _canary_period(stack, tabular, car_tab, output, data_dir, log_dir, log, batch, metrics_text)
            exit_codes[name] = code
        for car in (car_tab, car_img):
            metrics_text[car.process.name] = _settled_scrape(car.admin_port)
        exit_codes.update({car.process.name: car.process.stop() for car in (car_tab, car_img)})
        exit_codes[collector.process.name] = collector.process.stop()  # after its sidecars: flushes what they sent
    ctx = DemoContext(output, data_dir, log_dir, {tabular.name: tabular, images.name: images}, log)
    summary = readback.summarise(ctx.data_dir, log, metrics_text)
    summary["sidecar_exit_codes"] = dict(sorted(exit_codes.items()))
    for step in steps or []:
        summary.update(step(ctx))
    summary["duration_s"] = round(time.monotonic() - t_start, 1)
    readback.write_summary(output / "summary.json", summary)
    return summary
