"""OpenAI-compatible requests and answers reassembled: chat, completions, embeddings, streamed and not."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from infertap.logger.codecs.registry import route
from infertap.logger.errors import CodecError
from infertap.logger.genai.decode import api_of, decode
from infertap.logger.genai.model import Message, ToolCall

MS = 1_000_000


def sse(*events: object, sep: bytes = b"\n\n") -> list[bytes]:
    """One event per relayed chunk."""
    return [b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + sep for e in events]


def chat_chunk(
    delta: dict[str, object], finish: str | None = None, index: int = 0, **extra: object
) -> dict[str, object]:
    return {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "tiny",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}], **extra,
    }  # fmt: skip


CHAT_REQUEST = orjson.dumps(
    {
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        ],
        "max_tokens": 16,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": "\n",
        "seed": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
        "presence_penalty": 0.5,
    }
)


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/v1/chat/completions", "chat"),
        ("/openai/v1/chat/completions", "chat"),
        ("/v1/completions", "completion"),
        ("/openai/v1/completions", "completion"),
        ("/v1/embeddings", "embedding"),
        ("/openai/v1/embeddings", "embedding"),
        ("/v2/models/llm/generate", "generate"),
        ("/v2/models/llm/generate_stream", "generate"),
        ("/v2/models/llm/versions/3/generate_stream", "generate"),
        ("/v2/models/llm/infer", None),
        ("/v2/models//generate", None),
        ("/v1/models/iris:predict", None),
        ("/v1/models", None),
        ("/openai/v2/chat/completions", None),
    ],
)
def test_api_of_path(path: str, api: str | None) -> None:
    assert api_of(route(path)) == api


def test_chat_stream_reassembled_with_timing() -> None:
    chunks = sse(
        chat_chunk({"role": "assistant"}),
        chat_chunk({"content": "Hel"}),
        chat_chunk({"content": "lo"}),
        chat_chunk({}, "stop"),
        {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
        b"[DONE]",
    )
    times = [5 * MS, 20 * MS, 30 * MS, 31 * MS, 32 * MS, 33 * MS]
    gen = decode("chat", CHAT_REQUEST, list(zip(chunks, times, strict=True)), streamed=True)
    assert gen.messages == [Message("system", "Be brief."), Message("user", "Hi there")]
    assert (gen.params.max_tokens, gen.params.temperature, gen.params.top_p, gen.params.stop, gen.params.seed) == (
        16, 0.7, 0.9, ["\n"], 3,
    )  # fmt: skip
    assert orjson.loads(gen.params.other or "{}") == {
        "stream_options": {"include_usage": True},
        "presence_penalty": 0.5,
    }
    assert gen.stream
    assert gen.done
    assert not gen.errors
    assert gen.events == 5
    [c] = gen.choices
    assert (c.role, c.text, c.finish_reason) == ("assistant", "Hello", "stop")
    assert [(d.text, d.at_s) for d in gen.deltas] == [("Hel", pytest.approx(0.020)), ("lo", pytest.approx(0.030))]
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.total_tokens) == (9, 2, 11)
    assert gen.timing is not None
    assert gen.timing.ttft_s == pytest.approx(0.020)  # the role-only first chunk carries no token
    assert gen.timing.generation_s == pytest.approx(0.010)
    assert gen.timing.output_tokens_per_s == pytest.approx(100.0)


def test_stream_without_usage_leaves_tokens_null() -> None:
    chunks = sse(chat_chunk({"role": "assistant"}), chat_chunk({"content": "a"}), chat_chunk({}, "length"), b"[DONE]")
    gen = decode("chat", CHAT_REQUEST, [(c, None) for c in chunks], streamed=True)
    assert gen.events == 3
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.total_tokens) == (None, None, None)
    assert gen.timing is not None
    assert gen.timing.output_tokens_per_s is None


def test_streamed_tool_calls_and_two_choices() -> None:
    chunks = sse(
        chat_chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            }
        ),
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chat_chunk({"content": "other"}, index=1),
        chat_chunk({}, "tool_calls"),
        chat_chunk({}, "stop", index=1),
        b"[DONE]",
    )
    gen = decode("chat", None, [(c, i * MS) for i, c in enumerate(chunks)], streamed=True)
    assert [c.index for c in gen.choices] == [0, 1]
    assert gen.choices[0].tool_calls == [ToolCall("call_1", "function", "get_weather", '{"city": "Oslo"}')]
    assert gen.choices[0].finish_reason == "tool_calls"
    assert (gen.choices[1].text, gen.choices[1].finish_reason) == ("other", "stop")
    assert gen.timing is not None
    assert gen.timing.ttft_s == 0.0


def test_event_split_across_chunks_and_crlf_and_pings() -> None:
    body = b"".join(sse(chat_chunk({"content": "x"}), chat_chunk({"content": "y"}, "stop"), b"[DONE]", sep=b"\r\n\r\n"))
    body = b": ping\r\n\r\n" + body
    chunks = [(body[i : i + 7], i * 1000) for i in range(0, len(body), 7)]
    gen = decode("chat", None, chunks, streamed=True)
    assert gen.choices[0].text == "xy"
    assert gen.comments == 1
    assert gen.done
    assert not gen.errors


def test_malformed_and_error_events_are_recorded_not_raised() -> None:
    chunks = [
        *sse(chat_chunk({"content": "ok"})),
        b"data: {not json\n\n",
        *sse({"error": {"message": "context overflow", "type": "server_error"}}),
        b"data: [1, 2]\n\n",
    ]
    gen = decode("chat", None, [(c, None) for c in chunks], streamed=True)
    assert gen.choices[0].text == "ok"
    assert not gen.done
    assert len(gen.errors) == 3
    assert "invalid JSON" in gen.errors[0]
    assert "context overflow" in gen.errors[1]
    assert "not a JSON object" in gen.errors[2]


def test_stream_cut_mid_event_and_truncation() -> None:
    cut = decode("completion", None, [(b'data: {"choices": [{"text": "a"}]}\n\ndata: {"cho', None)], streamed=True)
    assert cut.choices[0].text == "a"
    assert cut.choices[0].finish_reason is None
    assert cut.errors == ["event stream ended inside an event"]
    trunc = decode("completion", None, [(b'data: {"choices": [{"text": "a"}]}\n\ndata: {"cho', None)], streamed=True,
                   truncated=True)  # fmt: skip
    assert trunc.errors == ["event stream truncated at the capture cap"]


def test_completion_stream_and_request() -> None:
    req = orjson.dumps({"model": "tiny", "prompt": ["one", "two"], "max_tokens": 4, "stream": True, "n": 1})
    chunks = sse(
        {"id": "cmpl-1", "object": "text_completion", "choices": [{"text": " a", "index": 0, "finish_reason": None}]},
        {"id": "cmpl-1", "object": "text_completion", "choices": [{"text": "", "index": 0, "finish_reason": "length"}]},
        b"[DONE]",
    )
    gen = decode("completion", req, [(c, None) for c in chunks], streamed=True)
    assert gen.prompts == ["one", "two"]
    assert (gen.params.max_tokens, gen.params.n) == (4, 1)
    assert (gen.choices[0].text, gen.choices[0].finish_reason, gen.response_id) == (" a", "length", "cmpl-1")
    tokens = decode("completion", orjson.dumps({"prompt": [1, 2, 3]}), None, streamed=False)
    assert tokens.prompts == ["[1,2,3]"]


def test_chat_answer_not_streamed() -> None:
    answer = orjson.dumps(
        {
            "id": "chatcmpl-9",
            "object": "chat.completion",
            "model": "tiny",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                    },
                }
            ],
            "usage": {"prompt_tokens": 17, "completion_tokens": 12, "total_tokens": 29},
        }
    )
    gen = decode("chat", orjson.dumps({"model": "tiny", "messages": [], "max_completion_tokens": 5}), answer,
                 streamed=False)  # fmt: skip
    assert gen.params.max_tokens == 5
    assert not gen.stream
    [c] = gen.choices
    assert (c.role, c.text, c.finish_reason, c.tool_calls) == (
        "assistant",
        "",
        "tool_calls",
        [ToolCall("c1", "function", "f", "{}")],
    )
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens) == (17, 12)
    assert gen.timing is None


def test_embeddings_as_float32_from_lists_and_base64() -> None:
    vectors = np.array([[0.5, -1.25, 3.0], [1.0, 2.0, 4.5]], dtype=np.float32)
    as_lists = orjson.dumps({"data": [{"index": 1, "embedding": vectors[1].tolist()},
                                      {"index": 0, "embedding": vectors[0].tolist()}],
                             "usage": {"prompt_tokens": 4, "total_tokens": 4}})  # fmt: skip
    as_b64 = orjson.dumps(
        {
            "data": [
                {"index": i, "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()}
                for i, v in enumerate(vectors)
            ]
        }
    )
    req = orjson.dumps({"model": "minilm", "input": ["a", "b"], "encoding_format": "base64"})
    for body in (as_lists, as_b64):
        gen = decode("embedding", req, body, streamed=False)
        assert gen.prompts == ["a", "b"]
        assert gen.embeddings is not None
        assert gen.embeddings.dtype == np.float32
        np.testing.assert_array_equal(gen.embeddings, vectors)
    assert orjson.loads(gen.params.other or "{}") == {"encoding_format": "base64"}


@pytest.mark.parametrize(
    ("api", "request_body", "answer"),
    [
        ("chat", b"[]", None),
        ("chat", b'{"messages": "hi"}', None),
        ("chat", None, b'{"object": "chat.completion"}'),
        ("chat", None, b'{"error": {"message": "boom"}}'),
        ("embedding", None, b'{"data": [{"embedding": [1, 2]}, {"embedding": [1]}]}'),
        ("embedding", None, b'{"data": [{"embedding": "AAA="}]}'),
        ("embedding", None, b'{"data": [{"embedding": ["x"]}]}'),
    ],
)
def test_bad_bodies_raise_codec_error(api: str, request_body: bytes | None, answer: bytes | None) -> None:
    with pytest.raises(CodecError):
        decode(api, request_body, answer, streamed=False)
