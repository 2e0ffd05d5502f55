"""The one admin application (/metrics, /livez, /readyz) of every infertap server, on a real loopback port."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from infertap.logger.admin import admin_app


def _get_all(app: web.Application, paths: list[str]) -> list[tuple[int, str]]:
    async def main() -> list[tuple[int, str]]:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as s:
                out = []
                for path in paths:
                    async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                        out.append((r.status, await r.text()))
                return out
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_readiness_passed_in_decides_readyz() -> None:
    registry = CollectorRegistry()
    Counter("infertap_example_events", "Events.", registry=registry).inc(3)
    state = {"ok": False}

    async def readiness() -> tuple[bool, str]:
        return state["ok"], "" if state["ok"] else "sink writes failing"

    app = admin_app(registry, readiness)
    (live, not_ready, metrics) = _get_all(app, ["/livez", "/readyz", "/metrics"])
    assert live == (200, "ok\n")
    assert not_ready == (503, "not ready: sink writes failing\n")
    assert metrics[0] == 200
    assert "infertap_example_events_total 3.0" in metrics[1]
    state["ok"] = True
    assert _get_all(admin_app(registry, readiness), ["/readyz"]) == [(200, "ready\n")]


def test_default_is_ready_once_listening() -> None:
    assert _get_all(admin_app(CollectorRegistry()), ["/readyz"]) == [(200, "ready\n")]
