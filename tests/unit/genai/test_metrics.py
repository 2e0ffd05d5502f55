"""The LLM serving metrics: what a decoded call adds, and nothing invented when the server reported no tokens."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry

from infertap.logger.genai.decode import decode
from infertap.logger.genai.metrics import GenAIMetrics

MS = 1_000_000


def _stream(usage: bool) -> list[tuple[bytes, int]]:
    events: list[object] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": "a"}}]},
        {"choices": [{"index": 0, "delta": {"content": "b"}}]},
        {"choices": [{"index": 0, "delta": {"content": "c"}, "finish_reason": "length"}]},
    ]
    if usage:
        events.append({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
    times = [1 * MS, 40 * MS, 50 * MS, 70 * MS, 71 * MS]
    return [(b"data: " + orjson.dumps(e) + b"\n\n", t) for e, t in zip(events, times, strict=False)]


def test_stream_with_usage_fills_every_metric() -> None:
    reg = CollectorRegistry()
    m = GenAIMetrics(reg)
    m.observe(decode("chat", None, _stream(usage=True), streamed=True), "tiny", "r1")
    labels = {"model": "tiny", "revision": "r1"}
    assert reg.get_sample_value("infertap_genai_time_to_first_token_seconds_count", labels) == 1
    assert reg.get_sample_value("infertap_genai_time_to_first_token_seconds_sum", labels) == pytest.approx(0.040)
    assert reg.get_sample_value("infertap_genai_inter_token_latency_seconds_count", labels) == 2
    assert reg.get_sample_value("infertap_genai_inter_token_latency_seconds_sum", labels) == pytest.approx(0.030)
    # (70 - 40) ms over 3 - 1 tokens
    assert reg.get_sample_value("infertap_genai_time_per_output_token_seconds_sum", labels) == pytest.approx(0.015)
    assert reg.get_sample_value("infertap_genai_prompt_tokens_total", labels) == 7
    assert reg.get_sample_value("infertap_genai_generation_tokens_total", labels) == 3
    assert reg.get_sample_value("infertap_genai_request_generation_tokens_count", labels) == 1
    assert reg.get_sample_value("infertap_genai_stream_events_total", labels) == 5
    assert reg.get_sample_value("infertap_genai_request_success_total", {**labels, "finish_reason": "length"}) == 1
    assert reg.get_sample_value("infertap_genai_requests_total", {**labels, "api": "chat", "stream": "true"}) == 1


def test_stream_without_usage_adds_no_tokens() -> None:
    reg = CollectorRegistry()
    m = GenAIMetrics(reg)
    m.observe(decode("chat", None, _stream(usage=False), streamed=True), "tiny", "r1")
    labels = {"model": "tiny", "revision": "r1"}
    assert reg.get_sample_value("infertap_genai_generation_tokens_total", labels) is None
    assert reg.get_sample_value("infertap_genai_time_per_output_token_seconds_count", labels) is None
    assert reg.get_sample_value("infertap_genai_time_to_first_token_seconds_count", labels) == 1
    assert reg.get_sample_value("infertap_genai_stream_events_total", labels) == 4


def test_cut_stream_counts_finish_reason_none() -> None:
    reg = CollectorRegistry()
    m = GenAIMetrics(reg)
    m.observe(decode("completion", None, [(b'data: {"choices": [{"text": "x"}]}\n\n', MS)], streamed=True), "m", "")
    assert (
        reg.get_sample_value(
            "infertap_genai_request_success_total", {"model": "m", "revision": "", "finish_reason": "none"}
        )
        == 1
    )
