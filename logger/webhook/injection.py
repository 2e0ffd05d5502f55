"""What the webhook injects: the injection configuration, one document in a ConfigMap.

The ConfigMap key (``config.yaml`` by default) is mounted into the webhook's pod and read with
:func:`load_injection_config`; JSON is valid YAML, so either works. Every field has a default, so an empty
document injects the stock sidecar. Field names carry units (``_s``, ``_port``) as the sidecar's settings do;
unknown fields are rejected (``extra="forbid"``) so that a typo is reported rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infertap.logger.errors import InfertapError

#: A Kubernetes resource quantity ("100m", "256Mi", "1.5", "2G"); the exponent form is not accepted here.
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")

#: Sidecar variables the webhook sets itself (identity, ports, upstream, directories); the ConfigMap may not.
RESERVED_ENV: frozenset[str] = frozenset(
    {
        "INFERTAP_UPSTREAM_URL",
        "INFERTAP_LISTEN_HOST",
        "INFERTAP_LISTEN_PORT",
        "INFERTAP_ADMIN_PORT",
        "INFERTAP_OUTPUT_DIR",
        "INFERTAP_SPOOL_DIR",
        "INFERTAP_INFERENCE_SERVICE",
        "INFERTAP_NAMESPACE",
        "INFERTAP_COMPONENT",
        "INFERTAP_REVISION",
        "INFERTAP_ENDPOINT",
        "INFERTAP_POD_NAME",
    }
)

#: Overrides an InferenceService may set by annotation (docs/injection.md); the ConfigMap can narrow the list.
OverrideName = Literal["sample-rate", "capture-mode", "header-allowlist", "keep-raw-bodies", "model-name"]
ALL_OVERRIDES: tuple[OverrideName, ...] = (
    "sample-rate",
    "capture-mode",
    "header-allowlist",
    "keep-raw-bodies",
    "model-name",
)


class InjectionConfigError(InfertapError):
    """The injection configuration file is unreadable or invalid.

    Attributes:
        path: the file at fault.
    """

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def _quantity(value: str) -> str:
    if not QUANTITY_RE.match(value):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return value


class Resources(BaseModel):
    """Requests and limits of the injected container, as Kubernetes quantities (CPU cores, memory bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_request: str = Field("100m", description="CPU request (cores, e.g. 100m).")
    memory_request: str = Field("256Mi", description="Memory request (bytes, e.g. 256Mi).")
    cpu_limit: str | None = Field("1", description="CPU limit; empty: none.")
    memory_limit: str | None = Field("1Gi", description="Memory limit; empty: none.")

    @field_validator("cpu_request", "memory_request", "cpu_limit", "memory_limit")
    @classmethod
    def _check(cls, value: str | None) -> str | None:
        return None if value is None else _quantity(value)

    def to_k8s(self) -> dict[str, dict[str, str]]:
        """The ``resources`` object of a container."""
        out: dict[str, dict[str, str]] = {"requests": {"cpu": self.cpu_request, "memory": self.memory_request}}
        limits = {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}
        if limits:
            out["limits"] = limits
        return out


class InjectionConfig(BaseModel):
    """The injected sidecar, as the ConfigMap describes it (defaults: the stock sidecar writing local Parquet).

    The pod-level settings (ports, termination grace period) are chosen per pod by
    :func:`infertap.logger.webhook.mutate.mutate_pod`; this is what does not depend on the pod.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    container_name: str = Field("infertap", min_length=1, description="Name of the injected container.")
    image: str = Field("infertap/infertap:0.1.0", min_length=1, description="Image of the sidecar.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent")
    command: list[str] = Field(default_factory=lambda: ["infertap"], description="Container command.")
    args: list[str] = Field(default_factory=lambda: ["proxy"], description="Container args.")
    listen_port: int = Field(
        8081, ge=1, le=65535, description="Port the sidecar listens on (the next free one if the pod uses it)."
    )
    admin_port: int = Field(
        9091, ge=1, le=65535, description="Port of /metrics, /livez, /readyz (the next free one if the pod uses it)."
    )
    resources: Resources = Field(default_factory=Resources)
    run_as_user: int = Field(65532, ge=1, description="Non-root user id of the sidecar.")
    data_dir: str = Field(
        "/var/lib/infertap", description="Mount path of the emptyDir holding the output and the spool."
    )
    data_size_limit: str = Field("2Gi", description="sizeLimit of that emptyDir (the kubelet evicts the pod beyond).")
    tmp_size_limit: str = Field("64Mi", description="sizeLimit of the emptyDir mounted at /tmp (root is read-only).")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Sidecar settings (INFERTAP_* variables: sink, sampling, redaction, sink settings) for every "
        "injected pod; identity, ports and directories are set by the webhook and may not appear here.",
    )
    allowed_overrides: list[OverrideName] = Field(
        default_factory=lambda: list(ALL_OVERRIDES),
        description="Which infertap.io/<name> annotations an InferenceService may use to override env.",
    )
    termination_margin_s: int = Field(
        10, ge=0, description="Added to the sidecar's drain time to form the pod's terminationGracePeriodSeconds."
    )

    @field_validator("data_size_limit", "tmp_size_limit")
    @classmethod
    def _check_quantity(cls, value: str) -> str:
        return _quantity(value)

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.startswith("INFERTAP_") or key.startswith("INFERTAP_WEBHOOK_"):
                raise ValueError(f"env key {key!r} is not a sidecar setting (INFERTAP_*)")
            if key in RESERVED_ENV:
                raise ValueError(f"env key {key!r} is set by the webhook for each pod")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> InjectionConfig:
        if self.listen_port == self.admin_port:
            raise ValueError("listen_port and admin_port must differ")
        return self

    def drain_s(self) -> float:
        """Longest time the sidecar takes to stop on SIGTERM (seconds), from its settings in ``env``.

        The sidecar drains in-flight requests and its queue for ``INFERTAP_SHUTDOWN_GRACE_S`` (default 30 s,
        docs/operations.md); a network sink then delivers the spool for ``INFERTAP_SPOOL_DRAIN_TIMEOUT_S``
        (default 20 s, docs/sinks.md).
        """
        grace = float(self.env.get("INFERTAP_SHUTDOWN_GRACE_S", "30"))
        network_sink = self.env.get("INFERTAP_SINK", "file") != "file"
        drain = float(self.env.get("INFERTAP_SPOOL_DRAIN_TIMEOUT_S", "20")) if network_sink else 0.0
        return grace + drain


def load_injection_config(path: Path | None) -> InjectionConfig:
    """Read the injection configuration from ``path`` (YAML or JSON mapping); ``None``: the defaults.

    Raises:
        InjectionConfigError: the file cannot be read, is not a mapping, or fails validation (the message
            lists every field at fault).
    """
    if path is None:
        return InjectionConfig()
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InjectionConfigError(f"unreadable: {exc}", path=path) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InjectionConfigError(f"expected a mapping, got {type(data).__name__}", path=path)
    try:
        config = InjectionConfig.model_validate(data)
        config.drain_s()
    except ValidationError as exc:
        raise InjectionConfigError(f"invalid: {exc}", path=path) from exc
    except ValueError as exc:
        raise InjectionConfigError(f"invalid drain settings in env: {exc}", path=path) from exc
    return config


class InjectionConfigSource:
    """The injection configuration in use, re-read from its file when the file changes.

    A ConfigMap mounted as a volume is updated in place by the kubelet (a symbolic-link swap), so
    :meth:`current` compares the file's modification time and size on every call (one ``stat``) and reloads on a
    change. A file that fails to load keeps the last good configuration in use; if none ever loaded,
    :meth:`current` returns ``None`` and the webhook lets pods through unpatched (it never rejects a pod for its
    own configuration errors).

    Args:
        path: the file; ``None``: the built-in defaults, never reloaded.
        on_error: called with the error of each failed load (metrics, logging).
        on_loaded: called with whether a valid configuration is in use, after each load attempt.
    """

    def __init__(
        self,
        path: Path | None,
        on_error: Callable[[InjectionConfigError], None] | None = None,
        on_loaded: Callable[[bool], None] | None = None,
    ) -> None:
        self.path = path
        self._on_error = on_error
        self._on_loaded = on_loaded
        self._stamp: tuple[int, int] | None = None
        self._config: InjectionConfig | None = None
        self.last_error: InjectionConfigError | None = None
        if path is None:
            self._config = InjectionConfig()
        else:
            self.current()

    def current(self) -> InjectionConfig | None:
        """The configuration in use (reloaded first if the file changed), or ``None`` if none ever loaded."""
        if self.path is None:
            return self._config
        try:
            st = self.path.stat()
            stamp: tuple[int, int] = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (-1, -1)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._config = load_injection_config(self.path)
                self.last_error = None
            except InjectionConfigError as exc:
                self.last_error = exc
                if self._on_error is not None:
                    self._on_error(exc)
            if self._on_loaded is not None:
                self._on_loaded(self._config is not None)
        return self._config
