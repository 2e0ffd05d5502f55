"""How an engine runs the reduce stage: every pruned file of a scan to a partial, partials merged in file order.

An engine is a :data:`FileMapper`: given a scan, a ``reduce_file(index, read)`` and a ``merge(a, b)``, it reduces
every file of :meth:`infertap.drift.reader.Scan.parts` (``read(columns, batch_rows)`` streams that file's matching
rows) and merges the results left to right in path order. :func:`local_files` runs the files one after another in
this process; :func:`infertap.drift.spark.spark_files` (a session bound to :func:`infertap.drift.spark.map_files`)
runs them on Spark tasks. The drift job, the canary and the baseline from a captured window take either, so both
engines run the same reduce and merge code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds

from infertap.drift.parallel import prefetched
from infertap.drift.reader import Scan

T = TypeVar("T")

#: ``read(columns, batch_rows)``: one file's matching rows, ``columns`` only, in batches of ``batch_rows``.
ReadFile = Callable[[Sequence[str], int], Iterator[pa.RecordBatch]]
#: ``reduce_file(index, read)``: the partial of the file at ``index`` in path order.
ReduceFile = Callable[[int, ReadFile], T]


class FileMapper(Protocol):
    """An engine: ``map_files(scan, reduce_file, merge)`` -> the merged partial of every file of ``scan`` (merged
    left to right in path order), ``None`` when the scan touches no file."""

    def __call__(self, scan: Scan, reduce_file: ReduceFile[T], merge: Callable[[T, T], T]) -> T | None: ...


def local_files(scan: Scan, reduce_file: ReduceFile[T], merge: Callable[[T, T], T]) -> T | None:
    """The local engine: reduce the files of ``scan`` one by one in this process, merging as it goes (memory:
    a few batches of one file and two partials); the next batches are read while the current one is reduced
    (:func:`infertap.drift.parallel.prefetched`)."""
    total: T | None = None
    for i, part in enumerate(scan.parts()):

        def read(columns: Sequence[str], batch_rows: int, part: ds.Fragment = part) -> Iterator[pa.RecordBatch]:
            return prefetched(scan.part_batches(part, columns, batch_rows=batch_rows))

        one = reduce_file(i, read)
        total = one if total is None else merge(total, one)
    return total
