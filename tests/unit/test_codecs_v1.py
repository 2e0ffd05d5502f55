"""KServe V1 ``:predict`` requests and responses."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import orjson
import pytest

from infertap.logger.codecs import registry, v1
from infertap.logger.codecs.tensor import Payload
from infertap.logger.errors import CodecError


def decode(doc: Any, *, response: bool = False) -> Payload:
    return registry.decode("v1", json.dumps(doc).encode(), None, response=response)


def test_row_instances_of_numbers() -> None:
    payload = decode({"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]})
    (tensor,) = payload.tensors
    assert payload.protocol == "v1"
    assert (tensor.name, tensor.datatype.name, tensor.shape) == ("instances", "FP64", (2, 4))
    assert tensor.data.tolist() == [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6]


@pytest.mark.parametrize(
    ("instances", "datatype", "flat"),
    [
        ([[1, 2], [3, 4]], "INT64", [1, 2, 3, 4]),
        ([[1, 2.5]], "FP64", [1.0, 2.5]),
        ([True, False], "BOOL", [True, False]),
        (["a", "b\u0000", "ü"], "BYTES", [b"a", b"b\x00", "ü".encode()]),
        ([-(2**63), 2**63 - 1], "INT64", [-(2**63), 2**63 - 1]),
        ([0, 2**64 - 1], "UINT64", [0, 2**64 - 1]),
        ([[[1], [2]], [[3], [4]]], "INT64", [1, 2, 3, 4]),
        ([], "FP64", []),
    ],
)
def test_datatype_is_inferred_from_json_values(instances: list[Any], datatype: str, flat: list[Any]) -> None:
    (tensor,) = decode({"instances": instances}).tensors
    assert tensor.datatype.name == datatype
    assert tensor.data.tolist() == flat
    assert tensor.shape == np.asarray(instances).shape


@pytest.mark.parametrize(
    ("raw", "datatype", "flat"),
    [
        (b'{"instances": [9007199254740993]}', "INT64", [9007199254740993]),  # 2**53 + 1, exact
        (b'{"instances": [[9007199254740992, 0.5]]}', "FP64", [2.0**53, 0.5]),  # 2**53 is exact in FP64
        (b'{"instances": [1e20, 0.5]}', "FP64", [1e20, 0.5]),  # a float literal beyond 64 bits is a float
        (b'{"instances": [-1.8446744073709552e19]}', "FP64", [-1.8446744073709552e19]),
        (b'{"instances": [18446744073709551615, 1]}', "UINT64", [2**64 - 1, 1]),
        (b'{"instances": [-9223372036854775808, 1]}', "INT64", [-(2**63), 1]),
    ],
)
def test_integers_beyond_fp64_precision_are_stored_exactly(raw: bytes, datatype: str, flat: list[Any]) -> None:
    (tensor,) = registry.decode("v1", raw, None, response=False).tensors
    assert tensor.datatype.name == datatype
    assert tensor.data.tolist() == flat
    assert [type(v) for v in tensor.data.tolist()] == [type(v) for v in flat]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"instances": [[9007199254740993, 0.5]]}', "integer 9007199254740993 among non-integer numbers"),
        (b'{"instances": [18446744073709551616]}', "integer 18446744073709551616 is beyond INT64 and UINT64"),
        (b'{"instances": [-9223372036854775809, 5]}', "integer -9223372036854775809 is beyond INT64 and UINT64"),
        (b'{"predictions": [123456789012345678901234567890]}', "is beyond INT64 and UINT64"),
        (b'{"instances": [1e20, 18446744073709551616]}', "integer 18446744073709551616 among non-integer numbers"),
        (b'{"inputs": {"a": [0.5, -9007199254740993]}}', "integer -9007199254740993 among non-integer numbers"),
    ],
)
def test_integers_that_cannot_be_stored_exactly_are_a_decode_error(raw: bytes, expected: str) -> None:
    with pytest.raises(CodecError, match=expected):
        registry.decode("v1", raw, None, response=raw.startswith(b'{"predictions"'))


def test_named_instances_become_one_tensor_per_key() -> None:
    payload = decode({"instances": [{"age": 31, "city": "Oslo"}, {"city": "Lima", "age": 45}]})
    tensors = {t.name: t for t in payload.tensors}
    assert list(tensors) == ["age", "city"]
    assert tensors["age"].datatype.name == "INT64"
    assert tensors["age"].data.tolist() == [31, 45]
    assert tensors["city"].data.tolist() == [b"Oslo", b"Lima"]
    assert tensors["city"].shape == (2,)


def test_named_instances_with_vector_values_keep_the_batch_dimension_first() -> None:
    (tensor,) = decode({"instances": [{"x": [1.0, 2.0]}, {"x": [3.0, 4.0]}]}).tensors
    assert tensor.shape == (2, 2)


def test_columnar_inputs() -> None:
    payload = decode({"inputs": {"a": [[1, 2], [3, 4]], "b": ["x", "y"]}})
    assert [(t.name, t.shape, t.datatype.name) for t in payload.tensors] == [
        ("a", (2, 2), "INT64"),
        ("b", (2,), "BYTES"),
    ]
    (tensor,) = decode({"inputs": [[0.5]]}).tensors
    assert (tensor.name, tensor.shape) == ("inputs", (1, 1))


def test_responses() -> None:
    (tensor,) = decode({"predictions": [0, 1, 1]}, response=True).tensors
    assert (tensor.name, tensor.data.tolist()) == ("predictions", [0, 1, 1])
    (tensor,) = decode({"outputs": [[0.1, 0.9]]}, response=True).tensors
    assert (tensor.name, tensor.shape) == ("outputs", (1, 2))
    payload = decode({"predictions": [{"label": "cat", "score": 0.9}]}, response=True)
    assert [t.name for t in payload.tensors] == ["label", "score"]


@pytest.mark.parametrize(
    ("raw", "response", "expected"),
    [
        (b"{", False, "invalid JSON"),
        (b"", False, "invalid JSON"),
        (b"[1, 2]", False, "body must be a JSON object, got list"),
        (b'{"predictions": [1]}', False, "V1 request has neither 'instances' nor 'inputs'"),
        (b'{"instances": [1]}', True, "V1 response has neither 'predictions' nor 'outputs'"),
        (b'{"instances": {"a": 1}}', False, "'instances' must be a list"),
        (b'{"instances": [[1, 2], [3]]}', False, "ragged nesting"),
        (b'{"instances": [[1, 2], 3]}', False, "ragged nesting"),
        (b'{"instances": [1, true]}', False, "got booleans and integers"),
        (b'{"instances": [1.5, true]}', False, "got booleans and non-integer numbers"),
        (b'{"instances": ["a", 1]}', False, "got integers and strings"),
        (b'{"instances": [1, null]}', False, "got integers and nulls"),
        (b'{"instances": [[{"a": 1}]]}', False, "got objects"),
        (b'{"instances": [-1, 18446744073709551615]}', False, "integers span beyond both INT64 and UINT64"),
        (b'{"instances": [{"a": 1}, {"b": 2}]}', False, "instance 1 has keys ['b'], instance 0 has ['a']"),
        (b'{"instances": [{"a": 1}, {"a": 2, "b": 3}]}', False, "instance 1 has keys ['a', 'b']"),
        (b'{"instances": [{"a": [1, 2]}, {"a": [3]}]}', False, "ragged nesting"),
        (b'{"inputs": {"a": [1, "x"]}}', False, "values must be all numbers, all booleans or all strings"),
    ],
)
def test_malformed(raw: bytes, response: bool, expected: str) -> None:
    with pytest.raises(CodecError) as info:
        registry.decode("v1", raw, None, response=response)
    assert expected in str(info.value)


def test_error_names_the_tensor() -> None:
    with pytest.raises(CodecError) as info:
        decode({"inputs": {"ok": [1], "bad": [1, [2]]}})
    assert info.value.tensor == "bad"


def test_b64_instances_become_decoded_bytes() -> None:
    """TensorFlow Serving's binary convention, used by KServe V1 image models."""
    raw = [b"\x89PNG\r\n\x1a\n\x00\x00", b"\x00\xff"]
    body = orjson.dumps({"instances": [{"b64": base64.b64encode(r).decode()} for r in raw]})
    (t,) = v1.decode(body, response=False).tensors
    assert (t.name, t.datatype.name, t.shape) == ("instances", "BYTES", (2,))
    assert t.data.tolist() == raw


def test_b64_named_values_in_rows_and_columns() -> None:
    img = base64.b64encode(b"\x01\x02\x03").decode()
    rows = v1.decode(orjson.dumps({"instances": [{"image": {"b64": img}, "k": 3}]}), response=False)
    assert {t.name: (t.datatype.name, t.data.tolist()) for t in rows.tensors} == {
        "image": ("BYTES", [b"\x01\x02\x03"]),
        "k": ("INT64", [3]),
    }
    cols = v1.decode(orjson.dumps({"inputs": {"image": {"b64": img}}}), response=False)
    (t,) = cols.tensors
    assert (t.shape, t.data.tolist()) == ((), [b"\x01\x02\x03"])


@pytest.mark.parametrize("bad", ["not base64!", 42])
def test_invalid_b64_is_a_codec_error(bad: object) -> None:
    with pytest.raises(CodecError, match="element 0: invalid b64 value"):
        v1.decode(orjson.dumps({"instances": [{"b64": bad}]}), response=False)
