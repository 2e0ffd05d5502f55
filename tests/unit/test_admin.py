"""The admin endpoints (/metrics, /livez, /readyz) of every infertap server, on a real loopback port: the sidecar's
own small server and the aiohttp application of the collector and the webhook answer alike."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from infertap.logger.admin import AdminServer, Readiness, admin_app, always_ready

Serve = Callable[[CollectorRegistry, Readiness], AbstractAsyncContextManager[int]]


@asynccontextmanager
async def _aiohttp(registry: CollectorRegistry, readiness: Readiness) -> AsyncIterator[int]:
    runner = web.AppRunner(admin_app(registry, readiness), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _own(registry: CollectorRegistry, readiness: Readiness) -> AsyncIterator[int]:
    server = AdminServer(registry, readiness)
    await server.start("127.0.0.1", 0)
    try:
        yield server.port
    finally:
        server.close()


SERVERS = pytest.mark.parametrize("serve", [_own, _aiohttp], ids=["AdminServer", "aiohttp"])


def _get_all(
    serve: Serve, registry: CollectorRegistry, readiness: Readiness, paths: list[str]
) -> list[tuple[int, str]]:
    async def main() -> list[tuple[int, str]]:
        async with serve(registry, readiness) as port, aiohttp.ClientSession() as s:
            out = []
            for path in paths:  # one keep-alive connection for all
                async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                    out.append((r.status, await r.text()))
            return out

    return asyncio.run(main())


@SERVERS
def test_readiness_passed_in_decides_readyz(serve: Serve) -> None:
    registry = CollectorRegistry()
    Counter("infertap_example_events", "Events.", registry=registry).inc(3)
    state = {"ok": False}

    async def readiness() -> tuple[bool, str]:
        return state["ok"], "" if state["ok"] else "sink writes failing"

    (live, not_ready, metrics) = _get_all(serve, registry, readiness, ["/livez", "/readyz", "/metrics"])
    assert live == (200, "ok\n")
    assert not_ready == (503, "not ready: sink writes failing\n")
    assert metrics[0] == 200
    assert "infertap_example_events_total 3.0" in metrics[1]
    state["ok"] = True
    assert _get_all(serve, registry, readiness, ["/readyz?verbose"]) == [(200, "ready\n")]


@SERVERS
def test_default_is_ready_once_listening(serve: Serve) -> None:
    assert _get_all(serve, CollectorRegistry(), always_ready, ["/readyz"]) == [(200, "ready\n")]


@SERVERS
def test_unknown_path_is_404_and_other_methods_405(serve: Serve) -> None:
    async def main() -> tuple[int, int, int, bytes]:
        async with serve(CollectorRegistry(), always_ready) as port, aiohttp.ClientSession() as s:
            base = f"http://127.0.0.1:{port}"
            async with s.get(f"{base}/nope") as r:
                missing = r.status
            async with s.post(f"{base}/livez", data=b"x") as r:
                post = r.status
            async with s.head(f"{base}/livez") as r:
                return missing, post, r.status, await r.read()

    assert asyncio.run(main()) == (404, 405, 200, b"")


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_own_server_answers_pipelined_requests_in_order_and_refuses_garbage() -> None:
    async def slow_then_ready() -> tuple[bool, str]:
        await asyncio.sleep(0.05)  # the /livez behind it must still come second
        return True, ""

    async def main() -> tuple[bytes, bytes]:
        async with _own(CollectorRegistry(), slow_then_ready) as port:
            loop = asyncio.get_running_loop()
            pipelined = (
                b"GET /readyz HTTP/1.1\r\nHost: a\r\n\r\nGET /livez HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            ordered = await loop.run_in_executor(None, _raw, port, pipelined)
            garbage = await loop.run_in_executor(None, _raw, port, b"\x00\x01 not http\r\n\r\n")
            return ordered, garbage

    ordered, garbage = asyncio.run(main())
    assert ordered.index(b"ready\n") < ordered.index(b"ok\n")
    assert ordered.count(b"HTTP/1.1 200") == 2
    assert garbage.startswith(b"HTTP/1.1 400")


def test_own_server_port_in_use_raises_oserror() -> None:
    async def main() -> None:
        async with _own(CollectorRegistry(), always_ready) as port:
            with pytest.raises(OSError, match=r"(?i)address already in use"):
                await AdminServer(CollectorRegistry()).start("127.0.0.1", port)

    asyncio.run(main())
