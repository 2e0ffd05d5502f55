"""The sinks of ``benchmarks/reliability.py`` and the TCP relays that cut them, run as a separate process.

``python benchmarks/reliability_components.py s3|kafka`` starts the destination on loopback and a TCP relay in
front of it, prints one JSON line describing the endpoints, then obeys one command per line on stdin, answering
each with one JSON line on stdout:

* ``cut``: close the relays' listeners and abort every relayed connection (the sink is gone: connections are
  refused, open ones reset);
* ``restore``: listen again on the same ports;
* ``read <topic>`` (Kafka): start reading ``topic`` from its beginning in a thread (see :class:`TopicReader`);
* ``ids <topic>`` (Kafka): stop reading it; answers ``{"ids": [ce_id, ...], "trimmed_unread": n}``;
* ``quit``: stop.

Destinations:

* ``s3``: moto's ``ThreadedMotoServer``; the sidecar talks to the relay (``relay_url``), the benchmark reads the
  results straight from moto (``direct_url``).
* ``kafka``: librdkafka's mock cluster (3 brokers), created through ``ctypes`` on the ``librdkafka`` that
  ``confluent_kafka`` ships, because its Python API cannot reach the mock's controls. Kafka clients learn broker
  addresses from metadata, so one relay per broker is started and each broker is told to advertise its relay's
  port (``rd_kafka_mock_broker_set_host_port``): every connection of every client then goes through a relay, and
  cutting the relays takes the whole cluster away. ``bootstrap`` lists the relays.

Running them in their own process keeps moto's and the relays' work off the load generator's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
_CHUNK = 1 << 16


class Relay:
    """A TCP relay from ``listen_port`` (0: any free port) to ``target``; :meth:`cut` and :meth:`restore` it."""

    def __init__(self, target: tuple[str, int], listen_port: int = 0) -> None:
        self.target = target
        self.port = listen_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def restore(self) -> None:
        """Listen (again) on :attr:`port`."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, HOST, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def cut(self) -> None:
        """Stop listening and reset every relayed connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self.connections += 1
        self._writers.update((client_w, up_w))
        try:
            await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
        except asyncio.CancelledError:  # the process is stopping
            pass
        finally:
            for w in (client_w, up_w):
                self._writers.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until EOF or an error; then close ``writer``."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


# --- S3 ------------------------------------------------------------------------------------------------------
def start_moto() -> tuple[Any, int]:
    """moto's S3 server on a free loopback port: (server, port)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    _host, port = server.get_host_and_port()
    return server, int(port)


# --- Kafka ---------------------------------------------------------------------------------------------------
class MockKafka:
    """librdkafka's mock cluster through ``ctypes`` (lives as long as this object's process)."""

    def __init__(self, brokers: int = 3) -> None:
        self.lib = ctypes.CDLL(_librdkafka_path())
        lib = self.lib
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
        lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_broker_set_host_port.restype = None
        lib.rd_kafka_mock_broker_set_host_port.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int32,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        errstr = ctypes.create_string_buffer(512)
        self.rk = lib.rd_kafka_new(0, lib.rd_kafka_conf_new(), errstr, len(errstr))  # 0: RD_KAFKA_PRODUCER
        if not self.rk:
            raise RuntimeError(f"rd_kafka_new: {errstr.value.decode()}")
        self.cluster = lib.rd_kafka_mock_cluster_new(self.rk, brokers)
        if not self.cluster:
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.bootstrap = lib.rd_kafka_mock_cluster_bootstraps(self.cluster).decode()

    def broker_ports(self) -> dict[int, int]:
        """Broker id -> the port the broker listens on (from a metadata request)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        brokers = admin.list_topics(timeout=30).brokers
        return {int(b.id): int(b.port) for b in brokers.values()}

    def create_topic(self, name: str, partitions: int) -> None:
        """Create ``name`` with ``partitions`` partitions (the mock keeps about 5 MB per partition)."""
        fn = self.lib.rd_kafka_mock_topic_create
        fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        err = fn(self.cluster, name.encode(), partitions, 1)
        if err:
            raise RuntimeError(f"rd_kafka_mock_topic_create({name}): error {err}")

    def advertise(self, broker_id: int, port: int) -> None:
        """Make broker ``broker_id`` advertise ``127.0.0.1:port`` in metadata."""
        self.lib.rd_kafka_mock_broker_set_host_port(self.cluster, broker_id, HOST.encode(), port)


def _librdkafka_path() -> str:
    spec = importlib.util.find_spec("confluent_kafka")
    if spec is None or spec.origin is None:
        raise RuntimeError("confluent_kafka is not installed")
    site = Path(spec.origin).parent.parent
    found = sorted(glob.glob(str(site / "confluent_kafka.libs" / "librdkafka*.so*")))
    if not found:
        raise RuntimeError(f"no librdkafka under {site}/confluent_kafka.libs")
    return found[0]


class TopicReader:
    """Reads ``topic`` from its beginning in a thread, as the sidecar writes it, and keeps every message's ``ce_id``.

    The mock cluster keeps only about 5 MB per partition and trims older messages, so the records are read while
    the scenario runs, not afterwards. Offsets that jump (messages trimmed before they were read) are counted.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        import threading

        self.bootstrap, self.topic = bootstrap, topic
        self.ids: list[str] = []
        self.gaps = 0
        self._next: dict[int, int] = {}
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"read-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"verify-{self.topic}",
                             "enable.auto.commit": False, "log_level": 3,
                             # reconnect at once when the relays come back, to read the backlog before it is trimmed
                             "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200})  # fmt: skip
        parts: list[int] = []
        while not parts and not self._stop.is_set():  # the mock creates the topic on this metadata request
            topic = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            parts = sorted(topic.partitions) if topic is not None and topic.error is None else []
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        self.ready.set()
        try:
            while not self._stop.is_set():
                for m in consumer.consume(num_messages=5000, timeout=0.5):
                    if m.error() is None:
                        self._take(m)
        finally:
            consumer.close()

    def _take(self, m: Any) -> None:
        part, off = m.partition(), m.offset()
        if off > self._next.get(part, 0):
            self.gaps += off - self._next.get(part, 0)
        self._next[part] = off + 1
        ce_id = dict(m.headers() or [])["ce_id"]
        self.ids.append(ce_id.decode() if isinstance(ce_id, bytes) else str(ce_id))

    def stop(self) -> dict[str, Any]:
        """Stop reading; the ids read and the messages trimmed before they could be read."""
        self._stop.set()
        self._thread.join(30)
        return {"ids": self.ids, "trimmed_unread": self.gaps}


# --- process -------------------------------------------------------------------------------------------------
async def start(kind: str) -> tuple[list[Relay], dict[str, Any], Any]:
    """Start destination ``kind`` and its relays: (relays, description printed for the parent, keep-alive)."""
    if kind == "s3":
        server, port = start_moto()
        relay = Relay((HOST, port))
        await relay.restore()
        info = {"relay_url": f"http://{HOST}:{relay.port}", "direct_url": f"http://{HOST}:{port}"}
        return [relay], info, server
    cluster = MockKafka()
    relays: list[Relay] = []
    for broker_id, port in sorted(cluster.broker_ports().items()):
        relay = Relay((HOST, port))
        await relay.restore()
        cluster.advertise(broker_id, relay.port)
        relays.append(relay)
    info = {"bootstrap": ",".join(f"{HOST}:{r.port}" for r in relays), "direct_bootstrap": cluster.bootstrap}
    return relays, info, cluster


async def serve(kind: str) -> None:
    """Start ``kind``, print its description, obey stdin commands until ``quit`` or EOF."""
    relays, info, keep = await start(kind)
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    readers: dict[str, TopicReader] = {}
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        cmd, _, arg = line.partition(" ")
        if cmd == "read":
            if isinstance(keep, MockKafka):  # spread the records: the sidecar keys by request id in this scenario
                keep.create_topic(arg, 16)
            readers[arg] = TopicReader(info["bootstrap"], arg)
            await asyncio.to_thread(readers[arg].ready.wait, 60)
        elif cmd == "ids":
            print(json.dumps({"ok": line, **await asyncio.to_thread(readers.pop(arg).stop)}), flush=True)
            continue
        elif line == "cut":
            for r in relays:
                await r.cut()
        elif line == "restore":
            for r in relays:
                await r.restore()
        elif line == "quit":
            break
        print(json.dumps({"ok": line, "connections": sum(r.connections for r in relays)}), flush=True)
    for r in relays:
        await r.cut()
    if kind == "s3":
        keep.stop()


def main() -> int:
    """Entry point: ``reliability_components.py s3|kafka``."""
    if len(sys.argv) != 2 or sys.argv[1] not in ("s3", "kafka"):
        print("usage: reliability_components.py s3|kafka", file=sys.stderr)
        return 2
    asyncio.run(serve(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
