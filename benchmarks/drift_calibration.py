"""Calibration under no drift: random splits of the same real data (scikit-learn's breast cancer, wine, digits,
diabetes), >= 200 windows each. Reports, per dataset and family-wise correction, the per-feature false-alarm
rate of the p-value tests (must be <= the nominal 0.05), the share of windows with any drifted feature
(family-wise error; Bonferroni must keep it <= 0.05) and the dataset-level false-alarm rate (drift share >= 0.5).
Writes ``benchmarks/results/drift_calibration.json`` and prints a table.

Run: ``.venv/bin/python benchmarks/drift_calibration.py [--windows 200]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets

from infertap.drift.baseline import build_baseline
from infertap.drift.evaluate import DriftConfig, evaluate
from infertap.drift.features import FeatureSpec
from infertap.drift.reduce import summaries_from_columns

OUT = Path(__file__).parent / "results" / "drift_calibration.json"
LOADERS = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "digits": datasets.load_digits,
    "diabetes": datasets.load_diabetes,
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=200)
    a = ap.parse_args()
    rows: list[dict[str, Any]] = []
    ok = True
    for name, loader in LOADERS.items():
        x = np.asarray(loader().data, dtype=np.float64)
        x = x[:, x.std(axis=0) > 0]  # constant columns cannot drift
        specs = [FeatureSpec(f"f{i}", "input.x", i) for i in range(x.shape[1])]
        rng = np.random.default_rng(42)
        stats: dict[str, dict[str, Any]] = {
            c: {"tests": 0, "alarms": 0, "any": 0, "dataset": 0, "pvalue_tests": 0, "by_test": {}}
            for c in ("none", "bonferroni", "bh")
        }
        for _ in range(a.windows):
            perm = rng.permutation(len(x))
            half = len(x) // 2
            ref, cur = x[perm[:half]], x[perm[half:]]
            base = build_baseline(
                {s.name: ref[:, i] for i, s in enumerate(specs)}, specs, model_name=name, sample_size=0
            )
            summ = summaries_from_columns(base, {s.name: cur[:, i] for i, s in enumerate(specs)})
            for corr, st in stats.items():
                res = evaluate(base, summ, DriftConfig(correction=corr))
                feats = res["features"]
                pv = [f for f in feats if f["p_value"] is not None]
                st["tests"] += len(feats)
                st["pvalue_tests"] += len(pv)
                st["alarms"] += sum(f["drifted"] for f in feats)
                st["any"] += any(f["drifted"] for f in feats)
                st["dataset"] += bool(res["dataset_drift"])
                for f in feats:
                    bt = st["by_test"].setdefault(f["test"], [0, 0])
                    bt[0] += 1
                    bt[1] += f["drifted"]
        for corr, st in stats.items():
            row = {
                "dataset": name,
                "correction": corr,
                "windows": a.windows,
                "features": len(specs),
                "reference_rows": len(x) // 2,
                "feature_false_alarm_rate": st["alarms"] / st["tests"],
                "any_feature_alarm_rate": st["any"] / a.windows,
                "dataset_false_alarm_rate": st["dataset"] / a.windows,
                "pvalue_test_share": st["pvalue_tests"] / st["tests"],
                "false_alarm_rate_by_test": {
                    t: {"tests": n, "rate": k / n} for t, (n, k) in sorted(st["by_test"].items())
                },
            }
            rows.append(row)
            if corr == "none":
                for t in ("ks", "z"):  # chisquare: see "chisquare_unseen_categories" below
                    v = row["false_alarm_rate_by_test"].get(t)
                    if v is not None and v["rate"] > 0.05 + 2 * np.sqrt(0.05 * 0.95 / v["tests"]):
                        ok = False
    result = {
        "nominal_level": 0.05,
        "within_nominal": ok,
        "within_nominal_means": "uncorrected ks and z false-alarm rates <= 0.05 + 2 standard errors",
        "chisquare_unseen_categories": (
            "Evidently's chi-squared (reproduced for parity) gives expectation 0 and p = 0 to a value present in the"
            " current window but absent from the reference; on few-valued features with rare values (digits pixels)"
            " this raises false alarms no correction can remove"
        ),
        "rows": rows,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'dataset':14} {'correction':11} {'feat FAR':>9} {'any-feat':>9} {'dataset FAR':>12}  by test")
    for r in rows:
        bt = ", ".join(f"{t} {v['rate']:.4f} (n={v['tests']})" for t, v in r["false_alarm_rate_by_test"].items())
        print(
            f"{r['dataset']:14} {r['correction']:11} {r['feature_false_alarm_rate']:9.4f} "
            f"{r['any_feature_alarm_rate']:9.3f} {r['dataset_false_alarm_rate']:12.3f}  {bt}"
        )
    print("ks/z within nominal level:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
