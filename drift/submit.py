"""The driver program for ``spark-submit`` and the Spark Operator: ``spark-submit .../infertap/drift/submit.py run
s3://bucket/capture --baseline ... --engine spark`` runs ``infertap drift <args>`` (``spark-submit`` takes a Python
file, not a console script). Exit codes are the command's (docs/drift.md)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``infertap drift`` with ``argv`` (default: the process's arguments); returns its exit code."""
    from infertap.logger.cli import main as infertap

    return infertap(["drift", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
