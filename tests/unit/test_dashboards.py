"""The committed dashboards are what dashboards/generate.py makes, and they pass Grafana's dashboard schema.

The schema is ``jsonschema/dashboard.jsonschema.json`` of grafana-foundation-sdk's ``v10.1.x+cog-v0.0.x`` branch,
the branch of the SDK version pinned in pyproject.toml (tests/data/grafana/README.md).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dashboards import generate

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "data" / "grafana" / "dashboard.jsonschema.json").read_text())
UIDS = [spec.uid for spec in generate.DASHBOARDS]


def _committed(uid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "dashboards" / f"{uid}.json").read_text())
    return data


def _errors(dashboard: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(dashboard)]


@pytest.mark.parametrize("uid", UIDS)
def test_committed_json_is_what_the_generator_makes(uid: str) -> None:
    spec = next(s for s in generate.DASHBOARDS if s.uid == uid)
    assert (ROOT / "dashboards" / f"{uid}.json").read_text() == generate.render(spec), (
        "run `python dashboards/generate.py` and commit the result"
    )


def test_check_mode_reports_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "infertap-drift.json").write_text("{}\n")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1
    assert "infertap-drift.json" in capsys.readouterr().err


@pytest.mark.parametrize("uid", UIDS)
def test_dashboard_passes_the_grafana_schema(uid: str) -> None:
    assert _errors(_committed(uid)) == []


def test_the_schema_rejects_what_grafana_10_1_rejects() -> None:
    """The check has teeth: a panel with null options and a variable with a non-string query are refused."""
    broken = copy.deepcopy(_committed("infertap-serving"))
    broken["panels"][1]["options"] = None
    broken["templating"]["list"][1]["query"] = 42
    errors = _errors(broken)
    assert any(e.startswith("['panels', 1]") for e in errors)
    assert any(e.startswith("['templating', 'list', 1, 'query']") for e in errors)


@pytest.mark.parametrize("uid", UIDS)
def test_panels_query_prometheus_through_the_datasource_variable(uid: str) -> None:
    dash = _committed(uid)
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert panels
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert p["description"], p["title"]
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "model"]
