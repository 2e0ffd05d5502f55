"""The Spark engine: the drift job's reduce stage on Spark tasks, the rest on the driver.

The driver lists and prunes the capture exactly as the local engine does (:func:`infertap.drift.reader.open_scan`:
the hive layout ``model=/date=/hour=``, the row filters on ``request_time`` and ``model_version``, one unified
schema). Spark then distributes the pruned *files*: each task reads its files with pyarrow through the local
engine's reader (:meth:`infertap.drift.reader.Scan.part_batches`) and reduces them with the local engine's NumPy code
(:func:`infertap.drift.reduce.reduce_window` for ``drift run``, :func:`infertap.drift.reduce.reduce_arms` for
``drift canary``, the feature values for ``drift baseline --from-capture``), file by file in path order, and returns
the merged partial of its files. The driver merges the tasks' partials in file order with the summaries' own
``merge`` and runs the same tests: no statistic is computed in Spark SQL, so both engines give the same document
(counts equal; sums and moments differ only by the order of float additions).

Why files and not ``spark.read.parquet``: Spark's reader turns the nested tensor columns (``list<double>``) into JVM
rows and back into Arrow for ``mapInArrow``, which cost about 10x the reduce itself per row
(``benchmarks/drift_spark.py``, docs/drift.md). Reading inside the tasks with pyarrow also reads ``s3://`` sources
through ``pyarrow.fs.S3FileSystem`` in the executors (``--s3-endpoint`` for MinIO-style stores, credentials from
the AWS default chain of each executor): no ``hadoop-aws`` jar is needed.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds

from infertap.drift import errors
from infertap.drift.engine import FileMapper, ReduceFile
from infertap.drift.errors import ConfigError
from infertap.drift.parallel import prefetched
from infertap.drift.reader import Scan

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T = TypeVar("T")

#: Tasks per core of the session (``defaultParallelism``): enough for load balancing over files of unequal
#: size, few enough that the driver holds few partials.
TASKS_PER_CORE = 4


def session(master: str | None = None, app_name: str = "infertap-drift") -> SparkSession:
    """The active Spark session, or a new one.

    Args:
        master: e.g. ``local[2]``; default: Spark's own (as set by ``spark-submit``, else ``local[*]``).

    Raises:
        ConfigError: pyspark is not installed (``pip install 'infertap[spark]'``).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("the Spark engine needs pyspark: pip install 'infertap[spark]'") from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors run this interpreter (local mode)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    builder = (
        builder.config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.python.worker.reuse", "true")
    )
    return builder.getOrCreate()


@dataclass(frozen=True, slots=True)
class FilePart:
    """One pruned file of a scan, as a Spark task receives it (picklable: the fragment carries its filesystem).

    Attributes:
        index: the file's position in :meth:`infertap.drift.reader.Scan.parts` (path order).
        fragment: the Parquet file with its partition expression.
        scan: the driver's scan (schema, row filter and its conditions) over this one file.
    """

    index: int
    fragment: ds.ParquetFileFragment
    scan: Scan

    def batches(self, columns: Sequence[str], batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """The file's matching rows, ``columns`` only (absent tensor columns are null), read as the local engine
        reads them (:meth:`infertap.drift.reader.Scan.part_batches`, the next batches read by a background thread
        while the current one is counted: :func:`infertap.drift.parallel.prefetched`)."""
        return prefetched(self.scan.part_batches(self.fragment, columns, batch_rows=batch_rows))


def file_parts(scan: Scan) -> list[FilePart]:
    """The pruned files of ``scan`` in path order (the local engine's order), ready to ship to tasks: each with
    the scan narrowed to itself, so a task receives one file's dataset, not the whole listing."""
    fmt = ds.ParquetFileFormat()
    return [
        FilePart(i, f, replace(scan, dataset=ds.FileSystemDataset([f], scan.dataset.schema, fmt)))
        for i, f in enumerate(scan.parts())
    ]


def map_files(
    spark: SparkSession,
    scan: Scan,
    reduce_file: ReduceFile[T],
    merge: Callable[[T, T], T],
    *,
    tasks: int | None = None,
) -> T | None:
    """Reduce every pruned file of ``scan`` on Spark and merge the results in file order (a
    :class:`infertap.drift.engine.FileMapper` once ``spark`` is bound).

    The files are split into ``tasks`` contiguous runs (default: :data:`TASKS_PER_CORE` x the session's
    ``defaultParallelism``, at most one per file); a task reduces its files one by one with ``reduce_file`` and
    merges them left to right; the driver merges the tasks' results left to right. The merge order is therefore the
    file order, as in the local engine; only the grouping of float sums differs.

    Args:
        reduce_file: run in the executors (pickled with cloudpickle): ``(index, read)`` -> the file's partial.
        merge: ``merge(a, b)`` of two partials, ``a`` before ``b`` in file order.

    Returns:
        The merged partial, ``None`` when the scan touches no file.
    """
    parts = file_parts(scan)
    if not parts:
        return None
    sc = spark.sparkContext
    n = max(1, min(len(parts), tasks or TASKS_PER_CORE * sc.defaultParallelism))

    def reduce_task(files: Iterable[FilePart]) -> Iterator[T]:
        acc: T | None = None
        for part in files:
            one = reduce_file(part.index, part.batches)
            acc = one if acc is None else merge(acc, one)
        if acc is not None:
            yield acc

    try:
        results = sc.parallelize(parts, n).mapPartitions(reduce_task).collect()
    except Exception as exc:  # py4j's or pyspark's wrapper of a failed task
        raise task_error(exc) from None
    total: T | None = None
    for one in results:
        total = one if total is None else merge(total, one)
    return total


#: The last line of a Python traceback naming one of infertap's errors: ``infertap.drift.errors.DataError: ...``.
_INFERTAP_ERROR = re.compile(r"^infertap\.[\w.]+\.(\w+Error): (.+)$", re.MULTILINE)


def task_error(exc: Exception) -> Exception:
    """The error a failed Spark job stands for: the infertap error a task raised (a :class:`DataError` naming the
    unreadable file, say), found in the task's traceback that Spark carries in its message and raised again in
    the driver with its one-line message; else ``exc`` itself."""
    found = _INFERTAP_ERROR.findall(str(exc))
    if not found:
        return exc
    name, message = found[-1]
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.DriftError)):
        cls = errors.DataError
    return cls(message)


def spark_files(spark: SparkSession, tasks: int | None = None) -> FileMapper:
    """The Spark engine as a :class:`infertap.drift.engine.FileMapper` over ``spark``."""

    def mapper(scan: Scan, reduce_file: ReduceFile[T], merge: Callable[[T, T], T]) -> T | None:
        return map_files(spark, scan, reduce_file, merge, tasks=tasks)

    return mapper
