"""The webhook's servers: HTTPS for the API server (``/mutate``, ``/mutate-all``), plain HTTP for the admin port.

Routes (HTTPS, ``INFERTAP_WEBHOOK_PORT``): ``POST /mutate`` injects pods that opt in by annotation,
``POST /mutate-all`` every KServe predictor pod that does not opt out (registered with a namespaceSelector),
``GET /livez`` and ``GET /readyz``. Admin (HTTP, ``INFERTAP_WEBHOOK_ADMIN_PORT``): ``/metrics`` (Prometheus text
format), ``/livez``, ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from infertap.logger.admin import admin_app
from infertap.logger.webhook.injection import InjectionConfigSource
from infertap.logger.webhook.metrics import WebhookMetrics
from infertap.logger.webhook.mutate import Selection
from infertap.logger.webhook.review import review
from infertap.logger.webhook.settings import WebhookSettings
from infertap.logger.webhook.tls import ReloadingCertificate

log = logging.getLogger(__name__)


def webhook_app(source: InjectionConfigSource, metrics: WebhookMetrics, max_review_bytes: int) -> web.Application:
    """The HTTPS application the API server calls."""

    def handler(selection: Selection) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                metrics.reviews.labels("bad_review").inc()
                raise
            answer = review(body, source, selection, metrics)
            return web.json_response(answer.body, status=answer.status)

        return handle

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application(client_max_size=max_review_bytes)
    app.router.add_post("/mutate", handler(Selection.OPT_IN))
    app.router.add_post("/mutate-all", handler(Selection.NAMESPACE))
    app.router.add_get("/livez", ok)
    app.router.add_get("/readyz", ok)
    return app


async def _watch_certificate(cert: ReloadingCertificate, metrics: WebhookMetrics, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        result = cert.check()
        if result is not None:
            metrics.cert_reloads.labels("ok" if result else "error").inc()
            metrics.cert_expiry.set(cert.not_after)


async def serve(settings: WebhookSettings, cert: ReloadingCertificate, source: InjectionConfigSource,
                metrics: WebhookMetrics, stop: asyncio.Event) -> None:  # fmt: skip
    """Serve until ``stop`` is set, then close both servers (in-flight reviews finish first)."""
    metrics.cert_expiry.set(cert.not_after)
    runners = [
        web.AppRunner(webhook_app(source, metrics, settings.max_review_bytes), access_log=None),
        web.AppRunner(admin_app(metrics.registry), access_log=None),
    ]
    for runner in runners:
        await runner.setup()
    https = web.TCPSite(runners[0], settings.listen_host, settings.port, ssl_context=cert.context)
    admin = web.TCPSite(runners[1], settings.listen_host, settings.admin_port)
    await https.start()
    await admin.start()
    log.info("infertap webhook: %s (admission), %s (admin)", https.name, admin.name)
    watcher = asyncio.create_task(_watch_certificate(cert, metrics, settings.cert_check_interval_s))
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for runner in runners:
            await runner.cleanup()


def run(settings: WebhookSettings) -> int:
    """Run ``infertap webhook`` until SIGTERM or SIGINT. Returns the exit code (2: the certificate does not load)."""
    metrics = WebhookMetrics()

    def on_error(exc: Exception) -> None:
        metrics.config_errors.inc()
        log.error("injection configuration not loaded: %s", exc)

    source = InjectionConfigSource(
        settings.config_file, on_error=on_error, on_loaded=lambda ok: metrics.config_loaded.set(1 if ok else 0)
    )
    try:
        cert = ReloadingCertificate(settings.cert_file, settings.key_file)
    except (OSError, ValueError) as exc:
        print(f"infertap webhook: cannot load the serving certificate: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, cert, source, metrics, stop)

    started = time.monotonic()
    asyncio.run(main())
    log.info("infertap webhook stopped after %.0f s", time.monotonic() - started)
    return 0
