"""The Spark engine: the drift job's reduce stage on Apache Spark partitions, the rest on the driver.

Spark reads the capture's hive layout (``model=/date=/hour=``) and prunes partitions by model, date and hour (the
same predicates as :mod:`infertap.drift.reader`, plus the row filter on ``request_time`` and ``model_version``).
Each partition's rows arrive as Arrow record batches (``DataFrame.mapInArrow``) and are reduced by
:func:`infertap.drift.reduce.reduce_window` -- the very NumPy code of the local engine -- to one
:class:`infertap.drift.reduce.WindowPartial`, returned pickled. The driver merges the partials with the summaries'
own ``merge``, resolves malformed records and runs the same tests (:func:`infertap.drift.evaluate.assess`): no
statistic is computed in Spark SQL, so both engines give the same verdict (counts equal; sums and moments differ
only by the order of float additions).

Sources: a local directory, ``hdfs://`` or anything Spark reads, or ``s3://bucket/prefix`` read as ``s3a://``
(endpoint override with ``--s3-endpoint``; credentials from the usual AWS chain). ``s3a`` needs the
``hadoop-aws`` jar and its AWS SDK on Spark's classpath (a cluster image has them; ``pyspark`` from PyPI does not).
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa

from infertap.drift.baseline import Baseline
from infertap.drift.errors import BaselineError, ConfigError, EmptyWindowError
from infertap.drift.evaluate import DriftConfig
from infertap.drift.job import conclude
from infertap.drift.reader import Window
from infertap.drift.reduce import WindowPartial, column_specs, reduce_window
from infertap.drift.verdict import DriftVerdict

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: The schema of what each Spark partition returns: one pickled :class:`WindowPartial`.
PARTIAL_SCHEMA = "partial binary"


def session(master: str | None = None, app_name: str = "infertap-drift") -> SparkSession:
    """The active Spark session, or a new one (``master``: e.g. ``local[*]``; default: Spark's own, as set by
    ``spark-submit``). Partition columns are read as strings, as the capture layout writes them.

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
        builder.config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536")
        .config("spark.ui.enabled", "false")
    )
    return builder.getOrCreate()


def spark_path(source: str, spark: SparkSession, endpoint: str | None = None) -> str:
    """The path Spark reads for a source: ``s3://`` becomes ``s3a://`` (with ``endpoint`` set on the session's
    Hadoop configuration, path-style access); other sources are passed through."""
    u = urlparse(source)
    if u.scheme != "s3":
        return source
    if endpoint:
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        conf.set("fs.s3a.endpoint", endpoint)
        conf.set("fs.s3a.path.style.access", "true")
        conf.set("fs.s3a.connection.ssl.enabled", str(urlparse(endpoint).scheme == "https").lower())
    return "s3a://" + source[len("s3://") :]


def window_frame(spark: SparkSession, path: str, model: str, window: Window, version: str | None) -> DataFrame:
    """The captured rows of ``model`` in ``window`` (and of ``version`` when given), partitions pruned.

    Raises:
        EmptyWindowError: nothing can be read under ``path`` (no captured Parquet).
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        df = spark.read.option("mergeSchema", "true").option("basePath", path).parquet(path)
    except AnalysisException as exc:
        raise EmptyWindowError(f"no captured Parquet files under {path}: {' '.join(str(exc).split())[:300]}") from None
    cond = F.col("model") == model
    if window.start is not None:
        d, h = window.start.strftime("%Y-%m-%d"), window.start.strftime("%H")
        cond &= (F.col("date") > d) | ((F.col("date") == d) & (F.col("hour") >= h))
        cond &= F.col("request_time") >= F.lit(window.start)
    if window.end is not None:
        d, h = window.end.strftime("%Y-%m-%d"), window.end.strftime("%H")
        cond &= (F.col("date") < d) | ((F.col("date") == d) & (F.col("hour") <= h))
        cond &= F.col("request_time") < F.lit(window.end)
    if version is not None:
        cond &= F.col("model_version") == version
    return df.where(cond)


def _reducer(baseline: Baseline, names: list[str]) -> Any:
    """The function each partition runs: Arrow batches in (columns renamed back to ``names``), one pickled partial
    out."""

    def reduce_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        renamed = (pa.RecordBatch.from_arrays(b.columns, names=names) for b in batches)
        partial = reduce_window(baseline, renamed)
        yield pa.RecordBatch.from_pydict({"partial": [pickle.dumps(partial, protocol=5)]})

    return reduce_partition


def reduce_frame(baseline: Baseline, df: DataFrame, columns: list[str]) -> WindowPartial:
    """Reduce every partition of ``df`` (the tensor ``columns`` and ``request_id``) and merge the partials."""
    read = columns + (["request_id"] if "request_id" in df.columns else [])
    # mapInArrow resolves column names unquoted: the dotted tensor names (input.x) travel as c0, c1 ...
    frame = df.select(*[f"`{c}`" for c in read]).toDF(*[f"c{i}" for i in range(len(read))])
    rows = frame.mapInArrow(_reducer(baseline, read), PARTIAL_SCHEMA).collect()
    total = WindowPartial()
    for row in rows:
        total = total.merge(pickle.loads(row["partial"]))  # our own executors' output
    return total


def drift_window_spark(
    baseline: Baseline,
    source: str,
    *,
    model: str | None = None,
    window: Window | None = None,
    config: DriftConfig | None = None,
    endpoint: str | None = None,
    check_version: bool = True,
    allow_missing_columns: bool = False,
    spark: SparkSession | None = None,
    master: str | None = None,
) -> DriftVerdict:
    """:func:`infertap.drift.job.drift_window` on Spark (same arguments, same verdict).

    Args:
        spark: the session to use (default: :func:`session` with ``master``).
        master: Spark master when a session is made (``local[*]`` in tests; default: Spark's own).

    Raises:
        BaselineError, EmptyWindowError, DataError: as :func:`infertap.drift.job.drift_window`.
        ConfigError: pyspark is missing.
    """
    model = model or baseline.model_name
    window = window or Window()
    if model != baseline.model_name:
        raise BaselineError(f"baseline is for model {baseline.model_name!r}, not {model!r}")
    version = baseline.model_version if check_version else None
    started = dt.datetime.now(dt.UTC)
    spark = spark or session(master)
    df = window_frame(spark, spark_path(source, spark, endpoint), model, window, version)
    wanted = set(column_specs(baseline))
    columns = sorted(wanted & set(df.columns))
    missing = sorted(wanted - set(df.columns))
    if not columns:
        raise EmptyWindowError(f"the captured records have none of the baseline's tensor columns {missing}")
    total = reduce_frame(baseline, df, columns)
    if total.rows == 0:
        if version is not None:
            others = sorted(r[0] for r in window_frame(spark, spark_path(source, spark, endpoint), model, window, None)
                            .select("model_version").distinct().collect())  # fmt: skip
            if others:
                raise BaselineError(
                    f"baseline is for model version {baseline.model_version!r}; the window holds versions {others}"
                )
        raise EmptyWindowError(f"no records for model {model!r} in window {window.to_json()}")
    captured = [c for c in df.columns if c.startswith(("input.", "output."))]
    return conclude(baseline, total, config, source, window, started, missing, captured, allow_missing_columns)
