"""Drift and canary tests for generative records (the record schema's ``gen_*`` columns, version 2).

Features of each generative call (:func:`features`):

- ``prompt_length`` and ``completion_length``: in tokens where the server reported them for every call of both
  samples compared, in characters otherwise (:func:`length_unit`; llama.cpp reports no tokens in streams);
- ``finish_reason`` (categorical: ``stop``, ``length``, ``tool_calls`` ..., ``none`` for a stream that never
  finished);
- ``ttft_s`` (time to first token) and ``output_tokens_per_s`` (streams; null values are left out).

They get the tests of tensor features (:mod:`infertap.drift.stats`, Evidently's definitions): two-sample KS for the
numeric ones, chi-squared for ``finish_reason``, each with its threshold, sample sizes and decision.

Embedding vectors (the FP32 tensor ``output.embedding``) get a multivariate test: the kernel two-sample test of
Gretton, Borgwardt, Rasch, Schölkopf and Smola, "A Kernel Two-Sample Test", JMLR 13 (2012): the unbiased squared
maximum mean discrepancy ``MMD²_u`` (their eq. 3) with a Gaussian kernel whose width is the median pairwise
distance between the samples (the median heuristic, their section 8), and a p-value from a permutation test of
the pooled vectors. ``MMD²_u`` and the kernel width are those of Evidently 0.7's ``mmd()`` embedding drift method
(``evidently/legacy/metrics/data_drift/embedding_drift_methods.py``), whose decision, ``MMD²_u`` above 0.015, is
reported beside the permutation test (tests/unit/drift/test_generative.py checks the statistic against
Evidently's on the same vectors).

:func:`canary_checks` compares a canary's generative calls with the stable revision's and names what changed: a
canary that answers shorter (completion length), stops early (more ``length`` finishes) or slows its first token
(time to first token) fails the check with that reason.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.spatial.distance import cdist

from infertap.drift.baseline import Baseline
from infertap.drift.errors import BaselineError, DataError
from infertap.drift.features import FeatureSpec
from infertap.drift.reader import Scan
from infertap.drift.stats import TestResult, run_test
from infertap.drift.summary import CategoricalSummary, NumericSummary, Summary, reference_summary
from infertap.drift.verdict import DriftVerdict, FeatureVerdict
from infertap.logger import record

NUMERIC = ("prompt_length", "completion_length", "ttft_s", "output_tokens_per_s")
CATEGORICAL = ("finish_reason",)
#: Columns :func:`features` reads.
COLUMNS = (
    "gen_api", "gen_prompt_tokens", "gen_completion_tokens", "gen_prompt_chars", "gen_completion_chars",
    "gen_finish_reason", "gen_ttft_s", "gen_output_tokens_per_s",
)  # fmt: skip
#: The embedding tensor column the MMD test reads.
EMBEDDING = "output.embedding"
#: The source of the MMD test, as verdicts cite it.
MMD_CITATION = "Gretton, Borgwardt, Rasch, Schoelkopf, Smola: A Kernel Two-Sample Test, JMLR 13 (2012) 723-773"
EVIDENTLY_MMD_THRESHOLD = 0.015
PERMUTATIONS = 500
#: Vectors per side the MMD test uses at most (a random subset beyond): the kernel matrix is quadratic in them.
MAX_VECTORS = 500


def _generative(table: pa.Table) -> pa.Table:
    if "gen_api" not in table.column_names:  # a version-1 file: no generative calls
        return table.slice(0, 0)
    mask = table.column("gen_api").is_valid()
    return table.filter(mask)


def calls(table: pa.Table) -> int:
    """The number of generative calls (records with ``gen_api``) in ``table``."""
    return int(_generative(table).num_rows)


def length_unit(*tables: pa.Table) -> str:
    """``"tokens"`` when every generative call of every table has reported prompt and completion tokens, else
    ``"chars"`` (characters, always known)."""
    for t in tables:
        g = _generative(t)
        for c in ("gen_prompt_tokens", "gen_completion_tokens"):
            if g.num_rows and g.column(c).null_count:
                return "chars"
    return "tokens"


def features(table: pa.Table, unit: str) -> dict[str, np.ndarray[Any, Any]]:
    """The generative features of the generative calls of ``table`` (other records are left out).

    Returns ``{name: (calls,) array}``: float64 for :data:`NUMERIC` (NaN where unknown), object (str) for
    ``finish_reason``. ``unit`` is :func:`length_unit`'s.
    """
    g = _generative(table)
    suffix = "tokens" if unit == "tokens" else "chars"

    def column(name: str) -> pa.ChunkedArray | pa.Array:
        if name in g.column_names:
            return g.column(name)
        return pa.nulls(g.num_rows, record.GENERATIVE_TYPES[name])  # a writer that predates the column

    def num(col: str) -> np.ndarray[Any, Any]:
        return np.asarray(column(col).to_numpy(zero_copy_only=False), dtype=np.float64)

    return {
        "prompt_length": num(f"gen_prompt_{suffix}"),
        "completion_length": num(f"gen_completion_{suffix}"),
        "ttft_s": num("gen_ttft_s"),
        "output_tokens_per_s": num("gen_output_tokens_per_s"),
        "finish_reason": np.asarray([v or "none" for v in column("gen_finish_reason").to_pylist()], dtype=object),
    }


@dataclass(slots=True)
class FeatureTest:
    """One generative feature compared: the test result, or why it was not tested (``skipped``)."""

    name: str
    result: TestResult | None
    skipped: str = ""

    def to_json(self) -> dict[str, Any]:
        """``{"feature", "test", "score", "statistic", "threshold", "drifted", "n_reference", "n_current"}``."""
        if self.result is None:
            return {"feature": self.name, "skipped": self.skipped}
        r = self.result
        return {
            "feature": self.name, "test": r.test, "score": r.score, "statistic": r.statistic,
            "threshold": r.threshold, "drifted": r.drifted, "n_reference": r.n_reference, "n_current": r.n_current,
        }  # fmt: skip


def compare_features(
    ref: dict[str, np.ndarray[Any, Any]], cur: dict[str, np.ndarray[Any, Any]], *, min_samples: int = 5
) -> list[FeatureTest]:
    """KS for numeric features, chi-squared for ``finish_reason`` (thresholds: Evidently's defaults)."""
    out: list[FeatureTest] = []
    for name in NUMERIC:
        a, b = ref[name][np.isfinite(ref[name])], cur[name][np.isfinite(cur[name])]
        if a.size < min_samples or b.size < min_samples:
            out.append(FeatureTest(name, None, f"fewer than {min_samples} values ({a.size} vs {b.size})"))
            continue
        rs, _, _ = reference_summary(a)
        cs = NumericSummary.empty(rs.edges)
        cs.add(b)
        out.append(FeatureTest(name, run_test("ks", rs, cs)))
    for name in CATEGORICAL:
        rc, cc = CategoricalSummary(), CategoricalSummary()
        rc.add(ref[name])
        cc.add(cur[name])
        if rc.n < min_samples or cc.n < min_samples:
            out.append(FeatureTest(name, None, f"fewer than {min_samples} values ({rc.n} vs {cc.n})"))
            continue
        out.append(FeatureTest(name, run_test("chisquare", rc, cc)))
    return out


@dataclass(slots=True)
class MMDResult:
    """The kernel two-sample test on embedding vectors.

    Attributes:
        mmd2u: unbiased squared MMD (Gretton et al. 2012, eq. 3), Gaussian kernel.
        sigma: kernel width, the median Euclidean distance between the reference and current vectors.
        p_value: permutation p-value, ``(1 + #{permuted >= observed}) / (1 + permutations)``.
        alpha: significance level; ``drifted`` is ``p_value < alpha``.
        evidently_drifted: Evidently's rule on the same statistic, ``mmd2u > 0.015``.
        n_reference, n_current: vectors compared; ``dimensions`` their length.
    """

    mmd2u: float
    sigma: float
    p_value: float
    alpha: float
    drifted: bool
    evidently_drifted: bool
    n_reference: int
    n_current: int
    dimensions: int
    permutations: int = PERMUTATIONS
    method: str = field(default="mmd (Gretton et al. 2012), Gaussian kernel, median heuristic, permutation test")

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _mmd2u(k: np.ndarray[Any, Any], m: int) -> float:
    n = k.shape[0] - m
    kx, ky, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    return float(
        (kx.sum() - np.trace(kx)) / (m * (m - 1.0))
        + (ky.sum() - np.trace(ky)) / (n * (n - 1.0))
        - 2.0 * kxy.sum() / (m * n)
    )


def mmd_test(
    reference: np.ndarray[Any, Any],
    current: np.ndarray[Any, Any],
    *,
    alpha: float = 0.05,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    max_vectors: int = MAX_VECTORS,
) -> MMDResult:
    """The kernel two-sample test of ``(m, d)`` reference and ``(n, d)`` current vectors (m, n >= 2).

    Beyond ``max_vectors`` a side, a random subset of that many is tested (seeded by ``seed``).

    Raises:
        ValueError: fewer than two vectors on a side, or different dimensions.
    """
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"embedding matrices of different shapes: {x.shape} vs {y.shape}")
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_vectors:
        x = x[np.sort(rng.choice(x.shape[0], max_vectors, replace=False))]
    if y.shape[0] > max_vectors:
        y = y[np.sort(rng.choice(y.shape[0], max_vectors, replace=False))]
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the MMD test needs at least two vectors a side, got {m} and {n}")
    sigma = float(np.median(cdist(x, y)))
    pooled = np.vstack([x, y])
    sq = cdist(pooled, pooled, "sqeuclidean")
    k = np.exp(-sq / (sigma**2 if sigma > 0 else 1.0))
    observed = _mmd2u(k, m)
    exceed = 0
    for _ in range(permutations):
        p = rng.permutation(m + n)
        if _mmd2u(k[np.ix_(p, p)], m) >= observed:
            exceed += 1
    p_value = (1 + exceed) / (1 + permutations)
    return MMDResult(
        mmd2u=max(observed, 0.0), sigma=sigma, p_value=p_value, alpha=alpha, drifted=p_value < alpha,
        evidently_drifted=observed > EVIDENTLY_MMD_THRESHOLD, n_reference=m, n_current=n, dimensions=x.shape[1],
        permutations=permutations,
    )  # fmt: skip


def embeddings(table: pa.Table, column: str = EMBEDDING) -> np.ndarray[Any, Any]:
    """The embedding vectors of ``table`` as an ``(vectors, dimensions)`` matrix (empty when there are none)."""
    if column not in table.column_names:
        return np.empty((0, 0), dtype=np.float32)
    return record.instances(table.column(column))


@dataclass(slots=True)
class GenerativeCheck:
    """One canary check on generative behaviour: passed, the reason when not, and what it measured."""

    name: str
    passed: bool
    reason: str
    fields: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """``{"name", "passed", "reason", **fields}``."""
        return {"name": self.name, "passed": self.passed, "reason": self.reason, **self.fields}


def canary_checks(stable: pa.Table, canary: pa.Table, *, alpha: float = 0.05) -> list[GenerativeCheck]:
    """Compare a canary revision's generative calls with the stable revision's.

    - ``completion_length``: fails when the canary's completions are shorter (KS p-value <= ``alpha`` and a lower
      median): "answers shorter";
    - ``finish_reason``: fails when a larger share of the canary's choices stopped at the token limit
      (``length``; chi-squared p < ``alpha``): "stops early";
    - ``time_to_first_token``: fails when the canary's first token comes later (KS p <= ``alpha`` and a higher
      median): "slows its first token".

    A check with fewer than 5 calls on a side passes with the reason "too few calls".
    """
    unit = length_unit(stable, canary)
    s, c = features(stable, unit), features(canary, unit)
    tests = {t.name: t for t in compare_features(s, c)}
    out: list[GenerativeCheck] = []

    def med(a: np.ndarray[Any, Any]) -> float | None:
        a = a[np.isfinite(a)]
        return float(np.median(a)) if a.size else None

    for name, check, worse, reason in (
        ("completion_length", "completion_length", operator.gt, f"answers shorter (median {unit})"),
        ("ttft_s", "time_to_first_token", operator.lt, "slows its first token (median seconds)"),
    ):
        t = tests[name]
        ms, mc = med(s[name]), med(c[name])
        info = {"stable_median": ms, "canary_median": mc, **({} if t.result is None else t.to_json())}
        if t.result is None:
            out.append(GenerativeCheck(check, True, f"too few calls: {t.skipped}", info))
            continue
        failed = t.result.drifted and ms is not None and mc is not None and worse(ms, mc)
        out.append(GenerativeCheck(check, not failed, f"{reason}: {ms} -> {mc}" if failed else "", info))
    share_s = _share(s["finish_reason"], "length")
    share_c = _share(c["finish_reason"], "length")
    t = tests["finish_reason"]
    info = {
        "stable_length_share": share_s,
        "canary_length_share": share_c,
        "stable_counts": dict(Counter(s["finish_reason"].tolist())),
        "canary_counts": dict(Counter(c["finish_reason"].tolist())),
        **({} if t.result is None else t.to_json()),
    }
    if t.result is None:
        out.append(GenerativeCheck("finish_reason", True, f"too few calls: {t.skipped}", info))
    else:
        failed = t.result.drifted and share_c > share_s
        reason = f"stops early: share of 'length' finishes {share_s:.2f} -> {share_c:.2f}" if failed else ""
        out.append(GenerativeCheck("finish_reason", not failed, reason, info))
    return out


def _share(values: np.ndarray[Any, Any], category: str) -> float:
    return float(np.mean(values == category)) if values.size else 0.0


def is_generative(spec: FeatureSpec) -> bool:
    """Whether a baseline feature is a generative feature (its column is a record column ``gen_*``, not a tensor)."""
    return spec.column.startswith("gen_")


def baseline_specs(unit: str) -> list[FeatureSpec]:
    """The feature specs of the generative features in a baseline, lengths in ``unit`` (:func:`length_unit`): each
    names the record column it is read from (``gen_completion_chars`` ...), so a window is read in the same unit."""
    suffix = "tokens" if unit == "tokens" else "chars"
    return [
        FeatureSpec("prompt_length", f"gen_prompt_{suffix}"),
        FeatureSpec("completion_length", f"gen_completion_{suffix}"),
        FeatureSpec("ttft_s", "gen_ttft_s"),
        FeatureSpec("output_tokens_per_s", "gen_output_tokens_per_s"),
        FeatureSpec("finish_reason", "gen_finish_reason", kind="categorical"),
    ]


def read_calls(scan: Scan, *, batch_rows: int = 65_536) -> pa.Table:
    """The generative columns (:data:`COLUMNS`, both length units) of the records of ``scan``."""
    names = set(scan.schema.names)
    cols = [c for c in COLUMNS if c in names]
    batches = list(scan.batches(cols, batch_rows=batch_rows))
    return pa.Table.from_batches(batches, schema=pa.schema([scan.schema.field(c) for c in cols]))


def reference_columns(table: pa.Table) -> tuple[list[FeatureSpec], dict[str, np.ndarray[Any, Any]]]:
    """Specs and values of the generative features of ``table`` for :func:`infertap.drift.baseline.build_baseline`.

    Returns:
        the specs of :func:`baseline_specs` and ``{feature: (values,) array}`` (float64 without NaN; object for
        ``finish_reason``).

    Raises:
        DataError: ``table`` has no generative call.
    """
    if not calls(table):
        raise DataError("the reference holds no generative calls (no record with gen_api)")
    unit = length_unit(table)
    return baseline_specs(unit), _known(features(table, unit))


def _known(values: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """Numeric features without their unknown (NaN) values: a call without a time to first token (not a stream)
    is left out of that feature, as in :func:`compare_features`."""
    return {k: v[np.isfinite(v)] if k in NUMERIC else v for k, v in values.items()}


def window_summaries(baseline: Baseline, table: pa.Table) -> dict[str, Summary]:
    """The window's summaries of the baseline's generative features, in the baseline's bins and length unit.

    Args:
        table: the window's :func:`read_calls` table (other records are left out).
    """
    specs = [bf for bf in baseline.features if is_generative(bf.spec)]
    if not specs or not calls(table):
        return {}
    unit = "tokens" if any(bf.spec.column.endswith("_tokens") for bf in specs) else "chars"
    values = _known(features(table, unit))
    out: dict[str, Summary] = {}
    for bf in specs:
        s = bf.empty_summary()
        s.add(values[bf.spec.name])
        out[bf.spec.name] = s
    return out


# --- embedding vectors against a baseline --------------------------------------------------------------------------
#: Reference embedding vectors a baseline keeps per embedding column (a seeded uniform sample beyond): the MMD test
#: uses at most :data:`MAX_VECTORS` a side, so a baseline keeps no more than the test can use.
BASELINE_VECTORS = MAX_VECTORS
#: The name of the embedding test in a drift verdict (as ``generative:embeddings`` in a canary verdict).
EMBEDDING_FEATURE = "embeddings"
_F32 = np.dtype("<f4")


class VectorReservoir:
    """A bounded uniform random sample of vectors seen batch by batch (seeded: the same input gives the same sample).

    Each vector gets a uniform random key; the ``k`` vectors with the smallest keys are kept, which is a uniform
    sample without replacement of everything added (the priority sampling form of reservoir sampling, Efraimidis
    and Spirakis, "Weighted random sampling with a reservoir", IPL 97 (2006), with equal weights). Memory: ``k``
    vectors plus one batch. Vectors holding NaN or infinity are counted in ``nonfinite`` and left out.

    Args:
        k: vectors kept at most.
        seed: seed of the keys.
    """

    def __init__(self, k: int = BASELINE_VECTORS, seed: int = 0) -> None:
        self.k = k
        self.seen = 0
        self.nonfinite = 0
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0, np.float64)
        self._vectors: np.ndarray[Any, Any] | None = None

    def add(self, vectors: np.ndarray[Any, Any]) -> None:
        """Add an ``(n, d)`` matrix of vectors (float; ``d`` must not change between calls).

        Raises:
            ValueError: ``d`` differs from the vectors added before.
        """
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            return
        if self._vectors is not None and x.shape[1] != self._vectors.shape[1]:
            raise ValueError(f"embedding vectors of {x.shape[1]} dimensions after vectors of {self._vectors.shape[1]}")
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            self.nonfinite += int(x.shape[0] - np.count_nonzero(finite))
            x = x[finite]
        self.seen += x.shape[0]
        keys = np.concatenate([self._keys, self._rng.random(x.shape[0])])
        pool = x if self._vectors is None else np.vstack([self._vectors, x])
        if keys.size > self.k:
            keep = np.sort(np.argpartition(keys, self.k)[: self.k])
            keys, pool = keys[keep], pool[keep]
        self._keys, self._vectors = keys, np.array(pool, dtype=np.float32)  # a copy: no view of a batch is kept

    def vectors(self) -> np.ndarray[Any, Any]:
        """The sample as a float32 ``(min(k, seen), d)`` matrix (``(0, 0)`` before any vector)."""
        return np.empty((0, 0), np.float32) if self._vectors is None else self._vectors


def scan_embeddings(
    scan: Scan, *, k: int = BASELINE_VECTORS, seed: int = 0, column: str = EMBEDDING, batch_rows: int = 65_536
) -> VectorReservoir:
    """A :class:`VectorReservoir` of the embedding vectors of the records of ``scan`` (empty when the files have no
    ``column``). Memory is bounded by ``k`` vectors and one record batch."""
    res = VectorReservoir(k, seed)
    if column in scan.schema.names:
        for batch in scan.batches([column], batch_rows=batch_rows):
            res.add(record.instances(batch.column(0)))
    return res


def baseline_embeddings(res: VectorReservoir, *, column: str = EMBEDDING, seed: int = 0) -> dict[str, Any]:
    """The ``embeddings`` entry of a baseline for one embedding column (:class:`infertap.drift.baseline.Baseline`):
    ``{column: {...}}``, or ``{}`` when there are fewer than two vectors.

    The entry says what it holds: ``dimensions``, ``n_vectors`` kept, ``n_seen`` in the reference, ``n_nonfinite``
    left out, ``max_vectors``, ``seed``, ``sampling``, and ``data``: the ``(n_vectors, dimensions)`` matrix as
    little-endian float32, row-major, base64 (``dtype: "<f4"``).
    """
    x = res.vectors()
    if x.shape[0] < 2:
        return {}
    entry = {
        "dimensions": int(x.shape[1]), "n_vectors": int(x.shape[0]), "n_seen": res.seen, "n_nonfinite": res.nonfinite,
        "max_vectors": res.k, "seed": seed, "sampling": "uniform without replacement (seeded reservoir)",
        "dtype": "<f4", "encoding": "base64", "data": base64.b64encode(x.astype(_F32).tobytes()).decode("ascii"),
    }  # fmt: skip
    return {column: entry}


def reference_vectors(baseline: Baseline, column: str = EMBEDDING) -> np.ndarray[Any, Any] | None:
    """The reference embedding vectors a baseline keeps for ``column`` (float32 ``(n_vectors, dimensions)``), or
    ``None`` when it keeps none (a baseline made before they were kept, or from a reference without embeddings).

    Raises:
        BaselineError: the entry is malformed (its data does not hold ``n_vectors`` x ``dimensions`` float32).
    """
    entry = baseline.embeddings.get(column)
    if entry is None:
        return None
    try:
        raw = base64.b64decode(entry["data"], validate=True)
        n, d = int(entry["n_vectors"]), int(entry["dimensions"])
        if entry.get("dtype") != "<f4" or len(raw) != n * d * _F32.itemsize:
            raise ValueError(f"{len(raw)} bytes of {entry.get('dtype')!r} for {n} x {d} float32")
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise BaselineError(f"the baseline's reference embeddings of {column!r} are malformed: {exc}") from None
    return np.frombuffer(raw, _F32).reshape(n, d)


@dataclass(slots=True)
class EmbeddingOutcome:
    """The embedding test of a drift window against a baseline: the verdict's feature entry, or why it did not run
    (``skipped``: ``{"name", "column", "reason"}``)."""

    feature: FeatureVerdict | None = None
    skipped: dict[str, str] | None = None


def embedding_outcome(
    baseline: Baseline, window: VectorReservoir, *, alpha: float = 0.05, column: str = EMBEDDING
) -> EmbeddingOutcome | None:
    """The MMD test (:func:`mmd_test`: the canary's test, permutations and rule) of the baseline's reference vectors
    against a reservoir of the window's vectors, as a drift verdict feature entry named ``embeddings`` (test ``mmd``,
    ``score`` the permutation p-value, drifted when ``score < threshold``; ``statistic`` MMD²_u).

    ``None`` when neither side has embedding vectors; a skip with its reason when the baseline keeps none (made
    before reference vectors were kept: rebuild it), or a side has fewer than two.

    Raises:
        BaselineError: the baseline's entry is malformed.
    """
    ref = reference_vectors(baseline, column)
    cur = window.vectors()
    if ref is None:
        if window.seen == 0:
            return None
        reason = (
            f"the baseline keeps no reference embedding vectors of {column} (made before they were kept, or from a "
            "reference without embeddings); rebuild it with `infertap drift baseline --from-capture --generative`"
        )
        return EmbeddingOutcome(skipped={"name": EMBEDDING_FEATURE, "column": column, "reason": reason})
    if cur.shape[0] < 2:
        reason = f"fewer than two embedding vectors in the window ({cur.shape[0]})"
        return EmbeddingOutcome(skipped={"name": EMBEDDING_FEATURE, "column": column, "reason": reason})
    if cur.shape[1] != ref.shape[1]:
        reason = f"the window's embedding vectors have {cur.shape[1]} dimensions, the baseline's {ref.shape[1]}"
        return EmbeddingOutcome(skipped={"name": EMBEDDING_FEATURE, "column": column, "reason": reason})
    r = mmd_test(ref, cur, alpha=alpha)
    op = "<" if r.drifted else ">="
    feature = FeatureVerdict(
        name=EMBEDDING_FEATURE, column=column, index=None, summary=None, kind="embedding", test="mmd",
        statistic=r.mmd2u, score=r.p_value, p_value=r.p_value, p_value_adjusted=None, threshold=alpha,
        drifted=r.drifted, n_reference=r.n_reference, n_current=r.n_current, n_nonfinite=window.nonfinite,
        resolution=None,
        detail={
            "method": r.method, "citation": MMD_CITATION, "sigma": r.sigma, "permutations": r.permutations,
            "dimensions": r.dimensions, "evidently_drifted": r.evidently_drifted,
            "evidently_threshold": EVIDENTLY_MMD_THRESHOLD, "n_reference_kept": int(ref.shape[0]),
            "n_current_seen": window.seen,
        },
        reason=f"mmd p={r.p_value:.4g} {op} {alpha} (MMD² {r.mmd2u:.4g}); n_ref={r.n_reference}, n_cur={r.n_current}",
    )  # fmt: skip
    return EmbeddingOutcome(feature=feature)


def add_embedding_outcome(verdict: DriftVerdict, outcome: EmbeddingOutcome | None) -> DriftVerdict:
    """Enter the embedding test into a drift verdict: its feature entry counts in the drifted share and the
    dataset decision like any feature (its p-value takes no part in ``--correction``); a skip goes to ``skipped``.
    Returns ``verdict``, changed in place."""
    if outcome is None:
        return verdict
    if outcome.skipped is not None:
        verdict.skipped.append(outcome.skipped)
    if outcome.feature is not None:
        res = verdict.result
        res.features.append(outcome.feature)
        res.n_features = len(res.features)
        res.n_drifted = sum(1 for f in res.features if f.drifted)
        res.drifted_share = res.n_drifted / res.n_features
        res.dataset_drift = res.drifted_share >= res.drift_share_threshold
    return verdict
