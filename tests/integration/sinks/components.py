"""Real components for the sink tests: moto's S3 server, librdkafka's mock Kafka cluster, an aiohttp receiver.

Each is started on a free loopback port and polled for readiness. ``INFERTAP_TEST_S3_ENDPOINT`` (with the usual
``AWS_*`` credentials) and ``INFERTAP_TEST_KAFKA_BOOTSTRAP`` point the tests at real services instead.
Fixtures are imported by ``conftest.py`` here and by ``tests/integration/test_sink_contract.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from infertap.logger.sinks.loop_thread import LoopThread


def free_port() -> int:
    """A TCP port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- S3 ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key_id: str
    secret_access_key: str
    region: str

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """moto's S3 server on a free port (or ``INFERTAP_TEST_S3_ENDPOINT``)."""
    real = os.environ.get("INFERTAP_TEST_S3_ENDPOINT")
    if real:
        yield S3Endpoint(
            real,
            os.environ.get("AWS_ACCESS_KEY_ID", ""),
            os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            os.environ.get("AWS_REGION", "us-east-1"),
        )
        return
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = S3Endpoint(f"http://{host}:{port}", "testing", "testing", "us-east-1")
    client = endpoint.client()
    for _ in range(200):  # readiness: the first successful call
        try:
            client.list_buckets()
            break
        except Exception:
            threading.Event().wait(0.05)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint) -> str:
    """A new, empty bucket."""
    name = f"infertap-{uuid.uuid4().hex[:12]}"
    s3_endpoint.client().create_bucket(Bucket=name)
    return name


def s3_keys(endpoint: S3Endpoint, bucket: str, prefix: str = "") -> list[str]:
    client = endpoint.client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def s3_table(endpoint: S3Endpoint, bucket: str, prefix: str = "") -> pa.Table | None:
    import io

    client = endpoint.client()
    tables = [
        pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=k)["Body"].read()))
        for k in s3_keys(endpoint, bucket, prefix)
    ]
    return pa.concat_tables(tables, promote_options="default") if tables else None


# --- Kafka ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """librdkafka's mock cluster, 3 brokers on loopback TCP (or ``INFERTAP_TEST_KAFKA_BOOTSTRAP``)."""
    real = os.environ.get("INFERTAP_TEST_KAFKA_BOOTSTRAP")
    if real:
        yield real
        return
    import confluent_kafka

    cluster = confluent_kafka.Producer(
        {"test.mock.num.brokers": 3, "bootstrap.servers": "", "log_level": 3}
    )  # the brokers live as long as this object
    brokers = cluster.list_topics(timeout=30).brokers
    yield ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    del cluster


@pytest.fixture
def kafka_topic() -> str:
    """A new topic name (auto-created on first produce)."""
    return f"infertap-{uuid.uuid4().hex[:12]}"


@dataclass
class KafkaMessage:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int


def kafka_consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[KafkaMessage]:
    """Every message of ``topic`` from the start, waiting up to ``timeout_s`` for ``expected`` of them."""
    from aiokafka import AIOKafkaConsumer

    async def run() -> list[KafkaMessage]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        out: list[KafkaMessage] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while len(out) < expected and loop.time() < deadline:
                got = await consumer.getmany(timeout_ms=200)
                for tp, msgs in got.items():
                    out += [KafkaMessage(m.key, m.value, dict(m.headers), tp.partition) for m in msgs]
            if len(out) >= expected:  # anything beyond (duplicates) already fetched comes too
                for tp, msgs in (await consumer.getmany(timeout_ms=200)).items():
                    out += [KafkaMessage(m.key, m.value, dict(m.headers), tp.partition) for m in msgs]
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


def kafka_request_ids(messages: list[KafkaMessage]) -> list[str]:
    return [str(orjson.loads(m.value)["request_id"]) for m in messages]


# --- HTTP CloudEvents receiver -------------------------------------------------------------------------------
@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class CloudEventsReceiver:
    """An aiohttp server on loopback that keeps every POST; ``status`` is what it answers."""

    url: str = ""
    status: int = 200
    events: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request_ids(self, ce_type: str = "org.kubeflow.serving.inference.request") -> list[str]:
        with self.lock:
            return [e.headers["ce-id"] for e in self.events if e.headers.get("ce-type") == ce_type]


@pytest.fixture
def ce_receiver() -> Iterator[CloudEventsReceiver]:
    receiver = CloudEventsReceiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if receiver.status == 200:
            with receiver.lock:
                receiver.events.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
        return web.Response(status=receiver.status)

    app = web.Application()
    app.router.add_post("/", handle)
    loop = LoopThread("ce-receiver")
    loop.start()
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    port = loop.run(start(), timeout_s=30)
    receiver.url = f"http://127.0.0.1:{port}/"
    try:
        yield receiver
    finally:
        loop.run(runner.cleanup(), timeout_s=30)
        loop.stop()
