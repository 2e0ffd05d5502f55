"""The ``infertap`` command line.

Subcommands are plugged in through the ``infertap.commands`` entry-point group: each entry point is a function
``register(subparsers)`` that adds its parser and sets ``func`` (``args -> exit code``) as its default. This keeps
:mod:`logger` free of imports from :mod:`drift`, which registers ``infertap drift ...`` the same way.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from infertap.logger import __version__

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

#: What ``infertap --help`` says first: plain text, since argparse prints help verbatim (no reST rendering).
DESCRIPTION = (
    "infertap: capture, decode and ship the payloads of an ML model server, export its metrics, and judge drift."
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand, or only ``command`` when it is one of them.

    Loading only the command asked for keeps ``infertap proxy`` from importing the drift job's libraries.
    """
    parser = argparse.ArgumentParser(prog="infertap", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"infertap {__version__}")
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    eps = sorted(entry_points(group="infertap.commands"), key=lambda e: e.name)
    if command in {ep.name for ep in eps}:
        eps = [ep for ep in eps if ep.name == command]
    for ep in eps:
        try:
            register: Register = ep.load()
            register(sub)
        except Exception as exc:  # one broken plug-in must not take the other commands down
            print(f"infertap: command {ep.name!r} unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is neither an option nor a top-level option's value.

    ``infertap --log-level WARNING proxy`` names ``proxy``, not ``WARNING`` (which would load every subcommand and,
    with them, the drift job's libraries into the sidecar).
    """
    top = argparse.ArgumentParser(add_help=False)
    top.add_argument("--log-level")
    _, rest = top.parse_known_args(argv)
    return next((a for a in rest if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``infertap``; returns the process exit code.

    Every command first refuses ``INFERTAP_*`` variables that no setting has (one line naming the closest valid
    name, exit code 2; :func:`infertap.logger.environment.check_environment`). Without any ``INFERTAP_*`` variable
    there is nothing to refuse, and the settings models (pydantic, a tenth of a second) are not imported.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if any(name.upper().startswith("INFERTAP_") for name in os.environ):
        from infertap.logger.environment import UnknownSettingError, check_environment

        try:
            check_environment(os.environ)
        except UnknownSettingError as exc:
            print(f"infertap {args.command}: {exc}", file=sys.stderr)
            return 2
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
