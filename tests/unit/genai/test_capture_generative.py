"""The capture stage on generative exchanges: columns, sampling, capture modes, redaction of prompts."""

from __future__ import annotations

import orjson
import pytest

from infertap.logger.capture import Capturer
from infertap.logger.config import CaptureMode
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.redact import BodyRedactor, HeaderFilter
from infertap.logger.sampling import Sampler
from tests.unit.conftest import IDENTITY, make_exchange

REQUEST = orjson.dumps(
    {"model": "tiny", "messages": [{"role": "user", "content": "secret plan"}], "stream": True, "user": "alice"}
)
EVENTS = [
    b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n',
    b'data: {"choices": [{"index": 0, "delta": {"content": "ok "}}]}\n\n',
    b'data: {"choices": [{"index": 0, "delta": {"content": "go"}, "finish_reason": "stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


def _exchange(**overrides: object) -> object:
    body = b"".join(EVENTS)
    fields: dict[str, object] = {
        "path": "/v1/chat/completions",
        "request_body": REQUEST,
        "response_body": body,
        "response_headers": [("Content-Type", "text/event-stream; charset=utf-8")],
        "received_ns": 1_000,
        "chunk_arrivals_ns": [1_000 + 5_000_000 * (i + 1) for i in range(len(EVENTS))],
        "chunk_sizes": [len(e) for e in EVENTS],
    }
    fields.update(overrides)
    return make_exchange(**fields)


def _capturer(metrics: ProxyMetrics, *, rate: float = 1.0, mode: CaptureMode = CaptureMode.ALL,
              rules: tuple[str, ...] = (), text: bool = True) -> Capturer:  # fmt: skip
    return Capturer(
        mode=mode, sampler=Sampler(rate, seed=0), headers=HeaderFilter(()), identity=IDENTITY,
        default_model="fallback", keep_raw_bodies=True, metrics=metrics, generative_text=text,
        fields=BodyRedactor(rules),
    )  # fmt: skip


def test_stream_becomes_the_generative_columns(metrics: ProxyMetrics) -> None:
    rec = _capturer(metrics).process(_exchange())  # type: ignore[arg-type]
    assert rec is not None
    gen = rec.generation
    assert gen is not None
    assert (rec.protocol, rec.model_name, rec.decode_error) == ("openai", "tiny", None)
    assert [(d.text, d.at_s) for d in gen.deltas] == [("ok ", pytest.approx(0.010)), ("go", pytest.approx(0.015))]
    assert gen.timing is not None
    assert gen.timing.ttft_s == pytest.approx(0.010)
    assert gen.choices[0].finish_reason == "stop"
    labels = {"model": "tiny", "revision": IDENTITY.revision}
    assert metrics.registry.get_sample_value("infertap_genai_time_to_first_token_seconds_count", labels) == 1


def test_sampled_out_calls_still_count_in_the_metrics(metrics: ProxyMetrics) -> None:
    assert _capturer(metrics, rate=0.0).process(_exchange(status_code=200)) is None  # type: ignore[arg-type]
    labels = {"model": "tiny", "revision": IDENTITY.revision, "api": "chat", "stream": "true"}
    assert metrics.registry.get_sample_value("infertap_genai_requests_total", labels) == 1


def test_request_mode_keeps_no_answer(metrics: ProxyMetrics) -> None:
    rec = _capturer(metrics, mode=CaptureMode.REQUEST).process(_exchange())  # type: ignore[arg-type]
    assert rec is not None
    assert rec.generation is not None
    assert rec.generation.messages[0].content == "secret plan"
    assert (rec.generation.choices, rec.generation.deltas, rec.response_body) == ([], [], None)


@pytest.mark.parametrize(("rules", "text"), [(("messages",), True), ((), False)])
def test_prompt_redaction(metrics: ProxyMetrics, rules: tuple[str, ...], text: bool) -> None:
    rec = _capturer(metrics, rules=rules, text=text).process(_exchange())  # type: ignore[arg-type]
    assert rec is not None
    assert rec.generation is not None
    assert rec.generation.text_redacted
    assert rec.generation.prompt_chars() == len("secret plan")
    assert b"secret plan" not in (rec.request_body or b"")


def test_body_field_rules_apply_to_the_other_parameters(metrics: ProxyMetrics) -> None:
    rec = _capturer(metrics, rules=("user",)).process(_exchange())  # type: ignore[arg-type]
    assert rec is not None
    assert rec.generation is not None
    assert not rec.generation.text_redacted
    assert "alice" not in (rec.generation.params.other or "")
    assert "alice" not in (rec.request_body or b"").decode()
