"""Per-stream timing statistics from the arrival times of a stream's output events, as the sidecar saw them.

Definitions follow vLLM's serving metrics (docs.vllm.ai, "Production Metrics": ``time_to_first_token_seconds``,
``inter_token_latency_seconds``, ``request_decode_time_seconds``, ``time_per_output_token_seconds``), measured at
the sidecar, i.e. from the client's side of the model server:

- time to first token: request received by the sidecar -> first event that carried output (text or a tool call;
  a role-only first chat delta carries none) reached the sidecar;
- inter-token gaps: between consecutive output events (one token per event on llama.cpp and vLLM; a server that
  batches tokens per event makes them inter-event gaps): count, mean, p50, p99 (linear interpolation between
  order statistics, NumPy's default), max;
- generation time: first output event -> last output event;
- output tokens per second: ``(completion_tokens - 1) / generation time`` — the decode rate after the first token,
  the inverse of vLLM's time per output token — only when the server reported ``completion_tokens``; never from
  an event count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_NS = 1e-9


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """Timing statistics of one stream, in seconds; ``None`` where not defined (e.g. no gap with one event).

    Attributes:
        ttft_s: time to first token.
        gap_count: inter-token gaps (output events - 1; 0 when fewer than two).
        gap_mean_s, gap_p50_s, gap_p99_s, gap_max_s: gap statistics.
        generation_s: first to last output event.
        output_tokens_per_s: decode rate, only with reported ``completion_tokens`` >= 2 and ``generation_s`` > 0.
    """

    ttft_s: float | None
    gap_count: int
    gap_mean_s: float | None
    gap_p50_s: float | None
    gap_p99_s: float | None
    gap_max_s: float | None
    generation_s: float | None
    output_tokens_per_s: float | None

    @property
    def time_per_output_token_s(self) -> float | None:
        """vLLM's time per output token: the inverse of :attr:`output_tokens_per_s` (``None`` when unknown)."""
        if not self.output_tokens_per_s:
            return None
        return 1.0 / self.output_tokens_per_s


def stream_timing(start_ns: int, output_ns: Sequence[int], completion_tokens: int | None) -> StreamTiming:
    """Statistics of one stream.

    Args:
        start_ns: when the request was received (monotonic nanoseconds, the same clock as ``output_ns``).
        output_ns: arrival times of the events that carried output, non-decreasing, monotonic nanoseconds.
        completion_tokens: tokens the server reported generating, ``None`` when it reported none.
    """
    if not output_ns:
        return StreamTiming(None, 0, None, None, None, None, None, None)
    times = np.asarray(output_ns, dtype=np.int64)
    ttft = float(times[0] - start_ns) * _NS
    generation = float(times[-1] - times[0]) * _NS
    gaps = np.diff(times).astype(np.float64) * _NS
    rate = None
    if completion_tokens is not None and completion_tokens >= 2 and generation > 0:
        rate = (completion_tokens - 1) / generation
    if gaps.size == 0:
        return StreamTiming(ttft, 0, None, None, None, None, generation, rate)
    p50, p99 = np.percentile(gaps, [50.0, 99.0])
    return StreamTiming(
        ttft_s=ttft,
        gap_count=int(gaps.size),
        gap_mean_s=float(gaps.mean()),
        gap_p50_s=float(p50),
        gap_p99_s=float(p99),
        gap_max_s=float(gaps.max()),
        generation_s=generation,
        output_tokens_per_s=rate,
    )
