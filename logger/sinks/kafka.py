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

**Delivery**: ``acks="all"``, ``enable_idempotence=True``, zstd compression (cramjam), ``linger_ms`` and
``max_batch_size`` tuned for throughput. :meth:`KafkaSink.write` enqueues the messages; :meth:`KafkaSink.flush`
waits for every acknowledgement and raises :class:`infertap.logger.errors.SinkError` if any failed, so the spool keeps
the segment and retries it: delivery is at least once (deduplicate on ``ce_id``). The producer runs on a private
asyncio loop in its own thread (:class:`infertap.logger.sinks.cloudevents_http.LoopThread`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
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
    """Produces one CloudEvent message per record to ``topic``.

    Args:
        bootstrap_servers: ``host:port[,host:port...]``.
        topic: destination topic.
        client_id: Kafka client id.
        key: what the message key is (:class:`infertap.logger.sinks.settings.KafkaKey`).
        security_protocol: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
        sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``.
        sasl_username / sasl_password: SASL credentials.
        ssl_cafile / ssl_certfile / ssl_keyfile: TLS trust and client certificate.
        compression_type: ``zstd`` (default), ``lz4``, ``gzip``, ``snappy`` or ``none``.
        linger_ms / max_batch_bytes / max_request_bytes: producer batching.
        request_timeout_s: broker request timeout.
        flush_timeout_s: longest :meth:`flush` waits for acknowledgements (also bounds :meth:`write`).
        ce_source / ce_type: CloudEvents ``source`` (default per record) and ``type``.
    """

    name = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str,
        client_id: str = "infertap",
        key: KafkaKey = KafkaKey.POD,
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        ssl_cafile: Path | None = None,
        ssl_certfile: Path | None = None,
        ssl_keyfile: Path | None = None,
        compression_type: str = "zstd",
        linger_ms: int = 20,
        max_batch_bytes: int = 512 * 1024,
        max_request_bytes: int = 4 << 20,
        request_timeout_s: float = 30.0,
        flush_timeout_s: float = 60.0,
        ce_source: str = "",
        ce_type: str = DEFAULT_CE_TYPE,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.client_id = client_id
        self.key = KafkaKey(key)
        self.security_protocol = security_protocol
        self.sasl_mechanism = sasl_mechanism
        self.sasl_username = sasl_username
        self._sasl_password = sasl_password
        self.ssl_cafile = ssl_cafile
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.compression_type = None if compression_type == "none" else compression_type
        self.linger_ms = linger_ms
        self.max_batch_bytes = max_batch_bytes
        self.max_request_bytes = max_request_bytes
        self.request_timeout_s = request_timeout_s
        self.flush_timeout_s = flush_timeout_s
        self.ce_source = ce_source
        self.ce_type = ce_type
        self.stats = SinkStats()
        self._loop = LoopThread("infertap-kafka-sink")
        self._producer: Any = None
        self._inflight: list[tuple[asyncio.Future[Any], int]] = []

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> KafkaSink:
        """A sink configured by :class:`infertap.logger.sinks.settings.KafkaSettings`.

        The password file is read here."""
        return cls(
            settings.bootstrap_servers,
            topic=settings.topic,
            client_id=settings.client_id,
            key=settings.key,
            security_protocol=settings.security_protocol,
            sasl_mechanism=settings.sasl_mechanism,
            sasl_username=settings.sasl_username,
            sasl_password=read_secret(settings.sasl_password, settings.sasl_password_file),
            ssl_cafile=settings.ssl_cafile,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            compression_type=settings.compression_type,
            linger_ms=settings.linger_ms,
            max_batch_bytes=settings.max_batch_bytes,
            max_request_bytes=settings.max_request_bytes,
            request_timeout_s=settings.request_timeout_s,
            flush_timeout_s=settings.flush_timeout_s,
            ce_source=settings.ce_source,
            ce_type=settings.ce_type,
        )

    def producer_config(self) -> dict[str, Any]:
        """Keyword arguments of :class:`aiokafka.AIOKafkaProducer` (without the SSL context)."""
        conf: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": self.compression_type,
            "linger_ms": self.linger_ms,
            "max_batch_size": self.max_batch_bytes,
            "max_request_size": self.max_request_bytes,
            "request_timeout_ms": int(self.request_timeout_s * 1000),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            conf["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            conf["sasl_plain_username"] = self.sasl_username
            conf["sasl_plain_password"] = self._sasl_password
        return conf

    # --- Sink protocol --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the producer (connects to the cluster and fetches metadata)."""
        self._loop.start()
        try:
            self._producer = self._loop.run(self._start(), timeout_s=self.request_timeout_s + 5)
        except (KafkaError, OSError, TimeoutError) as exc:
            self._loop.stop()
            raise SinkError(f"cannot connect to {self.bootstrap_servers}: {exc!r}", sink=self.name) from exc

    async def _start(self) -> Any:
        conf = self.producer_config()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            conf["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
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
            futures = self._loop.run(self._send_all(messages), timeout_s=self.flush_timeout_s)
        except (KafkaError, TimeoutError) as exc:
            self.stats.errors += 1
            self._inflight = []
            raise SinkError(f"producing to {self.topic}: {exc!r}", sink=self.name) from exc
        self._inflight.extend(futures)

    def message(self, view: RecordView) -> ce_kafka.KafkaMessage:
        """The Kafka message of one record (CloudEvents binary mode)."""
        attrs: dict[str, Any] = {
            "id": view.text("request_id"),
            "source": self.ce_source or default_source(view),
            "type": self.ce_type,
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
            results = self._loop.run(_gather([f for f, _ in inflight]), timeout_s=self.flush_timeout_s)
        except TimeoutError as exc:
            self.stats.errors += 1
            raise SinkError(
                f"{len(inflight)} messages not acknowledged in {self.flush_timeout_s}s", sink=self.name
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
                    self._loop.run(producer.stop(), timeout_s=self.flush_timeout_s)
                except (KafkaError, TimeoutError) as exc:
                    log.error("stopping the Kafka producer: %r", exc)
            self._loop.stop()

    def healthcheck(self) -> Health:
        """Whether the cluster answers a metadata request."""
        if self._producer is None:
            return Health(False, "not started")
        try:
            brokers = self._loop.run(self._metadata(), timeout_s=self.request_timeout_s + 1)
        except (KafkaError, TimeoutError) as exc:
            return Health(False, f"{self.bootstrap_servers}: {exc!r}")
        return Health(brokers > 0, f"{brokers} brokers" if brokers else "no brokers")

    async def _metadata(self) -> int:
        md = await self._producer.client.fetch_all_metadata()
        return len(md.brokers())


async def _gather(futures: list[asyncio.Future[Any]]) -> list[Any]:
    return list(await asyncio.gather(*futures, return_exceptions=True))
