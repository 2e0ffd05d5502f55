"""``infertap collector``: the command (registered through the ``infertap.commands`` entry point)."""

from __future__ import annotations

import argparse

from infertap.logger.collector.settings import CollectorSettings
from infertap.logger.environment import run_with_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``infertap collector``. Every setting is read from ``INFERTAP_COLLECTOR_*``; the flags override a few."""
    p = sub.add_parser(
        "collector",
        help="receive KServe's payload-logger CloudEvents (HTTP, Kafka) and write them as records",
        description="Run the collector for KServe's own payload logger: point an InferenceService's "
        "spec.predictor.logger.url at it. Settings come from INFERTAP_COLLECTOR_* environment variables "
        "(see docs/collector.md); these flags override them.",
    )
    p.add_argument("--listen-port", type=int, help="CloudEvents port (INFERTAP_COLLECTOR_LISTEN_PORT)")
    p.add_argument("--admin-port", type=int, help="metrics/health port (INFERTAP_COLLECTOR_ADMIN_PORT)")
    p.add_argument("--output-dir", help="local Parquet root (INFERTAP_COLLECTOR_OUTPUT_DIR)")
    p.add_argument("--journal-dir", help="halves journal directory (INFERTAP_COLLECTOR_JOURNAL_DIR)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from infertap.logger.collector.server import run

    flags = {
        "listen_port": args.listen_port,
        "admin_port": args.admin_port,
        "output_dir": args.output_dir,
        "journal_dir": args.journal_dir,
    }
    return run_with_settings("collector", CollectorSettings, flags, run)
