"""The windowed drift job: scan the window's files, reduce each to partial summaries, merge, test, document.

Memory is bounded by one record batch plus the per-feature bin arrays (and an optional bounded sample), whatever
the window size. The verdict document is described in ``docs/verdict-schema.md``.
"""

from __future__ import annotations

import datetime as dt
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import pyarrow.compute as pc

from infertap.drift.baseline import Baseline
from infertap.drift.engine import FileMapper, ReadFile
from infertap.drift.errors import BaselineError, DataError, EmptyWindowError
from infertap.drift.evaluate import DriftConfig, assess
from infertap.drift.parallel import prefetched
from infertap.drift.reader import Scan, Window, open_scan
from infertap.drift.reduce import WindowPartial, column_specs, reduce_window
from infertap.drift.summary import Reservoir, Summary
from infertap.drift.verdict import DriftVerdict, Envelope
from infertap.logger import record

if TYPE_CHECKING:
    from rich.progress import Progress


def _progress(enabled: bool | None) -> Progress | None:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]drift[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def _versions(source: str, model: str, window: Window, endpoint: str | None) -> list[str]:
    scan = open_scan(source, model, window, endpoint=endpoint)
    found: set[str] = set()
    for b in scan.batches(["model_version"]):
        found.update(str(v) for v in pc.unique(b.column(0)).to_pylist())
    return sorted(found)


def run_window(
    baseline: Baseline,
    source: str,
    *,
    model: str | None = None,
    window: Window | None = None,
    config: DriftConfig | None = None,
    endpoint: str | None = None,
    check_version: bool = True,
    progress: bool | None = None,
    batch_rows: int = 65_536,
    reservoir: Reservoir | None = None,
    allow_missing_columns: bool = False,
    map_files: FileMapper | None = None,
) -> dict[str, Any]:
    """The JSON document (``docs/verdict-schema.md``) of :func:`drift_window` (same arguments)."""
    return drift_window(
        baseline,
        source,
        model=model,
        window=window,
        config=config,
        endpoint=endpoint,
        check_version=check_version,
        progress=progress,
        batch_rows=batch_rows,
        reservoir=reservoir,
        allow_missing_columns=allow_missing_columns,
        map_files=map_files,
    ).to_json()


def drift_window(
    baseline: Baseline,
    source: str,
    *,
    model: str | None = None,
    window: Window | None = None,
    config: DriftConfig | None = None,
    endpoint: str | None = None,
    check_version: bool = True,
    progress: bool | None = None,
    batch_rows: int = 65_536,
    reservoir: Reservoir | None = None,
    allow_missing_columns: bool = False,
    map_files: FileMapper | None = None,
) -> DriftVerdict:
    """Drift verdict of the captured records of a model in a time window against a baseline.

    Stages: scan (:func:`infertap.drift.reader.open_scan`, partition pruning) -> reduce each file to a
    :class:`infertap.drift.reduce.WindowPartial` -> merge the partials -> test (:func:`infertap.drift.evaluate.assess`)
    -> document (:class:`infertap.drift.verdict.DriftVerdict`).

    Args:
        baseline: the reference (its ``model_name`` must equal ``model`` when given).
        source: local directory or ``s3://bucket/prefix`` holding the file sink's layout.
        model: model name (default: the baseline's).
        window: UTC ``request_time`` window.
        config: test settings (:class:`infertap.drift.evaluate.DriftConfig`).
        endpoint: S3 endpoint override (``http://host:port``).
        check_version: when the baseline has a ``model_version``, only records of that version are read, and a
            window holding only other versions is an error.
        progress: show a progress bar (default: when stderr is a terminal).
        batch_rows: rows per record batch read.
        reservoir: receives a bounded sample of every feature's values.
        allow_missing_columns: test the features that have data when some baseline features have none in the
            window (their tensor column is absent from every file, or null in every record); they are listed in
            ``missing_columns`` / ``missing_features``. Without it that is a :class:`DataError`.
        map_files: the engine that reduces the files (:mod:`infertap.drift.engine`; e.g.
            :func:`infertap.drift.spark.spark_files`); default: this process, with ``progress`` and ``reservoir``.

    Raises:
        BaselineError: the baseline is for another model, or the window holds only other model versions.
        EmptyWindowError: nothing captured in the window, or a feature without finite values.
        DataError: baseline features without data in the window (unless ``allow_missing_columns``); malformed
            records (a tensor whose instances are not as wide as the column's others, see
            :meth:`infertap.drift.reduce.WindowPartial.resolve`) above ``config.max_malformed_share`` of the
            window; a file that cannot be read.
        SchemaError: files that are not the record schema.
    """
    model = model or baseline.model_name
    window = window or Window()
    if model != baseline.model_name:
        raise BaselineError(f"baseline is for model {baseline.model_name!r}, not {model!r}")
    version = {}
    if check_version and baseline.model_version is not None:
        version = {"model_version": baseline.model_version}
    started = dt.datetime.now(dt.UTC)
    scan = open_scan(source, model, window, endpoint=endpoint, equals=version)
    wanted = {c for c in column_specs(baseline) if not c.startswith("gen_")}
    columns = sorted(wanted & set(scan.schema.names))
    missing = sorted(wanted - set(scan.schema.names))
    captured = {tc.column: tc.datatype for tc in record.tensor_columns(scan.schema)}
    gen_specs = [bf.spec for bf in baseline.features if bf.spec.column.startswith("gen_")]  # generative features
    if not columns and wanted:
        raise EmptyWindowError(
            f"the captured records have none of the baseline's tensor columns {missing}; "
            f"captured tensor columns: {sorted(captured)}"
        )
    check_kinds(baseline, captured)
    read = columns + (["request_id"] if "request_id" in scan.schema.names else [])
    if map_files is None:
        total = reduce_scan(baseline, scan, read, progress=progress, batch_rows=batch_rows, reservoir=reservoir)
    else:

        def reduce_file(index: int, read_file: ReadFile) -> WindowPartial:
            return reduce_window(baseline, read_file(read, batch_rows))

        total = map_files(scan, reduce_file, WindowPartial.merge) or WindowPartial()
    extra_summaries: dict[str, Summary] = {}
    vectors = None
    if gen_specs:
        from infertap.drift import generative  # imported when used: it loads scipy.spatial

        calls = generative.read_calls(scan, batch_rows=batch_rows)
        extra_summaries = generative.window_summaries(baseline, calls)
        vectors = generative.scan_embeddings(scan, batch_rows=batch_rows)
        if not wanted:
            total.rows = calls.num_rows
    if total.rows == 0:
        if version:
            others = _versions(source, model, window, endpoint)
            if others:
                raise BaselineError(
                    f"baseline is for model version {baseline.model_version!r}; the window holds versions {others}"
                )
        raise EmptyWindowError(f"no records for model {model!r} in window {window.to_json()}")
    verdict = conclude(
        baseline, total, config, source, window, started, missing, list(captured), allow_missing_columns,
        extra_summaries,
    )  # fmt: skip
    if vectors is not None:  # embedding vectors: the MMD test against the baseline's reference vectors
        generative.add_embedding_outcome(verdict, generative.embedding_outcome(baseline, vectors))
    return verdict


def check_kinds(baseline: Baseline, captured: dict[str, str]) -> None:
    """Refuse numeric baseline features whose captured tensor holds strings (V2 ``BYTES``).

    Args:
        captured: tensor column -> V2 datatype of the captured records.

    Raises:
        DataError: naming each such feature, its column, and every captured tensor column with its datatype.
    """
    wrong = [
        f"{bf.spec.name} ({bf.spec.column})"
        for bf in baseline.features
        if bf.spec.kind == "numeric" and captured.get(bf.spec.column) == "BYTES"
    ]
    if wrong:
        raise DataError(
            f"numeric baseline features {wrong} are captured as strings (BYTES); captured tensor columns: "
            f"{dict(sorted(captured.items()))}; rebuild the baseline with those features categorical, or map them "
            "to the right tensors"
        )


def conclude(
    baseline: Baseline,
    total: WindowPartial,
    config: DriftConfig | None,
    source: str,
    window: Window,
    started: dt.datetime,
    missing: list[str],
    captured: list[str],
    allow_missing_columns: bool,
    extra_summaries: dict[str, Summary] | None = None,
) -> DriftVerdict:
    """The stages after the merge, shared by every engine: resolve malformed records, check that every feature
    has data, test, document.

    Args:
        total: the merged partial of the window (``rows > 0``).
        missing: baseline tensor columns absent from every file; ``captured``: the tensor columns found.
        extra_summaries: summaries of features reduced apart from the tensors (generative features,
            :func:`infertap.drift.generative.window_summaries`).

    Raises:
        DataError: malformed records above ``max_malformed_share``; features without data (unless
            ``allow_missing_columns``); an index beyond a column's width.
        EmptyWindowError: a feature without finite values.
    """
    cfg = config or DriftConfig()
    summaries, malformed = total.resolve(cfg.max_malformed_share)
    summaries.update(extra_summaries or {})
    if malformed.records > cfg.max_malformed_share * total.rows:
        raise DataError(
            f"{malformed.records} of {total.rows} records in the window are malformed "
            f"(share {malformed.records / total.rows:.2%} > max_malformed_share {cfg.max_malformed_share:.2%}): "
            f"tensor columns {malformed.columns}, request ids {malformed.request_ids}"
        )
    absent = [bf.spec.name for bf in baseline.features if bf.spec.column and bf.spec.name not in summaries]
    if absent and not allow_missing_columns:
        cols = sorted({bf.spec.column for bf in baseline.features if bf.spec.name in absent})
        raise DataError(
            f"{len(absent)} baseline features have no data in the window {window.to_json()}: {absent} "
            f"(tensor columns {cols}; absent from every file: {missing}; captured columns: {sorted(captured)}); "
            "pass allow_missing_columns (--allow-missing-columns) to test the other features"
        )
    result = assess(baseline, summaries, cfg)
    envelope = Envelope("drift", source, window, total.rows, started, baseline)
    return DriftVerdict(envelope, missing, absent, result, malformed, summaries)


def reduce_scan(
    baseline: Baseline,
    scan: Scan,
    columns: list[str],
    *,
    progress: bool | None = None,
    batch_rows: int = 65_536,
    reservoir: Reservoir | None = None,
) -> WindowPartial:
    """Reduce every file of ``scan`` to its own partial and merge them (the path a distributed engine takes)."""
    prog = _progress(progress)
    total = WindowPartial()
    with prog if prog is not None else nullcontext():
        task = prog.add_task(baseline.model_name, total=scan.total_rows) if prog is not None else None

        def tick(n: int) -> None:
            if prog is not None and task is not None:
                prog.advance(task, n)

        for i, part in enumerate(scan.parts()):
            res = None if reservoir is None else Reservoir(reservoir.k, [0, i])
            partial = reduce_window(
                baseline,
                prefetched(scan.part_batches(part, columns, batch_rows=batch_rows)),
                reservoir=res,
                on_batch=tick,
            )
            total = total.merge(partial)
    if reservoir is not None and total.reservoir is not None:
        merged = reservoir.merge(total.reservoir)
        reservoir.priorities, reservoir.values = merged.priorities, merged.values
    return total
