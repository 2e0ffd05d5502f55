"""The Helm chart rendered and linted by Helm's own library, every manifest checked against Kubernetes' schemas
(kubernetes-validate, strict) or its CRD's schema, and the configuration the chart writes read back by the very code
that reads it in the cluster (the webhook's injection config, the collector's settings)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from infertap.logger.collector.settings import CollectorSettings
from infertap.logger.webhook.injection import load_injection_config
from infertap.logger.webhook.manifests import webhook_configuration

from .chart import CHART, CRD_FILES, NOT_VALIDATED, ROOT, crd_schema, find, notes, render, validate_custom

LEGACY_ONLY = {"batch/v1beta1", "policy/v1beta1", "autoscaling/v2beta2"}
SPARK_MODEL = {
    "name": "big",
    "engine": "spark",
    "source": "s3://captures/infertap",
    "baseline": {"configMap": "baselines", "key": "big.json.gz"},
}
LOCAL_MODEL = {
    "name": "iris",
    "schedule": "5 * * * *",
    "source": "/data/captures",
    "baseline": {"configMap": "baselines", "key": "iris.json.gz"},
    "args": ["--correction", "bh"],
    "volumes": [{"name": "captures", "persistentVolumeClaim": {"claimName": "captures"}}],
    "volumeMounts": [{"name": "captures", "mountPath": "/data/captures", "readOnly": True}],
}
EVERYTHING: dict[str, Any] = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
    "examples": {"inferenceServices": True},
    "drift": {"models": [LOCAL_MODEL, SPARK_MODEL], "pushgateway": "http://pushgateway.monitoring:9091"},
    "canary": {"comparisons": [{"name": "iris", "source": "/data/captures", "stable": "r1", "canary": "r2"}]},
}
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": EVERYTHING,
    "kubernetes-1.20": {**EVERYTHING, "compat": {"kubernetes120": True}},
    "cert-manager": {
        "webhook": {"certificates": {"certManager": {"enabled": True}}},
        "networkPolicy": {"enabled": False},
    },
    "collector-only": {"webhook": {"enabled": False}, "collector": {"autoscaling": {"enabled": False}}},
    "webhook-only-fail": {"collector": {"enabled": False}, "webhook": {"failurePolicy": "Fail"}},
}


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_lint_passes_strict(values: dict[str, Any]) -> None:
    legacy = values.get("compat", {}).get("kubernetes120")
    report = helm.lint(str(CHART), values, strict=True, kube_version="v1.20.2" if legacy else None)
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert not errors, report
    assert not report.get("errors"), report


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_manifest_is_valid(values: dict[str, Any]) -> None:
    # kubernetes-validate's oldest schemas are 1.25's: the 1.20-only API versions (batch/v1beta1 CronJob,
    # policy/v1beta1 PDB, autoscaling/v2beta2 HPA) are checked by a real 1.20 API server in test_install.py
    legacy = values.get("compat", {}).get("kubernetes120")
    docs = render(values)
    assert docs
    for doc in docs:
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        if (doc["apiVersion"], doc["kind"]) in CRD_FILES:
            validate_custom(doc)
        elif doc["apiVersion"] in NOT_VALIDATED:
            assert group == "cert-manager.io"
        elif legacy and doc["apiVersion"] in LEGACY_ONLY:
            assert doc["kind"] in {"CronJob", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
        else:
            kubernetes_validate.validate(doc, "1.25.0" if legacy else "1.33.0", strict=True)


def test_custom_resource_validation_catches_a_wrong_field() -> None:
    monitor = find(render(EVERYTHING), "PodMonitor")[0]
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "every minute"
    with pytest.raises(Exception, match="does not match"):
        validate_custom(monitor)
    assert "spec" in crd_schema("serving.kserve.io/v1beta1", "InferenceService")["properties"]


def test_default_resource_list() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in render())
    assert kinds == sorted(
        [
            ("ConfigMap", "infertap-dashboard-canary"),
            ("ConfigMap", "infertap-dashboard-capture"),
            ("ConfigMap", "infertap-dashboard-drift"),
            ("ConfigMap", "infertap-dashboard-serving"),
            ("ConfigMap", "infertap-webhook-injection"),
            ("Deployment", "infertap-collector"),
            ("Deployment", "infertap-webhook"),
            ("HorizontalPodAutoscaler", "infertap-collector"),
            ("MutatingWebhookConfiguration", "infertap-sidecar-injector"),
            ("NetworkPolicy", "infertap-collector"),
            ("NetworkPolicy", "infertap-webhook"),
            ("PodDisruptionBudget", "infertap-collector"),
            ("Secret", "infertap-webhook-tls"),
            ("Service", "infertap-collector"),
            ("Service", "infertap-webhook"),
            ("ServiceAccount", "infertap-collector"),
            ("ServiceAccount", "infertap-webhook"),
        ]
    )


def test_api_versions_follow_kubernetes_120_switch() -> None:
    def versions(values: dict[str, Any]) -> dict[str, str]:
        return {
            d["kind"]: d["apiVersion"]
            for d in render(values)
            if d["kind"] in {"CronJob", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
        }

    assert versions(EVERYTHING) == {
        "CronJob": "batch/v1",
        "HorizontalPodAutoscaler": "autoscaling/v2",
        "PodDisruptionBudget": "policy/v1",
    }
    assert versions({**EVERYTHING, "compat": {"kubernetes120": True}}) == {
        "CronJob": "batch/v1beta1",
        "HorizontalPodAutoscaler": "autoscaling/v2beta2",
        "PodDisruptionBudget": "policy/v1beta1",
    }


def test_registration_is_the_webhooks_own_and_trusts_the_served_certificate() -> None:
    docs = render()
    secret = find(docs, "Secret", "infertap-webhook-tls")[0]
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "infertap-webhook.infertap.svc" in names
    rendered = find(docs, "MutatingWebhookConfiguration")[0]
    expected = webhook_configuration(ca_bundle_pem=ca_pem, service=("infertap", "infertap-webhook", 443))
    assert rendered["webhooks"] == expected["webhooks"]
    assert rendered["metadata"]["name"] == expected["metadata"]["name"]
    fail = find(render({"webhook": {"failurePolicy": "Fail"}}), "MutatingWebhookConfiguration")[0]
    assert {w["failurePolicy"] for w in fail["webhooks"]} == {"Fail"}


def test_cert_manager_replaces_the_generated_certificate() -> None:
    docs = render(COMBINATIONS["cert-manager"])
    assert not find(docs, "Secret")
    mwc = find(docs, "MutatingWebhookConfiguration")[0]
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "infertap/infertap-webhook"
    assert all("caBundle" not in w["clientConfig"] for w in mwc["webhooks"])
    certificate = find(docs, "Certificate", "infertap-webhook")[0]
    assert certificate["spec"]["secretName"] == "infertap-webhook-tls"


def test_injection_configmap_is_accepted_by_the_webhook(tmp_path: Path) -> None:
    docs = render({"image": {"repository": "registry.example/infertap", "tag": "9.9"}})
    text = find(docs, "ConfigMap", "infertap-webhook-injection")[0]["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(text)
    config = load_injection_config(tmp_path / "config.yaml")
    assert config.image == "registry.example/infertap:9.9"
    assert config.env["INFERTAP_SAMPLE_RATE"] == "1.0"
    deployment = find(docs, "Deployment", "infertap-webhook")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(env["INFERTAP_WEBHOOK_CONFIG_FILE"]).parent == Path(mounts["injection"])
    assert Path(env["INFERTAP_WEBHOOK_CERT_FILE"]).parent == Path(mounts["tls"])
    assert container["command"] + container["args"] == ["infertap", "webhook"]


def test_collector_settings_are_valid_and_match_its_service(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render({"collector": {"env": {"INFERTAP_COLLECTOR_PAIRING_WINDOW_S": "12"}}})
    container = find(docs, "Deployment", "infertap-collector")[0]["spec"]["template"]["spec"]["containers"][0]
    for e in container["env"]:
        monkeypatch.setenv(e["name"], e.get("value", "collector-0"))
    settings = CollectorSettings()
    assert settings.pairing_window_s == 12
    assert str(settings.journal_dir).startswith("/var/lib/infertap")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.listen_port, "metrics": settings.admin_port}
    example = find(render(EVERYTHING), "InferenceService", "sklearn-iris-logger")[0]
    assert example["spec"]["predictor"]["logger"]["url"] == "http://infertap-collector.infertap.svc.cluster.local:80/"
    service = find(docs, "Service", "infertap-collector")[0]
    assert {p["port"] for p in service["spec"]["ports"]} >= {80}


def test_drift_jobs_run_the_drift_command() -> None:
    docs = render(EVERYTHING)
    cron = find(docs, "CronJob", "infertap-drift-iris")[0]
    assert cron["spec"]["schedule"] == "5 * * * *"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert pod["containers"][0]["command"] == ["infertap"]
    assert args[:3] == ["drift", "run", "/data/captures"]
    assert args[args.index("--baseline") + 1] == "/etc/infertap/baseline/iris.json.gz"
    assert args[args.index("--pushgateway") + 1] == "http://pushgateway.monitoring:9091"
    assert args[-2:] == ["--correction", "bh"]
    canary = find(docs, "CronJob", "infertap-canary-iris")[0]
    cargs = canary["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert cargs[:3] == ["drift", "canary", "/data/captures"]
    assert cargs[cargs.index("--stable") + 1] == "r1"
    assert cargs[cargs.index("--canary") + 1] == "r2"
    spark = find(docs, "SparkApplication")[0]
    assert spark["spec"]["arguments"][spark["spec"]["arguments"].index("--engine") + 1] == "spark"
    assert spark["spec"]["mainApplicationFile"].endswith("/infertap/drift/submit.py")
    assert not find(docs, "CronJob", "infertap-drift-big")


def test_drift_cli_accepts_the_rendered_arguments() -> None:
    import argparse

    from infertap.drift.cli import register

    parser = argparse.ArgumentParser(prog="infertap")
    register(parser.add_subparsers(dest="command"))
    docs = render(EVERYTHING)
    for cron in find(docs, "CronJob"):
        args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        parser.parse_args(args)
    spark = find(docs, "SparkApplication")[0]
    parser.parse_args(["drift", *spark["spec"]["arguments"]])


def test_rules_and_dashboards_are_the_repositorys_files() -> None:
    docs = render(EVERYTHING)
    rule = find(docs, "PrometheusRule")[0]
    source = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    dashboards = {
        key: json.loads(value)
        for cm in find(docs, "ConfigMap")
        if cm["metadata"]["labels"].get("grafana_dashboard") == "1"
        for key, value in cm["data"].items()
    }
    files = {p.name: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
    assert dashboards == files
    assert len(files) == 4


def test_every_container_is_hardened() -> None:
    for doc in render(EVERYTHING):
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template", {}
        ).get("spec")
        if not pod:
            continue
        assert pod["automountServiceAccountToken"] is False, doc["metadata"]["name"]
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"]
            assert sc["readOnlyRootFilesystem"]
            assert not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert all(p["protocol"] == "TCP" for p in c.get("ports", []))


def test_values_schema_refuses_bad_values() -> None:
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError):
        chart.render({"webhook": {"failurePolicy": "Sometimes"}}, name="infertap", namespace="infertap")
    with pytest.raises(helm.HelmError):
        chart.render({"drift": {"models": [{"name": "x"}]}}, name="infertap", namespace="infertap")
    with pytest.raises(helm.HelmError):
        chart.render({"unknownKey": 1}, name="infertap", namespace="infertap")


def test_notes_name_both_adoption_paths() -> None:
    text = notes()
    assert "infertap.io/inject" in text
    assert "http://infertap-collector.infertap.svc.cluster.local:80/" in text


def test_forward_mode_points_injected_sidecars_at_the_collector(tmp_path: Path) -> None:
    docs = render({"injection": {"forwardToCollector": True}})
    text = find(docs, "ConfigMap", "infertap-webhook-injection")[0]["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(text)
    config = load_injection_config(tmp_path / "config.yaml")
    assert config.env["INFERTAP_CAPTURE_PLACEMENT"] == "forward"
    assert config.env["INFERTAP_FORWARD_COLLECTOR_URL"] == "http://infertap-collector.infertap.svc.cluster.local:80"
    assert config.env["INFERTAP_SAMPLE_RATE"] == "1.0"
    service = find(docs, "Service", "infertap-collector")[0]
    assert 80 in {p["port"] for p in service["spec"]["ports"]}
