"""``infertap webhook``: the injector command (registered through the ``infertap.commands`` entry point)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from infertap.logger.webhook.settings import WebhookSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``infertap webhook``. Settings are read from ``INFERTAP_WEBHOOK_*``; the flags override a few."""
    p = sub.add_parser(
        "webhook",
        help="run the mutating admission webhook that injects the sidecar into KServe predictor pods",
        description="Run the sidecar injector (a Kubernetes mutating admission webhook over HTTPS). Settings come "
        "from INFERTAP_WEBHOOK_* environment variables (see docs/injection.md); these flags override them.",
    )
    p.add_argument("--port", type=int, help="HTTPS port (INFERTAP_WEBHOOK_PORT)")
    p.add_argument("--admin-port", type=int, help="metrics/health port (INFERTAP_WEBHOOK_ADMIN_PORT)")
    p.add_argument("--cert-file", help="PEM certificate (INFERTAP_WEBHOOK_CERT_FILE)")
    p.add_argument("--key-file", help="PEM key (INFERTAP_WEBHOOK_KEY_FILE)")
    p.add_argument("--config-file", help="injection configuration, YAML or JSON (INFERTAP_WEBHOOK_CONFIG_FILE)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from infertap.logger.webhook.server import run

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "port": args.port,
            "admin_port": args.admin_port,
            "cert_file": Path(args.cert_file) if args.cert_file else None,
            "key_file": Path(args.key_file) if args.key_file else None,
            "config_file": Path(args.config_file) if args.config_file else None,
        }.items()
        if v is not None
    }
    try:
        settings = WebhookSettings(**overrides)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"infertap webhook: invalid settings: {errors}", file=sys.stderr)
        return 2
    return run(settings)
