"""``infertap webhook``: the injector command (registered through the ``infertap.commands`` entry point)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infertap.logger.environment import run_with_settings
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
    g = p.add_argument_group("registration", "print the MutatingWebhookConfiguration instead of serving")
    g.add_argument("--print-configuration", action="store_true", help="print it as YAML and exit")
    g.add_argument("--service", metavar="NAMESPACE/NAME:PORT", help="the webhook's Service (in-cluster)")
    g.add_argument("--url", help="the webhook's base URL (https://host:port), for a webhook outside the cluster")
    g.add_argument("--ca-bundle-file", help="PEM CA certificate(s) that signed the serving certificate")
    g.add_argument("--failure-policy", choices=["Ignore", "Fail"], default="Ignore", help="default Ignore")
    p.set_defaults(func=_run)


def _print_configuration(args: argparse.Namespace) -> int:
    import yaml

    from infertap.logger.webhook.manifests import webhook_configuration

    service = None
    if args.service:
        namespace, _, rest = args.service.partition("/")
        name, _, port = rest.partition(":")
        if not (namespace and name and port.isdigit()):
            print(f"infertap webhook: --service must be NAMESPACE/NAME:PORT, got {args.service!r}", file=sys.stderr)
            return 2
        service = (namespace, name, int(port))
    if (service is None) == (args.url is None):
        print("infertap webhook: give exactly one of --service and --url", file=sys.stderr)
        return 2
    if not args.ca_bundle_file:
        print("infertap webhook: --ca-bundle-file is required with --print-configuration", file=sys.stderr)
        return 2
    try:
        ca = Path(args.ca_bundle_file).read_bytes()
    except OSError as exc:
        print(f"infertap webhook: cannot read --ca-bundle-file: {exc}", file=sys.stderr)
        return 2
    manifest = webhook_configuration(
        ca_bundle_pem=ca, url=args.url, service=service, failure_policy=args.failure_policy
    )
    sys.stdout.write(yaml.safe_dump(manifest, sort_keys=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.print_configuration:
        return _print_configuration(args)
    from infertap.logger.webhook.server import run

    flags = {
        "port": args.port,
        "admin_port": args.admin_port,
        "cert_file": args.cert_file,
        "key_file": args.key_file,
        "config_file": args.config_file,
    }
    return run_with_settings("webhook", WebhookSettings, flags, run)
