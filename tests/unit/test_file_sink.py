"""The local Parquet sink stores the records as encoded, whatever encodings it picks inside the file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from infertap.logger import batching
from infertap.logger.record import CORE_NAMES
from infertap.logger.sinks.file import DICTIONARY_COLUMNS, FileSink

from .conftest import CapturerFactory, make_exchange


def test_a_written_file_reads_back_as_the_batch_with_dictionaries_only_on_text(
    make_capturer: CapturerFactory, tmp_path: Path
) -> None:
    capturer = make_capturer()
    records = [capturer.process(make_exchange(request_id=f"r{i}", status_code=200 + i % 2)) for i in range(20)]
    (batch,) = batching.to_batches([r for r in records if r is not None])
    sink = FileSink(tmp_path, pod="p")
    sink.start()
    sink.write(batch)
    sink.flush()
    (path,) = sink.files()
    table = pq.read_table(path)
    reference = tmp_path / "reference.parquet"  # Parquet's default encodings
    pq.write_table(pa.Table.from_batches([batch]), reference, compression="zstd")
    assert table.equals(pq.read_table(reference), check_metadata=True)
    assert table.to_pylist() == batch.to_pylist()
    row_group = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {
        row_group.column(i).path_in_schema: row_group.column(i).encodings for i in range(row_group.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["model_name"]  # the same few values in every row
    assert "RLE_DICTIONARY" not in encodings["request_id"]  # one value per row: a dictionary never pays
    tensor_data = [p for p in encodings if p.startswith("input.") and p.endswith(".element")]
    assert tensor_data
    assert all("RLE_DICTIONARY" not in encodings[p] for p in tensor_data)


def test_every_dictionary_encoded_column_is_a_core_column() -> None:
    """pyarrow ignores an unknown name in ``use_dictionary``: a renamed column would silently lose its dictionary."""
    assert set(DICTIONARY_COLUMNS) <= CORE_NAMES
