"""Capture work in bounded slices: the GIL is released between events and between pieces of Arrow columns."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest

from infertap.logger import record
from infertap.logger.genai import columns, slices
from infertap.logger.genai.decode import decode_stream
from infertap.logger.genai.model import CHAT, Generation


def _stream(n: int) -> list[tuple[bytes, int | None]]:
    events = [{"choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]} for i in range(n)]
    chunks = [(b"data: " + json.dumps(e).encode() + b"\n\n", 1_000_000 * (i + 1)) for i, e in enumerate(events)]
    return [*chunks, (b"data: [DONE]\n\n", 1_000_000 * (n + 1))]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every budget exhausted at once (``SLICE_NS = 0``); the calls of ``time.sleep`` recorded."""
    calls: list[float] = []
    monkeypatch.setattr(slices, "SLICE_NS", 0)
    monkeypatch.setattr(time, "sleep", calls.append)
    return calls


def test_a_stream_is_decoded_releasing_the_gil_between_events(sleeps: list[float]) -> None:
    gen = Generation(api=CHAT)
    decode_stream(gen, _stream(40))
    assert sleeps == [0] * 41  # 40 output events and [DONE]
    assert gen.choices[0].text == "".join(f"t{i} " for i in range(40))
    assert len(gen.deltas) == 40


def test_columns_are_built_in_pieces_with_the_same_values(sleeps: list[float]) -> None:
    calls: list[Generation | None] = []
    for i in range(2 * columns.ROWS_PER_SLICE + 5):
        if i % 7 == 3:
            calls.append(None)  # a record that is no generative call
            continue
        gen = Generation(api=CHAT)
        decode_stream(gen, _stream(i % 5 + 1))
        calls.append(gen)
    sleeps.clear()
    fields = record.GENERATIVE_FIELDS
    whole = pa.Table.from_arrays(columns.arrays(fields, calls), schema=pa.schema(fields))
    rows = [pa.Table.from_arrays(columns.arrays(fields, [c]), schema=pa.schema(fields)) for c in calls]
    assert whole.to_pylist() == pa.concat_tables(rows).to_pylist()
    assert len(sleeps) >= 3 * len(fields)  # three pieces of each column


def test_a_slicer_releases_only_once_its_budget_has_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(time, "sleep", calls.append)
    patient = slices.Slicer(budget_ns=10**15)  # a budget no test outlives
    for _ in range(100):
        patient.tick()
    assert (calls, patient.releases) == ([], 0)
    eager = slices.Slicer(budget_ns=0)
    eager.tick()
    assert (calls, eager.releases) == ([0], 1)
