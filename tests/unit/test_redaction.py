"""Query-parameter and JSON-field redaction: the rule syntax, what is replaced, and what is left byte for byte."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pydantic
import pytest

from infertap.logger import jsonpaths
from infertap.logger.config import DEFAULT_REDACTED_QUERY_PARAMS, ProxySettings
from infertap.logger.redact import BodyRedactor, QueryRedactor
from tests.unit.conftest import CapturerFactory, make_exchange


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("token=abc&x=1", "token=REDACTED&x=1"),
        ("X-Amz-Signature=f00&X-Amz-Credential=AKIA%2F&X-Amz-Date=20260101", None),
        ("api%5Fkey=k&API_KEY=k2", "api%5Fkey=REDACTED&API_KEY=REDACTED"),  # percent-decoded, any case
        ("a=1;sig=s;b=2", "a=1;sig=REDACTED;b=2"),
        ("token=&token&x", "token=&token&x"),  # nothing to hide
        ("tokenizer=bert&keyboard=1", "tokenizer=bert&keyboard=1"),  # whole names only
        ("", ""),
    ],
)
def test_query_parameters_are_redacted(query: str, expected: str | None) -> None:
    redact = QueryRedactor(DEFAULT_REDACTED_QUERY_PARAMS)
    if expected is None:
        expected = "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Date=20260101"
    assert redact(query) == expected


@pytest.mark.parametrize(
    ("rule", "name", "steps"),
    [
        ("api_key", "api_key", ()),
        ("API_Key", "api_key", ()),
        ("parameters.api_key", "", ("parameters", "api_key")),
        ("$.inputs[*].parameters.user", "", ("inputs", None, "parameters", "user")),
        ("$.instances[0].*", "", ("instances", 0, "*")),
        ("$.a[1][*]", "", ("a", 1, None)),
    ],
)
def test_rule_syntax(rule: str, name: str, steps: tuple[Any, ...]) -> None:
    parsed = jsonpaths.parse(rule)
    assert (parsed.name, parsed.steps) == (name, steps)


@pytest.mark.parametrize("rule", ["", "*", "$..password", "$.a[?(@.x)]", "a.b[1:2]", "$.a['b']", "a..b", "a."])
def test_unsupported_rules_are_rejected(rule: str) -> None:
    with pytest.raises(ValueError, match="JSON field rule"):
        jsonpaths.parse(rule)


def test_bad_rules_are_a_settings_error() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"JSON field rule '\$\.\.password'"):
        ProxySettings(redact_json_fields_extra=["$..password"])


def test_lists_replace_or_extend() -> None:
    extended = ProxySettings(redact_query_params_extra=["tenant"], redact_json_fields_extra=["ssn"])
    assert extended.redacted_query_params() == [*DEFAULT_REDACTED_QUERY_PARAMS, "tenant"]
    assert "password" in extended.redacted_json_fields()
    assert extended.redacted_json_fields()[-1] == "ssn"
    replaced = ProxySettings(redact_query_params=["only"], redact_json_fields=[])
    assert (replaced.redacted_query_params(), replaced.redacted_json_fields()) == (["only"], [])


DOC = {
    "id": "1",
    "parameters": {"API_KEY": "s1", "nested": {"password": "s2"}, "temperature": 0.5},
    "inputs": [
        {"name": "a", "data": [1], "parameters": {"user": "u1"}},
        {"name": "b", "data": ["password"], "parameters": {"user": "u2"}},
    ],
}


def test_named_fields_anywhere_and_paths_from_the_root() -> None:
    doc = json.loads(json.dumps(DOC))
    redactor = BodyRedactor(["api_key", "password", "$.inputs[*].parameters.user"])
    assert redactor.document(doc) == 4
    assert doc["parameters"] == {"API_KEY": "[REDACTED]", "nested": {"password": "[REDACTED]"}, "temperature": 0.5}
    assert [i["parameters"]["user"] for i in doc["inputs"]] == ["[REDACTED]", "[REDACTED]"]
    assert doc["inputs"][1]["data"] == ["password"]  # values are not names


def test_an_index_path_selects_one_element() -> None:
    doc = json.loads(json.dumps(DOC))
    assert BodyRedactor(["$.inputs[1].parameters.user"]).document(doc) == 1
    assert [i["parameters"]["user"] for i in doc["inputs"]] == ["u1", "[REDACTED]"]


def test_raw_bodies() -> None:
    redactor = BodyRedactor(["password", "parameters.api_key"])
    untouched = b'{ "inputs" : [ ] ,"x":1.50}'
    assert redactor.body(untouched) is untouched  # byte for byte when nothing is selected
    assert orjson.loads(redactor.body(orjson.dumps(DOC))) == {
        **DOC,
        "parameters": {"API_KEY": "[REDACTED]", "nested": {"password": "[REDACTED]"}, "temperature": 0.5},
    }
    # not JSON (cut, corrupted): the named members are replaced in the text, a cut value too
    assert redactor.body(b'{"password" : "hun\\"ter2", "api_key": 12345, "x": [') == (
        b'{"password" : "[REDACTED]", "api_key": "[REDACTED]", "x": ['
    )
    assert redactor.body(b'{"a": 1, "PASSWORD": "cut here') == b'{"a": 1, "PASSWORD": "[REDACTED]"'


def test_binary_bodies_keep_their_binary_part_and_header_length() -> None:
    header = b'{"parameters": {"password": "a-long-secret-value"}, "inputs": []}'
    body = header + b"\x00\x01binary"
    out = BodyRedactor(["password"]).body(body, len(header))
    assert out[len(header) :] == b"\x00\x01binary"
    assert orjson.loads(out[: len(header)]) == {"parameters": {"password": "[REDACTED]"}, "inputs": []}


def test_capture_redacts_before_the_record_exists(make_capturer: CapturerFactory) -> None:
    capturer = make_capturer(keep_raw_bodies=True)
    capturer.query = QueryRedactor(["token"])
    capturer.fields = BodyRedactor(["api_key", "x"])
    body = b'{"parameters": {"api_key": "k"}, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}'
    rec = capturer.process(make_exchange(query="token=t&y=2", request_body=body))
    assert rec is not None
    assert rec.query == "token=REDACTED&y=2"
    assert rec.request_parameters == '{"api_key":"[REDACTED]"}'
    assert rec.request_body is not None
    assert b'"k"' not in rec.request_body
    assert rec.inputs == ()  # the tensor is named like a redacted field
    assert [t.name for t in rec.outputs] == ["y"]
