"""``infertap proxy``: the sidecar command (registered through the ``infertap.commands`` entry point)."""

from __future__ import annotations

import argparse

from infertap.logger.config import ProxySettings
from infertap.logger.environment import run_with_settings


def register_proxy(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``infertap proxy``. Every setting is read from ``INFERTAP_*``; the flags override a few of them."""
    p = sub.add_parser(
        "proxy",
        help="run the sidecar proxy in front of a predictor",
        description="Run the capture sidecar. Settings come from INFERTAP_* environment variables "
        "(see docs/operations.md); these flags override them.",
    )
    p.add_argument("--upstream-url", help="predictor base URL (INFERTAP_UPSTREAM_URL)")
    p.add_argument("--listen-port", type=int, help="proxy port (INFERTAP_LISTEN_PORT)")
    p.add_argument("--admin-port", type=int, help="metrics/health port (INFERTAP_ADMIN_PORT)")
    p.add_argument("--output-dir", help="local Parquet root (INFERTAP_OUTPUT_DIR)")
    p.add_argument("--model-name", help="model name when the path names none (INFERTAP_MODEL_NAME)")
    p.set_defaults(func=_run_proxy)


def _run_proxy(args: argparse.Namespace) -> int:
    flags = {
        "upstream_url": args.upstream_url,
        "listen_port": args.listen_port,
        "admin_port": args.admin_port,
        "output_dir": args.output_dir,
        "model_name": args.model_name,
    }
    return run_with_settings("proxy", ProxySettings, flags, _serve)


def _serve(settings: ProxySettings) -> int:
    if settings.capture_placement == "forward":
        from infertap.logger.forward.sidecar import run as run_forward

        return run_forward(settings)
    from infertap.logger.server import run

    return run(settings)
