"""The sidecar proxy against a real HTTP upstream on loopback: pass-through, errors, streaming, capture, metrics."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from infertap.demo.processes import free_port
from infertap.logger import record
from infertap.logger.config import ProxySettings
from infertap.logger.server import Sidecar
from infertap.logger.sinks.memory import MemorySink
from tests.integration.proxy_fixtures import raw as send_raw
from tests.integration.proxy_fixtures import run, sidecar, upstream

V2_REQUEST = b'{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}]}'
V2_RESPONSE = {"model_name": "iris", "outputs": [{"name": "y", "shape": [2], "datatype": "INT64", "data": [0, 1]}]}


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "body": body.decode(),
            "headers": {k.lower(): v for k, v in request.headers.items()},
        },
        status=int(request.query.get("status", "200")),
        headers={"X-Upstream": "yes", "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1"},
    )


async def _infer(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response(V2_RESPONSE)


def test_passes_method_path_query_body_headers_and_status(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> None:
        async with upstream({"/{tail:.*}": _echo}) as url, sidecar(url, tmp_path, sink=sink) as car:
            async with (
                aiohttp.ClientSession() as s,
                s.put(
                    f"http://127.0.0.1:{car.port}/some/path?a=1&b=two&status=418",
                    data=b"hello",
                    headers={"X-Custom": "kept", "Keep-Alive": "timeout=5", "X-Request-Id": "rid-1"},
                ) as r,
            ):
                seen = await r.json(content_type=None)
                assert r.status == 418
                assert r.headers["X-Upstream"] == "yes"
                assert r.headers["X-Request-Id"] == "rid-1"
                assert "X-Secret-Hop" not in r.headers  # listed in Connection: hop-by-hop
        assert seen["method"] == "PUT"
        assert seen["path"] == "/some/path"
        assert seen["query"] == "a=1&b=two&status=418"
        assert seen["body"] == "hello"
        assert seen["headers"]["x-custom"] == "kept"
        assert seen["headers"]["x-request-id"] == "rid-1"
        assert "keep-alive" not in seen["headers"]

    run(scenario())
    table = sink.table()
    assert table.column("status_code").to_pylist() == [418]  # non-2xx captured like any other
    assert table.column("request_id").to_pylist() == ["rid-1"]


def test_generates_request_id_when_absent(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> str:
        async with upstream({"/{tail:.*}": _echo}) as url, sidecar(url, tmp_path, sink=sink) as car:
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{car.port}/x") as r:
                seen = await r.json(content_type=None)
                assert seen["headers"]["x-request-id"] == r.headers["X-Request-Id"]
                return str(r.headers["X-Request-Id"])

    rid = run(scenario())
    assert len(rid) == 32
    assert sink.table().column("request_id").to_pylist() == [rid]


def test_decodes_v2_and_writes_parquet(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with upstream({"/v2/models/iris/infer": _infer}) as url, sidecar(url, tmp_path) as car:
            async with aiohttp.ClientSession() as s:
                for _ in range(3):
                    async with s.post(f"http://127.0.0.1:{car.port}/v2/models/iris/infer", data=V2_REQUEST) as r:
                        assert r.status == 200
                        assert await r.json() == V2_RESPONSE

    run(scenario())
    files = sorted(tmp_path.rglob("*.parquet"))
    assert len(files) == 1
    assert files[0].parent.parent.parent.name == "model=iris"
    assert not list(tmp_path.rglob("*.tmp"))
    table = pq.read_table(files[0])
    record.check_schema(table.schema)
    assert table.num_rows == 3
    assert record.instances(table.column("input.x")).tolist() == [[1, 2, 3], [4, 5, 6]] * 3
    assert record.instances(table.column("output.y")).reshape(-1).tolist() == [0, 1] * 3
    assert table.column("protocol").to_pylist() == ["v2"] * 3
    assert all(t > u > 0 for t, u in zip(table.column("total_latency_s").to_pylist(),
                                         table.column("upstream_latency_s").to_pylist(), strict=True))  # fmt: skip


def test_body_over_limit_is_413_and_captured(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> None:
        async with (
            upstream({"/{tail:.*}": _echo}) as url,
            sidecar(url, tmp_path, sink=sink, max_body_bytes=100) as car,
            aiohttp.ClientSession() as s,
        ):
            async with s.post(f"http://127.0.0.1:{car.port}/v2/models/m/infer", data=b"x" * 101) as r:
                assert r.status == 413

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(5):
                    yield b"y" * 50

            async with s.post(f"http://127.0.0.1:{car.port}/v2/models/m/infer", data=chunks()) as r:
                assert r.status == 413

    run(scenario())
    table = sink.table()
    assert table.column("status_code").to_pylist() == [413, 413]
    assert all("exceeds" in e for e in table.column("error").to_pylist())


def test_unreachable_upstream_is_502_and_captured(tmp_path: Path) -> None:
    sink = MemorySink()
    dead = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with sidecar(dead, tmp_path, sink=sink) as car, aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{car.port}/v2/models/m/infer", data=V2_REQUEST) as r:
                assert r.status == 502
            async with s.get(f"http://127.0.0.1:{car.admin_port}/readyz") as r:
                assert r.status == 503  # readiness follows the upstream
            async with s.get(f"http://127.0.0.1:{car.admin_port}/livez") as r:
                assert r.status == 200

    run(scenario())
    table = sink.table()
    assert table.column("status_code").to_pylist() == [502]
    assert "upstream error" in table.column("error")[0].as_py()
    # the request was still decoded: a 502 record keeps its inputs
    assert record.instances(table.column("input.x")).shape == (2, 3)


def test_upstream_timeout_is_504_and_captured(tmp_path: Path) -> None:
    sink = MemorySink()
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    async def scenario() -> None:
        async with upstream({"/{tail:.*}": stall}) as url:
            async with sidecar(url, tmp_path, sink=sink, upstream_timeout_s=0.2) as car, aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{car.port}/slow") as r:
                    assert r.status == 504
            release.set()

    run(scenario())
    assert sink.table().column("status_code").to_pylist() == [504]


def test_streamed_response_is_relayed_before_it_ends(tmp_path: Path) -> None:
    """The client reads the first event while the upstream still holds the second back."""
    sink = MemorySink()
    first_read = asyncio.Event()

    async def sse(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: one\n\n")
        await asyncio.wait_for(first_read.wait(), 10)  # only the proxy relaying chunk 1 lets this go on
        await resp.write(b"data: two\n\n" + b"z" * 100)
        await resp.write_eof()
        return resp

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": sse}) as url:
            async with sidecar(url, tmp_path, sink=sink, max_capture_bytes=30) as car, aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{car.port}/v1/chat") as r:
                    first = await r.content.readuntil(b"\n\n")
                    assert first == b"data: one\n\n"
                    first_read.set()
                    rest = await r.read()
                    return first + rest

    body = run(scenario())
    assert body.startswith(b"data: one\n\ndata: two\n\n")
    assert len(body) == 122
    table = sink.table()
    assert table.column("response_bytes").to_pylist() == [122]
    assert table.column("response_truncated").to_pylist() == [True]


def test_secret_headers_never_written(tmp_path: Path) -> None:
    secret = "s3cr3t-token-value-4242"

    async def scenario() -> None:
        async with upstream({"/v2/models/iris/infer": _infer}) as url:
            async with (
                sidecar(url, tmp_path, header_allowlist=["authorization", "cookie", "x-api-key", "x-custom"],
                        keep_raw_bodies=True) as car,
                aiohttp.ClientSession() as s,
            ):  # fmt: skip
                headers = {
                    "Authorization": f"Bearer {secret}",
                    "Proxy-Authorization": secret,
                    "Cookie": f"session={secret}",
                    "X-Api-Key": secret,
                    "X-Custom": "visible",
                }
                async with s.post(
                    f"http://127.0.0.1:{car.port}/v2/models/iris/infer", data=V2_REQUEST, headers=headers
                ) as r:
                    assert r.status == 200

    run(scenario())
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    table = pq.read_table(next(tmp_path.rglob("*.parquet")))
    assert dict(table.column("request_headers")[0].as_py())["x-custom"] == "visible"


def test_full_queue_drops_without_blocking_and_counts(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> tuple[int, str]:
        async with upstream({"/v2/models/iris/infer": _infer}) as url:
            async with sidecar(url, tmp_path, sink=sink, queue_max_records=1) as car:
                car.pipeline._stopping.set()  # the worker exits: nothing drains the queue
                car.pipeline._wake.set()  # (it sleeps until woken)
                car.pipeline._thread.join()  # type: ignore[union-attr]
                car.pipeline._stopping.clear()
                async with aiohttp.ClientSession() as s:
                    for _ in range(5):
                        async with s.post(f"http://127.0.0.1:{car.port}/v2/models/iris/infer", data=V2_REQUEST) as r:
                            assert r.status == 200
                    async with s.get(f"http://127.0.0.1:{car.admin_port}/metrics") as r:
                        text = await r.text()
                dropped = car.pipeline.dropped
                car.pipeline.start()  # drain the one queued exchange on stop
                return dropped, text

    dropped, text = run(scenario())
    assert dropped == 4
    assert 'infertap_capture_dropped_total{reason="queue_full"} 4.0' in text
    assert sink.table().num_rows == 1


@pytest.mark.parametrize("mode", ["request", "response"])
def test_capture_modes(tmp_path: Path, mode: str) -> None:
    sink = MemorySink()

    async def scenario() -> None:
        async with upstream({"/v2/models/iris/infer": _infer}) as url:
            async with sidecar(url, tmp_path, sink=sink, capture_mode=mode) as car, aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{car.port}/v2/models/iris/infer", data=V2_REQUEST) as r:
                    assert r.status == 200

    run(scenario())
    table = sink.table()
    assert ("input.x" in table.column_names) == (mode == "request")
    assert ("output.y" in table.column_names) == (mode == "response")
    assert table.column("capture_mode").to_pylist() == [mode]


def test_metrics_endpoint_names_and_values(tmp_path: Path) -> None:
    async def scenario() -> str:
        async with upstream({"/v2/models/iris/infer": _infer}) as url, sidecar(url, tmp_path) as car:
            async with aiohttp.ClientSession() as s:
                for body in (V2_REQUEST, b"{not json"):
                    async with s.post(f"http://127.0.0.1:{car.port}/v2/models/iris/infer", data=body) as r:
                        assert r.status == 200
                await asyncio.sleep(0)
                for _ in range(200):  # wait for the capture worker to decode both
                    if car.pipeline.queue_depth == 0 and car.metrics.captured._value.get() == 2:
                        break
                    await asyncio.sleep(0.02)
                async with s.get(f"http://127.0.0.1:{car.admin_port}/metrics") as r:
                    return await r.text()

    text = run(scenario())
    assert 'infertap_requests_total{code="200",endpoint="v2:infer",model="iris"} 2.0' in text
    assert 'infertap_request_duration_seconds_count{model="iris"} 2.0' in text
    assert 'infertap_upstream_duration_seconds_count{model="iris"} 2.0' in text
    assert 'infertap_request_size_bytes_sum{model="iris"}' in text
    assert 'infertap_capture_decode_errors_total{protocol="v2"} 1.0' in text
    assert "infertap_requests_in_flight 0.0" in text
    assert "infertap_capture_queue_capacity 10000.0" in text


def test_pipelined_requests_answered_in_order(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": _echo}) as url, sidecar(url, tmp_path, sink=sink) as car:
            return await send_raw(
                car.port,
                b"GET /first HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\r\n\r\n"
                b"POST /second HTTP/1.1\r\nHost: x\r\nX-Request-Id: b\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /third HTTP/1.1\r\nHost: x\r\nX-Request-Id: c\r\nConnection: close\r\n\r\n",
            )

    raw = run(scenario())
    assert raw.count(b"HTTP/1.1 200 OK") == 3
    assert raw.index(b'"/first"') < raw.index(b'"/second"') < raw.index(b'"/third"')
    assert sorted(sink.table().column("request_id").to_pylist()) == ["a", "b", "c"]


def test_absolute_form_target_never_reaches_another_host(tmp_path: Path) -> None:
    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": _echo}) as url, sidecar(url, tmp_path) as car:
            return await send_raw(
                car.port,
                b"GET http://evil.example:9/steal?x=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            )

    raw = run(scenario())
    assert b"HTTP/1.1 200 OK" in raw
    assert b'"path": "/steal"' in raw
    assert b'"query": "x=1"' in raw
    assert b'"host": "127.0.0.1:' in raw  # the upstream's own Host, not the request's


def test_chunked_request_body_and_expect_continue(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": _echo}) as url, sidecar(url, tmp_path, sink=sink) as car:
            return await send_raw(
                car.port,
                b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
                b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            )

    raw = run(scenario())
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert b'"body": "hello world"' in raw
    assert b"transfer-encoding" not in raw.split(b"\r\n\r\n", 2)[2].lower()  # re-framed with Content-Length
    assert sink.table().column("request_bytes").to_pylist() == [11]


def test_unparseable_request_is_400_and_captured(tmp_path: Path) -> None:
    sink = MemorySink()

    async def scenario() -> bytes:
        async with upstream({"/{tail:.*}": _echo}) as url, sidecar(url, tmp_path, sink=sink) as car:
            return await send_raw(car.port, b"GET /x HTTP/1.1\r\nBad Header Line\r\n\r\n")

    raw = run(scenario())
    assert raw.startswith(b"HTTP/1.1 400 ")
    table = sink.table()
    assert table.column("status_code").to_pylist() == [400]
    assert table.column("error")[0].as_py().startswith("bad request")


def test_head_and_body_until_close(tmp_path: Path) -> None:
    async def until_close(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.force_close()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"streamed body")
        await resp.write_eof()
        return resp

    async def scenario() -> tuple[int, str, int, str | None]:
        async with upstream({"/stream": until_close, "/{tail:.*}": _echo}) as url, sidecar(url, tmp_path) as car:
            async with aiohttp.ClientSession() as s:
                async with s.head(f"http://127.0.0.1:{car.port}/x") as r:
                    head_status, head_body = r.status, await r.text()
                async with s.get(f"http://127.0.0.1:{car.port}/stream") as r:
                    return head_status, head_body, r.status, await r.text()

    head_status, head_body, status, body = run(scenario())
    assert (head_status, head_body) == (200, "")
    assert (status, body) == (200, "streamed body")


def test_idle_upstream_connection_closed_by_upstream_is_retried(tmp_path: Path) -> None:
    """The upstream drops the idle keep-alive connection after each answer; no request may fail because of it."""
    served: list[web.Request] = []

    async def answer(request: web.Request) -> web.Response:
        served.append(request)
        return web.json_response({"n": len(served)})

    async def scenario() -> list[int]:
        async with upstream({"/{tail:.*}": answer}) as url, sidecar(url, tmp_path) as car:
            statuses = []
            async with aiohttp.ClientSession() as s:
                for _ in range(5):
                    async with s.get(f"http://127.0.0.1:{car.port}/x") as r:
                        statuses.append(r.status)
                    transport = served[-1].transport
                    assert transport is not None
                    transport.close()  # upstream side closes the now idle connection
            return statuses

    assert run(scenario()) == [200] * 5
    assert len(served) == 5  # each request reached the upstream exactly once


def test_upstream_connections_are_reused(tmp_path: Path) -> None:
    peers: set[object] = set()

    async def answer(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response(V2_RESPONSE)

    async def scenario() -> None:
        async with upstream({"/{tail:.*}": answer}) as url, sidecar(url, tmp_path) as car:
            async with aiohttp.ClientSession() as s:
                for _ in range(20):
                    async with s.post(f"http://127.0.0.1:{car.port}/v2/models/iris/infer", data=V2_REQUEST) as r:
                        assert r.status == 200

    run(scenario())
    assert len(peers) == 1  # one keep-alive connection carried all 20 requests


def test_large_response_is_streamed_with_its_length_and_captured_truncated(tmp_path: Path) -> None:
    sink = MemorySink()
    big = b"0123456789" * 10_000  # 100 kB, above the 1 kB capture cap below

    async def large(request: web.Request) -> web.Response:
        return web.Response(body=big, content_type="application/octet-stream")

    async def scenario() -> tuple[bytes, str | None, str | None]:
        async with upstream({"/{tail:.*}": large}) as url:
            async with sidecar(url, tmp_path, sink=sink, max_capture_bytes=1000) as car, aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{car.port}/big") as r:
                    return await r.read(), r.headers.get("Content-Length"), r.headers.get("Transfer-Encoding")

    body, length, encoding = run(scenario())
    assert body == big
    assert (length, encoding) == (str(len(big)), None)
    table = sink.table()
    assert table.column("response_bytes").to_pylist() == [len(big)]
    assert table.column("response_truncated").to_pylist() == [True]


def test_metrics_exposition_passes_promtool(tmp_path: Path) -> None:
    """Prometheus' own linter accepts every metric the sidecar exposes (names, units, help, types)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test-deps` installs Debian's prometheus package"

    async def scenario() -> str:
        async with upstream({"/v2/models/iris/infer": _infer}) as url, sidecar(url, tmp_path) as car:
            async with aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{car.port}/v2/models/iris/infer", data=V2_REQUEST) as r:
                    assert r.status == 200
                async with s.get(f"http://127.0.0.1:{car.admin_port}/metrics") as r:
                    return await r.text()

    text = run(scenario())
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "infertap_requests_total" in text


def test_stop_gives_up_on_requests_past_the_grace_period_and_captures_them(tmp_path: Path) -> None:
    sink = MemorySink()
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="late")

    async def scenario() -> int:
        async with upstream({"/{tail:.*}": stall}) as url:
            conf = ProxySettings(upstream_url=url, listen_host="127.0.0.1", listen_port=0, admin_port=0, pod_name="p")
            car = Sidecar(conf, sink=sink)
            await car.start()
            async with aiohttp.ClientSession() as s:
                pending = asyncio.ensure_future(s.get(f"http://127.0.0.1:{car.port}/slow"))
                await asyncio.wait_for(arrived.wait(), 10)
                left = await car.stop(grace_s=0.2)
                with pytest.raises(aiohttp.ClientError):
                    await pending
            release.set()
            return left

    assert run(scenario()) == 0
    table = sink.table()
    assert table.column("status_code").to_pylist() == [499]
    assert table.column("error").to_pylist() == ["sidecar shut down before the answer was complete"]
