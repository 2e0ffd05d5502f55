"""Wiring and lifecycle of ``infertap collector``: HTTP receiver, Kafka consumer, pairing, writer, admin endpoints.

Rules of the receiver (KServe's agent, a Knative broker or any CloudEvents sender posts to it):

- **2xx only once the event is durable**: the halves of a request are appended to the journal
  (:mod:`.journal`) before the ``200``; a sender that saw ``200`` never needs to resend.
- **400** with one line saying what is wrong for a body that is not a KServe inference CloudEvent; **413** past
  ``max_event_bytes``.
- ``POST /forward/v1/batches`` takes batches of raw frames from forward-mode sidecars (:mod:`.forward`,
  docs/forward-protocol.md) under the same rules: ``200`` once every frame is in the journal, 400 / 413 / 429 / 503
  as below; frames skip the pairing window.
- **429** with ``Retry-After`` while more than ``max_pending_records`` pairs wait for the writer (the sink is slower
  than the traffic); **503** while stopping or when the journal cannot be written. Memory stays bounded: the
  pairing window by its two bounds, the writer's queue by this refusal, one request by ``max_event_bytes``.

The Kafka consumer (when ``kafka_source_bootstrap_servers`` is set) follows the same rules: a record's offset is
committed only after its half is in the journal; fetching pauses while the writer's queue is over its bound;
malformed records are counted, logged and skipped (they cannot be refused).

Everything but the writer runs on one event loop: the pairing window is owned by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web

from infertap.logger.admin import admin_app
from infertap.logger.collector import events, records
from infertap.logger.collector.events import EventError, Half
from infertap.logger.collector.forward import FORWARD_SOURCE, ForwardRecordBuilder, RecentIds, halves_of_batch
from infertap.logger.collector.journal import Journal, JournalError
from infertap.logger.collector.metrics import CollectorMetrics
from infertap.logger.collector.pairing import Outcome, Pair, PairingWindow
from infertap.logger.collector.settings import CollectorSettings
from infertap.logger.collector.writer import RecordWriter
from infertap.logger.forward import wire
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.sinks.base import Sink

log = logging.getLogger(__name__)

_KAFKA_STOP_S = 10.0
_UNPAIRED_REASON = {Outcome.TIMED_OUT: "window", Outcome.EVICTED: "full", Outcome.DRAINED: "shutdown"}


class Collector:
    """A running collector.

    Args:
        settings: the configuration.
        sink: where records go (default: the sink ``settings.sink`` names).
        metrics: metrics to use (default: a fresh registry).

    Attributes:
        port, admin_port: the bound ports, known after :meth:`start`.
    """

    def __init__(
        self, settings: CollectorSettings, sink: Sink | None = None, metrics: CollectorMetrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or CollectorMetrics()
        self.sink = sink or records.build_sink(settings, self.metrics.registry)
        self.journal = Journal(settings.journal_dir, rotate_bytes=settings.journal_rotate_bytes,
                               fsync=settings.journal_fsync)  # fmt: skip
        self.window = PairingWindow(window_s=settings.pairing_window_s, max_halves=settings.pairing_max_halves,
                                    max_bytes=settings.pairing_max_bytes)  # fmt: skip
        builder = records.RecordBuilder(
            pod=settings.pod(), keep_raw_bodies=settings.keep_raw_bodies, decode_errors=self.metrics.decode_errors
        )
        forward_builder = ForwardRecordBuilder(ProxyMetrics())
        self.forward_ids = RecentIds()

        def build(pair: Pair) -> object:
            if pair.request is not None and pair.request.source == FORWARD_SOURCE:
                return forward_builder.build(pair.request)
            return builder.build(pair)

        self.writer = RecordWriter(
            build, self.sink, self.journal, self.metrics,
            batch_max_records=settings.batch_max_records, batch_max_delay_s=settings.batch_max_delay_s,
            flush_interval_s=settings.flush_interval_s,
        )  # fmt: skip
        self.port = 0
        self.admin_port = 0
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._kafka_ready = not settings.kafka_source_bootstrap_servers
        self.metrics.waiting_halves.set_function(lambda: self.window.halves)
        self.metrics.waiting_bytes.set_function(lambda: self.window.bytes)
        self.metrics.journal_pending.set_function(lambda: self.journal.pending_halves)
        self.metrics.journal_bytes.set_function(lambda: self.journal.size_bytes)

    # --- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the journal (replaying what an earlier run left), start the writer, listen, consume.

        Raises:
            JournalError: the journal directory is unusable.
            SinkError: the sink cannot start.
            OSError: a port cannot be bound.
        """
        s = self.settings
        replay = self.journal.open()
        self.writer.start()
        now = time.monotonic_ns()
        for half, token in replay:
            self._offer(half, token, now)
        self._receiver = web.AppRunner(self._receiver_app(), handle_signals=False, access_log=None)
        await self._receiver.setup()
        await web.TCPSite(self._receiver, s.listen_host, s.listen_port, backlog=1024).start()
        self.port = int(self._receiver.addresses[0][1])
        self._admin = web.AppRunner(
            admin_app(self.metrics.registry, self._readiness), handle_signals=False, access_log=None
        )
        await self._admin.setup()
        await web.TCPSite(self._admin, s.listen_host, s.admin_port).start()
        self.admin_port = int(self._admin.addresses[0][1])
        self._tasks.append(asyncio.create_task(self._expire_loop(), name="collector-expire"))
        if s.kafka_source_bootstrap_servers:
            self._tasks.append(asyncio.create_task(self._kafka_loop(), name="collector-kafka"))
        log.info(
            "collector on %s:%d (admin :%d), window %.3g s, sink %s%s",
            s.listen_host, self.port, self.admin_port, s.pairing_window_s, self.sink.name,
            f", consuming {s.kafka_source_topic}" if s.kafka_source_bootstrap_servers else "",
        )  # fmt: skip

    async def stop(self, grace_s: float = 30.0) -> int:
        """Refuse new events, stop consuming, write every waiting half alone, flush, close.

        Returns:
            Pairs left unwritten when ``grace_s`` ran out (0: every accepted event is in a durable record).
        """
        self.stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        await self._receiver.cleanup()  # waits for requests in progress
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_KAFKA_STOP_S + 1.0)
        self._hand_over(self.window.drain())
        left = await loop.run_in_executor(None, self.writer.stop, max(deadline - loop.time(), 1.0))
        self.journal.close()
        await self._admin.cleanup()
        if left:
            log.error("shutdown grace period over: %d pairs not written (still in the journal)", left)
        return left

    # --- pairing ----------------------------------------------------------------------------------------------
    def _offer(self, half: Half, token: int, now_ns: int) -> None:
        if half.source == FORWARD_SOURCE:  # a whole exchange from a forward-mode sidecar: nothing to pair
            self.writer.put([Pair(half, None, Outcome.JOINED, (token,))])
            return
        self._hand_over(self.window.add(half, token, now_ns))
        dropped = self.window.take_dropped()
        if dropped:
            self.metrics.duplicates.inc(len(dropped))
            self.journal.release(dropped)

    def _hand_over(self, pairs: list[Pair]) -> None:
        for pair in pairs:
            if pair.outcome is Outcome.JOINED:
                self.metrics.joined.inc()
            else:
                self.metrics.timed_out.labels(_UNPAIRED_REASON[pair.outcome]).inc()
        self.writer.put(pairs)

    def _accept(self, halves: list[Half], transport: str) -> None:
        """Journal ``halves`` and offer them to the window. Raises :class:`JournalError`."""
        tokens = self.journal.append(halves)
        now = time.monotonic_ns()
        for half, token in zip(halves, tokens, strict=True):
            self.metrics.received.labels(half.side.value, transport).inc()
            self._offer(half, token, now)

    async def _expire_loop(self) -> None:
        period = min(1.0, self.settings.pairing_window_s / 4)
        while True:
            await asyncio.sleep(period)
            self._hand_over(self.window.expire(time.monotonic_ns()))
            self.journal.rotate_if_idle()

    def overloaded(self) -> bool:
        """Whether the writer's queue is over its bound."""
        return self.writer.backlog >= self.settings.max_pending_records

    # --- HTTP ---------------------------------------------------------------------------------------------------
    def _receiver_app(self) -> web.Application:
        s = self.settings
        retry = {"Retry-After": str(s.retry_after_s)}

        def refuse(status: int, reason: str, text: str, headers: dict[str, str] | None = None) -> web.Response:
            self.metrics.rejected.labels(reason, "http").inc()
            return web.Response(status=status, text=text + "\n", headers=headers)

        async def admitted_body(request: web.Request) -> bytes | web.Response:
            """The request's body, or the refusal: stopping (503) or over ``max_event_bytes`` (413)."""
            if self.stopping:
                return refuse(503, "stopping", "collector is shutting down", retry)
            if request.content_length is not None and request.content_length > s.max_event_bytes:
                return refuse(413, "too_large", f"body over {s.max_event_bytes} bytes")
            try:
                return await request.read()
            except web.HTTPRequestEntityTooLarge:
                return refuse(413, "too_large", f"body over {s.max_event_bytes} bytes")

        def refusal(halves: list[Half], transport: str) -> web.Response | None:
            """Journal ``halves`` (None), or the refusal: over the pending bound (429) or journal failure (503)."""
            if self.overloaded():
                return refuse(429, "overloaded", "collector is over its bound of pending records", retry)
            try:
                self._accept(halves, transport)
            except JournalError as exc:
                log.error("%s", exc)
                return refuse(503, "journal_error", "collector cannot make events durable now", retry)
            return None

        async def receive(request: web.Request) -> web.Response:
            body = await admitted_body(request)
            if isinstance(body, web.Response):
                return body
            try:
                halves = events.from_http(request.headers, body)
            except EventError as exc:
                return refuse(400, "malformed", str(exc))
            return refusal(halves, "http") or web.Response(status=200)

        async def receive_forward(request: web.Request) -> web.Response:
            body = await admitted_body(request)
            if isinstance(body, web.Response):
                return body
            try:
                halves = halves_of_batch(body)
            except wire.WireError as exc:
                return refuse(400, "malformed", str(exc))
            fresh = [h for h in halves if not self.forward_ids.seen(h.id)]
            if refused := refusal(fresh, "forward"):
                return refused
            for half in fresh:
                self.forward_ids.add(half.id)
            if len(fresh) < len(halves):
                self.metrics.duplicates.inc(len(halves) - len(fresh))
            return web.Response(status=200)

        app = web.Application(client_max_size=s.max_event_bytes)
        app.router.add_post(wire.BATCH_PATH, receive_forward)
        app.router.add_post("/{tail:.*}", receive)
        return app

    async def _readiness(self) -> tuple[bool, str]:
        problems = [
            text
            for bad, text in (
                (self.stopping, "stopping"),
                (self.overloaded(), "over the bound of pending records"),
                (not self.writer.healthy, "sink writes failing"),
                (not self._kafka_ready, "kafka consumer not started"),
            )
            if bad
        ]
        return not problems, ", ".join(problems)

    # --- Kafka --------------------------------------------------------------------------------------------------
    async def _kafka_loop(self) -> None:
        from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
        from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

        s = self.settings
        while True:
            consumer = AIOKafkaConsumer(
                s.kafka_source_topic,
                bootstrap_servers=s.kafka_source_bootstrap_servers,
                group_id=s.kafka_source_group_id,
                client_id=f"infertap-collector-{s.pod()}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                security_protocol=s.kafka_source_security_protocol,
            )
            try:
                await consumer.start()
                break
            except KafkaError as exc:
                log.warning("kafka consumer cannot start yet (retrying in 1 s): %r", exc)
                with contextlib.suppress(Exception):
                    await consumer.stop()
                await asyncio.sleep(1.0)
        self._kafka_ready = True
        try:
            while True:
                if self.overloaded():
                    await asyncio.sleep(0.05)  # back-pressure: stop fetching
                    continue
                fetched = await consumer.getmany(timeout_ms=200, max_records=s.kafka_source_max_poll_records)
                self.metrics.kafka_partitions.set(len(consumer.assignment()))
                if not fetched:
                    continue
                halves: list[Half] = []
                for msgs in fetched.values():
                    for m in msgs:
                        try:
                            halves.append(events.from_kafka(m.headers, m.key, m.value or b""))
                        except EventError as exc:
                            self.metrics.rejected.labels("malformed", "kafka").inc()
                            log.warning("kafka %s[%d]@%d skipped: %s", m.topic, m.partition, m.offset, exc)
                try:
                    if halves:
                        self._accept(halves, "kafka")
                except JournalError as exc:
                    log.error("%s: fetching again from the committed offsets", exc)
                    self.metrics.rejected.labels("journal_error", "kafka").inc(len(halves))
                    await consumer.seek_to_committed()
                    await asyncio.sleep(1.0)
                    continue
                await consumer.commit()  # every half of this fetch is in the journal
        finally:
            self._kafka_ready = False
            with contextlib.suppress(Exception):  # a broker that does not answer must not hold the shutdown up
                await asyncio.wait_for(consumer.stop(), _KAFKA_STOP_S)


async def serve(settings: CollectorSettings, on_started: Callable[[Collector], None] | None = None) -> int:
    """Run a collector until SIGTERM or SIGINT, then stop it. Returns the exit code (1 if pairs were left)."""
    collector = Collector(settings)
    await collector.start()
    if on_started is not None:
        on_started(collector)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: writing waiting halves and flushing")
    left = await collector.stop(settings.shutdown_grace_s)
    return 0 if left == 0 else 1


def run(settings: CollectorSettings) -> int:
    """``infertap collector``: serve on uvloop (when installed) until a termination signal."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))
