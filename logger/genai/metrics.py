"""Metrics of LLM serving, measured by the sidecar from the client's side (docs/metrics.md, docs/genai.md).

The semantics are vLLM's own (docs.vllm.ai, "Production Metrics"), under ``infertap_genai_`` instead of
``vllm:``: time to first token, time per output token, inter-token latency, prompt and generation tokens (totals
and per-request histograms), finished requests by finish reason. Labels: ``model`` (bounded like the sidecar's
other model labels: the caller passes a label it already bounded), ``revision`` (the serving revision of the
sidecar, KServe/Knative ``K_REVISION``) and, where it applies, ``api`` (``chat``, ``completion``, ``embedding``,
``generate``) and ``finish_reason``.

Token metrics are observed only with counts the server reported; a stream without ``usage`` adds nothing to
them (its events are counted in ``infertap_genai_stream_events_total``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:  # annotations only: the forward-mode sidecar imports these metrics without NumPy
    from infertap.logger.genai.model import Generation

#: vLLM's buckets for time to first token (seconds), extended down to 1 ms for a sidecar's view of small models.
TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
#: vLLM's buckets for time per output token and inter-token latency (seconds), down to 1 ms.
TPOT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
)  # fmt: skip
#: token-count buckets, 1 .. 32768 in powers of two (vLLM uses 1-2-5 steps up to the context length).
TOKEN_BUCKETS = tuple(float(2**i) for i in range(16))


class GenAIMetrics:
    """The generative metrics, registered in ``registry`` (the sidecar's own registry, so ``/metrics`` serves them).

    Every method is called by the capture worker, off the hot path.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "infertap_genai_requests", "Generative calls captured, by model, revision, API and whether streamed.",
            ["model", "revision", "api", "stream"], registry=r,
        )  # fmt: skip
        self.finished = Counter(
            "infertap_genai_request_success",
            "Finished choices by finish reason (vLLM request_success_total): stop, length, tool_calls, ...; "
            "'none' for a choice that ended without one (a cut stream).",
            ["model", "revision", "finish_reason"], registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "infertap_genai_time_to_first_token_seconds",
            "Time from the request reaching the sidecar to the first streamed event that carried output.",
            ["model", "revision"], buckets=TTFT_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.tpot = Histogram(
            "infertap_genai_time_per_output_token_seconds",
            "Per stream, generation time / (reported completion tokens - 1); streams without usage are left out.",
            ["model", "revision"], buckets=TPOT_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "infertap_genai_inter_token_latency_seconds",
            "Gaps between consecutive streamed events that carried output (one token each on vLLM and llama.cpp).",
            ["model", "revision"], buckets=TPOT_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "infertap_genai_prompt_tokens", "Prompt tokens, as the server reported them.",
            ["model", "revision"], registry=r,
        )  # fmt: skip
        self.generation_tokens = Counter(
            "infertap_genai_generation_tokens", "Generated tokens, as the server reported them.",
            ["model", "revision"], registry=r,
        )  # fmt: skip
        self.request_prompt_tokens = Histogram(
            "infertap_genai_request_prompt_tokens", "Prompt tokens per request, as the server reported them.",
            ["model", "revision"], buckets=TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.request_generation_tokens = Histogram(
            "infertap_genai_request_generation_tokens", "Generated tokens per request, as the server reported them.",
            ["model", "revision"], buckets=TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.stream_events = Counter(
            "infertap_genai_stream_events", "Data events relayed in generative streams ([DONE] excluded).",
            ["model", "revision"], registry=r,
        )  # fmt: skip

    def observe(self, gen: Generation, model: str, revision: str) -> None:
        """Account one decoded call; ``model`` is an already bounded label value."""
        self.requests.labels(model, revision, gen.api, "true" if gen.stream else "false").inc()
        for c in gen.choices:
            self.finished.labels(model, revision, c.finish_reason or "none").inc()
        u = gen.usage
        if u.prompt_tokens is not None:
            self.prompt_tokens.labels(model, revision).inc(u.prompt_tokens)
            self.request_prompt_tokens.labels(model, revision).observe(u.prompt_tokens)
        if u.completion_tokens is not None:
            self.generation_tokens.labels(model, revision).inc(u.completion_tokens)
            self.request_generation_tokens.labels(model, revision).observe(u.completion_tokens)
        if gen.stream:
            self.stream_events.labels(model, revision).inc(gen.events)
            t = gen.timing
            if t is not None:
                if t.ttft_s is not None:
                    self.ttft.labels(model, revision).observe(t.ttft_s)
                if t.time_per_output_token_s is not None:
                    self.tpot.labels(model, revision).observe(t.time_per_output_token_s)
                itl = self.itl.labels(model, revision)
                for a, b in zip(gen.output_ns, gen.output_ns[1:], strict=False):
                    itl.observe((b - a) * 1e-9)
