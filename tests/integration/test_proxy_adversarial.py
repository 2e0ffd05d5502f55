"""The proxy against hostile or broken peers: smuggling shapes, disconnects, broken upstreams, slow clients, load.

Every upstream is a real server on loopback: aiohttp where a well-behaved one will do, a scripted asyncio server
where the upstream has to misbehave byte by byte.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from infertap.logger.config import ProxySettings
from infertap.logger.server import Sidecar
from infertap.logger.sinks.memory import MemorySink
from tests.integration.proxy_fixtures import raw, run, sidecar, upstream

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# --- helpers ------------------------------------------------------------------------------------------------
@asynccontextmanager
async def raw_upstream(handler: RawHandler) -> AsyncIterator[str]:
    """A scripted upstream: ``handler`` gets each accepted connection's streams; yields the base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The start line and header fields of one message."""
    head = await reader.readuntil(b"\r\n\r\n")
    start, *lines = head[:-4].split(b"\r\n")
    fields = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines)]
    return start, fields


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """One request as the proxy forwards it (always framed with Content-Length, if at all)."""
    start, fields = await read_head(reader)
    length = int(dict(fields).get(b"content-length", b"0"))
    return start, fields, await reader.readexactly(length)


async def read_response(
    reader: asyncio.StreamReader, *, head_request: bool = False
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One response: status, header fields (lower-case names), de-chunked body."""
    start, fields = await read_head(reader)
    status = int(start.split(b" ")[1])
    headers = dict(fields)
    if head_request or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                return status, headers, body[:-2]
            body = body[:-2]
    if b"content-length" in headers:
        return status, headers, await reader.readexactly(int(headers[b"content-length"]))
    return status, headers, await reader.read()


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (state of in-process servers) until it holds, at most ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the state of a server in this process, no event to wait on
            await asyncio.sleep(0.002)


def records(sink: MemorySink) -> list[dict[str, Any]]:
    return sink.table().select(["status_code", "error", "path", "request_id"]).to_pylist() if sink.flushed else []


@asynccontextmanager
async def started(upstream_url: str, out: Path, sink: MemorySink, **settings: Any) -> AsyncIterator[Sidecar]:
    """A started sidecar that the test stops itself."""
    conf = ProxySettings(
        upstream_url=upstream_url, listen_host="127.0.0.1", listen_port=0, admin_port=0, output_dir=out,
        pod_name="test-pod", **settings,
    )  # fmt: skip
    car = Sidecar(conf, sink=sink, seed=7)
    await car.start()
    yield car


class Counter:
    """An aiohttp upstream that counts what reached it and echoes method, path and headers."""

    def __init__(self) -> None:
        self.hits = 0
        self.peers: set[object] = set()

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        body = await request.read()
        return web.json_response(
            {
                "path": request.path,
                "body": body.decode("latin-1"),
                "headers": {k.lower(): v for k, v in request.headers.items()},
            },
            headers={"X-Path": request.path},
        )


# --- request framing and smuggling ---------------------------------------------------------------------------
SMUGGLING = {
    "duplicate content-length": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
    "content-length then chunked": (
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "chunked then content-length": (
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
    ),
    "chunked not last": b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "chunked twice": (
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "obs-fold": b"POST /s HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nContent-Length: 3\r\n\r\nabc",
    "space before colon": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc",
    "bare LF": b"POST /s HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc",
    "signed length": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
    "length list": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
    "NUL in name": b"GET /s HTTP/1.1\r\nHost: x\r\nX\x00Y: 1\r\n\r\n",
    "CR in value": b"GET /s HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
}


@pytest.mark.parametrize("shape", list(SMUGGLING))
def test_ambiguous_framing_is_400_and_never_forwarded(tmp_path: Path, shape: str) -> None:
    sink, counter = MemorySink(), Counter()

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path, sink=sink) as car:
            # a valid request behind it on the same connection must not be smuggled through either
            return await raw(car.port, SMUGGLING[shape] + b"GET /behind HTTP/1.1\r\nHost: x\r\n\r\n")

    answer = run(scenario())
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1") == 1
    assert counter.hits == 0
    assert [(r["status_code"], r["error"][:11]) for r in records(sink)] == [(400, "bad request")]


def test_bad_request_behind_pipelined_good_ones_is_answered_after_them(tmp_path: Path) -> None:
    sink, counter = MemorySink(), Counter()

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path, sink=sink) as car:
            return await raw(
                car.port,
                b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /three HTTP/1.1\r\nBroken\r\n\r\n",
            )

    answer = run(scenario())
    statuses = re.findall(rb"HTTP/1.1 (\d+)", answer)
    assert statuses == [b"200", b"200", b"400"]
    assert answer.index(b"X-Path: /one") < answer.index(b"X-Path: /two")
    assert counter.hits == 2
    assert sorted(r["status_code"] for r in records(sink)) == [200, 200, 400]


def test_protocol_upgrade_is_501_and_never_forwarded(tmp_path: Path) -> None:
    sink, counter = MemorySink(), Counter()
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    async def scenario() -> list[bytes]:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path, sink=sink) as car:
            return [
                await raw(car.port, upgrade + b"\x81\x05hello"),
                await raw(car.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            ]

    for answer in run(scenario()):
        assert answer.startswith(b"HTTP/1.1 501 ")
        assert answer.count(b"HTTP/1.1") == 1
    assert counter.hits == 0
    assert [r["status_code"] for r in records(sink)] == [501, 501]


def test_h2c_upgrade_offer_is_declined_and_answered_in_http11(tmp_path: Path) -> None:
    """``curl --http2 http://...`` offers h2c; the server may ignore the offer (RFC 9110 section 7.8)."""
    counter = Counter()

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path) as car:
            return await raw(
                car.port,
                b"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
                b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )

    answer = run(scenario())
    assert re.findall(rb"HTTP/1.1 (\d+)", answer) == [b"200", b"200"]
    assert re.findall(rb"X-Path: (/\w+)", answer) == [b"/h2c", b"/next"]
    assert b"upgrade" not in answer.lower().split(b"\r\n\r\n")[1]  # Upgrade is hop-by-hop: not forwarded
    assert counter.hits == 2


def test_request_trailers_are_not_forwarded_as_header_fields(tmp_path: Path) -> None:
    counter = Counter()

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path) as car:
            return await raw(
                car.port,
                b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                b"3\r\nabc\r\n0\r\nX-Request-Id: forged\r\nAuthorization: Bearer smuggled\r\n\r\n",
            )

    answer = run(scenario())
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'"body": "abc"' in answer
    assert b"smuggled" not in answer
    assert b"forged" not in answer


def test_request_head_over_the_limit_is_431_and_never_forwarded(tmp_path: Path) -> None:
    sink, counter = MemorySink(), Counter()

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path, sink=sink) as car:
            reader, writer = await asyncio.open_connection("127.0.0.1", car.port)
            writer.write(b"GET /h HTTP/1.1\r\nHost: x\r\n")
            line = b"X-Filler: " + b"f" * 8000 + b"\r\n"
            try:
                for _ in range(10_000):  # 80 MB of header if nobody stops it
                    writer.write(line)
                    await writer.drain()
            except ConnectionError:
                pass
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return answer

    answer = run(scenario())
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert counter.hits == 0
    assert [r["status_code"] for r in records(sink)] == [431]


@pytest.mark.parametrize("head_kib", [70, 130, 250])
def test_head_over_the_limit_arriving_with_its_body_in_one_read_is_431(tmp_path: Path, head_kib: int) -> None:
    """The read that completes the head counts too, also when the body follows in the same read."""
    sink, counter = MemorySink(), Counter()
    fields = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 1000) for i in range(head_kib))
    request = b"POST /h HTTP/1.1\r\nHost: x\r\n" + fields + b"Content-Length: 5\r\n\r\nhello"

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path, sink=sink) as car:
            return await raw(car.port, request)

    answer = run(scenario())
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert counter.hits == 0
    assert [r["status_code"] for r in records(sink)] == [431]


def test_head_under_the_limit_with_its_body_in_one_read_is_forwarded(tmp_path: Path) -> None:
    counter = Counter()
    fields = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 1000) for i in range(60))  # about 60 KiB
    request = b"POST /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields + b"Content-Length: 5\r\n\r\nhello"

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path) as car:
            return await raw(car.port, request)

    answer = run(scenario())
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'"body": "hello"' in answer
    assert counter.hits == 1


REJECTED_WITH_ID = {
    "400 ambiguous framing": (
        b"POST /s HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-400\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        400,
    ),
    "431 head too large": (
        b"GET /h HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-431\r\n"
        + b"".join(b"X-F%d: %s\r\n" % (i, b"f" * 1000) for i in range(80))
        + b"\r\n",
        431,
    ),
    "413 body too large": (
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nX-Request-Id: client-413\r\nContent-Length: 5000\r\n\r\n",
        413,
    ),
    "501 upgrade": (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Request-Id: client-501\r\n\r\n",
        501,
    ),
}


@pytest.mark.parametrize("case", list(REJECTED_WITH_ID))
def test_the_sidecars_own_answers_keep_the_clients_request_id(tmp_path: Path, case: str) -> None:
    request, status = REJECTED_WITH_ID[case]
    sink, counter = MemorySink(), Counter()

    async def scenario() -> bytes:
        async with (
            upstream({"/{tail:.*}": counter.handle}) as url,
            sidecar(url, tmp_path, sink=sink, max_body_bytes=1000) as car,
        ):
            return await raw(car.port, request)

    answer = run(scenario())
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert b"\r\nX-Request-Id: client-%d\r\n" % status in answer
    assert counter.hits == 0
    assert [(r["status_code"], r["request_id"]) for r in records(sink)] == [(status, f"client-{status}")]


def test_oversized_body_gets_its_413_not_a_reset(tmp_path: Path) -> None:
    """The client is still sending when the 413 goes out: it must still be able to read it."""
    sink, counter = MemorySink(), Counter()

    async def scenario() -> list[int]:
        async with (
            upstream({"/{tail:.*}": counter.handle}) as url,
            sidecar(url, tmp_path, sink=sink, max_body_bytes=1000) as car,
            aiohttp.ClientSession() as s,
        ):
            statuses = []
            for _ in range(3):
                async with s.post(
                    f"http://127.0.0.1:{car.port}/v2/models/m/infer", data=io.BytesIO(b"x" * 8_000_000)
                ) as r:
                    statuses.append(r.status)
            return statuses

    assert run(scenario()) == [413] * 3
    assert counter.hits == 0
    assert [r["status_code"] for r in records(sink)] == [413] * 3


def test_odd_targets_and_header_bytes(tmp_path: Path) -> None:
    """Latin-1 header bytes both ways, a 30 kB URL, a malformed absolute-form authority, ``OPTIONS *``."""
    sink = MemorySink()
    seen: list[tuple[bytes, list[tuple[bytes, bytes]]]] = []
    long_path = b"/long/" + b"a" * 30_000

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            start, fields, _ = await read_request(reader)
            seen.append((start, fields))
            writer.write(b"HTTP/1.1 200 OK\r\nX-Back: \xe9t\xe9\r\nContent-Length: 2\r\n\r\nok")

    async def scenario() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        async with raw_upstream(answer) as url, sidecar(url, tmp_path, sink=sink, header_allowlist=["x-odd"]) as car:
            reader, writer = await asyncio.open_connection("127.0.0.1", car.port)
            writer.write(
                b"GET /odd HTTP/1.1\r\nHost: x\r\nX-Odd: caf\xe9 \xff\r\n\r\n"
                b"GET " + long_path + b"?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET http://[::1/abs?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET http://evil.example HTTP/1.1\r\nHost: x\r\n\r\n"
                b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            got = [await asyncio.wait_for(read_response(reader), 10) for _ in range(5)]
            writer.close()
            return got

    answers = run(scenario())
    assert [a[0] for a in answers] == [200] * 5
    assert all(a[1][b"x-back"] == b"\xe9t\xe9" and a[2] == b"ok" for a in answers)
    starts = [s for s, _ in seen]
    assert starts == [
        b"GET /odd HTTP/1.1",
        b"GET " + long_path + b"?q=1 HTTP/1.1",
        b"GET /abs?x=1 HTTP/1.1",
        b"GET / HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
    ]
    assert dict(seen[0][1])[b"x-odd"] == b"caf\xe9 \xff"
    table = sink.table()
    assert dict(table.column("request_headers")[0].as_py())["x-odd"] == "caf\xe9 \xff"
    assert table.column("path").to_pylist()[1:] == [long_path.decode(), "/abs", "/", "*"]


def test_expect_continue_behind_a_streamed_answer_is_not_interleaved(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first ")
        await asyncio.wait_for(release.wait(), 10)
        await resp.write(b"second")
        await resp.write_eof()
        return resp

    async def scenario() -> tuple[Any, ...]:
        async with upstream({"/stream": stream, "/{tail:.*}": Counter().handle}) as url, sidecar(url, tmp_path) as car:
            reader, writer = await asyncio.open_connection("127.0.0.1", car.port)
            writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            start, _ = await read_head(reader)
            assert start == b"HTTP/1.1 200 OK"
            assert await reader.readuntil(b"first \r\n") == b"6\r\nfirst \r\n"
            writer.write(b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
            await until(lambda: any(c.current is not None for c in car.proxy_config.connections))
            release.set()
            rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
            interim = await asyncio.wait_for(read_head(reader), 10)
            writer.write(b"body")
            final = await asyncio.wait_for(read_response(reader), 10)
            writer.close()
            return rest, interim, final

    rest, interim, final = run(scenario())
    assert rest == b"6\r\nsecond\r\n0\r\n\r\n"
    assert interim[0] == b"HTTP/1.1 100 Continue"
    assert final[0] == 200
    assert b'"body": "body"' in final[2]


def test_http10_client_gets_a_streamed_body_delimited_by_close(tmp_path: Path) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for part in (b"one ", b"two ", b"three"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": stream}) as url, sidecar(url, tmp_path) as car:
            return await raw(car.port, b"GET /s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")

    answer = run(scenario())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"chunked" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"one two three"


def test_head_then_get_on_one_keepalive_connection(tmp_path: Path) -> None:
    big = b"b" * 5000

    async def resource(request: web.Request) -> web.Response:
        return web.Response(body=big if request.path == "/big" else b"small")

    async def scenario() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        async with upstream({"/{tail:.*}": resource}) as url, sidecar(url, tmp_path, max_capture_bytes=1000) as car:
            reader, writer = await asyncio.open_connection("127.0.0.1", car.port)
            got = []
            for method, path in [(b"HEAD", b"/big"), (b"GET", b"/big"), (b"HEAD", b"/small"), (b"GET", b"/small")] * 3:
                writer.write(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                got.append(await asyncio.wait_for(read_response(reader, head_request=method == b"HEAD"), 10))
            writer.write(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got.append(await asyncio.wait_for(read_response(reader), 10))
            assert await asyncio.wait_for(reader.read(), 10) == b""  # nothing stray after the last answer
            writer.close()
            return got

    got = run(scenario())
    for i in range(3):
        head_big, get_big, head_small, get_small = got[4 * i : 4 * i + 4]
        assert (head_big[0], head_big[1][b"content-length"]) == (200, b"5000")
        assert get_big[2] == big
        assert (head_small[0], head_small[1][b"content-length"]) == (200, b"5")
        assert get_small[2] == b"small"
    assert got[-1][2] == b"small"


# --- broken upstreams ---------------------------------------------------------------------------------------
def _scripted(*answers: bytes, then_close: bool = False) -> RawHandler:
    """A connection handler answering successive requests with ``answers`` (the last one repeats)."""

    served = 0  # across connections

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while True:
            await read_request(reader)
            writer.write(answers[min(served, len(answers) - 1)])
            await writer.drain()
            served += 1
            if then_close:
                return

    return handler


BROKEN_ANSWERS = {
    "garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "cut in the body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    "content-length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ),
    "duplicate content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "switching protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "huge header": b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * 300_000 + b"\r\nContent-Length: 2\r\n\r\nok",
}


@pytest.mark.parametrize("shape", list(BROKEN_ANSWERS))
def test_broken_upstream_answer_is_502_and_pool_recovers(tmp_path: Path, shape: str) -> None:
    sink = MemorySink()
    good = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"

    async def scenario() -> list[tuple[int, bytes]]:
        async with raw_upstream(_scripted(BROKEN_ANSWERS[shape], good, then_close=True)) as url:
            async with sidecar(url, tmp_path, sink=sink) as car, aiohttp.ClientSession() as s:
                got = []
                for _ in range(2):
                    async with s.get(f"http://127.0.0.1:{car.port}/b") as r:
                        got.append((r.status, await r.read()))
                return got

    got = run(scenario())
    assert got[0][0] == 502
    assert got[1] == (200, b"good")
    rows = records(sink)
    assert [r["status_code"] for r in rows] == [502, 200]
    assert rows[0]["error"].startswith("upstream error")


def test_stray_bytes_after_an_answer_do_not_poison_the_pool(tmp_path: Path) -> None:
    """An upstream that sends more than its Content-Length: that connection must not carry the next request."""
    sink = MemorySink()

    async def scenario() -> list[tuple[int, bytes]]:
        handler = _scripted(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
        )
        async with raw_upstream(handler) as url, sidecar(url, tmp_path, sink=sink) as car:
            async with aiohttp.ClientSession() as s:
                got = []
                for _ in range(3):
                    async with s.get(f"http://127.0.0.1:{car.port}/x") as r:
                        got.append((r.status, await r.read()))
                return got

    assert run(scenario()) == [(200, b"ok"), (200, b"next"), (200, b"next")]
    assert [r["status_code"] for r in records(sink)] == [200, 200, 200]


def test_interim_1xx_answers_are_not_taken_for_the_final_one(tmp_path: Path) -> None:
    async def scenario() -> list[tuple[int, bytes, str | None]]:
        handler = _scripted(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nX-Final: yes\r\n\r\ndone"
        )
        async with raw_upstream(handler) as url, sidecar(url, tmp_path) as car, aiohttp.ClientSession() as s:
            got = []
            for _ in range(3):
                async with s.post(f"http://127.0.0.1:{car.port}/x", data=b"in") as r:
                    got.append((r.status, await r.read(), r.headers.get("X-Final")))
            return got

    assert run(scenario()) == [(201, b"done", "yes")] * 3


def test_no_content_answers_keep_the_upstream_connection(tmp_path: Path) -> None:
    sink = MemorySink()
    peers: set[object] = set()

    async def no_content(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        if request.path == "/304":
            return web.Response(status=304, headers={"ETag": '"x"'})
        return web.Response(status=204)

    async def scenario() -> list[tuple[int, bytes, str | None]]:
        async with upstream({"/{tail:.*}": no_content}) as url, sidecar(url, tmp_path, sink=sink) as car:
            async with aiohttp.ClientSession() as s:
                got = []
                for i in range(10):
                    async with s.get(f"http://127.0.0.1:{car.port}/{204 if i % 2 else 304}") as r:
                        got.append((r.status, await r.read(), r.headers.get("Content-Length")))
                return got

    got = run(scenario())
    assert [g[0] for g in got] == [304, 204] * 5
    assert all(g[1] == b"" for g in got)
    assert all(g[2] is None for g in got if g[0] == 204)  # RFC 9110 section 8.6: no Content-Length in a 204
    assert len(peers) == 1  # each answer released its connection to the pool
    assert len(records(sink)) == 10


def test_upstream_timeout_while_streaming_cuts_the_client_and_is_captured(tmp_path: Path) -> None:
    sink = MemorySink()
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"partial")
        await release.wait()
        return resp

    async def scenario() -> tuple[bytes, type[BaseException] | None]:
        async with upstream({"/{tail:.*}": stall}) as url:
            try:
                async with (
                    sidecar(url, tmp_path, sink=sink, upstream_timeout_s=0.3) as car,
                    aiohttp.ClientSession() as s,
                    s.get(f"http://127.0.0.1:{car.port}/s") as r,
                ):
                    first = await r.content.readexactly(7)
                    try:
                        await r.read()
                    except aiohttp.ClientPayloadError as exc:
                        return first, type(exc)
                    return first, None
            finally:
                release.set()

    first, error = run(scenario())
    assert first == b"partial"
    assert error is aiohttp.ClientPayloadError  # a cut body is never presented as a whole one
    [row] = records(sink)
    assert row["status_code"] == 200
    assert "upstream stream broken" in row["error"]
    assert "sent nothing" in row["error"]


def test_read_timeout_is_per_chunk_not_per_stream(tmp_path: Path) -> None:
    sink = MemorySink()

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(12):
            await resp.write(b"%d;" % i)
            await asyncio.sleep(0.05)  # pacing of the upstream, 0.6 s in all, well over the 0.3 s read timeout
        await resp.write_eof()
        return resp

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": trickle}) as url:
            async with sidecar(url, tmp_path, sink=sink, upstream_timeout_s=0.3) as car, aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{car.port}/t") as r:
                    return await r.read()

    assert run(scenario()) == b"".join(b"%d;" % i for i in range(12))
    assert [(r["status_code"], r["error"]) for r in records(sink)] == [(200, None)]


# --- clients that go away --------------------------------------------------------------------------------------
def test_client_gone_mid_request_body_is_captured_and_does_not_hold_shutdown(tmp_path: Path) -> None:
    sink, counter = MemorySink(), Counter()

    async def scenario() -> bool:
        async with upstream({"/{tail:.*}": counter.handle}) as url, started(url, tmp_path, sink) as car:
            _, writer = await asyncio.open_connection("127.0.0.1", car.port)
            writer.write(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            await until(lambda: any(c.current and c.current.size == 10 for c in car.proxy_config.connections))
            draining = asyncio.create_task(car.proxy_config.drain(60))
            await asyncio.sleep(0)  # let the drain start waiting on the unfinished request
            writer.close()
            finished = await asyncio.wait_for(draining, 10)  # the disconnect ends the wait, not the 60 s
            assert await asyncio.wait_for(car.stop(grace_s=60), 20) == 0
            return finished

    assert run(scenario()) is True
    assert counter.hits == 0
    [row] = records(sink)
    assert row["status_code"] == 499
    assert "client disconnected" in row["error"]


def test_client_gone_while_the_upstream_works(tmp_path: Path) -> None:
    """The answer is still captured (marked), the upstream connection is reused, nothing is left running."""
    sink = MemorySink()
    entered, release = asyncio.Event(), asyncio.Event()
    peers: set[object] = set()

    async def slow(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        if request.path == "/slow":
            entered.set()
            await asyncio.wait_for(release.wait(), 10)
        return web.Response(body=b"answer")

    async def scenario() -> tuple[int, bytes]:
        async with upstream({"/{tail:.*}": slow}) as url:
            async with started(url, tmp_path, sink) as car:
                _, writer = await asyncio.open_connection("127.0.0.1", car.port)
                writer.write(
                    b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /queued HTTP/1.1\r\nHost: x\r\nX-Request-Id: q\r\n\r\n"
                )
                await asyncio.wait_for(entered.wait(), 10)
                writer.close()
                await until(lambda: not car.proxy_config.connections)
                release.set()
                assert await asyncio.wait_for(car.proxy_config.drain(10), 15)
                async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{car.port}/after") as r:
                    got = (r.status, await r.read())
                await car.stop()
            leftover = [t for t in asyncio.all_tasks() if "ClientConnection" in repr(t.get_coro())]
            assert leftover == []  # no answering task of the proxy is left behind
            return got

    assert run(scenario()) == (200, b"answer")
    assert len(peers) == 1
    rows = {r["path"]: r for r in records(sink)}
    assert rows["/slow"]["status_code"] == 499  # the client never saw the 200: nginx's "client closed request"
    assert rows["/slow"]["error"] == "client disconnected before the answer was complete; the upstream answered 200"
    assert rows["/queued"]["status_code"] == 499  # received, never forwarded
    assert rows["/after"]["error"] is None


def test_client_gone_mid_stream_releases_the_upstream_at_once(tmp_path: Path) -> None:
    sink = MemorySink()
    upstream_saw_close = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ntoken\r\n")
        await writer.drain()
        assert await reader.read() == b""  # the next token is "never" ready: only the proxy closing ends this
        upstream_saw_close.set()

    async def scenario() -> None:
        async with raw_upstream(endless) as url, sidecar(url, tmp_path, sink=sink) as car:
            reader, writer = await asyncio.open_connection("127.0.0.1", car.port)
            writer.write(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            await read_head(reader)
            assert await reader.readuntil(b"token\r\n") == b"5\r\ntoken\r\n"
            writer.close()
            await asyncio.wait_for(upstream_saw_close.wait(), 10)  # not the 60 s read timeout
            assert await asyncio.wait_for(car.proxy_config.drain(10), 15)

    run(scenario())
    [row] = records(sink)
    assert row["status_code"] == 499
    assert row["error"] == "client disconnected before the answer was complete; the upstream answered 200"


# --- slow clients and load -----------------------------------------------------------------------------------
def test_slow_client_pauses_the_upstream_instead_of_buffering(tmp_path: Path) -> None:
    """The client reads nothing for a while: the proxy must stop reading the upstream, not buffer its stream."""
    sink = MemorySink()
    piece = bytes(range(256)) * 1024  # 256 kB
    pieces = 256  # 64 MB in all
    period = piece * 3
    done_writing = asyncio.Event()

    async def firehose(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(pieces):
            await resp.write(piece)
        done_writing.set()
        await resp.write_eof()
        return resp

    async def scenario() -> tuple[int, int]:
        async with upstream({"/{tail:.*}": firehose}) as url:
            async with sidecar(url, tmp_path, sink=sink, upstream_timeout_s=0.5) as car:
                reader, writer = await asyncio.open_connection("127.0.0.1", car.port, limit=64 * 1024)
                writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                await read_head(reader)

                def paused() -> bool:
                    return any(c.upstream is not None and c.upstream.paused for c in car.proxy_config.connections)

                polled = asyncio.create_task(until(paused, 20))
                finished = asyncio.create_task(done_writing.wait())
                await asyncio.wait({polled, finished}, return_when=asyncio.FIRST_COMPLETED)
                finished.cancel()
                assert polled.done(), "the upstream wrote it all: the proxy buffered it"
                assert not polled.exception()
                [conn] = car.proxy_config.connections
                assert conn.upstream is not None
                assert conn.transport is not None
                held = conn.upstream.buffered + conn.transport.get_write_buffer_size()
                await asyncio.sleep(1.0)  # the client stays slow for twice the upstream read timeout
                size = 0
                while True:
                    line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
                    n = int(line[:-2], 16)
                    data = await reader.readexactly(n + 2)
                    assert data[:-2] == period[size % 256 :][:n]  # every byte in place: byte i is i % 256
                    size += n
                    if n == 0:
                        break
                writer.close()
                return held, size

    held, size = run(scenario())
    assert held < 4 * 1024 * 1024
    assert size == len(piece) * pieces
    [row] = records(sink)
    assert (row["status_code"], row["error"]) == (200, None)


def test_many_concurrent_keepalive_connections_with_pipelining(tmp_path: Path) -> None:
    sink, counter = MemorySink(), Counter()
    clients, per_client = 500, 4

    async def client(port: int, i: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        batch = b"".join(
            b"POST /c%d/r%d HTTP/1.1\r\nHost: x\r\nX-Request-Id: %d-%d\r\nContent-Length: 1\r\n%s\r\n%d"
            % (i, j, i, j, b"Connection: close\r\n" if j == per_client - 1 else b"", j)
            for j in range(per_client)
        )
        writer.write(batch[: len(batch) // 2])  # requests split across writes, and pipelined
        await writer.drain()
        writer.write(batch[len(batch) // 2 :])
        got = [(await read_response(reader))[1][b"x-path"] for _ in range(per_client)]
        assert await reader.read() == b""
        writer.close()
        return got

    async def scenario() -> list[list[bytes]]:
        async with upstream({"/{tail:.*}": counter.handle}) as url, sidecar(url, tmp_path, sink=sink) as car:
            return await asyncio.wait_for(asyncio.gather(*(client(car.port, i) for i in range(clients))), 120)

    answers = run(scenario())
    assert answers == [[b"/c%d/r%d" % (i, j) for j in range(per_client)] for i in range(clients)]
    table = sink.table()
    assert table.num_rows == clients * per_client == counter.hits
    assert set(table.column("request_id").to_pylist()) == {
        f"{i}-{j}" for i in range(clients) for j in range(per_client)
    }


def test_graceful_stop_finishes_in_flight_requests(tmp_path: Path) -> None:
    sink = MemorySink()
    n = 5
    entered = 0
    all_in, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        nonlocal entered
        entered += 1
        if entered == n:
            all_in.set()
        await asyncio.wait_for(release.wait(), 10)
        return web.Response(body=b"late but whole")

    async def scenario() -> tuple[list[tuple[int, bytes]], int]:
        async with upstream({"/{tail:.*}": slow}) as url, started(url, tmp_path, sink) as car:
            async with aiohttp.ClientSession() as s:

                async def get(i: int) -> tuple[int, bytes]:
                    async with s.get(f"http://127.0.0.1:{car.port}/v2/models/m{i}/infer") as r:
                        return r.status, await r.read()

                requests = [asyncio.create_task(get(i)) for i in range(n)]
                await asyncio.wait_for(all_in.wait(), 10)
                stopping = asyncio.create_task(car.stop(grace_s=30))
                await until(lambda: not car.frontend.accepting)
                with pytest.raises(aiohttp.ClientConnectionError):  # no new connections once stopping
                    async with aiohttp.ClientSession() as fresh:
                        await fresh.get(f"http://127.0.0.1:{car.port}/late")
                release.set()
                answers = await asyncio.wait_for(asyncio.gather(*requests), 10)
                left = await asyncio.wait_for(stopping, 30)
                return answers, left

    answers, left = run(scenario())
    assert answers == [(200, b"late but whole")] * n
    assert left == 0
    assert sorted(r["path"] for r in records(sink)) == [f"/v2/models/m{i}/infer" for i in range(n)]
