"""Every query of every committed dashboard, evaluated against a real Prometheus that scraped real sidecars under
traffic and the drift job's pushed metrics, returns data (at least one series with a finite value)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observability.conftest import Observed

pytestmark = pytest.mark.integration

DASHBOARDS = sorted((Path(__file__).resolve().parents[3] / "dashboards").glob("*.json"))
#: queries of generative metrics are evaluated against an LLM server's sidecar (test_genai_panels.py)
GENAI = "infertap_genai_"
#: what Grafana puts in the placeholders: the "All" value of $model, and the rate window of a 1 h view scraped
#: every minute ($__rate_interval = max(4 x scrape interval, $__interval + scrape interval))
SUBSTITUTIONS = {"$__rate_interval": "4m", '"$model"': '".*"'}


def targets(genai: bool = False) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title [refId], expression) of every query: those of generative metrics with ``genai``,
    the others without."""
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                if (GENAI in target["expr"]) == genai:
                    out.append((dash["uid"], f"{panel['title']} [{target['refId']}]", target["expr"]))
    return out


def expr_for_prometheus(raw: str) -> str:
    """``raw`` with Grafana's placeholders replaced as :data:`SUBSTITUTIONS` says."""
    for placeholder, value in SUBSTITUTIONS.items():
        raw = raw.replace(placeholder, value)
    assert "$" not in raw, f"a placeholder the test does not know: {raw}"
    return raw


def finite(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]


def test_every_dashboard_has_queries() -> None:
    assert {uid for uid, _, _ in targets() + targets(genai=True)} == {
        "infertap-serving",
        "infertap-capture",
        "infertap-drift",
        "infertap-canary",
    }


@pytest.mark.parametrize(("uid", "panel", "expr"), targets(), ids=[f"{u}:{p}" for u, p, _ in targets()])
def test_panel_query_returns_data(observed: Observed, uid: str, panel: str, expr: str) -> None:
    # the canary job's push replaced the drift job's metrics (same Pushgateway group): drift panels are read at the
    # time Prometheus held them
    at = observed.drift_at if uid == "infertap-drift" else None
    result = observed.prometheus.query(expr_for_prometheus(expr), at=at)
    assert result, f"{uid} / {panel}: no series for {expr_for_prometheus(expr)}"
    assert finite(result), f"{uid} / {panel}: only NaN/Inf values: {result}"


def test_canary_beside_stable_shows_both_revisions(observed: Observed) -> None:
    (expr,) = [e for u, p, e in targets() if p.startswith("Canary beside stable: traffic share")]
    shares = {
        r["metric"]["revision"]: float(r["value"][1]) for r in observed.prometheus.query(expr_for_prometheus(expr))
    }
    assert set(shares) == {"breast-cancer-predictor-00001", "breast-cancer-predictor-00002"}
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-6)
    assert 0 < shares["breast-cancer-predictor-00002"] < 0.5  # the canary answered part of the traffic


def test_canary_verdict_panel_reads_fail(observed: Observed) -> None:
    (expr,) = [e for u, p, e in targets() if p.startswith("Verdict history")]
    result = observed.prometheus.query(expr_for_prometheus(expr).replace('".*"', '"breast-cancer"'))
    assert [float(r["value"][1]) for r in result] == [2.0]  # the value mapping's "Fail"
