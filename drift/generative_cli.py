"""``infertap genai-drift``: the generative checks of :mod:`infertap.drift.generative` over captured Parquet.

- ``infertap genai-drift canary SOURCE --model M --stable-revision A --canary-revision B``: the canary checks
  (answers shorter, stops early, slows its first token) and the embedding MMD test between two revisions;
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
import pyarrow.dataset as ds

from infertap.drift import generative
from infertap.drift.reader import Window, open_scan, parse_time
from infertap.logger.errors import InfertapError

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
EMBEDDING = "output.embedding"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``genai-drift`` and its subcommands to the ``infertap`` parser."""
    p = subparsers.add_parser("genai-drift", help="drift and canary checks of generative (LLM) records")
    sub = p.add_subparsers(dest="genai_command", required=True, metavar="ACTION")
    c = sub.add_parser("canary", help="a canary revision's generative calls against the stable revision's")
    _common(c)
    c.add_argument("--stable-revision", required=True, help="value of the revision column of the stable arm")
    c.add_argument("--canary-revision", required=True, help="value of the revision column of the canary arm")
    c.add_argument("--start", help="window start (ISO-8601 UTC)")
    c.add_argument("--end", help="window end (ISO-8601 UTC)")
    c.set_defaults(func=_guard(_canary))
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


def _read(source: str, model: str, window: Window, revision: str | None = None) -> pa.Table:
    extra = None if revision is None else ds.field("revision") == revision
    scan = open_scan(source, model, window, extra_filter=extra)
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


def _canary(args: argparse.Namespace) -> int:
    window = _window(args, args.start, args.end)
    stable = _read(args.source, args.model, window, args.stable_revision)
    canary = _read(args.source, args.model, window, args.canary_revision)
    checks = generative.canary_checks(stable, canary)
    emb = _embedding_test(stable, canary, args.alpha)
    failed = [f"{c.name}: {c.reason}" for c in checks if not c.passed]
    if emb.get("drifted"):
        failed.append(f"embeddings: MMD p-value {emb['p_value']:.4f} < {args.alpha}")
    _emit(
        {
            "kind": "generative-canary", "model": args.model, "stable_revision": args.stable_revision,
            "canary_revision": args.canary_revision, "verdict": "Fail" if failed else "Pass", "reasons": failed,
            "checks": [c.to_json() for c in checks], "embeddings": emb,
        },
        args.output,
    )  # fmt: skip
    return EXIT_FOUND if failed else EXIT_OK


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
