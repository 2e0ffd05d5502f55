"""The pod mutation: which pods get the sidecar, how traffic is rewired, and the injected container.

Pure functions on the pod as a JSON object (``dict``), no I/O: :func:`mutate_pod` returns a mutated deep copy,
:mod:`.review` diffs the two into a JSONPatch.

Rewiring follows KServe's agent injector (kserve/kserve ``pkg/webhook/admission/pod/agent_injector.go``):

- **Knative (serverless) mode** — the pod has a ``queue-proxy`` container whose ``USER_PORT`` variable says where
  it forwards requests. The sidecar takes that port as its upstream and ``USER_PORT`` is set to the sidecar's
  listen port: ``queue-proxy -> infertap -> model``.
- **KServe's agent already present** (the InferenceService also has ``spec.predictor.logger`` or a batcher) — the
  agent listens on 9081, queue-proxy's ``USER_PORT`` (Knative) or the Service's targetPort (RawDeployment) already
  point at it, and its ``--component-port`` argument names the model's port. The sidecar takes that port as its
  upstream and ``--component-port`` is set to the sidecar's port: ``queue-proxy -> agent -> infertap -> model``.
  The agent sits in front so that its CloudEvents carry what the client sent and got; infertap times the model
  alone. Each hop forwards to the next fixed port, so there is no loop.
- **RawDeployment mode without the agent** — no queue-proxy: the sidecar's upstream is the model container's
  first port; KServe's Service keeps targeting the model's port, so the user (or the chart) routes clients to the
  sidecar's named port ``infertap-http`` (docs/injection.md).

Idempotence (``reinvocationPolicy: IfNeeded``): a pod that already has the sidecar container is returned unchanged,
except when KServe's agent was added after the sidecar and forwards to the model directly: then only the agent's
``--component-port`` is pointed at the sidecar (outcome ``chain_repaired``).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from infertap.logger import __version__
from infertap.logger.webhook.annotations import (
    COMPONENT_LABEL,
    ENDPOINT_LABEL,
    INJECT_ANNOTATION,
    ISVC_LABEL,
    REVISION_LABEL,
    STATUS_ANNOTATION,
    read_overrides,
)
from infertap.logger.webhook.injection import InjectionConfig

QUEUE_PROXY = "queue-proxy"
MODEL_CONTAINER = "kserve-container"
AGENT_CONTAINER = "agent"
AGENT_PORT = 9081
COMPONENT_PORT_FLAG = "--component-port"
#: KServe's model port when the model container declares none (kserve constants.InferenceServiceDefaultHttpPort).
DEFAULT_MODEL_PORT = 8080
#: Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_S = 30
DATA_VOLUME = "infertap-data"
TMP_VOLUME = "infertap-tmp"

JSON = dict[str, Any]


class Selection(StrEnum):
    """How pods are selected: by their opt-in annotation, or all KServe predictor pods of a labelled namespace."""

    OPT_IN = "opt-in"
    NAMESPACE = "namespace"


class Outcome(StrEnum):
    """The outcome of one review, the ``outcome`` label of ``infertap_webhook_reviews_total``."""

    INJECTED = "injected"
    CHAIN_REPAIRED = "chain_repaired"
    ALREADY_INJECTED = "already_injected"
    NOT_SELECTED = "not_selected"
    OPTED_OUT = "opted_out"
    NOT_A_PREDICTOR = "not_a_predictor"
    NO_MODEL_PORT = "no_model_port"
    NOT_A_POD = "not_a_pod"
    IGNORED_OPERATION = "ignored_operation"
    BAD_OBJECT = "bad_object"
    CONFIG_ERROR = "config_error"
    PATCH_ERROR = "patch_error"
    BAD_REVIEW = "bad_review"


@dataclass(frozen=True)
class Wiring:
    """How an injected pod's traffic flows; ports are TCP ports inside the pod (loopback)."""

    mode: Literal["knative", "raw"]
    upstream_port: int
    listen_port: int
    admin_port: int
    agent_in_front: bool

    def status(self) -> str:
        """The ``infertap.io/status`` annotation value (JSON)."""
        return json.dumps(
            {
                "version": __version__,
                "mode": self.mode,
                "listenPort": self.listen_port,
                "adminPort": self.admin_port,
                "upstreamPort": self.upstream_port,
                "agentInFront": self.agent_in_front,
            },
            separators=(",", ":"),
        )


@dataclass
class Mutation:
    """The result of :func:`mutate_pod`: the (possibly unchanged) pod, why, and warnings for the API client."""

    outcome: Outcome
    pod: JSON
    detail: str = ""
    warnings: list[str] = field(default_factory=list)
    wiring: Wiring | None = None


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _containers(pod: JSON) -> list[JSON]:
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []


def _named(containers: list[JSON], name: str) -> JSON | None:
    return next((c for c in containers if c.get("name") == name), None)


def _env_value(container: JSON, name: str) -> str | None:
    for var in container.get("env") or []:
        if isinstance(var, dict) and var.get("name") == name and "value" in var:
            return str(var["value"])
    return None


def _set_env(container: JSON, name: str, value: str) -> None:
    for var in container.setdefault("env", []):
        if isinstance(var, dict) and var.get("name") == name:
            var["value"] = value
            var.pop("valueFrom", None)
            return
    container["env"].append({"name": name, "value": value})


def _first_port(container: JSON | None) -> int | None:
    if container is None:
        return None
    for port in container.get("ports") or []:
        if isinstance(port, dict) and isinstance(port.get("containerPort"), int):
            return int(port["containerPort"])
    return None


def _component_port(agent: JSON) -> int | None:
    args = [str(a) for a in agent.get("args") or []]
    for i, arg in enumerate(args[:-1]):
        if arg == COMPONENT_PORT_FLAG and args[i + 1].isdigit():
            return int(args[i + 1])
    return None


def _set_component_port(agent: JSON, port: int) -> None:
    args = [str(a) for a in agent.get("args") or []]
    for i, arg in enumerate(args[:-1]):
        if arg == COMPONENT_PORT_FLAG:
            args[i + 1] = str(port)
            agent["args"] = args
            return
    agent["args"] = [*args, COMPONENT_PORT_FLAG, str(port)]


def _declared_ports(containers: list[JSON]) -> set[int]:
    return {
        int(p["containerPort"])
        for c in containers
        for p in c.get("ports") or []
        if isinstance(p, dict) and isinstance(p.get("containerPort"), int)
    }


def _free_from(start: int, used: set[int]) -> int:
    port = start
    while port in used:
        port += 1
    if port > 65535:
        raise ValueError(f"no free port from {start}")
    return port


def _selected(labels: dict[str, str], annotations: dict[str, str], selection: Selection) -> Mutation | None:
    """``None`` when the pod is selected, else the unchanged outcome (the pod itself is filled in later)."""
    if not labels.get(ISVC_LABEL):
        return Mutation(Outcome.NOT_SELECTED, {}, f"no {ISVC_LABEL} label: not a KServe pod")
    component = labels.get(COMPONENT_LABEL, "predictor")
    if component != "predictor":
        return Mutation(Outcome.NOT_A_PREDICTOR, {}, f"component {component!r} is not a predictor")
    inject = annotations.get(INJECT_ANNOTATION, "").strip().lower()
    if selection is Selection.OPT_IN and inject != "true":
        return Mutation(Outcome.NOT_SELECTED, {}, f'no {INJECT_ANNOTATION}: "true" annotation')
    if selection is Selection.NAMESPACE and inject == "false":
        return Mutation(Outcome.OPTED_OUT, {}, f'{INJECT_ANNOTATION}: "false"')
    return None


def _repair_chain(pod: JSON, config: InjectionConfig) -> Mutation:
    """The pod already has the sidecar: unchanged, unless an agent added since forwards past the sidecar."""
    containers = _containers(pod)
    sidecar = _named(containers, config.container_name)
    agent = _named(containers, AGENT_CONTAINER)
    listen = _env_value(sidecar, "INFERTAP_LISTEN_PORT") if sidecar is not None else None
    if agent is None or listen is None or not listen.isdigit() or _component_port(agent) == int(listen):
        return Mutation(Outcome.ALREADY_INJECTED, pod, f"container {config.container_name!r} already present")
    mutated = copy.deepcopy(pod)
    _set_component_port(_named(_containers(mutated), AGENT_CONTAINER) or {}, int(listen))
    return Mutation(Outcome.CHAIN_REPAIRED, mutated, f"KServe agent now forwards to the sidecar on {listen}")


def _plan(containers: list[JSON], config: InjectionConfig) -> Wiring | str:
    """The wiring for a pod without the sidecar, or why it cannot be wired."""
    queue_proxy = _named(containers, QUEUE_PROXY)
    agent = _named(containers, AGENT_CONTAINER)
    model_port = _first_port(_named(containers, MODEL_CONTAINER))
    used = _declared_ports(containers)
    mode: Literal["knative", "raw"]
    if queue_proxy is not None:
        mode = "knative"
        user_port = _env_value(queue_proxy, "USER_PORT")
        if user_port is None or not user_port.isdigit():
            return f"queue-proxy has no numeric USER_PORT ({user_port!r})"
        used.add(int(user_port))
        upstream = _component_port(agent) if agent is not None else int(user_port)
        if upstream is None:
            upstream = model_port or DEFAULT_MODEL_PORT
    else:
        mode = "raw"
        if agent is not None:
            upstream = _component_port(agent) or model_port or DEFAULT_MODEL_PORT
        elif _named(containers, MODEL_CONTAINER) is not None:
            upstream = model_port or DEFAULT_MODEL_PORT
        else:
            return f"neither {QUEUE_PROXY} nor {MODEL_CONTAINER} in the pod"
    used |= {upstream, AGENT_PORT} if agent is not None else {upstream}
    listen = _free_from(config.listen_port, used)
    admin = _free_from(config.admin_port, used | {listen})
    return Wiring(mode, upstream, listen, admin, agent is not None)


def _identity_env(labels: dict[str, str]) -> list[JSON]:
    env: list[JSON] = [
        {"name": "INFERTAP_INFERENCE_SERVICE", "value": labels[ISVC_LABEL]},
        {"name": "INFERTAP_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "INFERTAP_COMPONENT", "value": labels.get(COMPONENT_LABEL, "predictor")},
        {"name": "INFERTAP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if labels.get(REVISION_LABEL):
        env.append({"name": "INFERTAP_REVISION", "value": labels[REVISION_LABEL]})
    if labels.get(ENDPOINT_LABEL):
        env.append({"name": "INFERTAP_ENDPOINT", "value": labels[ENDPOINT_LABEL]})
    return env


def sidecar_container(
    config: InjectionConfig, wiring: Wiring, labels: dict[str, str], settings_env: dict[str, str]
) -> JSON:
    """The injected container (a Kubernetes ``Container`` object).

    Args:
        config: the injection configuration.
        wiring: the ports chosen for this pod.
        labels: the pod's labels (identity: InferenceService, component, Knative revision, endpoint).
        settings_env: the sidecar's settings, the ConfigMap's ``env`` with the pod's overrides applied.
    """
    data = config.data_dir.rstrip("/")
    env: list[JSON] = [
        {"name": "INFERTAP_UPSTREAM_URL", "value": f"http://127.0.0.1:{wiring.upstream_port}"},
        {"name": "INFERTAP_LISTEN_HOST", "value": "0.0.0.0"},
        {"name": "INFERTAP_LISTEN_PORT", "value": str(wiring.listen_port)},
        {"name": "INFERTAP_ADMIN_PORT", "value": str(wiring.admin_port)},
        {"name": "INFERTAP_OUTPUT_DIR", "value": f"{data}/data"},
        {"name": "INFERTAP_SPOOL_DIR", "value": f"{data}/spool"},
        *_identity_env(labels),
        *({"name": k, "value": v} for k, v in sorted(settings_env.items())),
    ]
    probe_port = wiring.admin_port
    return {
        "name": config.container_name,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(config.command),
        "args": list(config.args),
        "env": env,
        "ports": [
            {"name": "infertap-http", "containerPort": wiring.listen_port, "protocol": "TCP"},
            {"name": "infertap-admin", "containerPort": wiring.admin_port, "protocol": "TCP"},
        ],
        "resources": config.resources.to_k8s(),
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": probe_port, "scheme": "HTTP"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": probe_port, "scheme": "HTTP"},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 3,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "runAsGroup": config.run_as_user,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": data},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def mutate_pod(pod: JSON, config: InjectionConfig, selection: Selection) -> Mutation:
    """Inject the sidecar into ``pod`` if it is selected; ``pod`` itself is never modified.

    Args:
        pod: the Pod object of the AdmissionReview (``request.object``).
        config: the injection configuration.
        selection: opt-in by annotation, or every predictor pod (namespace selection).

    Returns:
        A :class:`Mutation`; its ``pod`` is ``pod`` itself when unchanged, else a mutated deep copy.

    Raises:
        ValueError: no free port could be found (the caller allows the pod unpatched).
    """
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    labels = _str_map(meta.get("labels") if meta else None)
    annotations = _str_map(meta.get("annotations") if meta else None)
    skipped = _selected(labels, annotations, selection)
    if skipped is not None:
        skipped.pod = pod
        return skipped
    containers = _containers(pod)
    if _named(containers, config.container_name) is not None:
        return _repair_chain(pod, config)
    wiring = _plan(containers, config)
    if isinstance(wiring, str):
        return Mutation(Outcome.NO_MODEL_PORT, pod, wiring, [f"infertap: not injected: {wiring}"])

    overrides = read_overrides(annotations, config.allowed_overrides)
    mutated = copy.deepcopy(pod)
    spec = mutated.setdefault("spec", {})
    new_containers = _containers(mutated)
    agent = _named(new_containers, AGENT_CONTAINER)
    queue_proxy = _named(new_containers, QUEUE_PROXY)
    if agent is not None:
        _set_component_port(agent, wiring.listen_port)
    elif queue_proxy is not None:
        _set_env(queue_proxy, "USER_PORT", str(wiring.listen_port))

    container = sidecar_container(config, wiring, labels, {**config.env, **overrides.env})
    spec["containers"].append(container)
    volumes = spec.setdefault("volumes", [])
    volumes.append({"name": DATA_VOLUME, "emptyDir": {"sizeLimit": config.data_size_limit}})
    volumes.append({"name": TMP_VOLUME, "emptyDir": {"sizeLimit": config.tmp_size_limit}})
    drain = math.ceil(config.drain_s() + config.termination_margin_s)
    current = spec.get("terminationGracePeriodSeconds")
    spec["terminationGracePeriodSeconds"] = max(drain, current if isinstance(current, int) else DEFAULT_GRACE_S)
    mutated_meta = mutated.setdefault("metadata", {})
    mutated_meta.setdefault("annotations", {})[STATUS_ANNOTATION] = wiring.status()
    chain = "agent -> infertap" if wiring.agent_in_front else "infertap"
    detail = f"{wiring.mode}: {chain} :{wiring.listen_port} -> model :{wiring.upstream_port}"
    warnings = [f"infertap: annotation refused: {line}" for line in overrides.refused]
    return Mutation(Outcome.INJECTED, mutated, detail, warnings, wiring)
