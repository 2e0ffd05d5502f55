"""A sidecar configured with INFERTAP_SINK=s3: records go through the spool to a real S3 endpoint (moto)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from infertap.logger import record
from infertap.logger.config import ProxySettings
from infertap.logger.server import Sidecar
from infertap.logger.sinks.spooled import SpooledSink
from tests.integration.proxy_fixtures import run, upstream
from tests.integration.sinks.components import S3Endpoint, s3_keys, s3_table

BODY = b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP64","data":[0.5,1.5]}]}'


async def _infer(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [1]}]})


def test_records_reach_s3_through_the_spool(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "INFERTAP_S3_BUCKET": s3_bucket,
        "INFERTAP_S3_PREFIX": "captures",
        "INFERTAP_S3_ENDPOINT_URL": s3_endpoint.url,
        "INFERTAP_S3_REGION": s3_endpoint.region,
        "INFERTAP_S3_FORCE_PATH_STYLE": "true",
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_access_key,
        "INFERTAP_SPOOL_DIR": str(tmp_path / "spool"),
    }.items():
        monkeypatch.setenv(key, value)

    async def scenario() -> tuple[Sidecar, str]:
        async with upstream({"/v2/models/m/infer": _infer}) as url:
            conf = ProxySettings(
                upstream_url=url, listen_host="127.0.0.1", listen_port=0, admin_port=0, sink="s3", pod_name="pod-a"
            )
            car = Sidecar(conf)
            await car.start()
            async with aiohttp.ClientSession() as s:
                for i in range(40):
                    headers = {"X-Request-Id": f"r{i}"}
                    async with s.post(
                        f"http://127.0.0.1:{car.port}/v2/models/m/infer", data=BODY, headers=headers
                    ) as r:
                        assert r.status == 200
                async with s.get(f"http://127.0.0.1:{car.admin_port}/metrics") as r:
                    text = await r.text()
            assert await car.stop() == 0
            return car, text

    car, text = run(scenario())
    assert "infertap_spool_records" in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test-deps` installs it"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert isinstance(car.sink, SpooledSink)
    assert car.sink.last_report is not None
    assert car.sink.last_report.records_left == 0
    keys = s3_keys(s3_endpoint, s3_bucket, "captures/")
    assert keys
    assert all(k.startswith("captures/model=m/date=") for k in keys)
    table = s3_table(s3_endpoint, s3_bucket, "captures/")
    assert table is not None
    assert sorted(table.column("request_id").to_pylist()) == sorted(f"r{i}" for i in range(40))
    assert record.instances(table.column("input.x")).shape == (40, 2)


async def _serve_requests(conf: ProxySettings, n: int) -> tuple[Sidecar, str, list[int]]:
    car = Sidecar(conf)
    await car.start()
    statuses = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            url = f"http://127.0.0.1:{car.port}/v2/models/m/infer"
            async with s.post(url, data=BODY, headers={"X-Request-Id": f"r{i}"}) as r:
                statuses.append(r.status)
        async with s.get(f"http://127.0.0.1:{car.admin_port}/metrics") as r:
            text = await r.text()
    assert await car.stop() == 0
    return car, text, statuses


def _s3_env(monkeypatch: pytest.MonkeyPatch, endpoint_url: str, bucket: str, spool_dir: Path) -> None:
    for key, value in {
        "INFERTAP_S3_BUCKET": bucket,
        "INFERTAP_S3_ENDPOINT_URL": endpoint_url,
        "INFERTAP_S3_REGION": "us-east-1",
        "INFERTAP_S3_FORCE_PATH_STYLE": "true",
        "INFERTAP_S3_MAX_ATTEMPTS": "1",
        "INFERTAP_S3_CONNECT_TIMEOUT_S": "1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "INFERTAP_SPOOL_DIR": str(spool_dir),
        "INFERTAP_SPOOL_DRAIN_TIMEOUT_S": "0.5",
    }.items():
        monkeypatch.setenv(key, value)


def test_unusable_spool_does_not_stop_the_proxy(
    tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "spool"
    blocker.write_text("a file where the spool directory should be")
    _s3_env(monkeypatch, s3_endpoint.url, s3_bucket, blocker)

    async def scenario() -> tuple[Sidecar, str, list[int]]:
        async with upstream({"/v2/models/m/infer": _infer}) as url:
            conf = ProxySettings(upstream_url=url, listen_host="127.0.0.1", listen_port=0, admin_port=0, sink="s3")
            return await _serve_requests(conf, 5)

    _car, text, statuses = run(scenario())
    assert statuses == [200] * 5  # inference does not depend on capture
    assert 'infertap_spool_up{sink="s3"} 0.0' in text
    assert 'infertap_sink_up{sink="s3"} 0.0' in text


def test_sigterm_reports_records_left_in_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.integration.sinks.components import free_port

    _s3_env(monkeypatch, f"http://127.0.0.1:{free_port()}", "unreachable", tmp_path / "spool")

    async def scenario() -> tuple[Sidecar, str, list[int]]:
        async with upstream({"/v2/models/m/infer": _infer}) as url:
            conf = ProxySettings(upstream_url=url, listen_host="127.0.0.1", listen_port=0, admin_port=0, sink="s3")
            return await _serve_requests(conf, 10)

    with caplog.at_level(logging.INFO, logger="infertap.logger.server"):
        car, _text, statuses = run(scenario())
    assert statuses == [200] * 10
    assert isinstance(car.sink, SpooledSink)
    assert car.sink.last_report is not None
    assert car.sink.last_report.records_left == 10
    messages = [r.getMessage() for r in caplog.records if r.name == "infertap.logger.server"]
    assert any("10 records stay in the spool" in m for m in messages), messages
    assert not any("every record written" in m for m in messages)
