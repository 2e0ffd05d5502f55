"""``infertap demo`` (registered through the ``infertap.commands`` entry point)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``infertap demo``."""
    p = sub.add_parser(
        "demo",
        help="run the end-to-end demo: two real predictors behind sidecars, traffic, captured Parquet",
        description="Train two scikit-learn models, serve them with MLServer and KServe's ModelServer behind "
        "sidecars, send tritonclient traffic, and summarise what was captured.",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("demo-output"),
        help="output directory; a previous demo output there is replaced, any other non-empty folder is refused",
    )
    p.add_argument("--force", action="store_true", help="replace --output even if it is not a previous demo output")
    p.add_argument("--per-period", type=int, default=120, help="instances per model and traffic period")
    p.add_argument(
        "--generative",
        action="store_true",
        help="run the generative demo instead: a llama.cpp OpenAI-compatible server behind a stable and a canary "
        "sidecar, chat / completion / embedding traffic, read back and compared (needs `make llm`)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.generative:
        from infertap.demo.generative import run_generative

        return 0 if run_generative(args.output)["generative"]["all_equal"] else 1
    from infertap.demo import drift_step
    from infertap.demo.run import OutputInUse, run

    try:
        summary = run(args.output, per_period=args.per_period, steps=[drift_step.run], force=args.force)
    except OutputInUse as exc:
        print(f"infertap demo: {exc}", file=sys.stderr)
        return 2
    complete = summary["elements_matched"] == summary["elements_sent"] and summary["requests_missing"] == 0
    drained = all(code == 0 for code in summary["sidecar_exit_codes"].values())
    return 0 if complete and drained else 1
