"""Kafka sink (aiokafka): one message per captured record, CloudEvents Kafka protocol binding, binary content mode.

**Headers** (made by the ``cloudevents`` library's Kafka binding): ``ce_specversion`` ``1.0``, ``ce_id`` the
request id, ``ce_source`` (default ``/namespaces/<ns>/inferenceservices/<isvc>/pods/<pod>``), ``ce_type``
(default ``io.infertap.inference.record.v1``), ``ce_time`` the request time (RFC 3339, UTC), ``ce_subject`` the
model name, ``content-type: application/json``, and the extension attributes ``ce_inferenceservicename``,
``ce_namespace``, ``ce_component``, ``ce_endpoint`` (KServe's names, so one consumer reads both this sink and
the HTTP one) and ``ce_revision``.

**Value**: the record as one JSON object (:func:`infertap.logger.sinks.events.record_json`): every core column of
the record schema by name (timestamps RFC 3339 UTC, header maps as objects, raw bodies base64 in
``request_body_b64`` / ``response_body_b64``), plus ``inputs`` and ``outputs``, lists of V2 JSON tensors
(``name``, ``datatype``, ``shape``, flat ``data``).

**Key**: by default the pod name, so all records of one sidecar land in one partition in capture order while the
load spreads over partitions as replicas are added. ``key="model"`` keeps each model's records in order (one
partition per model), ``"request_id"`` spreads evenly with no ordering, ``"none"`` lets the producer choose.

**Delivery**: ``acks="all"`` and ``enable_idempotence=True`` by default (settings ``acks`` and
``enable_idempotence``: some managed services, ACL-restricted clusters and other Kafka-protocol brokers refuse the
idempotent producer; the start-up error then says to set ``INFERTAP_KAFKA_ENABLE_IDEMPOTENCE=false``), zstd
compression (cramjam), ``linger_ms`` and ``max_batch_size`` tuned for throughput. :meth:`KafkaSink.write` enqueues
the messages; :meth:`KafkaSink.flush` waits for every acknowledgement and raises
:class:`infertap.logger.errors.SinkError` if any failed, so the spool keeps the segment and retries it: delivery is
at least once either way (deduplicate on ``ce_id``); without idempotence a producer retry inside one attempt may
also write a message twice. The producer runs on a private asyncio loop in its own thread
(:class:`infertap.logger.sinks.loop_thread.LoopThread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pyarrow as pa
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from infertap.logger.errors import SinkError
from infertap.logger.sinks.base import Health, SinkStats
from infertap.logger.sinks.events import RecordView, default_source, record_json, record_views, serving_extensions
from infertap.logger.sinks.loop_thread import LoopThread
from infertap.logger.sinks.settings import KafkaKey, KafkaSettings, read_secret

log = logging.getLogger(__name__)

DEFAULT_CE_TYPE = "io.infertap.inference.record.v1"
_FORMAT = JSONFormat()


class KafkaSink:
    """Produces one CloudEvent message per record to ``settings.topic``.

    Args:
        settings: brokers, topic, key, security, producer and CloudEvents settings
            (:class:`infertap.logger.sinks.settings.KafkaSettings`); the password file is read here.

    Raises:
        OSError: ``settings.sasl_password_file`` cannot be read.
    """

    name = "kafka"

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.topic = settings.topic
        self.key = settings.key
        self._sasl_password = read_secret(settings.sasl_password, settings.sasl_password_file)
        self.stats = SinkStats()
        self._loop = LoopThread("infertap-kafka-sink")
        self._producer: Any = None
        self._inflight: list[tuple[asyncio.Future[Any], int]] = []
        self._idempotence_hint_logged = False

    def producer_config(self) -> dict[str, Any]:
        """Keyword arguments of :class:`aiokafka.AIOKafkaProducer` (without the SSL context)."""
        st = self.settings
        conf: dict[str, Any] = {
            "bootstrap_servers": st.bootstrap_servers,
            "client_id": st.client_id,
            "acks": st.acks if st.acks == "all" else int(st.acks),
            "enable_idempotence": st.enable_idempotence,
            "compression_type": None if st.compression_type == "none" else st.compression_type,
            "linger_ms": st.linger_ms,
            "max_batch_size": st.max_batch_bytes,
            "max_request_size": st.max_request_bytes,
            "request_timeout_ms": int(st.request_timeout_s * 1000),
            "security_protocol": st.security_protocol,
        }
        if st.security_protocol.startswith("SASL_"):
            conf["sasl_mechanism"] = st.sasl_mechanism or "PLAIN"
            conf["sasl_plain_username"] = st.sasl_username
            conf["sasl_plain_password"] = self._sasl_password
        return conf

    # --- Sink protocol --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the producer (connects to the cluster and fetches metadata).

        Raises:
            SinkError: the cluster cannot be reached, or refuses the producer. When the idempotent producer is
                refused but a plain one is accepted (a broker without idempotence support, an ACL without the
                IDEMPOTENT_WRITE permission), the message and an error log line say to set
                ``INFERTAP_KAFKA_ENABLE_IDEMPOTENCE=false``.
        """
        st = self.settings
        self._loop.start()
        try:
            self._producer = self._loop.run(self._start(), timeout_s=st.request_timeout_s + 5)
        except (KafkaError, OSError, TimeoutError) as exc:
            hint = ""
            if st.enable_idempotence and isinstance(exc, KafkaError) and self._plain_producer_accepted():
                hint = (
                    f"; the broker refused the idempotent producer but accepts a plain one: set "
                    f"INFERTAP_KAFKA_ENABLE_IDEMPOTENCE=false (acks={st.acks} stays; delivery stays at least once, "
                    f"deduplicate on ce_id)"
                )
                if not self._idempotence_hint_logged:
                    self._idempotence_hint_logged = True
                    log.error("kafka sink: %s: %r%s", st.bootstrap_servers, exc, hint)
            self._loop.stop()
            raise SinkError(f"cannot connect to {st.bootstrap_servers}: {exc!r}{hint}", sink=self.name) from exc

    def _plain_producer_accepted(self) -> bool:
        """Whether a producer without idempotence starts where the idempotent one did not."""
        try:
            plain = self._loop.run(self._start(enable_idempotence=False), timeout_s=self.settings.request_timeout_s + 5)
        except (KafkaError, OSError, TimeoutError):
            return False
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            self._loop.run(plain.stop(), timeout_s=self.settings.request_timeout_s + 5)
        return True

    async def _start(self, **overrides: Any) -> Any:
        conf, st = self.producer_config(), self.settings
        conf.update(overrides)
        if st.security_protocol in ("SSL", "SASL_SSL"):
            conf["ssl_context"] = create_ssl_context(
                cafile=str(st.ssl_cafile) if st.ssl_cafile else None,
                certfile=str(st.ssl_certfile) if st.ssl_certfile else None,
                keyfile=str(st.ssl_keyfile) if st.ssl_keyfile else None,
            )
        producer = AIOKafkaProducer(**conf)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    def write(self, batch: pa.RecordBatch) -> None:
        """Enqueue one message per record; :meth:`flush` waits for their acknowledgements."""
        if self._producer is None:
            raise SinkError("not started", sink=self.name)
        messages = [self.message(view) for view in record_views(batch)]
        if not messages:
            return
        try:
            futures = self._loop.run(self._send_all(messages), timeout_s=self.settings.flush_timeout_s)
        except (KafkaError, TimeoutError) as exc:
            self.stats.errors += 1
            self._inflight = []
            raise SinkError(f"producing to {self.topic}: {exc!r}", sink=self.name) from exc
        self._inflight.extend(futures)

    def message(self, view: RecordView) -> ce_kafka.KafkaMessage:
        """The Kafka message of one record (CloudEvents binary mode)."""
        attrs: dict[str, Any] = {
            "id": view.text("request_id"),
            "source": self.settings.ce_source or default_source(view),
            "type": self.settings.ce_type,
            "specversion": "1.0",
            "time": view.time("request_time"),
            "subject": view.text("model_name"),
            "datacontenttype": "application/json",
            **serving_extensions(view),
        }
        event = CloudEvent(attrs, record_json(view))
        key = {
            KafkaKey.POD: view.text("pod"),
            KafkaKey.MODEL: view.text("model_name"),
            KafkaKey.REQUEST_ID: view.text("request_id"),
            KafkaKey.NONE: None,
        }[self.key]
        return ce_kafka.to_binary(event, _FORMAT, key_mapper=lambda _e: key.encode() if key else None)

    async def _send_all(self, messages: list[ce_kafka.KafkaMessage]) -> list[tuple[asyncio.Future[Any], int]]:
        out = []
        for m in messages:
            key = m.key.encode() if isinstance(m.key, str) else m.key
            headers = list(m.headers.items())
            size = len(m.value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
            fut = await self._producer.send(self.topic, value=m.value, key=key, headers=headers)
            out.append((fut, size))
        return out

    def flush(self) -> None:
        """Wait until every enqueued message is acknowledged by all in-sync replicas.

        Raises:
            SinkError: a message failed or ``flush_timeout_s`` ran out; the caller resends the whole segment.
        """
        inflight, self._inflight = self._inflight, []
        if not inflight:
            return
        try:
            results = self._loop.run(_gather([f for f, _ in inflight]), timeout_s=self.settings.flush_timeout_s)
        except TimeoutError as exc:
            self.stats.errors += 1
            raise SinkError(
                f"{len(inflight)} messages not acknowledged in {self.settings.flush_timeout_s}s", sink=self.name
            ) from exc
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            self.stats.errors += 1
            raise SinkError(f"{len(failed)} of {len(inflight)} messages failed, first: {failed[0]!r}", sink=self.name)
        self.stats.records_sent += len(inflight)
        self.stats.bytes_sent += sum(size for _, size in inflight)

    def close(self) -> None:
        """Flush, stop the producer and the loop."""
        try:
            self.flush()
        finally:
            producer, self._producer = self._producer, None
            if producer is not None:
                try:
                    self._loop.run(producer.stop(), timeout_s=self.settings.flush_timeout_s)
                except (KafkaError, TimeoutError) as exc:
                    log.error("stopping the Kafka producer: %r", exc)
            self._loop.stop()

    def healthcheck(self) -> Health:
        """Whether the cluster answers a metadata request."""
        if self._producer is None:
            return Health(False, "not started")
        try:
            brokers = self._loop.run(self._metadata(), timeout_s=self.settings.request_timeout_s + 1)
        except (KafkaError, TimeoutError) as exc:
            return Health(False, f"{self.settings.bootstrap_servers}: {exc!r}")
        return Health(brokers > 0, f"{brokers} brokers" if brokers else "no brokers")

    async def _metadata(self) -> int:
        md = await self._producer.client.fetch_all_metadata()
        return len(md.brokers())


async def _gather(futures: list[asyncio.Future[Any]]) -> list[Any]:
    return list(await asyncio.gather(*futures, return_exceptions=True))
