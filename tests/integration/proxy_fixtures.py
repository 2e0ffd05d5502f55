"""A scriptable upstream HTTP server and a sidecar in front of it, both real servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from infertap.logger.config import ProxySettings
from infertap.logger.server import Sidecar
from infertap.logger.sinks.base import Sink

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def upstream(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """Serve ``routes`` (path -> handler, any method) on a free loopback port; yields the base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def sidecar(upstream_url: str, out: Path, sink: Sink | None = None, **settings: Any) -> AsyncIterator[Sidecar]:
    """A started :class:`Sidecar` in front of ``upstream_url`` writing under ``out``; stopped (drained) on exit."""
    conf = ProxySettings(
        upstream_url=upstream_url,
        listen_host="127.0.0.1",
        listen_port=0,
        admin_port=0,
        output_dir=out,
        pod_name="test-pod",
        **settings,
    )
    car = Sidecar(conf, sink=sink, seed=7)
    await car.start()
    try:
        yield car
    finally:
        await car.stop(grace_s=30)


async def raw(port: int, data: bytes) -> bytes:
    """Send raw bytes to the proxy on ``port`` and read until it closes the connection (10 s at most)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return out


def run(coro: Awaitable[Any]) -> Any:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)  # type: ignore[arg-type]
