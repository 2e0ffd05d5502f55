"""The reduce and merge stages: per-file partials merged with the summaries' own merge equal one pass over all rows;
the windowed run takes that path; reservoirs merge into a bounded uniform sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from infertap.drift.baseline import Baseline, build_baseline
from infertap.drift.features import FeatureSpec
from infertap.drift.job import drift_window
from infertap.drift.reader import open_scan
from infertap.drift.reduce import WindowPartial, reduce_window
from infertap.drift.summary import NumericSummary, Reservoir
from tests.unit.drift import capture

SPECS = [FeatureSpec(f"f{i}", "input.x", i) for i in range(3)] + [FeatureSpec("pred", "output.y", 0)]


def _baseline() -> Baseline:
    ref = np.random.default_rng(0).normal(size=(3000, 3))
    cols = {"f0": ref[:, 0], "f1": ref[:, 1], "f2": ref[:, 2], "pred": 2 * ref[:, 0]}
    return build_baseline(cols, SPECS, model_name="m", model_version="1")


def test_partials_of_files_merge_to_the_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tables = []
    for i in range(3):
        x = rng.normal(size=(1500 + 500 * i, 3)) + 0.3 * i
        t = capture.table(x, 2 * x[:, 0], t0_us=capture.T0_US + i * 10_000)
        capture.write(tmp_path, t, f"part-{i}.parquet")
        tables.append(t)
    base = _baseline()
    cols = ["input.x", "output.y"]
    scan = open_scan(str(tmp_path), "m")
    parts = [reduce_window(base, scan.part_batches(p, cols)) for p in scan.parts()]
    assert len(parts) == 3
    merged = parts[2].merge(parts[0]).merge(parts[1])
    whole = reduce_window(base, pa.concat_tables(tables).select(cols).to_batches())
    assert merged.rows == whole.rows == 1500 + 2000 + 2500
    whole_summaries, whole_bad = whole.resolve()
    merged_summaries, merged_bad = merged.resolve()
    assert whole_bad.records == merged_bad.records == 0
    assert set(merged_summaries) == set(whole_summaries) == {"f0", "f1", "f2", "pred"}
    for name, s in whole_summaries.items():
        m = merged_summaries[name]
        assert isinstance(s, NumericSummary)
        assert isinstance(m, NumericSummary)
        np.testing.assert_array_equal(m.counts, s.counts)
        np.testing.assert_allclose(m.sums, s.sums, rtol=1e-12, atol=1e-9)
        assert m.mean == pytest.approx(s.mean, rel=1e-12)
        assert m.m2 == pytest.approx(s.m2, rel=1e-12)
        assert (m.min, m.max) == (s.min, s.max)


def test_the_windowed_run_merges_one_partial_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    for i in range(4):
        x = rng.normal(size=(700, 3))
        capture.write(tmp_path, capture.table(x, 2 * x[:, 0], t0_us=capture.T0_US + i * 1000), f"p{i}.parquet")
    merges: list[int] = []
    real = WindowPartial.merge

    def counting(self: WindowPartial, other: WindowPartial) -> WindowPartial:
        merges.append(other.rows)
        return real(self, other)

    monkeypatch.setattr(WindowPartial, "merge", counting)
    v = drift_window(_baseline(), str(tmp_path))
    assert merges == [700, 700, 700, 700]
    assert v.envelope.records == 2800
    assert {f.n_current for f in v.result.features} == {2800}


def test_reservoir_merge_is_a_bounded_sample_of_both() -> None:
    a, b = Reservoir(100, 1), Reservoir(100, 2)
    a.add("v", np.zeros(1000))
    b.add("v", np.ones(3000))
    b.add("w", np.arange(10.0))
    m = a.merge(b)
    assert m.get("v").size == 100
    share = float(m.get("v").mean())  # the share of values from b: 3000 of 4000 rows
    assert 0.6 < share < 0.9
    np.testing.assert_array_equal(np.sort(m.get("w")), np.arange(10.0))
    assert a.get("v").size == 100
    assert not a.get("w").size
    assert Reservoir(0).get("v").size == 0
