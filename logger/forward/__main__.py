"""``python -m infertap.logger.forward``: the forward-mode sidecar without the ``infertap`` command line.

Settings come from ``INFERTAP_*`` as for ``infertap proxy``; ``INFERTAP_CAPTURE_PLACEMENT`` is taken as
``forward``. Invalid settings: one line per error on stderr, exit code 2.
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from infertap.logger.config import ProxySettings


def main() -> int:
    """Read the settings and serve until SIGTERM; the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = ProxySettings(capture_placement="forward")
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"infertap forward sidecar: invalid settings: {where}: {err['msg']}", file=sys.stderr)
        return 2
    from infertap.logger.forward.sidecar import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
