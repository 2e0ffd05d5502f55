"""An https upstream: the proxy verifies its certificate against INFERTAP_UPSTREAM_CA_FILE."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infertap.logger.sinks.memory import MemorySink
from tests.integration.proxy_fixtures import run, sidecar


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "infertap-test-upstream")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "upstream.pem", directory / "upstream.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def _answer(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [1]}]})


def _scenario(tmp_path: Path, ca_file: Path | None, sink: MemorySink) -> tuple[int, int]:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def scenario() -> tuple[int, int]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", _answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        url = f"https://127.0.0.1:{runner.addresses[0][1]}"
        try:
            extra = {"upstream_ca_file": cert if ca_file is not None else None}
            async with sidecar(url, tmp_path / "out", sink=sink, **extra) as car, aiohttp.ClientSession() as s:
                async with s.post(f"http://127.0.0.1:{car.port}/v2/models/m/infer", data=b"{}") as r:
                    status = r.status
                async with s.get(f"http://127.0.0.1:{car.admin_port}/readyz") as r:
                    return status, r.status
        finally:
            await runner.cleanup()

    result: tuple[int, int] = run(scenario())
    return result


def test_https_upstream_verified_with_ca_file(tmp_path: Path) -> None:
    sink = MemorySink()
    assert _scenario(tmp_path, tmp_path / "upstream.pem", sink) == (200, 200)
    assert sink.table().column("status_code").to_pylist() == [200]


def test_https_upstream_with_unknown_certificate_is_502(tmp_path: Path) -> None:
    sink = MemorySink()
    assert _scenario(tmp_path, None, sink) == (502, 503)
    assert "CERTIFICATE_VERIFY_FAILED" in sink.table().column("error")[0].as_py()
