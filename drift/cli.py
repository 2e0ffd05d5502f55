"""``infertap drift {baseline,run,canary}`` (registered through the ``infertap.commands`` entry point).

Exit codes: ``run`` 0 no drift, 1 dataset drift; ``canary`` 0 Pass, 3 Marginal, 1 Fail; ``baseline`` 0. Every
command exits 2 on any failure (bad input, unreadable or truncated files, an edited baseline, empty window,
mismatched baseline, bad options, an unforeseen error) with one line on stderr. Once a verdict is made, a failing
Pushgateway or webhook is a warning on stderr and the exit code stays the verdict's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infertap.drift.cpu import prefer_avx2_sort
from infertap.drift.errors import ConfigError
from infertap.logger.errors import InfertapError
from infertap.logger.nopandas import pandas_refused

if TYPE_CHECKING:
    from infertap.drift.engine import FileMapper

log = logging.getLogger("infertap.drift")
EXIT_ERROR = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``drift`` and its subcommands to the ``infertap`` parser."""
    p = subparsers.add_parser("drift", help="baselines, drift verdicts and canary analysis")
    sub = p.add_subparsers(dest="drift_command", required=True, metavar="ACTION")

    b = sub.add_parser("baseline", help="build a baseline from training data or a captured window")
    b.add_argument("data", help="Parquet/CSV/.npz training data, or a capture root with --from-capture")
    b.add_argument("-o", "--output", required=True, type=Path, help="baseline file (.json or .json.gz)")
    b.add_argument("--model", required=True, help="model name")
    b.add_argument("--model-version", default=None, help="model version (windows of other versions are refused)")
    b.add_argument("--feature-map", type=Path, help="JSON feature map (default: columns in order -> input tensor)")
    b.add_argument("--tensor", default="input-0", help="input tensor name for the default map (input-0)")
    b.add_argument("--output-tensor", default="output-0", help="output tensor name for predictions (output-0)")
    b.add_argument("--categorical", nargs="*", default=[], help="columns to treat as categorical")
    b.add_argument(
        "--layout",
        choices=["auto", "positional", "v1", "named"],
        default="auto",
        help="how table columns map to captured tensors without a feature map: positional (elements of --tensor), "
        "v1 (elements of instances/predictions), named (one tensor per column); auto: named when strings and "
        "numbers mix, else positional",
    )
    b.add_argument("--from-capture", action="store_true", help="DATA is captured Parquet (a reference window)")
    b.add_argument(
        "--generative",
        action="store_true",
        help="with --from-capture: add the generative features of the window's LLM calls (docs/genai.md)",
    )
    b.add_argument("--start", help="window start (ISO-8601 UTC) with --from-capture")
    b.add_argument("--end", help="window end (ISO-8601 UTC) with --from-capture")
    b.add_argument("--s3-endpoint", help="S3 endpoint override (http://host:port)")
    b.add_argument("--sample-size", type=int, default=1000, help="reference rows kept for reports (1000)")
    b.add_argument("--quantile-bins", type=int, default=1000, help="quantile bins per numeric feature (1000)")
    b.add_argument("--allow-nonfinite", action="store_true", help="drop NaN/inf instead of failing")
    _engine_options(b, " (with --from-capture)")
    b.set_defaults(func=_guard(_baseline))

    r = sub.add_parser("run", help="drift verdict of a captured window against a baseline")
    _common(r)
    r.add_argument("--baseline", required=True, type=Path, help="baseline file")
    r.add_argument("--test", help="test for every feature (ks, chisquare, z, wasserstein, jensenshannon, psi)")
    r.add_argument("--threshold", type=float, help="threshold for every feature")
    r.add_argument("--config", type=Path, help='JSON {"per_feature": {"f": {"test":.., "threshold":..}}, ...}')
    r.add_argument("--correction", choices=["none", "bonferroni", "bh"], default="none")
    r.add_argument("--drift-share", type=float, default=0.5)
    r.add_argument(
        "--max-malformed-share",
        type=float,
        default=0.01,
        help="largest share of malformed records (skipped, counted, named in the verdict) before the run fails (0.01)",
    )
    r.add_argument("--any-version", action="store_true", help="do not restrict to the baseline's model version")
    r.add_argument(
        "--allow-missing-columns",
        action="store_true",
        help="test the features that have data when others have none in the window (default: an error)",
    )
    r.add_argument(
        "--table",
        action="store_true",
        help="SOURCE is a table (Parquet file or directory, CSV) whose columns are the baseline's features by name",
    )
    _engine_options(r)
    r.add_argument(
        "--report", type=Path, help="write the HTML report (the verdict's tests, drifted features first) here"
    )
    r.set_defaults(func=_guard(_run))

    c = sub.add_parser("canary", help="canary-vs-stable verdict")
    _common(c)
    c.add_argument("--group-by", choices=["revision", "model_version", "endpoint"], default="revision")
    c.add_argument("--stable", required=True, help="value of --group-by for the stable arm")
    c.add_argument("--canary", required=True, help="value of --group-by for the canary arm")
    c.add_argument("--feature-map", type=Path, help="JSON feature map (default: every tensor element)")
    c.add_argument("--latency-tolerance", type=float, default=0.1)
    c.add_argument("--p99-tolerance", type=float, default=0.5)
    c.add_argument("--error-tolerance", type=float, default=0.01)
    _engine_options(c)
    c.set_defaults(func=_guard(_canary))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="capture root: a directory or s3://bucket/prefix")
    p.add_argument("--model", help="model name (default: the baseline's)")
    p.add_argument("--start", help="window start, ISO-8601 UTC or now-1h style (inclusive)")
    p.add_argument("--end", help="window end, ISO-8601 UTC or now (exclusive)")
    p.add_argument("--s3-endpoint", help="S3 endpoint override (http://host:port)")
    p.add_argument("-o", "--output", type=Path, help="write the verdict JSON here (default: stdout)")
    p.add_argument("--metrics-textfile", type=Path, help="write Prometheus metrics (textfile collector format)")
    p.add_argument("--pushgateway", help="push Prometheus metrics to this Pushgateway")
    p.add_argument("--webhook", help="POST the verdict as a CloudEvent to this URL")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)


def _engine_options(p: argparse.ArgumentParser, where: str = "") -> None:
    p.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help=f"local: this process (default); spark: pyspark, the captured files reduced on Spark tasks{where} "
        "(docs/drift.md)",
    )
    p.add_argument("--spark-master", help="Spark master for --engine spark (default: spark-submit's, or local[*])")


def _engine(args: argparse.Namespace) -> FileMapper | None:
    """The file mapper of ``--engine`` (:mod:`infertap.drift.engine`): ``None`` for the local engine."""
    if args.engine != "spark":
        return None
    from infertap.drift.spark import session, spark_files

    return spark_files(session(args.spark_master))


def _guard(fn: Any) -> Any:
    """Every failure -> one line on stderr and exit 2, so that 1 (drift) and 3 (Marginal) only ever mean a verdict."""

    def run(args: argparse.Namespace) -> int:
        prefer_avx2_sort()  # before NumPy is imported (infertap.drift.cpu)
        try:
            # the local engine never uses pandas, which pyarrow.dataset would import (a quarter of a second);
            # Spark's driver may use it
            keep_out = getattr(args, "engine", "local") == "local"
            with pandas_refused("infertap drift") if keep_out else contextlib.nullcontext():
                return int(fn(args))
        except InfertapError as exc:
            _error(str(exc))
        except MemoryError:
            _error("out of memory")
        except Exception as exc:  # an unforeseen failure must not look like a verdict
            log.debug("unexpected error", exc_info=True)
            _error(f"unexpected {type(exc).__name__}: {exc}")
        return EXIT_ERROR

    return run


def _error(message: str) -> None:
    print(f"infertap drift: error: {' '.join(message.split())}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"infertap drift: warning: {' '.join(message.split())}", file=sys.stderr)


def _window(args: argparse.Namespace) -> Any:
    from infertap.drift.reader import Window, parse_time

    now = dt.datetime.now(dt.UTC)  # one "now" for both ends of a relative window
    start = parse_time(args.start, now=now) if args.start else None
    return Window(start, parse_time(args.end, now=now) if args.end else None)


def _baseline(args: argparse.Namespace) -> int:
    from infertap.drift.baseline import build_baseline
    from infertap.drift.features import load_feature_map
    from infertap.drift.tables import capture_columns, default_table_specs, read_table

    specs = load_feature_map(args.feature_map) if args.feature_map else None
    embeddings: dict[str, dict[str, Any]] = {}
    if args.from_capture:
        from infertap.drift.reader import open_scan

        if specs is None and not args.generative:
            raise ConfigError("--from-capture needs --feature-map or --generative")
        if args.generative and args.engine == "spark":
            raise ConfigError("--generative reads the generative features in this process; use --engine local")
        scan = open_scan(args.data, args.model, _window(args), endpoint=args.s3_endpoint)
        columns = {}
        if specs:
            columns = capture_columns(scan, specs, _engine(args))
        if args.generative:
            from infertap.drift import generative

            gen_specs, gen_columns = generative.reference_columns(generative.read_calls(scan))
            specs = [*(specs or []), *gen_specs]
            columns = {**columns, **gen_columns}
            embeddings = generative.baseline_embeddings(generative.scan_embeddings(scan))
    elif args.generative:
        raise ConfigError("--generative needs --from-capture")
    elif args.engine == "spark":
        raise ConfigError("--engine spark reads a captured window: add --from-capture")
    else:
        columns, feats, preds = read_table(Path(args.data))
        if specs is None:
            specs = default_table_specs(
                columns,
                feats,
                preds,
                tensor=args.tensor,
                output=args.output_tensor,
                categorical=args.categorical,
                layout=args.layout,
            )
    if not specs:
        raise ConfigError("no features to build a baseline from")
    base = build_baseline(
        columns,
        specs,
        model_name=args.model,
        model_version=args.model_version,
        source=str(args.data),
        sample_size=args.sample_size,
        quantile_bins=args.quantile_bins,
        allow_nonfinite=args.allow_nonfinite,
    )
    base.embeddings = embeddings  # reference embedding vectors for the MMD test of `drift run` (--generative)
    base.save(args.output)
    print(
        json.dumps({"baseline": str(args.output), "id": base.id, "features": len(base.features), "rows": base.n_rows})
    )
    return 0


def _emit(verdict: dict[str, Any], args: argparse.Namespace) -> None:
    from infertap.drift.outputs import dump_verdict, send_alert, write_metrics

    text = dump_verdict(verdict, args.output)
    if args.output is None:
        print(text)
    # the verdict is made and written: a failing metrics push or alert is reported, never turned into exit 2
    if args.metrics_textfile or args.pushgateway:
        try:
            write_metrics(verdict, args.metrics_textfile, args.pushgateway)
        except OSError as exc:
            _warn(f"metrics not written or pushed: {exc}")
    if args.webhook:
        try:
            send_alert(verdict, args.webhook)
        except InfertapError as exc:
            _warn(str(exc))


def _run(args: argparse.Namespace) -> int:
    from infertap.drift.baseline import load_baseline
    from infertap.drift.evaluate import DriftConfig
    from infertap.drift.job import run_window

    base = load_baseline(args.baseline)
    extra: dict[str, Any] = {}
    if args.config:
        try:
            extra = json.loads(args.config.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {args.config}: {exc}") from None
    try:
        cfg = DriftConfig(
            **{
                "drift_share": args.drift_share,
                "test": args.test,
                "threshold": args.threshold,
                "correction": args.correction,
                "max_malformed_share": args.max_malformed_share,
                **extra,
            }
        )
    except TypeError as exc:
        raise ConfigError(f"bad drift config: {exc}") from None
    if args.table:
        from infertap.drift.tabular import drift_table

        verdict = drift_table(
            base, Path(args.source), config=cfg, allow_missing_columns=args.allow_missing_columns
        ).to_json()
    else:
        if args.engine == "spark":
            from infertap.drift.generative import is_generative

            if any(is_generative(bf.spec) for bf in base.features):
                raise ConfigError(
                    "the baseline has generative features, which the Spark engine does not read yet; use --engine local"
                )
        verdict = run_window(
            base,
            args.source,
            model=args.model,
            window=_window(args),
            config=cfg,
            endpoint=args.s3_endpoint,
            check_version=not args.any_version,
            progress=args.progress,
            allow_missing_columns=args.allow_missing_columns,
            map_files=_engine(args),
        )
    if args.report:
        from infertap.drift.report import write_report

        write_report(verdict, args.report)
        verdict["report"] = str(args.report)
    _emit(verdict, args)
    return 1 if verdict["dataset_drift"] else 0


def _canary(args: argparse.Namespace) -> int:
    from infertap.drift.canary import EXIT_CODES, CanaryConfig, compare
    from infertap.drift.features import load_feature_map

    if not args.model:
        raise ConfigError("canary needs --model")
    specs = load_feature_map(args.feature_map) if args.feature_map else None
    cfg = CanaryConfig(
        latency_tolerance=args.latency_tolerance, p99_tolerance=args.p99_tolerance, error_tolerance=args.error_tolerance
    )
    verdict = compare(
        args.source,
        args.model,
        group_by=args.group_by,
        stable=args.stable,
        canary=args.canary,
        window=_window(args),
        specs=specs,
        config=cfg,
        endpoint=args.s3_endpoint,
        map_files=_engine(args),
    )
    _emit(verdict, args)
    return EXIT_CODES[verdict["verdict"]]
