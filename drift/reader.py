"""Reading captured Parquet as a stream of record batches, partition-pruned by model and time window.

Sources are a local directory or ``s3://bucket/prefix`` (``pyarrow.fs.S3FileSystem``; credentials from the usual
AWS environment variables, ``endpoint`` overrides the endpoint, e.g. MinIO or moto). The layout is the file sink's
``model=<name>/date=YYYY-MM-DD/hour=HH/part-*.parquet``; the ``model``, ``date`` and ``hour`` partitions prune
directories and the ``request_time`` filter prunes row groups by their statistics. Only the requested columns are
read, in batches of ``batch_rows``, so memory is bounded by one batch whatever the window size.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from infertap.drift.errors import DataError
from infertap.logger import record
from infertap.logger.errors import SchemaError

PARTITIONING = ds.partitioning(
    pa.schema([("model", pa.string()), ("date", pa.string()), ("hour", pa.string())]), flavor="hive"
)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open UTC time window ``[start, end)`` of ``request_time``; either bound may be ``None``."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def to_json(self) -> dict[str, str | None]:
        """ISO-8601 bounds."""
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }


_RELATIVE = re.compile(r"now(?:-(\d+)([smhd]))?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO-8601 time (``Z`` allowed; naive times are UTC), or a time relative to now, as an aware UTC datetime.

    Relative times use Grafana's syntax: ``now``, ``now-30m``, ``now-1h``, ``now-7d`` (units s, m, h, d), so a
    CronJob can name "the last hour" without a shell (``--start now-1h --end now``). ``now`` is the current UTC time
    unless given.

    Raises:
        DataError: unparseable.
    """
    rel = _RELATIVE.fullmatch(text.strip())
    if rel is not None:
        base = now if now is not None else dt.datetime.now(dt.UTC)
        amount, unit = rel.groups()
        return base - dt.timedelta(seconds=int(amount) * _UNIT_S[unit]) if amount else base
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"not an ISO-8601 time nor now[-N(s|m|h|d)]: {text!r}") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


#: URL schemes read through ``pyarrow.fs.S3FileSystem``: ``s3``, and Hadoop's ``s3a`` that Spark users write for
#: the same store (one bucket namespace; Hadoop's S3A connector is not involved).
S3_SCHEMES = ("s3", "s3a")


def filesystem(source: str, endpoint: str | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of a source: a local directory (or ``file://``), or ``s3://bucket/prefix`` (also
    written ``s3a://bucket/prefix``).

    Raises:
        DataError: any other URL scheme (``hdfs://``, ``gs://``, ...), rather than reading it as a local path.
    """
    u = urlparse(source)
    if u.scheme and u.scheme not in (*S3_SCHEMES, "file") and len(u.scheme) > 1:  # len 1: a Windows drive letter
        raise DataError(f"{source}: unsupported source scheme {u.scheme!r}; use a directory or s3://bucket/prefix")
    if u.scheme == "file":
        return pafs.LocalFileSystem(), u.path
    if u.scheme in S3_SCHEMES:
        kwargs: dict[str, object] = {}
        if endpoint:
            e = urlparse(endpoint)
            kwargs["endpoint_override"] = e.netloc or e.path
            kwargs["scheme"] = e.scheme or "https"
        return pafs.S3FileSystem(**kwargs), f"{u.netloc}{u.path}".rstrip("/")
    return pafs.LocalFileSystem(), source


def _partition_filter(model: str, window: Window) -> ds.Expression:
    """Rows of ``model`` whose ``request_time`` is in ``window``; for a response the collector wrote alone
    (``request_time`` null, docs/collector.md), its ``response_time``."""
    expr = ds.field("model") == model
    t, alone, resp = ds.field("request_time"), ds.field("request_time").is_null(), ds.field("response_time")
    if window.start is not None:
        d, h = window.start.strftime("%Y-%m-%d"), window.start.strftime("%H")
        expr &= (ds.field("date") > d) | ((ds.field("date") == d) & (ds.field("hour") >= h))
        start = pa.scalar(window.start, pa.timestamp("us", tz="UTC"))
        expr &= (t >= start) | (alone & (resp >= start))
    if window.end is not None:
        d, h = window.end.strftime("%Y-%m-%d"), window.end.strftime("%H")
        expr &= (ds.field("date") < d) | ((ds.field("date") == d) & (ds.field("hour") <= h))
        end = pa.scalar(window.end, pa.timestamp("us", tz="UTC"))
        expr &= (t < end) | (alone & (resp < end))
    return expr


@dataclass(slots=True)
class Scan:
    """A pruned scan: the unified schema of the files it touches and their total row count (before row filters).

    ``window`` and ``equals`` are the row conditions of ``filter`` besides the partitions (``request_time`` in the
    window, ``column == value``); ``extra`` says whether ``filter`` holds another one (``extra_filter``). A file
    whose row-group statistics show every row meeting them is read without the row filter (:meth:`part_batches`):
    filtering copies every column read, a tensor column too, even when no row is dropped.
    """

    dataset: ds.Dataset
    filter: ds.Expression
    schema: pa.Schema
    total_rows: int
    window: Window = Window()
    equals: dict[str, str] = field(default_factory=dict)
    extra: bool = False

    def batches(self, columns: Sequence[str], *, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` of the matching rows (absent tensor columns are null)."""
        scanner = self.dataset.scanner(
            columns=list(columns),
            filter=self.filter,
            batch_size=batch_rows,
            use_threads=False,  # threaded scans read ahead whole files when filtering (RSS grows)
            fragment_readahead=1,  # bounded memory: one file and a few batches in flight
            batch_readahead=2,
        )
        yield from _guarded(scanner.to_batches(), "the captured files")

    def parts(self) -> list[ds.Fragment]:
        """The files the scan touches (after partition pruning), in path order: the units a run reduces apart."""
        return sorted(self.dataset.get_fragments(filter=self.filter), key=lambda f: str(f.path))

    def part_batches(
        self, part: ds.Fragment, columns: Sequence[str], *, batch_rows: int = 65_536
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``columns`` of the matching rows of one file of :meth:`parts` (absent tensor columns are null).

        A file whose rows all match (:meth:`all_rows_match`) and that holds every column of ``columns`` with the
        scan's type is read by Parquet's own batch reader (:func:`_file_batches`), the rest by a dataset scanner.
        """
        if self.all_rows_match(part):
            direct = _file_batches(part, columns, self.dataset.schema, batch_rows)
            if direct is not None:
                yield from _guarded(direct, str(part.path))
                return
        scanner = ds.Scanner.from_fragment(
            part,
            schema=self.dataset.schema,
            columns=list(columns),
            filter=None if self.all_rows_match(part) else self.filter,
            batch_size=batch_rows,
            use_threads=False,
            batch_readahead=2,
        )
        yield from _guarded(scanner.to_batches(), str(part.path))

    def all_rows_match(self, part: ds.Fragment) -> bool:
        """Whether the row-group statistics of ``part`` (a file of :meth:`parts`) show every row in ``window``
        (``request_time`` never null, its minimum and maximum inside) and equal to ``equals``; ``False`` when
        ``extra`` or when a statistic is missing."""
        if self.extra:
            return False
        if self.window.start is None and self.window.end is None and not self.equals:
            return True
        try:
            md = part.metadata
        except (OSError, pa.ArrowException):
            return False  # the scan itself reports the error
        if md is None:
            return False
        wanted = set(self.equals) | ({"request_time"} if self.window.start or self.window.end else set())
        for i in range(md.num_row_groups):
            rg = md.row_group(i)
            stats = {}
            for j in range(rg.num_columns):
                c = rg.column(j)
                if c.path_in_schema in wanted:
                    stats[c.path_in_schema] = c.statistics
            if set(stats) != wanted or not all(_exact(st) for st in stats.values()):
                return False
            for col, value in self.equals.items():
                if not stats[col].min == stats[col].max == value:
                    return False
            if "request_time" in stats:
                st = stats["request_time"]
                lo, hi = st.min, st.max
                if not isinstance(lo, dt.datetime) or not isinstance(hi, dt.datetime):
                    return False
                if (self.window.start is not None and lo < self.window.start) or (
                    self.window.end is not None and hi >= self.window.end
                ):
                    return False
        return True


def _file_batches(
    part: ds.Fragment, columns: Sequence[str], schema: pa.Schema, batch_rows: int
) -> Iterator[pa.RecordBatch] | None:
    """``columns`` of every row of ``part``, in batches of ``batch_rows``, read by
    :meth:`pyarrow.parquet.ParquetFile.iter_batches`; ``None`` (read it with a scanner) when the file lacks one of
    ``columns`` or holds it with another type than ``schema``'s, or its footer cannot be read.

    The batch reader decodes ``batch_rows`` rows at a time, where a dataset scanner decodes a whole row group before
    slicing it: reading 250,000-row files of a 20-element FP64 tensor adds about 155 MB of peak RSS instead of 400 MB,
    and saves the time the kernel spends handing a process that much fresh memory (docs/drift.md).
    """
    try:
        physical = part.physical_schema
    except (OSError, pa.ArrowException):
        return None  # the scanner reports the error
    for name in columns:
        i = physical.get_field_index(name)
        j = schema.get_field_index(name)
        if i < 0 or j < 0 or physical.field(i).type != schema.field(j).type:
            return None
    local = isinstance(part.filesystem, pafs.LocalFileSystem)
    try:
        source = part.path if local else part.filesystem.open_input_file(part.path)
        reader = pq.ParquetFile(source, metadata=part.metadata, pre_buffer=not local)  # footer read once
    except (OSError, pa.ArrowException):
        return None  # the scanner reports the error
    target = pa.schema([schema.field(name) for name in columns])

    def batches() -> Iterator[pa.RecordBatch]:
        with reader:
            for batch in reader.iter_batches(batch_rows, columns=list(columns), use_threads=False):
                yield pa.RecordBatch.from_arrays(batch.columns, schema=target)

    return batches()


def _exact(st: Any) -> bool:
    """Statistics with a minimum and a maximum and no nulls."""
    return st is not None and st.has_min_max and st.has_null_count and st.null_count == 0


def open_scan(
    source: str,
    model: str,
    window: Window = Window(),
    *,
    endpoint: str | None = None,
    extra_filter: ds.Expression | None = None,
    equals: dict[str, str] | None = None,
) -> Scan:
    """Discover the captured files of ``model`` within ``window`` and unify their schemas.

    ``equals`` keeps the rows whose column equals the value (``{"model_version": "3"}``), ``extra_filter`` the rows
    that meet another condition.

    Raises:
        DataError: the source cannot be listed, or a file cannot be read (truncated, corrupt, unreadable).
        EmptyWindowError: no file matches (nothing captured for the model in the window).
        SchemaError: a file is not a version-1 record schema.
    """
    from infertap.drift.errors import EmptyWindowError

    fs, path = filesystem(source, endpoint)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"cannot list {source}: {exc}") from None
    files = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File and i.base_name.endswith(".parquet") and not i.base_name.startswith((".", "_"))
    )
    if not files:
        raise EmptyWindowError(f"no captured Parquet files under {source}")

    def make(schema: pa.Schema | None = None) -> ds.Dataset:
        try:
            return ds.dataset(
                files,
                format="parquet",
                partitioning=PARTITIONING,
                partition_base_dir=path,
                filesystem=fs,
                schema=schema,
            )
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read the captured files under {source}: {_one_line(exc)}") from None

    base = make()
    expr = _partition_filter(model, window)
    frags = list(base.get_fragments(filter=ds.field("model") == model))
    pruned = [f for f in base.get_fragments(filter=_prune_only(model, window))]
    if not frags or not pruned:
        raise EmptyWindowError(f"no captured files for model {model!r} in {window.to_json()} under {source}")
    schemas = []
    for f in pruned:
        try:
            schemas.append(f.physical_schema)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {f.path}: {_one_line(exc)}") from None
    for s in schemas:
        record.check_schema(s)
    try:
        unified = pa.unify_schemas(schemas)
    except pa.ArrowInvalid as exc:
        raise SchemaError(f"captured files disagree on column types: {exc}") from None
    full = pa.schema([*unified, *PARTITIONING.schema])
    dataset = make(full)
    for col, value in (equals or {}).items():
        expr &= ds.field(col) == value
    if extra_filter is not None:
        expr &= extra_filter
    total = 0
    for f in pruned:
        try:
            md = f.metadata
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {f.path}: {_one_line(exc)}") from None
        total += md.num_rows if md is not None else 0
    return Scan(dataset, expr, unified, total, window, dict(equals or {}), extra_filter is not None)


def _prune_only(model: str, window: Window) -> ds.Expression:
    expr = ds.field("model") == model
    if window.start is not None:
        d, h = window.start.strftime("%Y-%m-%d"), window.start.strftime("%H")
        expr &= (ds.field("date") > d) | ((ds.field("date") == d) & (ds.field("hour") >= h))
    if window.end is not None:
        d, h = window.end.strftime("%Y-%m-%d"), window.end.strftime("%H")
        expr &= (ds.field("date") < d) | ((ds.field("date") == d) & (ds.field("hour") <= h))
    return expr


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _guarded(batches: Iterator[pa.RecordBatch], where: str) -> Iterator[pa.RecordBatch]:
    """``batches``, with read errors (a truncated or corrupt file, an unreadable object) raised as
    :class:`DataError` naming ``where``."""
    try:
        yield from batches
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read {where}: {_one_line(exc)}") from None
