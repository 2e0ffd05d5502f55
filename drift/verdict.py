"""Typed drift and canary results, and their JSON documents (the last stage: document).

The stages before this one (scan, reduce, merge, test) pass these dataclasses along; ``to_json()`` turns them
into the verdict documents described in ``docs/verdict-schema.md`` at the edge (CLI, demo, alerts, metrics).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infertap.drift.baseline import Baseline
    from infertap.drift.reader import Window
    from infertap.drift.summary import Summary

VERDICT_SCHEMA = "infertap.drift.verdict/v1"


@dataclass(slots=True)
class FeatureVerdict:
    """The test of one feature (the keys of a ``features[]`` entry in ``docs/verdict-schema.md``).

    ``statistic``, ``score`` and the p-values are finite floats or ``None`` (undefined on constant data);
    ``threshold`` is compared with ``score``; ``n_*`` count values (not records); ``resolution`` bounds the
    binning error of KS (``None`` when exact).
    """

    name: str
    column: str
    index: int | None
    summary: str | None
    kind: str
    test: str
    statistic: float | None
    score: float | None
    p_value: float | None
    p_value_adjusted: float | None
    threshold: float
    drifted: bool
    n_reference: int
    n_current: int
    n_nonfinite: int
    resolution: float | None
    detail: dict[str, Any] = field(default_factory=dict)
    nonfinite: bool = False
    reason: str = ""
    histogram: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``features[]`` entry (``nonfinite`` only when true)."""
        out: dict[str, Any] = {
            "name": self.name,
            "column": self.column,
            "index": self.index,
            "summary": self.summary,
            "kind": self.kind,
            "test": self.test,
            "statistic": self.statistic,
            "score": self.score,
            "p_value": self.p_value,
            "p_value_adjusted": self.p_value_adjusted,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "n_nonfinite": self.n_nonfinite,
            "resolution": self.resolution,
            "detail": self.detail,
        }
        if self.nonfinite:
            out["nonfinite"] = True
        out["reason"] = self.reason
        if self.histogram is not None:
            out["histogram"] = self.histogram
        return out


@dataclass(slots=True)
class DatasetVerdict:
    """The tests of every feature and the dataset-level decision (share of drifted features >= threshold)."""

    dataset_drift: bool
    drifted_share: float
    n_features: int
    n_drifted: int
    drift_share_threshold: float
    correction: str
    features: list[FeatureVerdict]

    def to_json(self) -> dict[str, Any]:
        """``{"dataset_drift", "drifted_share", "n_features", "n_drifted", ..., "features": [...]}``."""
        return {
            "dataset_drift": self.dataset_drift,
            "drifted_share": self.drifted_share,
            "n_features": self.n_features,
            "n_drifted": self.n_drifted,
            "drift_share_threshold": self.drift_share_threshold,
            "correction": self.correction,
            "features": [f.to_json() for f in self.features],
        }


@dataclass(slots=True)
class Envelope:
    """The common head of verdict documents: what was compared, over which window, how many records."""

    kind: str
    source: str
    window: Window
    records: int
    started: dt.datetime
    baseline: Baseline | None = None
    generated: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def to_json(self) -> dict[str, Any]:
        """The head: ``schema``, ``kind``, ``generated_at``, ``duration_s``, ``source``, ``window``, ``model``..."""
        head: dict[str, Any] = {
            "schema": VERDICT_SCHEMA,
            "kind": self.kind,
            "generated_at": self.generated.isoformat(),
            "duration_s": (self.generated - self.started).total_seconds(),
            "source": self.source,
            "window": {**self.window.to_json(), "records": self.records},
        }
        b = self.baseline
        if b is not None:
            head["model"] = {"name": b.model_name, "version": b.model_version}
            head["baseline"] = {"id": b.id, "created_at": b.created_at, "source": b.source, "n_rows": b.n_rows}
        return head


@dataclass(slots=True)
class Malformed:
    """Records skipped because a tensor's per-instance shape did not fit the others (see ``docs/drift.md``).

    Attributes:
        records: skipped records (a record counts once however many of its tensors were malformed).
        request_ids: the first :data:`infertap.drift.reduce.MALFORMED_IDS_CAP` of their request ids.
        columns: tensor column -> skipped records in that column.
        max_share: the share of the window's records past which the run fails.
    """

    records: int = 0
    request_ids: list[str] = field(default_factory=list)
    columns: dict[str, int] = field(default_factory=dict)
    max_share: float = 0.0

    def to_json(self, total: int) -> dict[str, Any]:
        """``{"records", "share", "max_share", "columns", "request_ids"}`` given the window's ``total`` records."""
        return {
            "records": self.records,
            "share": self.records / total if total else 0.0,
            "max_share": self.max_share,
            "columns": dict(sorted(self.columns.items())),
            "request_ids": self.request_ids,
        }


@dataclass(slots=True)
class DriftVerdict:
    """A windowed drift verdict: envelope, columns without data, malformed records, the tests, the tests that could
    not run (``skipped``: ``{"name", "column", "reason"}``); and the window's summaries the tests ran on
    (``current``, for reports; not part of the document)."""

    envelope: Envelope
    missing_columns: list[str]
    missing_features: list[str]
    result: DatasetVerdict
    malformed: Malformed = field(default_factory=Malformed)
    current: dict[str, Summary] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``"drift"`` or ``"no_drift"``."""
        return "drift" if self.result.dataset_drift else "no_drift"

    def to_json(self) -> dict[str, Any]:
        """The drift verdict document (``docs/verdict-schema.md``)."""
        doc = self.envelope.to_json()
        doc["missing_columns"] = self.missing_columns
        doc["missing_features"] = self.missing_features
        doc["malformed"] = self.malformed.to_json(self.envelope.records)
        doc.update(self.result.to_json())
        if self.skipped:
            doc["skipped"] = self.skipped
        doc["verdict"] = self.verdict
        return doc


@dataclass(slots=True)
class Check:
    """One canary check: its name, outcome, whether it is critical, and what it measured (``fields``: test,
    statistic, p-value, threshold, sample sizes, reason ... as documented per check in ``docs/verdict-schema.md``)."""

    name: str
    passed: bool
    critical: bool
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"name", "passed", "critical", **fields}``."""
        return {"name": self.name, "passed": bool(self.passed), "critical": self.critical, **self.fields}


@dataclass(slots=True)
class ArmCounts:
    """Exact request, error and malformed-record counts of one canary arm (a value of the grouping column)."""

    requests: int = 0
    errors: int = 0
    value: str = ""
    malformed: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"value", "requests", "errors", "malformed"}`` (``malformed``: tensor column -> records skipped)."""
        return {
            "value": self.value,
            "requests": self.requests,
            "errors": self.errors,
            "malformed": dict(sorted(self.malformed.items())),
        }


@dataclass(slots=True)
class CanaryVerdict:
    """A canary verdict: the arms, every check, the Kayenta-style score and verdict, the distribution tests."""

    envelope: Envelope
    model: str
    group_by: str
    stable: ArmCounts
    canary: ArmCounts
    config: dict[str, Any]
    score: float
    verdict: str
    checks: list[Check]
    distributions: dict[str, DatasetVerdict]

    def to_json(self) -> dict[str, Any]:
        """The canary verdict document (``docs/verdict-schema.md``)."""
        doc = self.envelope.to_json()
        doc.update(
            {
                "model": {"name": self.model},
                "group_by": self.group_by,
                "stable": self.stable.to_json(),
                "canary": self.canary.to_json(),
                "config": self.config,
                "score": self.score,
                "verdict": self.verdict,
                "checks": [c.to_json() for c in self.checks],
                "distributions": {k: v.to_json() for k, v in self.distributions.items()},
            }
        )
        return doc
