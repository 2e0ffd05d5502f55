"""``infertap genai-drift``: the generative checks of :mod:`infertap.drift.generative` over captured Parquet.

The canary checks of generative calls are part of ``infertap drift canary`` (:mod:`infertap.drift.canary`).

- ``infertap genai-drift window SOURCE --model M --reference-start .. --reference-end .. --start .. --end ..``: the
  generative features and embeddings of a window against a reference window.

``SOURCE`` is a capture root (local directory or ``s3://bucket/prefix``) in the file sink's layout. The result is a
JSON document on stdout (or ``--output``). Exit codes as ``infertap drift``: 0 nothing found, 1 a check failed or
drift was found, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from infertap.drift import generative
from infertap.drift.reader import Window, open_scan, parse_time
from infertap.logger.errors import InfertapError

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
EMBEDDING = generative.EMBEDDING


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``genai-drift`` and its subcommands to the ``infertap`` parser."""
    p = subparsers.add_parser("genai-drift", help="drift and canary checks of generative (LLM) records")
    sub = p.add_subparsers(dest="genai_command", required=True, metavar="ACTION")
    w = sub.add_parser("window", help="a window's generative features against a reference window")
    _common(w)
    for name in ("reference-start", "reference-end", "start", "end"):
        w.add_argument(f"--{name}", required=True, help=f"{name.replace('-', ' ')} (ISO-8601 UTC)")
    w.set_defaults(func=_guard(_window_cmd))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="capture root: a directory or s3://bucket/prefix")
    p.add_argument("--model", required=True, help="model name (the model= partition)")
    p.add_argument("-o", "--output", type=Path, help="write the JSON result here instead of stdout")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the MMD test (0.05)")


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except (InfertapError, ValueError, OSError) as exc:
            print(f"infertap genai-drift: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return EXIT_ERROR

    return run


def _read(source: str, model: str, window: Window) -> pa.Table:
    scan = open_scan(source, model, window)
    names = set(scan.schema.names)
    columns: Sequence[str] = [c for c in (*generative.COLUMNS, EMBEDDING) if c in names]
    batches = list(scan.batches(columns))
    return pa.Table.from_batches(batches, schema=pa.schema([scan.schema.field(c) for c in columns]))


def _embedding_test(ref: pa.Table, cur: pa.Table, alpha: float) -> dict[str, Any]:
    a, b = generative.embeddings(ref), generative.embeddings(cur)
    if len(a) < 2 or len(b) < 2:
        return {"skipped": f"fewer than two embedding vectors a side ({len(a)} vs {len(b)})"}
    return generative.mmd_test(a, b, alpha=alpha).to_json()


def _emit(doc: dict[str, Any], output: Path | None) -> None:
    text = json.dumps(doc, indent=2, default=float) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def _window(_: argparse.Namespace, start: str | None, end: str | None) -> Window:
    return Window(parse_time(start) if start else None, parse_time(end) if end else None)


def _window_cmd(args: argparse.Namespace) -> int:
    ref = _read(args.source, args.model, _window(args, args.reference_start, args.reference_end))
    cur = _read(args.source, args.model, _window(args, args.start, args.end))
    unit = generative.length_unit(ref, cur)
    tests = generative.compare_features(generative.features(ref, unit), generative.features(cur, unit))
    emb = _embedding_test(ref, cur, args.alpha)
    drifted = [t.name for t in tests if t.result is not None and t.result.drifted]
    if emb.get("drifted"):
        drifted.append("embeddings")
    _emit(
        {
            "kind": "generative-drift", "model": args.model, "length_unit": unit,
            "verdict": "Drift" if drifted else "NoDrift", "drifted": drifted,
            "features": [t.to_json() for t in tests], "embeddings": emb,
        },
        args.output,
    )  # fmt: skip
    return EXIT_FOUND if drifted else EXIT_OK
