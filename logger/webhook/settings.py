"""Settings of ``infertap webhook`` (the injector process), read from ``INFERTAP_WEBHOOK_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebhookSettings(BaseSettings):
    """Settings of the admission webhook server; every field is documented in docs/injection.md.

    The serving certificate and key are files (a mounted ``kubernetes.io/tls`` Secret, as cert-manager writes
    them); they are re-read when their modification time changes, so a rotated certificate is served without a
    restart. The injection configuration is a file too (a mounted ConfigMap key), re-read on change.
    """

    model_config = SettingsConfigDict(env_prefix="INFERTAP_WEBHOOK_", extra="forbid", frozen=True)

    listen_host: str = Field("0.0.0.0", description="Address the HTTPS server listens on.")
    port: int = Field(8443, ge=0, le=65535, description="HTTPS port the API server calls (0: any free port).")
    admin_port: int = Field(
        9091, ge=0, le=65535, description="Plain-HTTP port of /metrics, /livez and /readyz (0: any free port)."
    )
    cert_file: Path = Field(
        Path("/etc/infertap/webhook/tls.crt"), description="PEM certificate chain served to the API server."
    )
    key_file: Path = Field(Path("/etc/infertap/webhook/tls.key"), description="PEM private key of cert_file.")
    cert_check_interval_s: float = Field(
        10.0, gt=0, description="How often the certificate files are checked for a change (seconds)."
    )
    config_file: Path | None = Field(
        Path("/etc/infertap/injection/config.yaml"),
        description="The injection configuration (a mounted ConfigMap key, YAML or JSON); empty: built-in "
        "defaults. Re-read when it changes; a broken file keeps the last good configuration.",
    )
    max_review_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Largest AdmissionReview body accepted; larger ones are refused (413)."
    )
