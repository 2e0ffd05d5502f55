"""The baseline artifact: per-feature bins and counts of the training (reference) data, versioned JSON.

Document (``format: "infertap.baseline"``, ``version: 1``; ``.json`` or gzip-compressed ``.json.gz``)::

    {"format": "infertap.baseline", "version": 1, "id": "<sha256 of the content>",
     "model_name": "iris", "model_version": "1" | null, "created_at": "2026-11-21T10:00:00Z",
     "source": "train.parquet", "n_rows": 120,
     "params": {"max_exact": 2000, "quantile_bins": 1000, "sample_size": 1000, "seed": 0},
     "features": [{"spec": {"name", "column", "index", "summary", "kind"},
                   "exact": true,            # numeric: every distinct reference value is an edge
                   "n_unique": 35,           # numeric: distinct values (lower bound 2001 when not exact)
                   "edges": [...],           # numeric only
                   "summary": {...},         # NumericSummary / CategoricalSummary.to_json()
                   "stats": {"count", "mean", "std", "min", "max", "quantiles": {"0.01": ..}}}],
     "sample": {"<feature>": [values...]},     # <= sample_size random reference rows per feature
     "embeddings": {"output.embedding": {...}}}  # optional: reference embedding vectors (below)

Numeric edges are described in :mod:`infertap.drift.summary`. The sample is a small random reference sample
(kept for users and tools; the HTML report reads the verdict only). ``embeddings``, written only when there are
some (a generative baseline whose reference has embedding vectors), keeps per embedding column a seeded uniform
sample of at most 500 reference vectors as base64 float32 with its dimensions and counts, for the MMD test of
``drift run`` (:func:`infertap.drift.generative.baseline_embeddings`; 500 x 384 dimensions is about 1 MB).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infertap.drift.errors import BaselineError, DataError
from infertap.drift.features import FeatureSpec
from infertap.drift.parallel import parallel_map
from infertap.drift.summary import CategoricalSummary, NumericSummary, Summary, reference_summary

F64 = np.ndarray[Any, np.dtype[np.float64]]
FORMAT = "infertap.baseline"
VERSION = 1
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(slots=True)
class BaselineFeature:
    """One feature of a baseline: where it is, its reference summary and summary statistics."""

    spec: FeatureSpec
    summary: Summary
    exact: bool = False
    n_unique: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def empty_summary(self) -> Summary:
        """An empty summary with this feature's bins, to count a window into."""
        if isinstance(self.summary, NumericSummary):
            return NumericSummary.empty(self.summary.edges)
        return CategoricalSummary()


@dataclass(slots=True)
class Baseline:
    """A reference distribution per feature (see the module docstring for the file format)."""

    model_name: str
    model_version: str | None
    features: list[BaselineFeature]
    n_rows: int
    source: str = ""
    created_at: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    sample: dict[str, list[Any]] = field(default_factory=dict)
    id: str = ""
    embeddings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def feature(self, name: str) -> BaselineFeature:
        """The feature called ``name``.

        Raises:
            BaselineError: no such feature.
        """
        for f in self.features:
            if f.spec.name == name:
                return f
        raise BaselineError(f"baseline has no feature {name!r}")

    def to_json(self) -> dict[str, Any]:
        """The JSON document (``id`` filled in)."""
        feats = []
        for f in self.features:
            d: dict[str, Any] = {"spec": f.spec.to_json(), "summary": f.summary.to_json(), "stats": f.stats}
            if isinstance(f.summary, NumericSummary):
                d["edges"] = f.summary.edges.tolist()
                d["exact"] = f.exact
                d["n_unique"] = f.n_unique
            feats.append(d)
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "id": "",
            "model_name": self.model_name,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "source": self.source,
            "n_rows": self.n_rows,
            "params": self.params,
            "features": feats,
            "sample": self.sample,
        }
        if self.embeddings:  # absent otherwise: the content id of a baseline without vectors is unchanged
            doc["embeddings"] = self.embeddings
        doc["id"] = self.id or _fingerprint(doc)
        return doc

    def save(self, path: Path) -> Path:
        """Write the baseline as JSON (gzip-compressed when ``path`` ends with ``.gz``); returns ``path``.

        Raises:
            BaselineError: the file cannot be written.
        """
        doc = self.to_json()
        self.id = doc["id"]
        data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)
        except OSError as exc:
            raise BaselineError(f"cannot write baseline {path}: {exc}") from exc
        return Path(path)


def _fingerprint(doc: dict[str, Any]) -> str:
    body = json.dumps({k: v for k, v in doc.items() if k not in ("id", "created_at")}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file.

    Raises:
        BaselineError: unreadable, not a baseline, or another format version.
    """
    try:
        raw = Path(path).read_bytes()
        doc = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    except (OSError, ValueError, EOFError, zlib.error) as exc:  # EOFError: a truncated gzip stream
        raise BaselineError(f"cannot read baseline {path}: {exc}") from None
    return baseline_from_json(doc, where=str(path))


def baseline_from_json(doc: Any, *, where: str = "baseline") -> Baseline:
    """Parse a baseline document, checking its content id (``id``: the first 16 hex digits of the SHA-256 of the
    document without ``id`` and ``created_at``, keys sorted) so that an edited baseline is never used under the
    id of the one it was made from.

    Raises:
        BaselineError: not a baseline, another format version, a content id that does not match the content, or
            inconsistent content.
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BaselineError(f"{where} is not an infertap baseline (format {FORMAT!r} expected)")
    if doc.get("version") != VERSION:
        raise BaselineError(f"{where} is baseline format version {doc.get('version')}, this reads {VERSION}")
    stored = doc.get("id")
    try:
        actual = _fingerprint(doc)
    except (TypeError, ValueError) as exc:
        raise BaselineError(f"{where} is malformed: {exc!r}") from None
    if stored != actual:
        raise BaselineError(
            f"{where} was modified after it was made: its content id is {actual}, the file says {stored!r}; "
            "rebuild it with `infertap drift baseline`"
        )
    feats: list[BaselineFeature] = []
    try:
        for fd in doc["features"]:
            spec = FeatureSpec(**fd["spec"])
            summary: Summary
            if spec.kind == "numeric":
                edges = np.asarray(fd["edges"], np.float64)
                summary = NumericSummary.from_json(edges, fd["summary"])
            else:
                summary = CategoricalSummary.from_json(fd["summary"])
            feats.append(BaselineFeature(spec, summary, bool(fd.get("exact")), int(fd.get("n_unique", 0)), fd["stats"]))
        return Baseline(
            model_name=str(doc["model_name"]),
            model_version=None if doc["model_version"] is None else str(doc["model_version"]),
            features=feats,
            n_rows=int(doc["n_rows"]),
            source=str(doc.get("source", "")),
            created_at=str(doc.get("created_at", "")),
            params=dict(doc.get("params", {})),
            sample={str(k): list(v) for k, v in doc.get("sample", {}).items()},
            id=str(doc.get("id", "")),
            embeddings={str(k): dict(v) for k, v in doc.get("embeddings", {}).items()},
        )
    except (KeyError, TypeError, ValueError, DataError) as exc:
        raise BaselineError(f"{where} is malformed: {exc!r}") from None


def _numeric_values(name: str, values: Any, allow_nonfinite: bool) -> tuple[F64, int, int]:
    """``(finite values as float64, NaN count, inf count)`` of a reference column (a view when nothing is dropped).

    Raises:
        DataError: non-numeric values, NaN/inf without ``allow_nonfinite``, or no finite value.
    """
    try:
        x = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError("numeric feature has non-numeric values", feature=name) from None
    finite = np.isfinite(x)
    n_nan = n_inf = 0
    if not finite.all():
        n_bad = int(x.size - np.count_nonzero(finite))
        n_nan = int(np.count_nonzero(np.isnan(x)))
        n_inf = n_bad - n_nan
        if not allow_nonfinite:
            raise DataError(
                f"{n_bad} NaN/inf values in the reference ({n_nan} NaN, {n_inf} inf); "
                "clean them or pass allow_nonfinite",
                feature=name,
            )
        x = x[finite]
    if x.size == 0:
        raise DataError("no finite reference values", feature=name)
    return x, n_nan, n_inf


def is_numeric(values: Any) -> bool:
    """Whether an array of values is of a numeric (not bool) dtype."""
    arr = np.asarray(values)
    return arr.dtype.kind in "iuf"


def build_baseline(
    columns: Mapping[str, Any],
    specs: Sequence[FeatureSpec],
    *,
    model_name: str,
    model_version: str | None = None,
    source: str = "",
    sample_size: int = 1000,
    max_exact: int = 2000,
    quantile_bins: int = 1000,
    allow_nonfinite: bool = False,
    seed: int = 0,
) -> Baseline:
    """Build a baseline from reference values.

    Args:
        columns: feature name -> 1-D values (numeric arrays for numeric features; anything for categorical).
        specs: one spec per feature to keep; each ``spec.name`` must be a key of ``columns``.
        model_name / model_version: what the baseline is for; windows of other models or versions are refused.
        sample_size: reference rows kept for reports (random, same rows for features of equal length).
        max_exact / quantile_bins: bin edge rules (:func:`infertap.drift.summary.make_edges`).
        allow_nonfinite: drop NaN/inf (counted) instead of raising.
        seed: sampling seed.

    Raises:
        DataError: a feature column is missing, empty, not numeric, or has NaN/inf without ``allow_nonfinite``.
    """
    if not specs:
        raise DataError("no features to build a baseline from")
    rng = np.random.default_rng(seed)
    feats: list[BaselineFeature] = []
    sample: dict[str, list[Any]] = {}
    lengths = {s.name: int(np.asarray(columns[s.name]).size) for s in specs if s.name in columns}
    missing = [s.name for s in specs if s.name not in columns]
    if missing:
        raise DataError(f"reference data lacks feature columns {missing}")
    n_rows = max(lengths.values())
    picks: dict[int, np.ndarray[Any, Any]] = {}
    for n in sorted(set(lengths.values())):
        picks[n] = np.sort(rng.choice(n, size=min(n, sample_size), replace=False)) if n else np.empty(0, int)
    built: dict[str, tuple[BaselineFeature, list[Any]]] = {}

    def one(spec: FeatureSpec) -> None:
        raw = np.asarray(columns[spec.name]).reshape(-1)  # a view, also of a strided column: no copy
        pick = picks[raw.size]
        if spec.kind == "numeric":
            x, n_nan, n_inf = _numeric_values(spec.name, raw, allow_nonfinite)
            # one sort gives the edges, the bin counts and the quantiles
            s, exact, xs = reference_summary(x, max_exact=max_exact, quantile_bins=quantile_bins)
            s.n_nan, s.n_inf = n_nan, n_inf
            n_unique = int(np.count_nonzero(s.counts[1::2])) if exact else int(max_exact + 1)
            stats = {
                "count": s.n,
                "mean": s.mean,
                "std": s.std,
                "min": s.min,
                "max": s.max,
                "quantiles": {str(k): v for k, v in zip(_QUANTILES, _sorted_quantiles(xs, _QUANTILES), strict=True)},
            }
            smp = [float(v) if np.isfinite(v) else None for v in raw[pick].astype(np.float64)]
            built[spec.name] = (BaselineFeature(spec, s, exact, n_unique, stats), smp)
        else:
            c = CategoricalSummary()
            c.add(raw)
            if c.n == 0:
                raise DataError("no reference values", feature=spec.name)
            top = sorted(c.counts.items(), key=lambda kv: -kv[1])[:20]
            cstats = {"count": c.n, "n_categories": len(c.counts), "top": dict(top)}
            built[spec.name] = (
                BaselineFeature(spec, c, True, len(c.counts), cstats),
                [_sample_value(v) for v in raw[pick].tolist()],
            )

    parallel_map(one, list(specs), big=n_rows >= 50_000)
    for spec in specs:
        feats.append(built[spec.name][0])
        sample[spec.name] = built[spec.name][1]
    params = {"max_exact": max_exact, "quantile_bins": quantile_bins, "sample_size": sample_size, "seed": seed}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Baseline(model_name, model_version, feats, n_rows, source, now, params, sample)


def _sorted_quantiles(xs: F64, qs: Sequence[float]) -> list[float]:
    """``np.quantile(xs, qs)`` (the default ``linear`` method) of values already sorted ascending, in O(len(qs))."""
    pos = np.asarray(qs, np.float64) * (xs.size - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, xs.size - 1)
    t = pos - lo
    a, b = xs[lo], xs[hi]
    return [float(v) for v in np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)]


def _sample_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, float) and v != v:
        return None
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)
