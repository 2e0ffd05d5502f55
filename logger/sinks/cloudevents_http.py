"""HTTP CloudEvents sink, compatible with KServe's payload logger (events built by :mod:`infertap.logger.sinks.events`).

KServe's logger (``pkg/logger`` of kserve/kserve) POSTs one CloudEvent per request and one per response, in binary
content mode: ``ce-type`` ``org.kubeflow.serving.inference.request`` / ``.response``, ``ce-id`` the request id
(the same for both), ``ce-source`` the agent's source URI, the extension attributes ``inferenceservicename``,
``namespace``, ``component``, ``endpoint`` and ``metadata`` (a JSON object of selected request headers), and the
raw body as data with the request's ``Content-Type``. This sink sends the same events, so consumers written for
KServe's logger keep working. Differences, all additive:

* the data is the raw body when the record kept it (``keep_raw_bodies``, or a decode error); otherwise it is
  rebuilt from the decoded tensors as a V2 (Open Inference Protocol) JSON body, or a V1 ``instances`` /
  ``predictions`` body for V1 records, with ``Content-Type: application/json``;
* ``ce-time`` is the capture time (request or response time), not the send time; a ``revision`` extension is set;
* response events are also sent for non-200 exchanges (KServe sends only 200s) unless disabled;
* failures are retried: a 2xx answer is success; connection errors, timeouts, 408, 429 and 5xx fail the delivery
  (the spool retries the segment later, so delivery is at least once: deduplicate on ``ce-id`` + ``ce-type``);
  other 4xx answers mean the receiver rejects the event, which is then counted as dropped, not retried.

Network I/O runs on a private asyncio loop in its own thread (:class:`LoopThread`); the sink's methods are called
from the spool's delivery thread and block it, never the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from urllib.parse import urlsplit

import aiohttp
import pyarrow as pa
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat

from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import Health, SinkStats
from infertap.logger.sinks.events import (
    kserve_events,
    record_views,
)
from infertap.logger.sinks.loop_thread import LoopThread
from infertap.logger.sinks.settings import HttpSinkSettings

log = logging.getLogger(__name__)

_FORMAT = JSONFormat()
_RETRYABLE = frozenset({408, 425, 429})


class CloudEventsHttpSink:
    """POSTs each record as KServe-logger CloudEvents (binary mode) to ``settings.url``.

    Args:
        settings: receiver URL, CloudEvents source, timeout, concurrency and TLS settings
            (:class:`infertap.logger.sinks.settings.HttpSinkSettings`).
    """

    name = "http"

    def __init__(self, settings: HttpSinkSettings) -> None:
        self.settings = settings
        self.url = settings.url
        self.stats = SinkStats()
        self._loop = LoopThread("infertap-http-sink")
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Start the I/O loop and its HTTP session."""
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise SinkError(f"not an http(s) URL: {self.url!r}", sink=self.name)
        self._loop.start()
        self._session = self._loop.run(self._open_session())

    async def _open_session(self) -> aiohttp.ClientSession:
        st = self.settings
        ssl_arg: ssl.SSLContext | bool = True
        if st.tls_skip_verify:
            ssl_arg = False
        elif st.ca_file is not None:
            ssl_arg = ssl.create_default_context(cafile=str(st.ca_file))
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=st.max_concurrency, ssl=ssl_arg),
            timeout=aiohttp.ClientTimeout(total=st.timeout_s),
        )

    def write(self, batch: pa.RecordBatch) -> None:
        """Send the events of every record of ``batch``; returns when each was answered.

        Raises:
            SinkError: an event could not be delivered and should be retried (nothing is lost: the spool keeps
                the segment).
        """
        if self._session is None:
            raise SinkError("not started", sink=self.name)
        messages: list[tuple[int, ce_http.HTTPMessage]] = []
        for view in record_views(batch):
            events = kserve_events(
                view, source=self.settings.source, log_non_ok_responses=self.settings.log_non_ok_responses
            )
            for i, event in enumerate(events):
                # a record counts as sent once all its events are; attribute it to its last event
                messages.append((1 if i == len(events) - 1 else 0, ce_http.to_binary(event, _FORMAT)))
        if not messages:
            return
        try:
            timeout_s = self.settings.timeout_s * len(messages) + 5
            self._loop.run(self._post_all(self._session, messages), timeout_s=timeout_s)
        except TimeoutError as exc:
            self.stats.errors += 1
            raise SinkError(f"POST {self.url}: timed out", sink=self.name) from exc

    async def _post_all(self, session: aiohttp.ClientSession, messages: list[tuple[int, ce_http.HTTPMessage]]) -> None:
        sem = asyncio.Semaphore(self.settings.max_concurrency)
        failures: list[str] = []

        async def post(records: int, msg: ce_http.HTTPMessage) -> None:
            async with sem:
                try:
                    async with session.post(self.url, data=msg.body, headers=msg.headers) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
            if 200 <= status < 300:
                self.stats.records_sent += records
                self.stats.bytes_sent += len(msg.body)
            elif status >= 500 or status in _RETRYABLE:
                failures.append(f"HTTP {status}")
            else:
                self.stats.records_dropped += records
                log.warning("%s rejected event %s: HTTP %d", self.url, msg.headers.get("ce-id"), status)

        await asyncio.gather(*(post(r, m) for r, m in messages))
        if failures:
            self.stats.errors += 1
            raise SinkError(
                f"POST {self.url}: {len(failures)} of {len(messages)} events failed, first: {failures[0]}",
                sink=self.name,
            )

    def flush(self) -> None:
        """Nothing to do: :meth:`write` returns once every event was answered."""

    def close(self) -> None:
        """Close the HTTP session and stop the loop."""
        session, self._session = self._session, None
        if session is not None:
            self._loop.run(session.close(), timeout_s=10)
        self._loop.stop()

    def healthcheck(self) -> Health:
        """Whether the receiver answers HTTP at all (a ``HEAD``; any status, 405 included, counts as up)."""
        if self._session is None:
            return Health(False, "not started")
        try:
            status = self._loop.run(self._head(self._session), timeout_s=self.settings.timeout_s + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(False, f"{self.url}: {type(exc).__name__}: {exc}")
        return Health(True, f"HEAD {self.url}: {status}")

    async def _head(self, session: aiohttp.ClientSession) -> int:
        async with session.head(self.url) as resp:
            return resp.status
