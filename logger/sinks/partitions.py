"""The hive partition path of the file and S3 sinks: ``model=<name>/date=YYYY-MM-DD/hour=HH`` (UTC).

The model name comes from the client (the URL path or the body), so its partition value is made safe and bounded
before it names a directory or an object key:

* **Sanitised**: the name is percent-encoded as a URI path segment (RFC 3986 unreserved characters ``A-Z a-z 0-9
  - . _ ~`` stay, every other byte of its UTF-8 form becomes ``%XX``: ``/``, ``\\``, ``%``, ``=``, spaces and
  control characters included), and a leading ``.`` is encoded too (``%2E``), so no value is ``.``, ``..`` or a
  hidden name. pyarrow's ``HivePartitioning`` (``segment_encoding="uri"``, its default) decodes it back to the
  name. An empty name is ``_``. A value longer than :data:`MAX_VALUE_CHARS` keeps its first characters and ends in
  ``~`` and 16 hex digits of the name's SHA-256, so it stays within file-name limits and distinct.
* **Bounded**: a :class:`ModelPartitions` gives each of the first :data:`MAX_MODEL_PARTITIONS` distinct names its
  own partition and puts every later one under :data:`OTHER_PARTITION`, as the ``model`` metric label is capped
  (:data:`infertap.logger.metrics.MAX_MODEL_LABELS`). The ``model_name`` column always keeps the real name.
"""

from __future__ import annotations

import hashlib
import threading
from urllib.parse import quote

import numpy as np
import pyarrow as pa

#: Distinct model partitions per sink (per process); later names share :data:`OTHER_PARTITION`.
MAX_MODEL_PARTITIONS = 64
#: Partition value of the models beyond :data:`MAX_MODEL_PARTITIONS`.
OTHER_PARTITION = "__other__"
#: Longest partition value kept as it is (characters, after encoding); file names are limited to 255 bytes.
MAX_VALUE_CHARS = 128
HOUR_US = 3_600_000_000


def partition_value(model: str) -> str:
    """The safe partition value of ``model`` (see the module docs): e.g. ``"a/b"`` -> ``"a%2Fb"``, ``".."`` ->
    ``"%2E."``, ``""`` -> ``"_"``."""
    if not model:
        return "_"
    value = quote(model, safe="")
    if value.startswith("."):
        value = "%2E" + value[1:]
    if len(value) > MAX_VALUE_CHARS:
        digest = hashlib.sha256(model.encode()).hexdigest()[:16]
        value = value[: MAX_VALUE_CHARS - 17].rstrip("%0123456789ABCDEF") + "~" + digest
    return value


def partition_dir(model: str, hour_start_us: int) -> str:
    """Relative directory of a model and UTC hour, e.g. ``model=iris/date=2026-11-21/hour=09``.

    Args:
        model: the model name (sanitised here with :func:`partition_value`; not capped — see
            :class:`ModelPartitions`).
        hour_start_us: any time in the hour, Unix microseconds (UTC).
    """
    stamp = np.datetime64(hour_start_us, "us").astype("datetime64[h]").item()
    return f"model={partition_value(model)}/date={stamp:%Y-%m-%d}/hour={stamp:%H}"


def row_hours(data: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The UTC hour (hours since the Unix epoch) of each row: of ``request_time``, or of ``response_time`` where
    ``request_time`` is null (a response the collector wrote alone, docs/collector.md).

    Read through NumPy (``datetime64[us]``, NaT for null) rather than ``pyarrow.compute``, whose library the
    sidecar would otherwise load for this alone (about 13 MB of RSS).

    Returns:
        int64 array of ``data.num_rows`` hours.
    """
    request = data.column("request_time").to_numpy(zero_copy_only=False)
    response = data.column("response_time").to_numpy(zero_copy_only=False)
    times = np.where(np.isnat(request), response, request)
    hours: np.ndarray = times.astype("datetime64[us]").astype(np.int64) // HOUR_US
    return hours


class ModelPartitions:
    """The capped set of model partitions of one sink. Thread-safe.

    Args:
        max_models: distinct model names that get a partition of their own; later names go to
            :data:`OTHER_PARTITION`.
    """

    def __init__(self, max_models: int = MAX_MODEL_PARTITIONS) -> None:
        self.max_models = max_models
        self._models: set[str] = set()
        self._lock = threading.Lock()

    def model(self, name: str) -> str:
        """``name`` if it has (or now gets) its own partition, else :data:`OTHER_PARTITION`."""
        with self._lock:
            if name in self._models:
                return name
            if len(self._models) < self.max_models:
                self._models.add(name)
                return name
        return OTHER_PARTITION

    def directory(self, model: str, hour_start_us: int) -> str:
        """:func:`partition_dir` of ``model`` after the cap."""
        return partition_dir(self.model(model), hour_start_us)
