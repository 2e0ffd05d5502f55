"""Fuzz targets of the HTTP/1.1 framing: the proxy's request parsing (a real in-process sidecar in front of a real
upstream on loopback, fed arbitrary bytes over TCP) and the header rules of ``logger/http1.py``.

Properties: every answer is well-formed HTTP/1.1 with a status the proxy may send; no exception reaches the event
loop; the sidecar keeps serving a valid request after each example (a hang of the proxy fails that request, and
pytest-timeout bounds the whole run).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httptools
import pytest
import uvloop
from aiohttp import web
from hypothesis import example, given
from hypothesis import strategies as st

from infertap.logger import http1
from infertap.logger.config import ProxySettings
from infertap.logger.server import Sidecar
from infertap.logger.sinks.memory import MemorySink

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
#: Status codes a client may see: the upstream's answers are relayed as they are (aiohttp's 400/404 for odd
#: targets included), the proxy's own are 400, 413, 431, 501, 502 and 504.
ALLOWED = set(range(100, 600))
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789!#$%&'*+.^`|~", min_size=1, max_size=12)
FIELD = st.tuples(
    st.one_of(TOKEN, st.sampled_from(["Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Host",
                                      "Expect", "Inference-Header-Content-Length", "TE", "Trailer"])),
    st.one_of(st.text(max_size=16), st.sampled_from(["chunked", "close", "keep-alive", "100-continue", "h2c",
                                                     "0", "5", "-1", "gzip, chunked", "99999999999999999999"])),
)  # fmt: skip


@st.composite
def request_bytes(draw: st.DrawFn) -> bytes:
    """One or more requests: a plausible request line and header block, a body, mutated at random."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS", "CONNECT", "PRI", "G\x00T", ""]))
    target = draw(st.sampled_from(["/", "/v2/models/m/infer", "/v1/models/m:predict", "*", "http://x/", "/%zz"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1x", ""]))
    fields = draw(st.lists(FIELD, max_size=6))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    raw = head.encode("utf-8", "surrogateescape") + draw(st.binary(max_size=64))
    if draw(st.booleans()):  # flip, insert or cut bytes
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            op = draw(st.sampled_from(["flip", "insert", "cut"]))
            if op == "flip":
                data[i] ^= draw(st.integers(1, 255))
            elif op == "insert":
                data[i:i] = draw(st.sampled_from([b"\r\n", b"\n", b"\x00", b":", b" ", b"\r\n\r\n"]))
            else:
                del data[i : i + draw(st.integers(1, 8))]
        raw = bytes(data)
    return raw * draw(st.integers(1, 2))


class _Running:
    """A sidecar and its upstream on an event loop in a thread of their own (the sidecar's, uvloop)."""

    def __init__(self, out: Path) -> None:
        self.loop = uvloop.new_event_loop()
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self._call(self._start(out))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _start(self, out: Path) -> int:
        async def echo(request: web.Request) -> web.Response:
            return web.Response(body=await request.read())

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", echo)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        upstream = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        conf = ProxySettings(upstream_url=upstream, listen_host="127.0.0.1", listen_port=0, admin_port=0,
                             output_dir=out, pod_name="fuzz", upstream_timeout_s=5.0)  # fmt: skip
        self.sidecar = Sidecar(conf, sink=MemorySink())
        await self.sidecar.start()
        return self.sidecar.port

    def close(self) -> None:
        async def stop() -> None:
            await self.sidecar.stop(grace_s=10)
            await self.runner.cleanup()

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Running]:
    car = _Running(tmp_path_factory.mktemp("fuzz-proxy"))
    yield car
    car.close()
    assert not car.errors, car.errors


def _exchange(port: int, data: bytes, quiet_s: float = 0.5) -> bytes:
    """Send ``data`` and read what comes back until the proxy closes or stays quiet for ``quiet_s``.

    Quiet is not a failure: an incomplete request is rightly waited on. The client does not half-close: the proxy
    closes a connection on the client's end of stream (asyncio's default), answers still owed included.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the proxy answered and closed first
            s.sendall(data)
        s.settimeout(quiet_s)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@given(data=request_bytes())
@example(data=b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
@example(data=b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n")
@example(data=b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nGET / HTTP/1.1\r\n\r\n")
@example(data=b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n")
def test_proxy_request_parsing(running: _Running, data: bytes) -> None:
    answer = _exchange(running.port, data)
    if answer:
        assert answer.startswith(b"HTTP/1.1 "), answer[:200]
        codes = {int(code) for code in STATUS_LINE.findall(answer)}
        assert codes, answer[:500]
        assert codes <= ALLOWED, answer[:500]
    assert not running.errors, running.errors
    healthy = _exchange(running.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10.0)
    assert healthy.startswith(b"HTTP/1.1 200 "), healthy[:200]


class _Head:
    """httptools callbacks collecting a parsed head."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


HEADER_NAME = TOKEN.map(str.encode)
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16).map(str.encode)


@given(
    st.lists(st.tuples(st.one_of(HEADER_NAME, st.sampled_from(sorted(http1.HOP_BY_HOP))), HEADER_VALUE), max_size=8),
    st.sampled_from([b"GET", b"POST"]),
)
def test_forwarded_heads_parse_back_without_hop_by_hop_fields(
    headers: list[tuple[bytes, bytes]], method: bytes
) -> None:
    kept = http1.forwardable(headers)
    assert not {n.lower() for n, _ in kept} & (http1.HOP_BY_HOP | {b"content-length"})
    head = http1.request_head(method, b"/v2/models/m/infer", kept)
    parsed = _Head()
    httptools.HttpRequestParser(parsed).feed_data(head)
    assert parsed.url == b"/v2/models/m/infer"
    assert parsed.headers == kept


@given(st.binary(max_size=4096))
def test_chunks_parse_back(body: bytes) -> None:
    got = bytearray()

    class Sink:
        def on_body(self, data: bytes) -> None:
            got.extend(data)

    parser = httptools.HttpResponseParser(Sink())
    parser.feed_data(http1.response_head(200, [(b"Transfer-Encoding", b"chunked")]))
    halves = [half for half in (body[: len(body) // 2], body[len(body) // 2 :]) if half]  # b"" is the last chunk
    parser.feed_data(b"".join(http1.chunk(half) for half in halves) + http1.chunk(b""))
    assert bytes(got) == body
