"""HTTP CloudEvents sink, compatible with KServe's payload logger; and the record-to-event helpers of the event sinks.

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
import base64
import datetime as dt
import logging
import ssl
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import orjson
import pyarrow as pa
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from logger import record
from logger.errors import SinkError
from logger.sinks.base import Health, SinkStats
from logger.sinks.settings import HttpSinkSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

CE_INFERENCE_REQUEST = "org.kubeflow.serving.inference.request"
CE_INFERENCE_RESPONSE = "org.kubeflow.serving.inference.response"
#: KServe's extension attribute names (lower-case alphanumeric, as CloudEvents requires).
INFERENCE_SERVICE_ATTR = "inferenceservicename"
NAMESPACE_ATTR = "namespace"
COMPONENT_ATTR = "component"
ENDPOINT_ATTR = "endpoint"
METADATA_ATTR = "metadata"
REVISION_ATTR = "revision"

_FORMAT = JSONFormat()
_RETRYABLE = frozenset({408, 425, 429})


# --- shared by the event sinks (HTTP, Kafka) -----------------------------------------------------------------
class LoopThread:
    """An asyncio event loop running in a daemon thread, driven from other threads with :meth:`run`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop's thread (no-op when running)."""
        if self.loop is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result.

        Raises:
            TimeoutError: after ``timeout_s`` (the coroutine is cancelled).
        """
        if self.loop is None:
            coro.close()
            raise RuntimeError(f"{self.name}: loop not started")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout_s)
        except TimeoutError:
            fut.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop, join its thread and close it."""
        loop, self.loop = self.loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()


@dataclass(frozen=True, slots=True)
class RecordView:
    """One record of a batch as Python values, with its tensor columns."""

    row: dict[str, Any]
    tensors: list[record.TensorColumn]

    def text(self, column: str) -> str:
        """A string column, ``""`` when null."""
        value = self.row.get(column)
        return "" if value is None else str(value)

    def time(self, column: str) -> dt.datetime:
        """A timestamp column as an aware UTC datetime."""
        value = self.row[column]
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC)
        return dt.datetime.fromtimestamp(0, dt.UTC)

    def headers(self, column: str) -> dict[str, str]:
        """A header map column as a dict (empty when null)."""
        return dict(self.row.get(column) or [])

    def tensor_json(self, io: str) -> list[dict[str, Any]]:
        """The ``io`` side's tensors as V2 JSON tensors (``name``, ``datatype``, ``shape``, ``data``)."""
        out = []
        for t in self.tensors:
            value = self.row.get(t.column)
            if t.io != io or value is None:
                continue
            data = value["data"]
            if t.datatype == "BYTES":
                data = [_bytes_json(v) for v in data]
            out.append({"name": t.tensor, "datatype": t.datatype, "shape": value["shape"], "data": data})
        return out

    def v1_body(self, io: str) -> dict[str, Any] | None:
        """A V1 ``{"instances": ...}`` / ``{"predictions": ...}`` body when the record is V1 with one such tensor."""
        key = "instances" if io == record.INPUT else "predictions"
        tensors = self.tensor_json(io)
        if self.row.get("protocol") != "v1" or len(tensors) != 1 or tensors[0]["name"] != key:
            return None
        t = tensors[0]
        nested = np.array(t["data"], dtype=object).reshape(t["shape"]).tolist()
        return {key: nested}


def record_views(batch: pa.RecordBatch) -> Iterator[RecordView]:
    """The records of ``batch`` (record schema) one by one."""
    tensors = record.tensor_columns(batch.schema)
    for row in batch.to_pylist():
        yield RecordView(row, tensors)


def record_json(view: RecordView) -> bytes:
    """A record as a JSON object: every core column (bodies base64 in ``*_body_b64``), ``inputs`` / ``outputs``.

    Timestamps are RFC 3339 UTC strings, header maps objects, tensors V2 JSON tensors (BYTES elements as UTF-8
    strings, or ``{"b64": ...}`` when not UTF-8).
    """
    doc: dict[str, Any] = {}
    for name, value in view.row.items():
        if name not in record.CORE_NAMES:
            continue
        if name in ("request_body", "response_body"):
            doc[f"{name}_b64"] = base64.b64encode(value).decode() if value is not None else None
        elif name in ("request_headers", "response_headers"):
            doc[name] = dict(value) if value is not None else None
        elif isinstance(value, dt.datetime):
            doc[name] = value.astimezone(dt.UTC)
        else:
            doc[name] = value
    doc["inputs"] = view.tensor_json(record.INPUT)
    doc["outputs"] = view.tensor_json(record.OUTPUT)
    return orjson.dumps(doc, option=orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY)


def default_source(view: RecordView) -> str:
    """CloudEvents source of a record when none is configured: its namespace, InferenceService and pod."""
    ns, isvc, pod = view.text("namespace") or "_", view.text("inference_service") or "_", view.text("pod") or "_"
    return f"/namespaces/{ns}/inferenceservices/{isvc}/pods/{pod}"


def serving_extensions(view: RecordView) -> dict[str, str]:
    """KServe's extension attributes of a record, plus ``revision``."""
    return {
        INFERENCE_SERVICE_ATTR: view.text("inference_service"),
        NAMESPACE_ATTR: view.text("namespace"),
        COMPONENT_ATTR: view.text("component"),
        ENDPOINT_ATTR: view.text("endpoint"),
        REVISION_ATTR: view.text("revision"),
    }


def _bytes_json(value: bytes | None) -> str | dict[str, str] | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode()}


# --- the HTTP sink -------------------------------------------------------------------------------------------
def kserve_events(view: RecordView, *, source: str, log_non_ok_responses: bool = True) -> list[CloudEvent]:
    """The request and response events KServe's logger would send for one record (see the module docs)."""
    mode = view.text("capture_mode") or "all"
    req_headers = view.headers("request_headers")
    content_type = req_headers.get("content-type") or "application/json"
    base = {
        "id": view.text("request_id"),
        "source": source or default_source(view),
        "specversion": "1.0",
        **serving_extensions(view),
        METADATA_ATTR: orjson.dumps({k: [v] for k, v in req_headers.items()}).decode(),
    }
    events = []
    sides = [
        (record.INPUT, CE_INFERENCE_REQUEST, "request_body", "request_time", mode in ("all", "request")),
        (record.OUTPUT, CE_INFERENCE_RESPONSE, "response_body", "response_time", mode in ("all", "response")),
    ]
    for io, ce_type, body_col, time_col, wanted in sides:
        if not wanted:
            continue
        if io == record.OUTPUT and view.row.get("status_code") != 200 and not log_non_ok_responses:
            continue
        body = view.row.get(body_col)
        ctype = content_type
        if body is None:
            tensors = view.tensor_json(io)
            if not tensors:
                continue
            doc = view.v1_body(io) or {
                "id": view.text("request_id"),
                "model_name": view.text("model_name"),
                **({"model_version": view.text("model_version")} if view.text("model_version") else {}),
                ("inputs" if io == record.INPUT else "outputs"): tensors,
            }
            body, ctype = orjson.dumps(doc), "application/json"
        attrs = {**base, "type": ce_type, "time": view.time(time_col), "datacontenttype": ctype}
        events.append(CloudEvent(attrs, bytes(body)))
    return events


class CloudEventsHttpSink:
    """POSTs each record as KServe-logger CloudEvents (binary mode) to ``url``.

    Args:
        url: the receiver (KServe's logger URL, a Knative broker, a message dumper).
        source: CloudEvents source; default per record, ``/namespaces/<ns>/inferenceservices/<isvc>/pods/<pod>``.
        timeout_s: total timeout of one POST.
        max_concurrency: POSTs in flight at once.
        ca_file: CA bundle for https.
        tls_skip_verify: do not verify the server's certificate.
        log_non_ok_responses: also send response events of non-200 exchanges.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        source: str = "",
        timeout_s: float = 10.0,
        max_concurrency: int = 16,
        ca_file: Path | None = None,
        tls_skip_verify: bool = False,
        log_non_ok_responses: bool = True,
    ) -> None:
        self.url = url
        self.source = source
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.ca_file = ca_file
        self.tls_skip_verify = tls_skip_verify
        self.log_non_ok_responses = log_non_ok_responses
        self.stats = SinkStats()
        self._loop = LoopThread("infertap-http-sink")
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: HttpSinkSettings) -> CloudEventsHttpSink:
        """A sink configured by :class:`~logger.sinks.settings.HttpSinkSettings`."""
        return cls(
            settings.url,
            source=settings.source,
            timeout_s=settings.timeout_s,
            max_concurrency=settings.max_concurrency,
            ca_file=settings.ca_file,
            tls_skip_verify=settings.tls_skip_verify,
            log_non_ok_responses=settings.log_non_ok_responses,
        )

    def start(self) -> None:
        """Start the I/O loop and its HTTP session."""
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise SinkError(f"not an http(s) URL: {self.url!r}", sink=self.name)
        self._loop.start()
        self._session = self._loop.run(self._open_session())

    async def _open_session(self) -> aiohttp.ClientSession:
        ssl_arg: ssl.SSLContext | bool = True
        if self.tls_skip_verify:
            ssl_arg = False
        elif self.ca_file is not None:
            ssl_arg = ssl.create_default_context(cafile=str(self.ca_file))
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_concurrency, ssl=ssl_arg),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
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
            events = kserve_events(view, source=self.source, log_non_ok_responses=self.log_non_ok_responses)
            for i, event in enumerate(events):
                # a record counts as sent once all its events are; attribute it to its last event
                messages.append((1 if i == len(events) - 1 else 0, ce_http.to_binary(event, _FORMAT)))
        if not messages:
            return
        try:
            self._loop.run(self._post_all(self._session, messages), timeout_s=self.timeout_s * len(messages) + 5)
        except TimeoutError as exc:
            self.stats.errors += 1
            raise SinkError(f"POST {self.url}: timed out", sink=self.name) from exc

    async def _post_all(self, session: aiohttp.ClientSession, messages: list[tuple[int, ce_http.HTTPMessage]]) -> None:
        sem = asyncio.Semaphore(self.max_concurrency)
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
            status = self._loop.run(self._head(self._session), timeout_s=self.timeout_s + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Health(False, f"{self.url}: {type(exc).__name__}: {exc}")
        return Health(True, f"HEAD {self.url}: {status}")

    async def _head(self, session: aiohttp.ClientSession) -> int:
        async with session.head(self.url) as resp:
            return resp.status
