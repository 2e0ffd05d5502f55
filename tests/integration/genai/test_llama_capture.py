"""The ``openai`` client through the sidecar to a real llama.cpp server: streams relayed as sent, and the records
read back equal what the client received, delta by delta."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pyarrow.parquet as pq
import pytest
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from infertap.demo.llama import CHAT_MODEL, EMBEDDING_MODEL
from infertap.logger import record
from infertap.logger.sinks.memory import MemorySink
from tests.integration.proxy_fixtures import run, sidecar

pytestmark = pytest.mark.integration
KEY = "sk-never-stored-0123456789"
PROMPT = "Say hello to the sidecar"


def _client(port: int) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)


def test_openai_client_through_sidecar(llama_url: str, tmp_path: Path) -> None:
    sink = MemorySink()
    got: dict[str, Any] = {}

    async def scenario() -> None:
        async with sidecar(llama_url, tmp_path, sink=sink, revision="rev-1") as car:
            client = _client(car.port)
            stream = await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}],
                max_tokens=12, temperature=0.8, top_p=0.95, seed=1, stop=["\n\n"], stream=True,
            )  # fmt: skip
            chunks = [c async for c in stream]
            got["chat_chunks"] = len(chunks)
            got["chat_deltas"] = [c.choices[0].delta.content for c in chunks if c.choices]
            got["chat_finish"] = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
            comp = await client.completions.create(model=CHAT_MODEL, prompt="def main", max_tokens=8, stream=True)
            cchunks = [c async for c in comp]
            got["comp_deltas"] = [c.choices[0].text for c in cchunks]
            got["comp_finish"] = cchunks[-1].choices[0].finish_reason
            got["whole"] = await client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0
            )
            got["whole_comp"] = await client.completions.create(model=CHAT_MODEL, prompt="import", max_tokens=5)
            emb = await client.embeddings.create(model=EMBEDDING_MODEL, input=["a cat", "a dog on a mat"])
            got["vectors"] = np.array([d.embedding for d in emb.data], dtype=np.float32)
            await client.close()
            await asyncio.sleep(0)
            for _ in range(200):  # the capture worker decodes off the hot path: wait for the five records
                if car.metrics.captured._value.get() == 5:
                    break
                await asyncio.sleep(0.05)
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{car.admin_port}/metrics") as r:
                got["metrics"] = await r.text()

    run(scenario())
    rows = sink.table().to_pylist()
    assert [r["gen_api"] for r in rows] == ["chat", "completion", "chat", "completion", "embedding"]
    assert {r["protocol"] for r in rows} == {"openai"}
    assert all(r["model_name"] in (CHAT_MODEL, EMBEDDING_MODEL) for r in rows)
    assert all(r["decode_error"] is None and r["request_body"] is None for r in rows)
    assert KEY not in str(rows)  # the credential is never written

    chat, comp, whole, whole_comp, emb = rows
    # the streamed chat: delta by delta what the client received
    assert [d["text"] for d in chat["gen_deltas"]] == [t for t in got["chat_deltas"] if t]
    [choice] = chat["gen_choices"]
    assert choice["text"] == "".join(t for t in got["chat_deltas"] if t)
    assert (choice["role"], choice["finish_reason"]) == ("assistant", got["chat_finish"])
    assert chat["gen_finish_reason"] == got["chat_finish"]
    assert chat["gen_events"] == got["chat_chunks"]
    assert chat["gen_messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
    assert (chat["gen_max_tokens"], chat["gen_temperature"], chat["gen_top_p"], chat["gen_seed"]) == (12, 0.8, 0.95, 1)
    assert chat["gen_stop"] == ["\n\n"]
    assert chat["gen_stream"] is True
    # llama.cpp sends no usage in streams: tokens and the rate stay null, never estimated
    assert (chat["gen_prompt_tokens"], chat["gen_completion_tokens"], chat["gen_output_tokens_per_s"]) == (None,) * 3
    times = [d["at_s"] for d in chat["gen_deltas"]]
    assert times == sorted(times)
    assert 0 < chat["gen_ttft_s"] == times[0] <= chat["total_latency_s"]
    assert chat["gen_gap_count"] == len(times) - 1
    assert chat["gen_generation_s"] == pytest.approx(times[-1] - times[0])
    assert chat["gen_gap_max_s"] >= chat["gen_gap_p50_s"]

    assert [d["text"] for d in comp["gen_deltas"]] == [t for t in got["comp_deltas"] if t]
    assert comp["gen_finish_reason"] == got["comp_finish"]
    assert comp["gen_prompts"] == ["def main"]

    w = got["whole"]
    assert whole["gen_stream"] is False
    assert whole["gen_deltas"] is None
    assert whole["gen_choices"][0]["text"] == w.choices[0].message.content
    assert whole["gen_finish_reason"] == w.choices[0].finish_reason
    assert (whole["gen_prompt_tokens"], whole["gen_completion_tokens"], whole["gen_total_tokens"]) == (
        w.usage.prompt_tokens, w.usage.completion_tokens, w.usage.total_tokens,
    )  # fmt: skip
    assert whole["gen_response_id"] == w.id
    assert whole_comp["gen_choices"][0]["text"] == got["whole_comp"].choices[0].text

    assert emb["gen_prompts"] == ["a cat", "a dog on a mat"]
    assert emb["gen_prompt_tokens"] is not None
    table = sink.table()
    [col] = [c for c in record.tensor_columns(table.schema) if c.column == "output.embedding"]
    assert col.datatype == "FP32"
    vectors = record.instances(table.column("output.embedding"))
    assert vectors.shape == (2, 384)
    np.testing.assert_array_equal(vectors, got["vectors"])

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(got["metrics"])
        for s in fam.samples
    }
    labels = (("model", CHAT_MODEL), ("revision", "rev-1"))
    assert samples[("infertap_genai_time_to_first_token_seconds_count", labels)] == 2
    assert samples[("infertap_genai_generation_tokens_total", labels)] == (
        w.usage.completion_tokens + got["whole_comp"].usage.completion_tokens
    )
    finish = (("finish_reason", got["chat_finish"]), *labels)
    assert samples[("infertap_genai_request_success_total", tuple(sorted(finish)))] >= 1


def test_lengths_only_keeps_no_text(llama_url: str, tmp_path: Path) -> None:
    secret = "my card number is 4111 1111"

    async def scenario() -> str:
        async with sidecar(llama_url, tmp_path, genai_text="lengths", keep_raw_bodies=True) as car:
            client = _client(car.port)
            stream = await client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": secret}], max_tokens=8, stream=True
            )
            answer = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            await client.close()
            return answer

    answer = run(scenario())
    [path] = list(tmp_path.rglob("*.parquet"))
    [row] = pq.read_table(path).to_pylist()
    assert row["gen_text_redacted"] is True
    assert row["gen_messages"] == [{"role": "user", "content": None}]
    assert row["gen_prompt_chars"] == len(secret)
    assert row["gen_completion_chars"] == len(answer)
    assert row["gen_choices"][0]["text"] is None
    assert all(d["text"] is None and d["at_s"] > 0 for d in row["gen_deltas"])
    assert row["gen_ttft_s"] > 0
    assert (row["request_body"], row["response_body"]) == (None, None)  # raw bodies never, even when asked
    assert secret.encode() not in path.read_bytes()
