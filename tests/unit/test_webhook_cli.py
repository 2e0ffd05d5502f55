"""``infertap webhook``: bad settings and unloadable certificates exit 2 with one line; the manifest's shape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infertap.logger.webhook.manifests import webhook_configuration
from infertap.logger.webhook.tls import ReloadingCertificate
from tests.integration.webhook.cluster import CertificateAuthority

INFERTAP = Path(sys.executable).parent / "infertap"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFERTAP_")}
    return subprocess.run(
        [str(INFERTAP), "webhook", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_invalid_setting_exits_2_with_one_line() -> None:
    done = _run({"INFERTAP_WEBHOOK_PORT": "not-a-port"})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "invalid settings: INFERTAP_WEBHOOK_PORT: " in done.stderr


def test_missing_certificate_exits_2_with_one_line(tmp_path: Path) -> None:
    done = _run({}, "--cert-file", str(tmp_path / "nope.crt"), "--key-file", str(tmp_path / "nope.key"))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "infertap webhook:" in line]
    assert len(lines) == 1
    assert "cannot load the serving certificate" in lines[0]


def test_certificate_reload_keeps_the_old_pair_when_the_new_one_is_broken(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = ca.issue(cert_file, key_file)
    cert = ReloadingCertificate(cert_file, key_file)
    assert cert.check() is None
    assert cert.not_after == first.not_valid_after_utc.timestamp()
    good_key = key_file.read_bytes()
    ca.issue(tmp_path / "other.crt", key_file)  # a new key that does not match tls.crt
    assert cert.check() is False
    assert cert.not_after == first.not_valid_after_utc.timestamp()
    key_file.write_bytes(good_key)
    second = ca.issue(cert_file, key_file)
    assert cert.check() is True
    assert cert.not_after == second.not_valid_after_utc.timestamp()


def test_manifest_two_webhooks_ignore_by_default() -> None:
    manifest = webhook_configuration(ca_bundle_pem=b"pem", url="https://127.0.0.1:8443/")
    hooks = {h["name"]: h for h in manifest["webhooks"]}
    assert hooks["pods.infertap.io"]["clientConfig"]["url"] == "https://127.0.0.1:8443/mutate"
    assert hooks["namespace.pods.infertap.io"]["namespaceSelector"] == {
        "matchLabels": {"infertap.io/inject": "enabled"}
    }
    for hook in hooks.values():
        assert hook["failurePolicy"] == "Ignore"
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
    fail = webhook_configuration(
        ca_bundle_pem=b"pem", service=("infertap", "infertap-webhook", 443), failure_policy="Fail"
    )
    assert fail["webhooks"][0]["clientConfig"]["service"]["path"] == "/mutate"
    assert {h["failurePolicy"] for h in fail["webhooks"]} == {"Fail"}
    with pytest.raises(ValueError, match="exactly one"):
        webhook_configuration(ca_bundle_pem=b"pem")


def test_print_configuration_for_a_service(tmp_path: Path) -> None:
    import base64

    import yaml

    ca = tmp_path / "ca.pem"
    ca.write_bytes(CertificateAuthority.create().pem)
    done = _run(
        {}, "--print-configuration", "--service", "infertap/infertap-webhook:443", "--ca-bundle-file", str(ca),
        "--failure-policy", "Fail",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load(done.stdout)
    assert manifest["kind"] == "MutatingWebhookConfiguration"
    hook = manifest["webhooks"][0]
    assert hook["clientConfig"]["service"] == {
        "namespace": "infertap", "name": "infertap-webhook", "port": 443, "path": "/mutate",
    }  # fmt: skip
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca.read_bytes()
    assert hook["failurePolicy"] == "Fail"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--service", "no-port"], "NAMESPACE/NAME:PORT"),
        (["--service", "a/b:1", "--url", "https://x"], "exactly one"),
        (["--url", "https://x"], "--ca-bundle-file is required"),
        (["--url", "https://x", "--ca-bundle-file", "/nonexistent/ca.pem"], "cannot read"),
    ],
)
def test_print_configuration_bad_arguments_exit_2(args: list[str], needle: str) -> None:
    done = _run({}, "--print-configuration", *args)
    assert done.returncode == 2
    assert needle in done.stderr
    assert done.stderr.strip().count("\n") == 0
