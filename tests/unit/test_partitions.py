"""Partition directories of the file sink: client-chosen model names are sanitised and capped on disk."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from infertap.logger.sinks.file import FileSink
from infertap.logger.sinks.partitions import MAX_MODEL_PARTITIONS, OTHER_PARTITION, partition_value
from tests.integration.sinks.records import batch


def model_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_hostile_model_names_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    sink = FileSink(root, pod="p")
    sink.start()
    names = ["..", ".", "../../etc", "a/b", ".hidden", "tab\there", "nul\x00byte", "new\nline", "", "100%", "x=y"]
    for i, name in enumerate(names):
        sink.write(batch(i, 1, model=name))
    sink.flush()
    files = sorted(tmp_path.rglob("*.parquet"))
    assert len(files) == len(names)
    assert all(f.is_relative_to(root) for f in files)  # nothing escaped the root
    for d in model_dirs(root):
        value = d.removeprefix("model=")
        assert value not in (".", "..")
        assert not value.startswith(".")
        assert "/" not in value
        assert all(ord(c) >= 0x20 for c in value)
    assert "model=%2E." in model_dirs(root)
    assert "model=%2E.%2F..%2Fetc" in model_dirs(root)
    # the column keeps the real name, and pyarrow's hive partitioning decodes the directory back to it
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("model_name").to_pylist()) == sorted(names)
    decoded = {m for m in table.column("model").to_pylist()}
    assert {"..", ".", "../../etc", "a/b", "tab\there", "100%", "x=y"} <= decoded


def test_distinct_model_partitions_are_capped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    sink = FileSink(root, pod="p")
    sink.start()
    names = [f"model-{i:02d}" for i in range(71)]
    for i, name in enumerate(names):
        sink.write(batch(i, 1, model=name))
    sink.write(batch(100, 1, model="model-00"))  # a model seen before keeps its partition
    sink.flush()
    dirs = model_dirs(root)
    assert len(dirs) == MAX_MODEL_PARTITIONS + 1
    assert f"model={OTHER_PARTITION}" in dirs
    assert "model=model-63" in dirs
    assert "model=model-64" not in dirs
    other = [pq.read_table(f) for f in sorted((root / f"model={OTHER_PARTITION}").rglob("*.parquet"))]
    kept = sorted(m for t in other for m in t.column("model_name").to_pylist())
    assert kept == names[MAX_MODEL_PARTITIONS:]  # real names in the column
    total = sum(pq.read_metadata(f).num_rows for f in root.rglob("*.parquet"))
    assert total == 72


def test_partition_values() -> None:
    assert partition_value("iris") == "iris"
    assert partition_value("iris.v2") == "iris.v2"
    assert partition_value("") == "_"
    assert partition_value("..") == "%2E."
    assert partition_value("a/b") == "a%2Fb"
    long = partition_value("m" * 1000)
    assert len(long) <= 128
    assert long != partition_value("m" * 999)
