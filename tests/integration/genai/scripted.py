"""A scripted event-stream upstream for tests and benchmarks: OpenAI chat-completion chunks and V2
``generate_stream`` events at a fixed cadence, so that timing and disconnects are deterministic (the real model
server, llama.cpp, finishes short streams in milliseconds)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


def chat_events(tokens: int) -> list[bytes]:
    """The ``data:`` events of a streamed chat completion of ``tokens`` tokens ``t0``, ``t1`` ..., with usage."""

    def ev(delta: dict[str, object], finish: str | None = None) -> bytes:
        body = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "scripted",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    usage = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "scripted", "choices": [],
             "usage": {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": tokens + 3}}  # fmt: skip
    return [
        ev({"role": "assistant"}),
        *(ev({"content": f"t{i} "}) for i in range(tokens)),
        ev({}, "length"),
        b"data: " + json.dumps(usage).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    ]


def generate_events(tokens: int) -> list[bytes]:
    """The events of a V2 ``generate_stream`` answer of ``tokens`` tokens, the last with its finish reason."""
    out = []
    for i in range(tokens):
        body: dict[str, object] = {"model_name": "scripted", "model_version": "1", "text_output": f"t{i} "}
        if i == tokens - 1:
            body["details"] = {"finish_reason": "length", "generated_tokens": tokens}
        out.append(b"data: " + json.dumps(body).encode() + b"\n\n")
    return out


@asynccontextmanager
async def cadence_server(period_s: float) -> AsyncIterator[str]:
    """Serve streams whose events leave every ``period_s`` seconds; yields the base URL.

    ``POST /v1/chat/completions`` streams :func:`chat_events`, ``POST /v2/models/<m>[/versions/<v>]/generate_stream``
    :func:`generate_events`; the token count is the request's ``max_tokens`` (or ``parameters.max_tokens``).
    """

    async def stream(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tokens = int(body.get("max_tokens") or body.get("parameters", {}).get("max_tokens") or 8)
        events = chat_events(tokens) if request.path.startswith("/v1/") else generate_events(tokens)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for i, event in enumerate(events):
                await asyncio.sleep(max(0.0, start + i * period_s - loop.time()))  # the cadence, not synchronisation
                await resp.write(event)
            await resp.write_eof()
        except ConnectionError:  # the sidecar dropped the stream (its client left): nothing more to send
            pass
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    app.router.add_post("/v2/models/{model}/generate_stream", stream)
    app.router.add_post("/v2/models/{model}/versions/{version}/generate_stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
