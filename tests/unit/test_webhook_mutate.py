"""The pod mutation: selection, rewiring (Knative, RawDeployment, KServe's agent), idempotence, the container."""

from __future__ import annotations

import json

import pytest

from infertap.logger.webhook.injection import InjectionConfig
from infertap.logger.webhook.mutate import Outcome, Selection, mutate_pod
from tests.integration.webhook.pods import (
    ISVC,
    REVISION,
    agent,
    container,
    env,
    knative_pod,
    knative_pod_with_agent,
    other_app_pod,
    raw_pod,
    with_sidecar,
)

OPT_IN = {"infertap.io/inject": "true"}
CONFIG = InjectionConfig()


def test_knative_queue_proxy_goes_to_the_sidecar_and_the_sidecar_to_the_model() -> None:
    pod = knative_pod("p", annotations=OPT_IN)
    m = mutate_pod(pod, CONFIG, Selection.OPT_IN)
    assert m.outcome is Outcome.INJECTED
    assert env(container(m.pod, "queue-proxy"))["USER_PORT"] == "8081"
    side = env(container(m.pod, "infertap"))
    assert side["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8080"
    assert side["INFERTAP_LISTEN_PORT"] == "8081"
    # queue-proxy declares 9091 (user metrics): the admin port moves to the next free one
    assert side["INFERTAP_ADMIN_PORT"] == "9092"
    assert container(m.pod, "infertap")["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": 9092,
        "scheme": "HTTP",
    }
    assert container(m.pod, "infertap")["livenessProbe"]["httpGet"]["path"] == "/livez"
    # the model container and the input pod are untouched
    assert container(m.pod, "kserve-container") == container(pod, "kserve-container")
    assert env(container(pod, "queue-proxy"))["USER_PORT"] == "8080"


def test_identity_comes_from_kserve_and_knative_labels() -> None:
    m = mutate_pod(knative_pod("p", annotations=OPT_IN), CONFIG, Selection.OPT_IN)
    side = env(container(m.pod, "infertap"))
    assert side["INFERTAP_INFERENCE_SERVICE"] == ISVC
    assert side["INFERTAP_COMPONENT"] == "predictor"
    assert side["INFERTAP_REVISION"] == REVISION
    assert side["INFERTAP_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert side["INFERTAP_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_hardening_volume_and_grace_period() -> None:
    config = InjectionConfig(env={"INFERTAP_SINK": "s3", "INFERTAP_SHUTDOWN_GRACE_S": "40"})
    pod = raw_pod("p", annotations=OPT_IN)
    m = mutate_pod(pod, config, Selection.OPT_IN)
    c = container(m.pod, "infertap")
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in m.pod["spec"]["volumes"]}
    assert volumes["infertap-data"]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert {"name": "infertap-data", "mountPath": "/var/lib/infertap"} in c["volumeMounts"]
    assert env(c)["INFERTAP_SPOOL_DIR"] == "/var/lib/infertap/spool"
    # 40 s drain + 20 s spool delivery (network sink) + 10 s margin
    assert m.pod["spec"]["terminationGracePeriodSeconds"] == 70
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}


def test_a_longer_grace_period_of_the_pod_is_kept() -> None:
    m = mutate_pod(knative_pod("p", annotations=OPT_IN), CONFIG, Selection.OPT_IN)
    assert m.pod["spec"]["terminationGracePeriodSeconds"] == 300


def test_raw_deployment_sidecar_in_front_of_the_model_port() -> None:
    m = mutate_pod(raw_pod("p", annotations=OPT_IN, port=8085), CONFIG, Selection.OPT_IN)
    assert m.outcome is Outcome.INJECTED
    assert m.wiring is not None
    assert m.wiring.mode == "raw"
    side = container(m.pod, "infertap")
    assert env(side)["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8085"
    assert {"name": "infertap-http", "containerPort": 8081, "protocol": "TCP"} in side["ports"]
    assert env(side)["INFERTAP_ADMIN_PORT"] == "9091"
    assert "INFERTAP_REVISION" not in env(side)


def test_port_used_by_the_model_is_not_taken() -> None:
    m = mutate_pod(raw_pod("p", annotations=OPT_IN, port=8081), CONFIG, Selection.OPT_IN)
    side = env(container(m.pod, "infertap"))
    assert side["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8081"
    assert side["INFERTAP_LISTEN_PORT"] == "8082"


def test_agent_present_chains_queue_proxy_agent_sidecar_model() -> None:
    m = mutate_pod(knative_pod_with_agent("p", annotations=OPT_IN), CONFIG, Selection.OPT_IN)
    assert m.outcome is Outcome.INJECTED
    assert env(container(m.pod, "queue-proxy"))["USER_PORT"] == "9081"
    args = container(m.pod, "agent")["args"]
    assert args[args.index("--component-port") + 1] == "8081"
    assert env(container(m.pod, "infertap"))["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8080"
    assert json.loads(m.pod["metadata"]["annotations"]["infertap.io/status"])["agentInFront"] is True


def test_agent_added_after_the_sidecar_is_pointed_at_it_on_reinvocation() -> None:
    first = mutate_pod(knative_pod("p", annotations=OPT_IN), CONFIG, Selection.OPT_IN).pod
    # what KServe's agent injector then does: USER_PORT to the agent, the agent to kserve-container's port
    for var in first["spec"]["containers"][1]["env"]:
        if var["name"] == "USER_PORT":
            var["value"] = "9081"
    first["spec"]["containers"].append(agent(8080))
    again = mutate_pod(first, CONFIG, Selection.OPT_IN)
    assert again.outcome is Outcome.CHAIN_REPAIRED
    args = container(again.pod, "agent")["args"]
    assert args[args.index("--component-port") + 1] == "8081"
    assert env(container(again.pod, "infertap"))["INFERTAP_UPSTREAM_URL"] == "http://127.0.0.1:8080"
    third = mutate_pod(again.pod, CONFIG, Selection.OPT_IN)
    assert third.outcome is Outcome.ALREADY_INJECTED
    assert third.pod is again.pod


@pytest.mark.parametrize("builder", [knative_pod, raw_pod, knative_pod_with_agent])
def test_reinvocation_leaves_an_injected_pod_unchanged(builder) -> None:  # type: ignore[no-untyped-def]
    once = mutate_pod(builder("p", annotations=OPT_IN), CONFIG, Selection.OPT_IN)
    twice = mutate_pod(once.pod, CONFIG, Selection.OPT_IN)
    assert twice.outcome is Outcome.ALREADY_INJECTED
    assert twice.pod is once.pod
    assert [c["name"] for c in twice.pod["spec"]["containers"]].count("infertap") == 1


def test_pod_that_already_carries_the_sidecar_is_unchanged() -> None:
    pod = with_sidecar(knative_pod("p", annotations=OPT_IN))
    m = mutate_pod(pod, CONFIG, Selection.OPT_IN)
    assert m.outcome is Outcome.ALREADY_INJECTED
    assert m.pod is pod


def test_selection() -> None:
    assert mutate_pod(knative_pod("p"), CONFIG, Selection.OPT_IN).outcome is Outcome.NOT_SELECTED
    assert mutate_pod(knative_pod("p"), CONFIG, Selection.NAMESPACE).outcome is Outcome.INJECTED
    out = knative_pod("p", annotations={"infertap.io/inject": "false"})
    assert mutate_pod(out, CONFIG, Selection.NAMESPACE).outcome is Outcome.OPTED_OUT
    assert mutate_pod(other_app_pod("w"), CONFIG, Selection.NAMESPACE).outcome is Outcome.NOT_SELECTED
    transformer = knative_pod("t", annotations=OPT_IN)
    transformer["metadata"]["labels"]["component"] = "transformer"
    assert mutate_pod(transformer, CONFIG, Selection.OPT_IN).outcome is Outcome.NOT_A_PREDICTOR


def test_pod_without_a_model_port_is_let_through_with_a_warning() -> None:
    pod = knative_pod("p", annotations=OPT_IN)
    pod["spec"]["containers"][1]["env"] = [v for v in pod["spec"]["containers"][1]["env"] if v["name"] != "USER_PORT"]
    m = mutate_pod(pod, CONFIG, Selection.OPT_IN)
    assert m.outcome is Outcome.NO_MODEL_PORT
    assert m.pod is pod
    assert "USER_PORT" in m.warnings[0]


def test_configmap_settings_and_annotation_overrides() -> None:
    config = InjectionConfig(env={"INFERTAP_SAMPLE_RATE": "1.0", "INFERTAP_SINK": "kafka"})
    pod = knative_pod(
        "p",
        annotations={
            **OPT_IN,
            "infertap.io/sample-rate": "0.25",
            "infertap.io/header-allowlist": "Content-Type, X-Request-Id",
            "infertap.io/capture-mode": "sometimes",
            "infertap.io/colour": "blue",
        },
    )
    m = mutate_pod(pod, config, Selection.OPT_IN)
    side = env(container(m.pod, "infertap"))
    assert side["INFERTAP_SAMPLE_RATE"] == "0.25"
    assert side["INFERTAP_SINK"] == "kafka"
    assert json.loads(side["INFERTAP_HEADER_ALLOWLIST"]) == ["content-type", "x-request-id"]
    assert "INFERTAP_CAPTURE_MODE" not in side
    assert len(m.warnings) == 2
    assert any("capture-mode" in w and "all, request or response" in w for w in m.warnings)
    assert any("colour" in w for w in m.warnings)


def test_overrides_outside_the_allowed_list_are_refused() -> None:
    config = InjectionConfig(env={"INFERTAP_SAMPLE_RATE": "0.5"}, allowed_overrides=["capture-mode"])
    pod = raw_pod("p", annotations={**OPT_IN, "infertap.io/sample-rate": "1", "infertap.io/capture-mode": "request"})
    m = mutate_pod(pod, config, Selection.OPT_IN)
    side = env(container(m.pod, "infertap"))
    assert side["INFERTAP_SAMPLE_RATE"] == "0.5"
    assert side["INFERTAP_CAPTURE_MODE"] == "request"
    assert any("not overridable" in w for w in m.warnings)
