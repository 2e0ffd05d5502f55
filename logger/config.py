"""Configuration of the sidecar, one pydantic-settings model per deployable.

Every field is read from the environment with the prefix ``INFERTAP_`` (``INFERTAP_UPSTREAM_URL``,
``INFERTAP_SAMPLE_RATE`` ...). Unknown ``INFERTAP_*`` keys passed as keyword arguments are rejected
(``extra="forbid"``); unknown ``INFERTAP_*`` environment variables are rejected by the command line
(:mod:`infertap.logger.environment`). Units are part of field names (``_s`` seconds, ``_bytes`` bytes). List
settings (:data:`CommaList`) take comma-separated text or a JSON array.

Where a field is left empty, the KServe / Knative environment of the pod fills it in
(:meth:`ProxySettings.serving_identity`): Knative sets ``K_SERVICE``, ``K_REVISION`` and
``K_CONFIGURATION`` on every revision container (Knative runtime contract, "Environment variables").
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from infertap.logger import jsonpaths


def split_list(value: object) -> object:
    """A list setting from the environment: a JSON array (``["x-foo", "x-bar"]``) or comma-separated text
    (``x-foo,x-bar``; items stripped, empty items dropped). Anything else passes through to validation.

    Raises:
        ValueError: text starting with ``[`` that is not valid JSON.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON array: {exc.msg} at character {exc.pos}") from exc
    return [item.strip() for item in text.split(",") if item.strip()]


#: The type of every list-of-strings setting: read from the environment as comma-separated text or as JSON
#: (pydantic-settings alone demands JSON). ``tests/unit/test_environment.py`` checks every settings model uses it.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]

#: Headers never written anywhere, whatever the allow-list says (compared lower-case).
ALWAYS_REDACTED_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-amz-security-token",
        "ocp-apim-subscription-key",
    }
)


#: Query parameters whose values are redacted by default (compared case-insensitively): OAuth 2.0 (RFC 6749:
#: ``code``, ``access_token``, ``refresh_token``, ``client_secret``; OpenID Connect ``id_token``), AWS Signature V4
#: pre-signed URLs (``X-Amz-*``), Azure shared access signatures (``sig``, ``signature``), API keys (``key``,
#: ``api_key``, ``apikey``, ``api-key``), and the usual spellings of passwords, secrets and tokens.
DEFAULT_REDACTED_QUERY_PARAMS: tuple[str, ...] = (
    "access_token", "api-key", "api_key", "apikey", "auth", "client_secret", "code", "id_token", "jwt", "key",
    "passwd", "password", "pwd", "refresh_token", "secret", "session", "sessionid", "sig", "signature", "token",
    "x-amz-credential", "x-amz-security-token", "x-amz-signature",
)  # fmt: skip
#: JSON fields redacted by default wherever they appear in a body (case-insensitive). Generic words that are also
#: ordinary payload fields (``key``, ``code``, ``token``, ``session``) are left out: add them if they carry secrets.
DEFAULT_REDACTED_JSON_FIELDS: tuple[str, ...] = (
    "access_token", "api_key", "apikey", "authorization", "client_secret", "id_token", "passwd", "password",
    "refresh_token", "secret",
)  # fmt: skip


class CaptureMode(StrEnum):
    """What is captured of each exchange; the names are KServe's ``LoggerType`` values."""

    ALL = "all"
    REQUEST = "request"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class ServingIdentity:
    """Where a record comes from, in KServe's terms; every field may be empty."""

    inference_service: str
    namespace: str
    component: str
    revision: str
    endpoint: str
    pod: str


class ProxySettings(BaseSettings):
    """Settings of ``infertap proxy`` (the sidecar), read from ``INFERTAP_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="INFERTAP_", extra="forbid", frozen=True)

    upstream_url: str = Field(
        "http://127.0.0.1:8080",
        description="The one predictor every request is forwarded to (scheme, host, port); never a host from "
        "the request.",
    )
    listen_host: str = Field("0.0.0.0", description="Address the proxy listens on.")
    listen_port: int = Field(8081, ge=0, le=65535, description="Port the proxy listens on (0: any free port).")
    admin_port: int = Field(
        9091, ge=0, le=65535, description="Port of /metrics, /livez and /readyz (0: any free port)."
    )
    upstream_ca_file: Path | None = Field(
        None, description="CA bundle to verify an https upstream's certificate (default: the system's CAs)."
    )
    upstream_ready_path: str = Field(
        "/v2/health/ready", description="Path on the upstream that /readyz follows (Open Inference Protocol)."
    )
    upstream_timeout_s: float = Field(
        60.0, gt=0, description="Total time allowed for one upstream exchange before answering 504."
    )
    upstream_connect_timeout_s: float = Field(
        5.0, gt=0, description="Time allowed to open a connection to the upstream before answering 502."
    )
    max_body_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest request body accepted; larger ones are answered 413."
    )
    max_capture_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Largest body kept for capture; a streamed response beyond it is relayed in full but "
        "captured truncated.",
    )
    capture_mode: CaptureMode = Field(CaptureMode.ALL, description="all | request | response (KServe's names).")
    sample_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of successful exchanges captured; errors are always captured."
    )
    header_allowlist: CommaList = Field(
        default_factory=lambda: [
            "content-type",
            "content-length",
            "user-agent",
            "x-request-id",
            "traceparent",
            "ce-id",
            "inference-header-content-length",
        ],
        description="Request/response headers written to records (case-insensitive); credentials are never "
        "written even when listed.",
    )
    genai_text: Literal["keep", "lengths"] = Field(
        "keep",
        description="Text of generative calls (prompts, chat messages, completions, streamed deltas, stop "
        "sequences, tool-call arguments): keep | lengths (write only their lengths, token counts and timings, and "
        "never their raw bodies).",
    )
    redact_query_params: CommaList = Field(
        default_factory=lambda: list(DEFAULT_REDACTED_QUERY_PARAMS),
        description="Query parameters whose values are written as REDACTED (case-insensitive); setting it replaces "
        "the default list.",
    )
    redact_query_params_extra: CommaList = Field(
        default_factory=list, description="Query parameters redacted on top of redact_query_params."
    )
    redact_json_fields: CommaList = Field(
        default_factory=lambda: list(DEFAULT_REDACTED_JSON_FIELDS),
        description="JSON fields written as [REDACTED] in bodies and parameters: a field name (anywhere) or a "
        "path from the root such as parameters.api_key or $.inputs[*].parameters.user; setting it replaces the "
        "default list.",
    )
    redact_json_fields_extra: CommaList = Field(
        default_factory=list, description="JSON fields redacted on top of redact_json_fields."
    )
    keep_raw_bodies: bool = Field(
        False,
        description="Write raw request/response bodies into every record (always kept on decode errors).",
    )
    queue_max_records: int = Field(
        10_000, gt=0, description="Bound of the in-memory capture queue; beyond it exchanges are dropped."
    )
    batch_max_records: int = Field(1_000, gt=0, description="Records per Arrow record batch.")
    batch_max_delay_s: float = Field(1.0, gt=0, description="Longest time a record waits to be batched.")
    sink: Literal["file", "s3", "kafka", "http"] = Field(
        "file",
        description="Where records go: file (local Parquet, written directly), or s3 / kafka / http (CloudEvents), "
        "each behind the disk spool (INFERTAP_SPOOL_*) and configured by INFERTAP_S3_* / INFERTAP_KAFKA_* / "
        "INFERTAP_HTTP_SINK_*.",
    )
    shutdown_grace_s: float = Field(
        30.0, gt=0, description="On SIGTERM, longest time to drain the capture queue before exiting."
    )
    output_dir: Path = Field(Path("infertap-data"), description="Root of the local Parquet sink.")
    flush_interval_s: float = Field(
        30.0,
        gt=0,
        description="Longest time an open Parquet file stays open before it is closed and renamed.",
    )
    max_file_bytes: int = Field(128 * 1024 * 1024, gt=0, description="Size at which a Parquet file is rolled.")
    model_name: str = Field("", description="Model name for records whose path names none.")
    inference_service: str = Field("", description="InferenceService name; default derived from K_SERVICE.")
    namespace: str = Field("", description="Namespace; default from POD_NAMESPACE.")
    component: str = Field("", description="predictor | transformer | explainer; default derived from K_SERVICE.")
    revision: str = Field("", description="Knative revision; default K_REVISION.")
    endpoint: str = Field("", description="InferenceService endpoint (default | canary), as KServe's logger says.")
    pod_name: str = Field("", description="Pod name, used in file names; default HOSTNAME.")
    capture_placement: Literal["local", "forward"] = Field(
        "local",
        description="Where capture runs: local (decode, Arrow and sinks in the sidecar) or forward (the sidecar "
        "frames raw exchanges into a disk spool and ships them to `infertap collector`, docs/forward-protocol.md).",
    )
    forward_collector_url: str = Field(
        "", description="Forward mode: the collector's base URL, http://host:port (required with forward)."
    )
    forward_spool_dir: Path = Field(
        Path("infertap-forward-spool"), description="Forward mode: directory of the raw-frame spool (an emptyDir)."
    )
    forward_spool_max_bytes: int = Field(
        1 << 30, gt=0, description="Forward mode: bound of the raw-frame spool (bytes); past it exchanges are dropped."
    )
    forward_segment_max_bytes: int = Field(
        4 << 20, gt=0, description="Forward mode: a spool segment (one batch to the collector) is sealed at this size."
    )
    forward_timeout_s: float = Field(
        10.0, gt=0, description="Forward mode: connect and read timeout of one batch POST to the collector (seconds)."
    )

    @model_validator(mode="after")
    def _forward_needs_collector(self) -> ProxySettings:
        if self.capture_placement == "forward":
            url = urlsplit(self.forward_collector_url)
            if url.scheme != "http" or not url.hostname:
                raise ValueError("forward_collector_url must be http://host[:port] in forward mode")
        return self

    @field_validator("upstream_url")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream_url must be an http(s) URL with a host, got {value!r}")
        return value.rstrip("/")

    @field_validator("header_allowlist")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [h.strip().lower() for h in value if h.strip()]

    @field_validator("redact_json_fields", "redact_json_fields_extra")
    @classmethod
    def _json_rules(cls, value: list[str]) -> list[str]:
        for rule in value:
            jsonpaths.parse(rule)  # ValueError: a clear message naming the rule
        return value

    def redacted_query_params(self) -> list[str]:
        """Every query parameter to redact: the list and its extension."""
        return [*self.redact_query_params, *self.redact_query_params_extra]

    def redacted_json_fields(self) -> list[str]:
        """Every JSON field rule: the list and its extension."""
        return [*self.redact_json_fields, *self.redact_json_fields_extra]

    def writable_headers(self) -> frozenset[str]:
        """Lower-case header names that may be written: the allow-list minus the credentials."""
        return frozenset(self.header_allowlist) - ALWAYS_REDACTED_HEADERS

    def serving_identity(self, environ: dict[str, str] | None = None) -> ServingIdentity:
        """Fill empty identity fields from the Knative / KServe environment.

        ``K_SERVICE`` of a KServe predictor is ``<isvc>-predictor`` (older releases ``<isvc>-predictor-default``),
        so the InferenceService and the component are derived from it.
        """
        env = os.environ if environ is None else environ
        k_service = env.get("K_SERVICE", "")
        isvc, component = "", ""
        for comp in ("predictor", "transformer", "explainer"):
            marker = f"-{comp}"
            if marker in k_service:
                isvc, component = k_service.split(marker, 1)[0], comp
                break
        return ServingIdentity(
            inference_service=self.inference_service or isvc,
            namespace=self.namespace or env.get("POD_NAMESPACE", ""),
            component=self.component or component,
            revision=self.revision or env.get("K_REVISION", ""),
            endpoint=self.endpoint,
            pod=self.pod_name or env.get("HOSTNAME", "") or socket.gethostname(),
        )
