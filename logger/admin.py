"""The sidecar's own endpoints, on the admin port: ``/metrics``, ``/livez`` and ``/readyz``.

``/readyz`` follows the upstream: it answers 200 only while ``GET <upstream><upstream_ready_path>`` answers 2xx
(Open Inference Protocol "Server Ready", ``/v2/health/ready``, by default), so Kubernetes sends no traffic to a pod
whose predictor is not ready. The upstream's answer is cached for :data:`READY_CACHE_S` seconds.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from infertap.logger.metrics import ProxyMetrics

READY_CACHE_S = 1.0


@dataclass
class _ReadyState:
    checked: float = -READY_CACHE_S
    ready: bool = False
    detail: str = ""


def admin_app(
    *,
    metrics: ProxyMetrics,
    session: aiohttp.ClientSession,
    upstream_url: str,
    ready_path: str,
    ssl_context: ssl.SSLContext | None = None,
) -> web.Application:
    """The admin application.

    Args:
        metrics: whose registry ``/metrics`` exposes (Prometheus text format 0.0.4).
        session: client session for the readiness probe of the upstream.
        upstream_url: the predictor's base URL.
        ready_path: the predictor's readiness path.
        ssl_context: TLS settings for an https upstream (the proxy's own).
    """
    state = _ReadyState()

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def live(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(_: web.Request) -> web.Response:
        now = time.monotonic()
        if now - state.checked >= READY_CACHE_S:
            try:
                timeout = aiohttp.ClientTimeout(total=2.0)
                async with session.get(upstream_url + ready_path, timeout=timeout, ssl=ssl_context or True) as resp:
                    await resp.read()
                    state.ready, state.detail = 200 <= resp.status < 300, f"upstream answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                state.ready, state.detail = False, f"upstream unreachable: {type(exc).__name__}"
            state.checked = now
        status = 200 if state.ready else 503
        return web.Response(status=status, text=f"{'ready' if state.ready else 'not ready'}: {state.detail}\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/livez", live)
    app.router.add_get("/readyz", ready)
    return app
