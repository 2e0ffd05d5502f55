"""The admin endpoints every infertap server has: ``/metrics``, ``/livez`` and ``/readyz``.

One builder, :func:`admin_app`, used by the sidecar, the collector and the webhook; each passes its readiness
check. The sidecar's check follows the upstream (:func:`upstream_readiness`): ``/readyz`` answers 200 only while
``GET <upstream><upstream_ready_path>`` answers 2xx (Open Inference Protocol "Server Ready", ``/v2/health/ready``, by
default), so Kubernetes sends no traffic to a pod whose predictor is not ready. The upstream's answer is cached for
:data:`READY_CACHE_S` seconds.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

READY_CACHE_S = 1.0

#: A readiness check: ``(ready, detail)``; the detail (may be empty) follows ``ready:`` / ``not ready:`` in the body.
Readiness = Callable[[], Awaitable[tuple[bool, str]]]


async def always_ready() -> tuple[bool, str]:
    """The readiness of a server that is ready as soon as it listens (the webhook)."""
    return True, ""


def admin_app(registry: CollectorRegistry, readiness: Readiness = always_ready) -> web.Application:
    """The admin application.

    Args:
        registry: what ``/metrics`` exposes (Prometheus text format 0.0.4).
        readiness: awaited on every ``GET /readyz``: 200 ``ready[: detail]`` when it returns ``(True, detail)``,
            503 ``not ready[: detail]`` otherwise. ``/livez`` always answers 200 ``ok``.
    """

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def live(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(_: web.Request) -> web.Response:
        ok, detail = await readiness()
        text = ("ready" if ok else "not ready") + (f": {detail}" if detail else "")
        return web.Response(status=200 if ok else 503, text=text + "\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/livez", live)
    app.router.add_get("/readyz", ready)
    return app


@dataclass
class _ReadyState:
    checked: float = -READY_CACHE_S
    ready: bool = False
    detail: str = ""


def upstream_readiness(
    session: aiohttp.ClientSession, url: str, ssl_context: ssl.SSLContext | None = None
) -> Readiness:
    """The sidecar's readiness: the upstream's readiness URL answers 2xx (checked at most every READY_CACHE_S s).

    Args:
        session: client session for the probe.
        url: the predictor's base URL plus its readiness path.
        ssl_context: TLS settings for an https upstream (the proxy's own).
    """
    state = _ReadyState()

    async def check() -> tuple[bool, str]:
        now = time.monotonic()
        if now - state.checked >= READY_CACHE_S:
            try:
                timeout = aiohttp.ClientTimeout(total=2.0)
                async with session.get(url, timeout=timeout, ssl=ssl_context or True) as resp:
                    await resp.read()
                    state.ready, state.detail = 200 <= resp.status < 300, f"upstream answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                state.ready, state.detail = False, f"upstream unreachable: {type(exc).__name__}"
            state.checked = now
        return state.ready, state.detail

    return check
