"""Parity of infertap's drift verdicts with Evidently 0.7's DataDriftPreset defaults on real datasets.

Datasets ship inside scikit-learn (no download): breast cancer, wine, iris, diabetes, digits. Shifts are real:
splits by class and by a feature's median, plus a >1000-row reference (digits) so the distance tests are
exercised too; the class label is included as a categorical column where the split does not use it.
Writes ``benchmarks/results/drift_parity.json`` (``columns_compared``, ``verdict_agreement``,
``max_stat_abs_diff``, per-case details) and prints a table.

Run: ``.venv/bin/python benchmarks/drift_parity.py``
"""

from __future__ import annotations

import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from evidently.legacy.metric_preset import DataDriftPreset
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report
from sklearn import datasets

from infertap.drift.baseline import build_baseline
from infertap.drift.evaluate import evaluate
from infertap.drift.features import FeatureSpec
from infertap.drift.reduce import summaries_from_columns

OUT = Path(__file__).parent / "results" / "drift_parity.json"


def ours(ref: pd.DataFrame, cur: pd.DataFrame, cats: list[str]) -> dict[str, Any]:
    specs = [
        FeatureSpec(c, "input.x", i, None, "categorical" if c in cats else "numeric") for i, c in enumerate(ref.columns)
    ]
    base = build_baseline({c: ref[c].to_numpy() for c in ref.columns}, specs, model_name="bench")
    res = evaluate(base, summaries_from_columns(base, {c: cur[c].to_numpy() for c in cur.columns}))
    return {f["name"]: f for f in res["features"]}


def evidently(ref: pd.DataFrame, cur: pd.DataFrame, cats: list[str]) -> dict[str, Any]:
    num = [c for c in ref.columns if c not in cats]
    report = Report(metrics=[DataDriftPreset()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.run(
            reference_data=ref,
            current_data=cur,
            column_mapping=ColumnMapping(numerical_features=num, categorical_features=cats),
        )
        d = report.as_dict()
    for m in d["metrics"]:
        if "drift_by_columns" in m["result"]:
            return dict(m["result"]["drift_by_columns"])
    raise RuntimeError("no drift table in the Evidently report")


def cases() -> list[tuple[str, pd.DataFrame, pd.DataFrame, list[str]]]:
    out = []
    for name, loader in [
        ("breast_cancer", datasets.load_breast_cancer),
        ("wine", datasets.load_wine),
        ("iris", datasets.load_iris),
        ("diabetes", datasets.load_diabetes),
        ("digits", datasets.load_digits),
    ]:
        frame = loader(as_frame=True).frame
        x = frame.drop(columns=["target"]).astype("float64")
        y = frame["target"]
        if name != "diabetes":
            lo = y < y.median()
            out.append((f"{name}/by-class", x[lo].reset_index(drop=True), x[~lo].reset_index(drop=True), []))
        col = x.columns[2]
        m = x[col] <= x[col].median()
        xc = x.assign(label=y.astype(str)) if name != "diabetes" else x
        cats = ["label"] if name != "diabetes" else []
        out.append((f"{name}/by-{col}", xc[m].reset_index(drop=True), xc[~m].reset_index(drop=True), cats))
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(x))
        half = len(x) // 2
        out.append(
            (
                f"{name}/random-split",
                xc.iloc[idx[:half]].reset_index(drop=True),
                xc.iloc[idx[half:]].reset_index(drop=True),
                cats,
            )
        )
    digits = datasets.load_digits(as_frame=True).frame
    dx = digits.drop(columns=["target"]).astype("float64").assign(label=digits["target"].astype(str))
    rng = np.random.default_rng(1)
    ref = dx.iloc[rng.permutation(len(dx))[:1200]].reset_index(drop=True)
    cur = dx[digits["target"] >= 5].reset_index(drop=True)
    out.append(("digits/large-ref-vs-upper-classes", ref, cur, ["label"]))
    return out


def main() -> int:
    rows = []
    total = agree = 0
    max_diff = 0.0
    t_ours = t_ev = 0.0
    for name, ref, cur, cats in cases():
        t = time.perf_counter()
        o = ours(ref, cur, cats)
        t_ours += time.perf_counter() - t
        t = time.perf_counter()
        e = evidently(ref, cur, cats)
        t_ev += time.perf_counter() - t
        c_agree = 0
        c_diff = 0.0
        mismatches = []
        for col, f in o.items():
            ev = e[col]
            same = bool(ev["drift_detected"]) == bool(f["drifted"])
            diff = abs(float(ev["drift_score"]) - float(f["score"] if f["score"] is not None else np.nan))
            diff = 0.0 if np.isnan(diff) and ev["drift_score"] != ev["drift_score"] else diff
            c_agree += same
            c_diff = max(c_diff, diff)
            if not same or diff > 0.01 or ev["stattest_name"].split(" ")[0].lower()[:2] != f["test"][:2]:
                mismatches.append(
                    {
                        "column": col,
                        "ours": [f["test"], f["score"], f["drifted"]],
                        "evidently": [ev["stattest_name"], ev["drift_score"], ev["drift_detected"]],
                    }
                )
        total += len(o)
        agree += c_agree
        max_diff = max(max_diff, c_diff)
        tests = sorted({f["test"] for f in o.values()})
        rows.append(
            {
                "case": name,
                "columns": len(o),
                "agree": c_agree,
                "max_stat_abs_diff": c_diff,
                "tests": tests,
                "drifted_ours": sum(f["drifted"] for f in o.values()),
                "mismatches": mismatches,
            }
        )
    result = {
        "columns_compared": total,
        "verdict_agreement": agree / total,
        "max_stat_abs_diff": max_diff,
        "infertap_s": t_ours,
        "evidently_s": t_ev,
        "cases": rows,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'case':42} {'cols':>5} {'agree':>6} {'max|d|':>10} {'drifted':>8}  tests")
    for r in rows:
        print(
            f"{r['case']:42} {r['columns']:5d} {r['agree']:6d} {r['max_stat_abs_diff']:10.2e} {r['drifted_ours']:8d}  "
            f"{','.join(r['tests'])}"
        )
    print(f"columns_compared={total} verdict_agreement={agree / total:.4f} max_stat_abs_diff={max_diff:.3e}")
    return 0 if agree / total >= 0.99 and max_diff <= 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
