"""The example SparkApplication of docs/drift.md is valid against the Spark Operator's CRD schema (v1beta2), and its
driver program is the drift CLI with the Spark engine."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "tests/data/spark-operator/sparkoperator.k8s.io_sparkapplications.yaml"
MANIFEST = ROOT / "docs/examples/drift-sparkapplication.yaml"


@functools.cache
def _schema() -> dict[str, Any]:
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_example_manifest_is_valid() -> None:
    doc = yaml.safe_load(MANIFEST.read_text())
    assert doc["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert doc["kind"] == "SparkApplication"
    jsonschema.validate(doc, _schema())
    assert doc["spec"]["mainApplicationFile"].endswith("infertap/drift/submit.py")
    args = doc["spec"]["arguments"]
    assert args[0] == "run"
    assert args[args.index("--engine") + 1] == "spark"
    from infertap.drift.submit import main

    with pytest.raises(SystemExit) as done:  # argparse's --help
        main(["run", "--help"])
    assert done.value.code == 0


def test_the_schema_catches_mistakes() -> None:
    doc = yaml.safe_load(MANIFEST.read_text())
    bad = copy.deepcopy(doc)
    del bad["spec"]["mainApplicationFile"]
    with pytest.raises(jsonschema.ValidationError, match="mainApplicationFile"):
        jsonschema.validate(bad, _schema())
    bad = copy.deepcopy(doc)
    bad["spec"]["type"] = "Ruby"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _schema())
