"""A sidecar configured with INFERTAP_SINK=s3: records go through the spool to a real S3 endpoint (moto)."""

from __future__ import annotations

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
