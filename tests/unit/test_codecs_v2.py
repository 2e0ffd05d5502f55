"""Open Inference Protocol (V2) JSON: every datatype, flat and nested data, envelope fields, malformed bodies."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from infertap.logger.codecs import datatypes, elements, registry
from infertap.logger.codecs.tensor import Payload
from infertap.logger.errors import CodecError

INT_TYPES = ["UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]


def body(doc: Any) -> bytes:
    # The stdlib encoder, as clients use: it writes integers of any size (orjson stops at 64 bits).
    return json.dumps(doc).encode()


def request(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return body({"inputs": list(inputs), **extra})


def decode(raw: bytes, *, response: bool = False) -> Payload:
    return registry.decode("v2", raw, None, response=response)


def decode_one(tensor: dict[str, Any]) -> np.ndarray[Any, Any]:
    payload = decode(request(tensor))
    assert len(payload.tensors) == 1
    return payload.tensors[0].data


def bad(tensor: dict[str, Any]) -> str:
    with pytest.raises(CodecError) as info:
        decode(request(tensor))
    return str(info.value)


# Sample values for every datatype: (datatype, 2x3 nested data, expected flat array).
SAMPLES: list[tuple[str, list[list[Any]], np.ndarray[Any, Any]]] = [
    ("BOOL", [[True, False, True], [False, False, True]], np.array([1, 0, 1, 0, 0, 1], dtype=bool)),
    ("UINT8", [[0, 1, 255], [7, 8, 9]], np.array([0, 1, 255, 7, 8, 9], dtype=np.uint8)),
    ("UINT16", [[0, 1, 65535], [7, 8, 9]], np.array([0, 1, 65535, 7, 8, 9], dtype=np.uint16)),
    ("UINT32", [[0, 1, 2**32 - 1], [7, 8, 9]], np.array([0, 1, 2**32 - 1, 7, 8, 9], dtype=np.uint32)),
    ("UINT64", [[0, 1, 2**64 - 1], [7, 8, 9]], np.array([0, 1, 2**64 - 1, 7, 8, 9], dtype=np.uint64)),
    ("INT8", [[-128, 0, 127], [-1, 8, 9]], np.array([-128, 0, 127, -1, 8, 9], dtype=np.int8)),
    ("INT16", [[-(2**15), 0, 2**15 - 1], [-1, 8, 9]], np.array([-(2**15), 0, 2**15 - 1, -1, 8, 9], np.int16)),
    ("INT32", [[-(2**31), 0, 2**31 - 1], [-1, 8, 9]], np.array([-(2**31), 0, 2**31 - 1, -1, 8, 9], np.int32)),
    ("INT64", [[-(2**63), 0, 2**63 - 1], [-1, 8, 9]], np.array([-(2**63), 0, 2**63 - 1, -1, 8, 9], np.int64)),
    ("FP16", [[0.5, -1.25, 65504.0], [1, 2, 3]], np.array([0.5, -1.25, 65504.0, 1, 2, 3], dtype=np.float16)),
    ("FP32", [[0.1, -1e30, 3.4e38], [1, 2, 3]], np.array([0.1, -1e30, 3.4e38, 1, 2, 3], dtype=np.float32)),
    ("FP64", [[0.1, -1e300, 5e-324], [1, 2, 3]], np.array([0.1, -1e300, 5e-324, 1, 2, 3], dtype=np.float64)),
    (
        "BYTES",
        [["a", "", "ünï"], ["x\u0000", "\u0000", "z"]],
        np.array([b"a", b"", "ünï".encode(), b"x\x00", b"\x00", b"z"], dtype=object),
    ),
]


def test_samples_cover_every_registered_datatype() -> None:
    assert sorted(s[0] for s in SAMPLES) == sorted(datatypes.names())


@pytest.mark.parametrize(("datatype", "nested", "expected"), SAMPLES, ids=[s[0] for s in SAMPLES])
@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_every_datatype_decodes_exactly(
    datatype: str, nested: list[list[Any]], expected: np.ndarray[Any, Any], layout: str
) -> None:
    data = nested if layout == "nested" else [v for row in nested for v in row]
    payload = decode(request({"name": "x", "shape": [2, 3], "datatype": datatype, "data": data}))
    (tensor,) = payload.tensors
    assert payload.protocol == "v2"
    assert tensor.name == "x"
    assert tensor.datatype.name == datatype
    assert tensor.shape == (2, 3)
    assert tensor.data.dtype == datatypes.lookup(datatype).numpy
    assert tensor.data.tolist() == expected.tolist()
    if datatype == "BYTES":
        assert all(type(v) is bytes for v in tensor.data)


def test_nested_data_is_row_major() -> None:
    data = decode_one(
        {"name": "x", "shape": [2, 2, 2], "datatype": "INT32", "data": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}
    )
    assert data.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


def test_fp32_values_round_to_float32() -> None:
    data = decode_one({"name": "x", "shape": [1], "datatype": "FP32", "data": [0.1]})
    assert data[0] == np.float32(0.1)


def test_integers_are_accepted_as_floats() -> None:
    assert decode_one({"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 2]}).tolist() == [1.0, 2.0]


def test_scalar_data_and_empty_tensor() -> None:
    assert decode_one({"name": "x", "shape": [1], "datatype": "INT8", "data": 5}).tolist() == [5]
    empty = decode_one({"name": "x", "shape": [0, 3], "datatype": "FP32", "data": []})
    assert empty.size == 0
    assert empty.dtype == np.float32


def test_several_tensors_keep_json_order_and_parameters() -> None:
    payload = decode(
        request(
            {"name": "b", "shape": [1], "datatype": "FP32", "data": [1.5], "parameters": {"content_type": "np"}},
            {"name": "a", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
            id="req-1",
            parameters={"binary_data_output": True, "custom": {"k": [1, 2]}},
            outputs=[{"name": "y"}],
        )
    )
    assert [t.name for t in payload.tensors] == ["b", "a"]
    assert payload.id == "req-1"
    assert payload.parameters == {"binary_data_output": True, "custom": {"k": [1, 2]}}
    assert payload.model_name == ""


def test_response_carries_model_name_version_and_id() -> None:
    raw = body(
        {
            "model_name": "iris",
            "model_version": "3",
            "id": "abc",
            "parameters": {"sequence_id": 4},
            "outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 2]}],
        }
    )
    payload = decode(raw, response=True)
    assert (payload.model_name, payload.model_version, payload.id) == ("iris", "3", "abc")
    assert payload.parameters == {"sequence_id": 4}
    assert payload.tensors[0].data.tolist() == [0, 2]


def test_response_decoding_reads_outputs_not_inputs() -> None:
    raw = body({"outputs": [{"name": "y", "shape": [1], "datatype": "FP64", "data": [1.0]}]})
    assert decode(raw, response=True).tensors[0].name == "y"
    with pytest.raises(CodecError, match="V2 request has no 'inputs'"):
        decode(raw)


@pytest.mark.parametrize("datatype", INT_TYPES)
def test_integer_range_limits(datatype: str) -> None:
    info = np.iinfo(datatypes.lookup(datatype).numpy)
    ok = decode_one({"name": "x", "shape": [2], "datatype": datatype, "data": [int(info.min), int(info.max)]})
    assert ok.tolist() == [info.min, info.max]
    for value in (int(info.min) - 1, int(info.max) + 1):
        message = bad({"name": "x", "shape": [1], "datatype": datatype, "data": [value]})
        assert f"value out of range [{info.min}, {info.max}]" in message
        assert datatype in message
        assert "'x'" in message


@pytest.mark.parametrize(("datatype", "value"), [("FP16", 65520.0), ("FP16", -1e5), ("FP32", 3.5e38)])
def test_float_overflow_is_an_error_not_inf(datatype: str, value: float) -> None:
    message = bad({"name": "x", "shape": [2], "datatype": datatype, "data": [1.0, value]})
    assert "value out of range" in message
    assert str(value) in message


def test_bools_mixed_into_integers_are_rejected() -> None:
    # NumPy would silently turn True into 1.
    message = bad({"name": "x", "shape": [2], "datatype": "INT32", "data": [1, True]})
    assert "booleans in INT32 data" in message


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        ({"name": "x", "shape": [2], "datatype": "FP32", "data": [True, False]}, "booleans in FP32 data"),
        ({"name": "x", "shape": [2], "datatype": "FP64", "data": [0.5, False]}, "booleans in FP64 data"),
        ({"name": "x", "shape": [2], "datatype": "BOOL", "data": [1, 0]}, "integers in BOOL data"),
        ({"name": "x", "shape": [2], "datatype": "BOOL", "data": [True, 0.5]}, "BOOL data"),
        ({"name": "x", "shape": [2], "datatype": "FP32", "data": ["1.0", "2.0"]}, "strings in FP32 data"),
        ({"name": "x", "shape": [2], "datatype": "INT64", "data": [1, "2"]}, "strings in INT64 data"),
        ({"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 2.5]}, "non-integer number 2.5 in INT8 data"),
        ({"name": "x", "shape": [1], "datatype": "UINT8", "data": [1.0]}, "non-integer number 1.0 in UINT8"),
        ({"name": "x", "shape": [2], "datatype": "FP32", "data": [1, None]}, "nulls in FP32 data"),
        ({"name": "x", "shape": [1], "datatype": "INT32", "data": [{"v": 1}]}, "objects in INT32 data"),
        (
            {"name": "x", "shape": [2], "datatype": "BYTES", "data": ["a", 1]},
            "BYTES data must be strings, got integers",
        ),
        ({"name": "x", "shape": [2], "datatype": "BYTES", "data": ["a", True]}, "must be strings, got booleans"),
        ({"name": "x", "shape": [1], "datatype": "BYTES", "data": [None]}, "must be strings, got nulls"),
        ({"name": "x", "shape": [3], "datatype": "INT32", "data": [[1, 2], [3]]}, "ragged nesting"),
        ({"name": "x", "shape": [3], "datatype": "INT32", "data": [1, [2, 3]]}, "ragged nesting"),
        ({"name": "x", "shape": [3], "datatype": "BYTES", "data": [["a", "b"], ["c"]]}, "ragged nesting"),
        ({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}, "shape [2, 2] needs 4 elements, got 3"),
        (
            {"name": "x", "shape": [2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
            "shape [2] needs 2 elements, got 4",
        ),
        ({"name": "x", "shape": [2, -1], "datatype": "FP32", "data": [1, 2]}, "negative dimension in shape [2, -1]"),
        ({"name": "x", "shape": [2.0], "datatype": "FP32", "data": [1, 2]}, "shape must be a list of integers"),
        ({"name": "x", "shape": ["2"], "datatype": "FP32", "data": [1, 2]}, "shape must be a list of integers"),
        ({"name": "x", "shape": [True], "datatype": "FP32", "data": [1]}, "shape must be a list of integers"),
        ({"name": "x", "shape": 2, "datatype": "FP32", "data": [1, 2]}, "shape must be a list of integers"),
        ({"name": "x", "datatype": "FP32", "data": [1, 2]}, "shape must be a list of integers, got None"),
        ({"name": "x", "shape": [0, 2**63], "datatype": "FP32", "data": []}, "dimension beyond int64"),
        ({"name": "x", "shape": [1], "datatype": "FLOAT32", "data": [1]}, "unknown V2 datatype 'FLOAT32'"),
        ({"name": "x", "shape": [1], "datatype": "fp32", "data": [1]}, "unknown V2 datatype 'fp32'"),
        ({"name": "x", "shape": [1], "data": [1]}, "missing datatype"),
        ({"name": "x", "shape": [1], "datatype": "FP32"}, "no 'data' and no binary_data_size"),
        ({"shape": [1], "datatype": "FP32", "data": [1]}, "tensor #0 has no name"),
        ({"name": "", "shape": [1], "datatype": "FP32", "data": [1]}, "tensor #0 has no name"),
        ({"name": 7, "shape": [1], "datatype": "FP32", "data": [1]}, "tensor #0 has no name"),
        (
            {"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": [1]},
            "'parameters' must be an object",
        ),
    ],
)
def test_malformed_tensor(tensor: dict[str, Any], expected: str) -> None:
    assert expected in bad(tensor)


def test_unknown_datatype_lists_the_known_ones() -> None:
    message = bad({"name": "x", "shape": [1], "datatype": "FP8", "data": [1]})
    assert "known: BOOL, BYTES, FP16" in message


def test_error_names_the_tensor_and_datatype() -> None:
    with pytest.raises(CodecError) as info:
        decode(
            request(
                {"name": "ok", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "pixels", "shape": [1], "datatype": "UINT8", "data": [256]},
            )
        )
    assert info.value.tensor == "pixels"
    assert info.value.datatype == "UINT8"
    assert "tensor 'pixels'" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b'{"inputs": [NaN]}', "invalid JSON"),
        (b"[]", "body must be a JSON object, got list"),
        (b'"inputs"', "body must be a JSON object, got str"),
        (b"{}", "V2 request has no 'inputs'"),
        (b'{"inputs": {"name": "x"}}', "'inputs' must be a list of tensors, got dict"),
        (b'{"inputs": null}', "'inputs' must be a list of tensors, got NoneType"),
        (b'{"inputs": [1]}', "tensor #0 must be an object, got int"),
        (b'{"inputs": [[]]}', "tensor #0 must be an object, got list"),
        (b'{"inputs": [], "parameters": []}', "'parameters' must be an object, got list"),
        (b'{"inputs": [], "parameters": 0}', "'parameters' must be an object, got int"),
        (
            b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]},'
            b' {"name": "a", "shape": [1], "datatype": "FP32", "data": [2]}]}',
            "duplicate tensor name in 'inputs'",
        ),
    ],
)
def test_malformed_envelope(raw: bytes, expected: str) -> None:
    with pytest.raises(CodecError) as info:
        decode(raw)
    assert expected in str(info.value)


def test_binary_data_size_without_the_header_is_an_error() -> None:
    message = bad({"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}})
    assert "binary_data_size without an Inference-Header-Content-Length header" in message


def test_empty_inputs_list_is_a_valid_request() -> None:
    assert decode(request()).tensors == ()


FAST_SAMPLES: list[list[Any]] = [
    [round(0.1 * i, 1) for i in range(212)],  # the benchmark's request
    [0.0, -0.0, 1e-45, 1e-310, 5e-324, 3.3e-39, 123456.789, -98765.4321],  # subnormals, signed zero
    [1, 2, -3, 16777217, 2**53, -(2**53)],  # integers only: exact as doubles up to 2**53
    [1, 0.5, 2**53 + 1, 3.25],  # an integer beyond 2**53: the checked path converts it
    [65504.0, -65504.0, 65519.0, 1.0],  # FP16's largest value, and one that rounds down to it
    [1e300, 2.5],  # beyond FP32: an error on both paths
    [2**63 + 1, 0.5],  # beyond int64, mixed with floats
    [2**64 - 1, 2**63 + 1, 16777217],  # unsigned 64-bit integers only
    [3.4028235e38, -3.4028235e38, 3.4028236e38],  # FP32's largest value, and one past it
    # seeded magnitudes over FP64's, FP32's and FP16's ranges, subnormals included
    [m * 10.0**e for m, e in zip(np.random.default_rng(7).uniform(-10, 10, 400).tolist(), range(-200, 200))],  # noqa: B905
    [m * 10.0**e for m, e in zip(np.random.default_rng(8).uniform(-10, 10, 50).tolist(), range(-46, 4))],  # noqa: B905
]


def _outcome(data: list[Any], datatype: str, *, booleans: bool) -> tuple[str, bytes] | str:
    """``(dtype, bytes)`` of the decoded data, or the error message."""
    try:
        out = elements.from_json(data, datatypes.lookup(datatype), "x", may_hold_booleans=booleans)
    except CodecError as exc:
        return str(exc)
    return str(out.dtype), out.tobytes()


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
@pytest.mark.parametrize("data", FAST_SAMPLES)
def test_float_fast_path_gives_the_checked_paths_bits_or_its_error(datatype: str, data: list[Any]) -> None:
    checked = _outcome(data, datatype, booleans=True)
    assert _outcome(data, datatype, booleans=False) == checked
    if not isinstance(checked, str):
        assert checked[0] == str(datatypes.lookup(datatype).numpy)


@pytest.mark.parametrize(
    ("data", "expected"),
    [([1.0, "2.0"], "strings in FP32 data"), ([1.5, None], "nulls in FP32 data"), ([1.5, [2.0]], "ragged nesting")],
)
def test_float_fast_path_leaves_non_numbers_to_the_checked_path(data: list[Any], expected: str) -> None:
    with pytest.raises(CodecError, match=expected):
        elements.from_json(data, datatypes.lookup("FP32"), "x", may_hold_booleans=False)


def test_a_boolean_anywhere_in_the_body_still_gets_float_data_checked() -> None:
    # "true" in the text (here a parameter) turns the fast path off; the boolean in the data is still refused
    raw = request({"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, True]}, parameters={"flag": True})
    with pytest.raises(CodecError, match="booleans in FP32 data"):
        decode(raw)
    ok = request({"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.5]}, parameters={"flag": False})
    assert decode(ok).tensors[0].data.tolist() == [1.0, 2.5]
