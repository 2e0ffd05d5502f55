"""The HTML report shows the verdict's own tests and decisions for every feature, drifted first; its headline counts
are the verdict's (fair data: 0 drifted; shifted data: the drifted ones and no other)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.features import FeatureSpec
from infertap.drift.job import run_window
from infertap.drift.report import write_report
from infertap.logger.cli import main
from tests.unit.drift import capture

N = 9


class _Rows(HTMLParser):
    """The table rows of the report as lists of cell texts, and the headline text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.headline = ""
        self.in_headline = False
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self.cell = []
        elif tag == "p" and ("id", "headline") in attrs:
            self.in_headline = True
        elif tag == "svg":
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "p":
            self.in_headline = False
        elif tag == "svg":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.cell is not None and not self.depth:
            self.cell.append(data)
        if self.in_headline:
            self.headline += data


def _baseline() -> Baseline:
    ref = np.random.default_rng(0).normal(size=(20_000, N))
    specs = [FeatureSpec(f"f{i}", "input.x", i) for i in range(N)]
    return build_baseline({f"f{i}": ref[:, i] for i in range(N)}, specs, model_name="m", model_version="1")


def _parse(path: Path) -> _Rows:
    p = _Rows()
    p.feed(path.read_text())
    return p


def test_fair_data_report_agrees_with_the_verdict(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(20_000, N))
    capture.write(tmp_path / "cap", capture.table(x))
    v = run_window(_baseline(), str(tmp_path / "cap"))
    assert v["n_drifted"] == 0
    page = _parse(write_report(v, tmp_path / "r.html"))
    assert " ".join(page.headline.split()) == "No dataset drift: 0 of 9 features drifted (share 0.000 < 0.5)."
    rows = [r for r in page.rows if r]
    assert len(rows) == N
    assert all(r[6] == "no drift" for r in rows)


def test_drifted_features_come_first_with_the_verdicts_figures(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(size=(5000, N))
    x[:, [2, 5, 7]] += 1.0
    capture.write(tmp_path / "cap", capture.table(x))
    b = _baseline().save(tmp_path / "b.json")
    out, html = tmp_path / "v.json", tmp_path / "r.html"
    rc = main(["drift", "run", str(tmp_path / "cap"), "--baseline", str(b), "-o", str(out), "--report", str(html)])
    assert rc == 0  # 3 of 9 < 0.5
    import json

    v = json.loads(out.read_text())
    assert v["report"] == str(html)
    page = _parse(html)
    assert " ".join(page.headline.split()) == "No dataset drift: 3 of 9 features drifted (share 0.333 < 0.5)."
    rows = [r for r in page.rows if r]
    assert [r[0] for r in rows[:3]] == ["f2", "f5", "f7"]
    assert [r[6] for r in rows] == ["drifted"] * 3 + ["no drift"] * 6
    by_name = {f["name"]: f for f in v["features"]}
    for r in rows:
        f = by_name[r[0]]
        assert r[2] == f["test"] == "wasserstein"
        assert r[4] == f"{f['score']:.4g}"
        assert r[5] == str(f["threshold"])
        assert (r[7], r[8]) == (str(f["n_reference"]), str(f["n_current"]))
        assert r[10] == f["reason"]
    assert len(re.findall(r"<svg ", html.read_text())) == N
