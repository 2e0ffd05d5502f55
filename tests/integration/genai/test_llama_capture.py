"""The ``openai`` client through the sidecar to a real llama.cpp server: streams relayed as sent, and what is
captured reassembles to exactly what the client received, delta by delta."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI

from infertap.demo.llama import CHAT_MODEL, EMBEDDING_MODEL
from infertap.logger.genai.decode import decode
from infertap.logger.sinks.memory import MemorySink
from tests.integration.proxy_fixtures import run, sidecar

pytestmark = pytest.mark.integration


def _records(sink: MemorySink) -> dict[str, dict[str, Any]]:
    rows = sink.table().to_pylist()
    return {r["path"]: r for r in rows}


def test_openai_client_through_sidecar(llama_url: str, tmp_path: Path) -> None:
    sink = MemorySink()
    got: dict[str, Any] = {}

    async def scenario() -> None:
        async with sidecar(llama_url, tmp_path, sink=sink) as car:
            client = AsyncOpenAI(base_url=f"http://127.0.0.1:{car.port}/v1", api_key="sk-not-stored", max_retries=0)
            stream = await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
                max_tokens=12, temperature=0.8, seed=1, stream=True,
            )  # fmt: skip
            got["chat_deltas"] = [c.choices[0].delta.content async for c in stream if c.choices]
            comp = await client.completions.create(model=CHAT_MODEL, prompt="def main", max_tokens=8, stream=True)
            chunks = [c async for c in comp]
            got["comp_deltas"] = [c.choices[0].text for c in chunks]
            got["comp_finish"] = chunks[-1].choices[0].finish_reason
            whole = await client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0
            )
            got["whole"] = whole
            emb = await client.embeddings.create(model=EMBEDDING_MODEL, input=["a cat", "a dog on a mat"])
            got["vectors"] = np.array([d.embedding for d in emb.data], dtype=np.float32)
            await client.close()

    run(scenario())
    rows = sink.table().to_pylist()
    assert len(rows) == 4
    rec = _records(sink)
    chat_rows = [r for r in rows if r["path"] == "/v1/chat/completions"]
    streamed, whole = chat_rows
    gen = decode("chat", streamed["request_body"], streamed["response_body"], streamed=True)
    assert [d.text for d in gen.deltas] == [t for t in got["chat_deltas"] if t]
    assert gen.done
    assert gen.choices[0].finish_reason in ("stop", "length")
    assert gen.usage.completion_tokens is None  # llama.cpp sends no usage in streams: nothing invented

    g2 = decode("chat", whole["request_body"], whole["response_body"], streamed=False)
    assert g2.choices[0].text == got["whole"].choices[0].message.content
    assert g2.usage.completion_tokens == got["whole"].usage.completion_tokens

    comp = rec["/v1/completions"]
    g3 = decode("completion", comp["request_body"], comp["response_body"], streamed=True)
    assert [d.text for d in g3.deltas] == [t for t in got["comp_deltas"] if t]
    assert g3.choices[0].finish_reason == got["comp_finish"]

    emb = rec["/v1/embeddings"]
    g4 = decode("embedding", emb["request_body"], emb["response_body"], streamed=False)
    assert g4.prompts == ["a cat", "a dog on a mat"]
    assert g4.embeddings is not None
    assert g4.embeddings.shape == (2, 384)
    np.testing.assert_array_equal(g4.embeddings, got["vectors"])
