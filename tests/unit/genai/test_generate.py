"""Open Inference Protocol generate and generate_stream."""

from __future__ import annotations

import orjson
import pytest

from infertap.logger.errors import CodecError
from infertap.logger.genai.decode import decode


def test_generate_request_and_answer() -> None:
    req = orjson.dumps({"text_input": "Hello", "parameters": {"max_tokens": 8, "temperature": 0.2, "stop": ["."]}})
    answer = orjson.dumps({"model_name": "llm", "model_version": "1", "text_output": "Hi!",
                           "details": {"finish_reason": "stop", "generated_tokens": 3}})  # fmt: skip
    gen = decode("generate", req, answer, streamed=False)
    assert gen.prompts == ["Hello"]
    assert (gen.params.max_tokens, gen.params.temperature, gen.params.stop) == (8, 0.2, ["."])
    assert (gen.model, gen.choices[0].text, gen.choices[0].finish_reason) == ("llm", "Hi!", "stop")
    assert gen.usage.completion_tokens == 3
    assert gen.usage.prompt_tokens is None


def test_generate_stream_with_top_level_parameters() -> None:
    req = orjson.dumps({"text_input": "Hi", "max_tokens": 3, "stream": True})
    events = [{"model_name": "llm", "text_output": t} for t in ("a", "", "b")]
    chunks = [(b"data: " + orjson.dumps(e) + b"\n\n", (i + 1) * 1_000_000) for i, e in enumerate(events)]
    gen = decode("generate", req, chunks, streamed=True)
    assert gen.stream
    assert gen.params.max_tokens == 3
    assert gen.choices[0].text == "ab"
    assert [d.text for d in gen.deltas] == ["a", "b"]
    assert gen.events == 3
    assert gen.timing is not None
    assert gen.timing.ttft_s == pytest.approx(0.001)
    assert gen.timing.gap_count == 1


def test_generate_errors() -> None:
    with pytest.raises(CodecError):
        decode("generate", b'{"prompt": "x"}', None, streamed=False)
    with pytest.raises(CodecError, match="server error"):
        decode("generate", None, b'{"error": "no such model"}', streamed=False)
    gen = decode("generate", None, [(b'data: {"error": "oom"}\n\n', None)], streamed=True)
    assert gen.errors == ["event 1: server error: oom"]
