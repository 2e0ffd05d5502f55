"""Streams from a scripted fixed-cadence upstream through the sidecar: events relayed as they come, a client
that leaves mid-stream recorded as 499 with what was generated so far, V2 generate_stream, usage in streams."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from openai import AsyncOpenAI

from infertap.logger.sinks.memory import MemorySink
from tests.integration.genai.scripted import cadence_server, chat_events
from tests.integration.proxy_fixtures import run, sidecar

pytestmark = pytest.mark.integration


async def _captured(car: object, n: int) -> None:
    for _ in range(400):
        if car.metrics.captured._value.get() >= n:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.05)


def test_events_arrive_one_by_one_and_usage_is_kept(tmp_path: Path) -> None:
    sink = MemorySink()
    arrivals: list[float] = []

    async def scenario() -> list[str]:
        async with cadence_server(0.05) as url, sidecar(url, tmp_path, sink=sink) as car:
            client = AsyncOpenAI(base_url=f"http://127.0.0.1:{car.port}/v1", api_key="k", max_retries=0)
            stream = await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "go"}], max_tokens=5, stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
            texts = []
            async for c in stream:
                arrivals.append(time.monotonic())
                if c.choices and c.choices[0].delta.content:
                    texts.append(c.choices[0].delta.content)
            await client.close()
            await _captured(car, 1)
            return texts

    texts = run(scenario())
    assert texts == [f"t{i} " for i in range(5)]
    # the relay holds nothing back: the client saw the events spread over the upstream's cadence, not in one burst
    assert arrivals[-1] - arrivals[0] >= 0.5 * 0.05 * (len(chat_events(5)) - 2)
    [row] = sink.table().to_pylist()
    assert [d["text"] for d in row["gen_deltas"]] == texts
    assert (row["gen_prompt_tokens"], row["gen_completion_tokens"], row["gen_total_tokens"]) == (3, 5, 8)
    assert row["gen_output_tokens_per_s"] == pytest.approx(4 / row["gen_generation_s"])
    assert row["gen_gap_count"] == 4


def test_client_gone_mid_stream_is_499_with_what_was_generated(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> str:
        async with cadence_server(0.05) as url, sidecar(url, tmp_path, sink=sink) as car:
            client = AsyncOpenAI(base_url=f"http://127.0.0.1:{car.port}/v1", api_key="k", max_retries=0)
            stream = await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "go"}], max_tokens=200, stream=True
            )
            first = ""
            async for c in stream:
                if c.choices and c.choices[0].delta.content:
                    first = c.choices[0].delta.content
                    break
            await stream.close()  # the client goes away after its first token
            await client.close()
            await _captured(car, 1)
            return first

    first = run(scenario())
    [row] = sink.table().to_pylist()
    assert row["status_code"] == 499
    assert "client disconnected" in row["error"]
    texts = [d["text"] for d in row["gen_deltas"]]
    assert texts[0] == first
    assert 1 <= len(texts) < 200
    assert row["gen_choices"][0]["text"] == "".join(texts)
    assert row["gen_finish_reason"] is None  # the stream never finished
    assert row["decode_error"] is None


def test_v2_generate_stream(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> list[bytes]:
        async with cadence_server(0.01) as url, sidecar(url, tmp_path, sink=sink) as car:
            async with (
                aiohttp.ClientSession() as s,
                s.post(
                    f"http://127.0.0.1:{car.port}/v2/models/llm/versions/2/generate_stream",
                    json={"text_input": "Hello", "parameters": {"max_tokens": 4, "temperature": 0.3}},
                ) as r,
            ):
                body = [line async for line in r.content if line.startswith(b"data:")]
            await _captured(car, 1)
            return body

    assert len(run(scenario())) == 4
    [row] = sink.table().to_pylist()
    assert (row["protocol"], row["gen_api"], row["model_name"], row["model_version"]) == (
        "v2-generate", "generate", "llm", "2",
    )  # fmt: skip
    assert row["gen_prompts"] == ["Hello"]
    assert (row["gen_max_tokens"], row["gen_temperature"]) == (4, 0.3)
    assert [d["text"] for d in row["gen_deltas"]] == [f"t{i} " for i in range(4)]
    assert row["gen_finish_reason"] == "length"
    assert row["gen_completion_tokens"] == 4


def test_malformed_events_are_relayed_untouched_and_recorded_as_decode_errors(tmp_path: Path) -> None:
    from aiohttp import web

    from tests.integration.proxy_fixtures import upstream

    body = (
        b": ping - keep-alive\r\n\r\n"
        b'data: {"choices": [{"index": 0, "delta": {"content": "fine"}}]}\r\n\r\n'
        b"data: {not json\r\n\r\n"
        b'data: {"error": {"message": "overloaded"}}\r\n\r\n'
        b'data: {"choices": [{"index": 0, "delta": {"content": " still"}, "finish_reason": "stop"}]}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )

    async def broken(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, len(body), 17):  # events split across chunks at arbitrary places
            await resp.write(body[i : i + 17])
        await resp.write_eof()
        return resp

    sink = MemorySink()

    async def scenario() -> bytes:
        async with upstream({"/v1/chat/completions": broken}) as url, sidecar(url, tmp_path, sink=sink) as car:
            async with (
                aiohttp.ClientSession() as s,
                s.post(f"http://127.0.0.1:{car.port}/v1/chat/completions", json={"messages": []}) as r,
            ):
                got = await r.read()
            await _captured(car, 1)
            return got

    assert run(scenario()) == body  # relayed byte for byte
    [row] = sink.table().to_pylist()
    assert row["status_code"] == 200
    assert row["gen_choices"][0]["text"] == "fine still"
    assert "invalid JSON" in row["decode_error"]
    assert "overloaded" in row["decode_error"]
    assert row["gen_events"] == 4
