"""Per-stream timing statistics."""

from __future__ import annotations

import pytest

from infertap.logger.genai.timing import stream_timing

MS = 1_000_000


def test_statistics_of_a_stream() -> None:
    # first output 50 ms after the request, then gaps 10, 10, 20, 60 ms
    t = stream_timing(0, [50 * MS, 60 * MS, 70 * MS, 90 * MS, 150 * MS], completion_tokens=5)
    assert t.ttft_s == pytest.approx(0.050)
    assert t.gap_count == 4
    assert t.gap_mean_s == pytest.approx(0.025)
    assert t.gap_p50_s == pytest.approx(0.015)
    assert t.gap_p99_s == pytest.approx(0.0588)  # 20 + 0.97 * (60 - 20) ms, linear interpolation
    assert t.gap_max_s == pytest.approx(0.060)
    assert t.generation_s == pytest.approx(0.100)
    assert t.output_tokens_per_s == pytest.approx(40.0)  # 4 tokens after the first in 100 ms
    assert t.time_per_output_token_s == pytest.approx(0.025)


def test_rates_are_never_invented_without_reported_tokens() -> None:
    t = stream_timing(10 * MS, [20 * MS, 30 * MS, 45 * MS], completion_tokens=None)
    assert t.ttft_s == pytest.approx(0.010)
    assert t.gap_count == 2
    assert t.output_tokens_per_s is None
    assert t.time_per_output_token_s is None


def test_one_event_and_no_event() -> None:
    one = stream_timing(0, [5 * MS], completion_tokens=1)
    assert (one.ttft_s, one.gap_count, one.gap_mean_s, one.generation_s, one.output_tokens_per_s) == (
        pytest.approx(0.005), 0, None, 0.0, None,
    )  # fmt: skip
    none = stream_timing(0, [], completion_tokens=None)
    assert none.ttft_s is None
    assert none.gap_count == 0
