"""The fast paths of a drift run give what the plain ones give: bins without sorting, the Wasserstein distance
without scipy, files read without a row filter only when every row meets it, tables read without pandas."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from scipy import stats as sst

from infertap.drift.baseline import build_baseline
from infertap.drift.errors import DataError
from infertap.drift.features import FeatureSpec
from infertap.drift.job import run_window
from infertap.drift.parallel import prefetched
from infertap.drift.reader import Window, open_scan
from infertap.drift.stats import wasserstein_1
from infertap.drift.summary import NumericSummary, bin_index, make_edges
from infertap.drift.tables import read_table
from tests.unit.drift import capture


def _bins_by_search(edges: np.ndarray[Any, Any], x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    i = np.searchsorted(edges, x, side="left")
    return 2 * i + (np.append(edges, np.inf)[i] == x)


def _references(rng: np.random.Generator) -> list[np.ndarray[Any, Any]]:
    n = 5000
    return [
        rng.normal(size=n),
        rng.integers(0, 5, n).astype(np.float64),  # few values: every one is an edge
        np.concatenate([rng.normal(size=n), 3 + 1e-9 * rng.normal(size=n)]),  # a tight cluster: crowded cells
        np.exp(rng.normal(scale=5, size=n)),  # heavy right tail
        np.full(n, 1.0),  # one value
        rng.standard_cauchy(n) * 1e150,  # huge values (and probes up to 1e308 below)
    ]


def test_bin_index_equals_a_binary_search_of_the_edges() -> None:
    rng = np.random.default_rng(0)
    for ref in _references(rng):
        for bins in (3, 100, 1000):
            edges, _ = make_edges(ref, quantile_bins=bins, max_exact=50)
            probes = [
                ref,
                rng.choice(edges, 500),  # on the edges: point bins
                np.nextafter(edges, np.inf),  # just above and below every edge
                np.nextafter(edges, -np.inf),
                rng.normal(size=500) * np.abs(ref).max() * 3,  # beyond the range
                np.array([1e308, -1e308, 0.0]),
            ]
            x = np.concatenate(probes)
            x = x[np.isfinite(x)]
            np.testing.assert_array_equal(bin_index(edges, x), _bins_by_search(edges, x))


def test_counting_a_window_in_batches_equals_counting_it_sorted_at_once() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=20_000)
    edges, _ = make_edges(ref, quantile_bins=200)
    cur = np.concatenate([rng.normal(0.3, 1.0, 30_000), [np.nan, np.inf, -np.inf], edges[:50]])
    whole = NumericSummary.empty(edges)
    whole._add_sorted(np.sort(cur[np.isfinite(cur)]))
    parts = NumericSummary.empty(edges)
    for chunk in np.array_split(cur, 7):
        parts.add(chunk)
    np.testing.assert_array_equal(parts.counts, whole.counts)
    np.testing.assert_allclose(parts.sums, whole.sums, rtol=1e-12, atol=1e-9)
    assert (parts.n_nan, parts.n_inf, parts.min, parts.max) == (1, 2, whole.min, whole.max)


def test_few_valued_data_keeps_exact_value_counts_between_edges() -> None:
    edges = np.array([0.0, 10.0])
    s = NumericSummary.empty(edges)
    s.add(np.array([1.5, 2.5, 1.5, 10.0, 0.0, 1.5]))
    assert s.value_counts() == {0.0: 1, 1.5: 3, 2.5: 1, 10.0: 1}


def test_wasserstein_1_is_scipys_wasserstein_distance() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        m, n = rng.integers(1, 40, 2)
        u, v = np.round(rng.normal(size=m), 1), np.round(rng.normal(0.2, 1.5, size=n), 1)
        uw, vw = rng.integers(1, 5, m).astype(float), rng.integers(1, 5, n).astype(float)
        assert wasserstein_1(u, uw, v, vw) == pytest.approx(
            sst.wasserstein_distance(u, v, uw, vw), rel=1e-12, abs=1e-15
        )


def _t(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC)


def test_a_file_is_read_unfiltered_only_when_its_statistics_show_every_row_in(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    capture.write(tmp_path, capture.table(rng.normal(size=(100, 2)), version="1"), "one.parquet")
    mixed = pa.concat_tables(
        [
            capture.table(rng.normal(size=(60, 2)), version="1", t0_us=capture.T0_US + 10**6),
            capture.table(rng.normal(size=(40, 2)) + 50, version="2", t0_us=capture.T0_US + 2 * 10**6),
        ]
    )
    capture.write(tmp_path, mixed, "mixed.parquet")
    scan = open_scan(str(tmp_path), "m", equals={"model_version": "1"})
    by_name = {Path(str(p.path)).name: p for p in scan.parts()}
    assert scan.all_rows_match(by_name["one.parquet"])
    assert not scan.all_rows_match(by_name["mixed.parquet"])
    rows = sum(b.num_rows for p in scan.parts() for b in scan.part_batches(p, ["request_id"]))
    assert rows == 160
    late = open_scan(str(tmp_path), "m", Window(_t(capture.T0_US + 10**6), None))
    matched = {Path(str(p.path)).name: late.all_rows_match(p) for p in late.parts()}
    assert matched == {"mixed.parquet": True, "one.parquet": False}  # "one" was captured before the window
    assert sum(b.num_rows for p in late.parts() for b in late.part_batches(p, ["request_id"])) == 100
    specs = [FeatureSpec("a", "input.x", 0), FeatureSpec("b", "input.x", 1)]
    base = build_baseline(
        {"a": rng.normal(size=500), "b": rng.normal(size=500)}, specs, model_name="m", model_version="1"
    )
    v = run_window(base, str(tmp_path), progress=False)
    assert v["window"]["records"] == 160  # the version-2 rows (shifted by 50) are not read
    assert v["n_drifted"] == 0


def test_a_parquet_table_is_read_without_pandas(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pa.table({"a": np.arange(10.0), "b": pa.array(np.arange(10), pa.int32()), "c": [None, *range(9)]})
    pq.write_table(table.slice(0, 10), path, row_group_size=4)
    cols, names, _ = read_table(path)
    assert names == ["a", "b", "c"]
    np.testing.assert_array_equal(cols["a"], np.arange(10.0))
    np.testing.assert_array_equal(cols["b"], np.arange(10))
    assert np.isnan(cols["c"][0])
    assert cols["c"][1] == 0
    plain = tmp_path / "plain.parquet"  # numeric columns without nulls: views of the Arrow buffers, no pandas import
    pq.write_table(table.drop_columns(["c"]), plain, row_group_size=4)
    code = (
        f"import sys; from infertap.drift.tables import read_table; read_table({str(plain)!r}); "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_prefetched_keeps_order_and_hands_over_errors() -> None:
    assert list(prefetched(iter(range(100)), depth=3)) == list(range(100))

    def broken() -> Iterator[int]:
        yield 1
        raise DataError("cannot read part-7.parquet: truncated")

    it = prefetched(broken())
    assert next(it) == 1
    with pytest.raises(DataError, match="part-7"):
        next(it)
    produced = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = prefetched(endless(), depth=2)
    assert next(it) == 0
    it.close()  # a consumer that stops early stops the producer
    assert len(produced) <= 5


def test_a_file_read_by_the_batch_reader_gives_what_the_scanner_gives(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    capture.write(tmp_path, capture.table(rng.normal(size=(1000, 3)), rng.normal(size=1000)), "both.parquet")
    only_x = capture.table(rng.normal(size=(500, 3)), t0_us=capture.T0_US + 10**6)
    capture.write(tmp_path, only_x, "x.parquet")  # no output.y: the scan reads it as null
    scan = open_scan(str(tmp_path), "m")
    cols = ["input.x", "output.y", "request_id"]
    for part in scan.parts():
        assert scan.all_rows_match(part)
        direct = pa.Table.from_batches(list(scan.part_batches(part, cols, batch_rows=300)))
        scanned = ds.Scanner.from_fragment(part, schema=scan.dataset.schema, columns=cols).to_table()
        assert direct.schema == scanned.schema
        assert direct.equals(scanned)
        assert max(b.num_rows for b in scan.part_batches(part, cols, batch_rows=300)) == 300
    assert scan.parts()[1].physical_schema.get_field_index("output.y") < 0  # the scanner's path was taken
