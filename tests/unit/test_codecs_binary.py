"""The V2 binary tensor extension, checked against tritonclient's own encoder and decoder."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

from infertap.logger.codecs import registry
from infertap.logger.codecs.tensor import Payload
from infertap.logger.errors import CodecError

RNG = np.random.default_rng(20240611)


def sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """Random values of ``datatype`` covering its extremes."""
    n = int(np.prod(shape))
    if datatype == "BOOL":
        return RNG.integers(0, 2, n).astype(bool).reshape(shape)
    if datatype == "BYTES":
        pool = [b"", b"a", b"\x00", b"\x00\xff\x00", "ünï".encode(), b"x" * 300, bytes(range(256))]
        return np.array([pool[i % len(pool)] for i in range(n)], dtype=object).reshape(shape)
    dtype = np.dtype(datatype.replace("FP", "float").replace("UINT", "uint").replace("INT", "int").lower())
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        arr = RNG.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
        arr[:2] = [info.min, info.max][:n]
        return arr.reshape(shape)
    arr = RNG.standard_normal(n).astype(dtype) * dtype.type(100)
    arr[:3] = [np.finfo(dtype).max, np.finfo(dtype).tiny, -0.0][:n]
    return arr.reshape(shape)


DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
DATATYPES += ["FP16", "FP32", "FP64", "BYTES"]


def triton_request(
    arrays: dict[str, np.ndarray[Any, Any]], binary: bool | dict[str, bool] = True, **kwargs: Any
) -> tuple[bytes, int | None]:
    inputs = []
    for name, arr in arrays.items():
        datatype = "BYTES" if arr.dtype == object else np_to_triton_dtype(arr.dtype)
        inp = httpclient.InferInput(name, list(arr.shape), datatype)
        use_binary = binary if isinstance(binary, bool) else binary[name]
        inp.set_data_from_numpy(arr, binary_data=use_binary)
        inputs.append(inp)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, **kwargs)
    return bytes(body), json_size


def server_response(
    arrays: dict[str, np.ndarray[Any, Any]], binary: bool | dict[str, bool] = True, **envelope: Any
) -> tuple[bytes, int | None]:
    """A response body laid out as Triton / KServe write one: JSON header, then each binary output's bytes."""
    outputs, chunks = [], []
    for name, arr in arrays.items():
        datatype = "BYTES" if arr.dtype == object else np_to_triton_dtype(arr.dtype)
        out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary if isinstance(binary, bool) else binary[name]:
            if datatype == "BYTES":
                raw = serialize_byte_tensor(arr).item()  # a 0-d object array holding the bytes
            else:
                raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            out["data"] = [v.decode() for v in arr.flat] if datatype == "BYTES" else arr.flatten().tolist()
        outputs.append(out)
    header = json.dumps({**envelope, "outputs": outputs}).encode()
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def decode(body: bytes, header_length: int | None, *, response: bool = False) -> Payload:
    return registry.decode("v2", body, header_length, response=response)


def assert_same(tensor_data: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> None:
    flat = expected.reshape(-1)
    assert tensor_data.shape == flat.shape
    if flat.dtype == object:
        assert tensor_data.tolist() == flat.tolist()
    else:
        assert tensor_data.dtype == flat.dtype
        # byte-for-byte: catches endianness, -0.0 vs 0.0 and NaN payloads
        assert tensor_data.tobytes() == flat.tobytes()


@pytest.mark.parametrize("datatype", DATATYPES)
def test_request_round_trip_every_datatype(datatype: str) -> None:
    arr = sample(datatype, (4, 3, 2))
    body, json_size = triton_request({"input-0": arr})
    assert json_size is not None
    payload = decode(body, json_size)
    assert payload.protocol == "v2-binary"
    (tensor,) = payload.tensors
    assert (tensor.name, tensor.datatype.name, tensor.shape) == ("input-0", datatype, (4, 3, 2))
    assert_same(tensor.data, arr)


@pytest.mark.parametrize("datatype", DATATYPES)
def test_request_as_json_from_tritonclient(datatype: str) -> None:
    arr = sample(datatype, (3, 2))
    if datatype == "BYTES":  # tritonclient's JSON path needs UTF-8 text
        arr = np.array([b"a", b"", "ünï".encode(), b"d\x00", b"e", b"f"], dtype=object).reshape(3, 2)
    if datatype == "FP16":  # JSON renders float16 via float; avoid the extremes JSON encoders print as inf
        arr = arr.astype(np.float64).clip(-60000, 60000).astype(np.float16)
    body, json_size = triton_request({"x": arr}, binary=False)
    assert json_size is None
    payload = decode(body, None)
    assert payload.protocol == "v2"
    assert payload.tensors[0].shape == (3, 2)
    assert_same(payload.tensors[0].data, arr)


def test_fp16_special_values_survive_binary() -> None:
    arr = np.array([np.inf, -np.inf, np.nan, 65504, -65504, 6e-8, -0.0, 1.0], dtype=np.float16)
    body, json_size = triton_request({"h": arr})
    assert_same(decode(body, json_size).tensors[0].data, arr)


def test_empty_tensors_and_empty_strings() -> None:
    arrays = {
        "empty-f": np.zeros((0, 4), dtype=np.float32),
        "empty-s": np.array([], dtype=object).reshape(0, 2),
        "blank": np.array([b"", b""], dtype=object),
    }
    body, json_size = triton_request(arrays)
    payload = decode(body, json_size)
    assert [t.shape for t in payload.tensors] == [(0, 4), (0, 2), (2,)]
    assert payload.tensors[2].data.tolist() == [b"", b""]


def test_mixed_binary_and_json_tensors_in_one_request() -> None:
    arrays = {
        "a": sample("FP32", (2, 5)),
        "b": np.array([[1, 2], [3, 4]], dtype=np.int64),
        "c": sample("BYTES", (3,)),
        "d": sample("BOOL", (7,)),
        "e": sample("UINT16", (1, 1)),
    }
    binary = {"a": True, "b": False, "c": True, "d": False, "e": True}
    body, json_size = triton_request(arrays, binary=binary)
    assert json_size is not None
    header = json.loads(body[:json_size])
    assert "data" in header["inputs"][1]  # tritonclient really wrote b as JSON
    payload = decode(body, json_size)
    assert [t.name for t in payload.tensors] == list(arrays)
    for tensor in payload.tensors:
        assert_same(tensor.data, arrays[tensor.name])


def test_request_id_parameters_and_outputs_from_tritonclient() -> None:
    body, json_size = triton_request(
        {"x": sample("INT32", (2,))},
        outputs=[httpclient.InferRequestedOutput("y", binary_data=True)],
        request_id="r-42",
        parameters={"temperature": 0.5, "tag": "canary"},
    )
    payload = decode(body, json_size)
    assert payload.id == "r-42"
    assert payload.parameters == {"temperature": 0.5, "tag": "canary"}


def test_binary_data_output_parameter_is_kept() -> None:
    body, json_size = triton_request({"x": sample("INT8", (2,))})  # no outputs: binary_data_output=true
    assert decode(body, json_size).parameters == {"binary_data_output": True}


@pytest.mark.parametrize("datatype", DATATYPES)
def test_response_round_trip_agrees_with_tritonclient(datatype: str) -> None:
    arrays = {"out": sample(datatype, (5, 2)), "prob": sample("FP32", (5,))}
    body, header_length = server_response(arrays, model_name="digits", model_version="1", id="q")
    payload = decode(body, header_length, response=True)
    assert (payload.model_name, payload.model_version, payload.id) == ("digits", "1", "q")
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    for tensor in payload.tensors:
        theirs = result.as_numpy(tensor.name)
        assert theirs is not None
        assert tensor.shape == theirs.shape
        assert_same(tensor.data, theirs)
        assert_same(tensor.data, arrays[tensor.name])


def test_response_with_json_and_binary_outputs() -> None:
    arrays = {"label": np.array([b"cat", b"dog"], dtype=object), "score": np.array([0.25, 0.75])}
    body, header_length = server_response(arrays, binary={"label": False, "score": True})
    payload = decode(body, header_length, response=True)
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    for tensor in payload.tensors:
        theirs = result.as_numpy(tensor.name).reshape(-1).tolist()
        if tensor.datatype.name == "BYTES":  # tritonclient gives JSON BYTES back as str
            theirs = [v.encode() for v in theirs]
        assert tensor.data.tolist() == theirs


def binary_body(tensors: list[dict[str, Any]], tail: bytes) -> tuple[bytes, int]:
    header = json.dumps({"inputs": tensors}).encode()
    return header + tail, len(header)


def fp32(n: int, **params: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [n], "datatype": "FP32", "parameters": params}


def raises(body: bytes, header_length: int | None, *, response: bool = False) -> str:
    with pytest.raises(CodecError) as info:
        decode(body, header_length, response=response)
    return str(info.value)


def test_header_length_beyond_body() -> None:
    body, _n = binary_body([fp32(1, binary_data_size=4)], b"\x00" * 4)
    assert f"Inference-Header-Content-Length {len(body) + 1} is beyond the end of the {len(body)}-byte body" in raises(
        body, len(body) + 1
    )


def test_negative_header_length() -> None:
    body, _ = binary_body([fp32(1, binary_data_size=4)], b"\x00" * 4)
    assert "Inference-Header-Content-Length -1 is negative" in raises(body, -1)


def test_header_length_cutting_the_json() -> None:
    body, n = binary_body([fp32(1, binary_data_size=4)], b"\x00" * 4)
    assert "invalid JSON" in raises(body, n - 1)


def test_header_length_too_long_swallows_binary_into_json() -> None:
    body, n = binary_body([fp32(1, binary_data_size=4)], b"\x00" * 4)
    assert "invalid JSON" in raises(body, n + 2)


def test_binary_data_size_too_big() -> None:
    body, n = binary_body([fp32(2, binary_data_size=12)], b"\x00" * 8)
    assert "binary_data_size 12 at offset 0 runs past the 8-byte binary section" in raises(body, n)


def test_binary_data_size_too_small_for_the_shape() -> None:
    body, n = binary_body([fp32(3, binary_data_size=8)], b"\x00" * 8)
    assert "binary_data_size is 8 bytes, shape needs 3 x 4 = 12" in raises(body, n)


def test_leftover_bytes_after_the_last_tensor() -> None:
    body, n = binary_body([fp32(2, binary_data_size=8)], b"\x00" * 11)
    assert "binary section has 11 bytes, tensors declare 8: 3 bytes left over" in raises(body, n)


def test_second_tensor_runs_past_the_end() -> None:
    tensors = [fp32(1, binary_data_size=4), {**fp32(2, binary_data_size=8), "name": "y"}]
    body, n = binary_body(tensors, b"\x00" * 10)
    message = raises(body, n)
    assert "binary_data_size 8 at offset 4 runs past the 10-byte binary section" in message
    assert "tensor 'y'" in message


def test_both_data_and_binary_data_size() -> None:
    body, n = binary_body([{**fp32(1, binary_data_size=4), "data": [1.0]}], b"\x00" * 4)
    assert "both 'data' and binary_data_size" in raises(body, n)


@pytest.mark.parametrize("size", [-4, 4.0, "4", True, [4]])
def test_binary_data_size_must_be_a_non_negative_integer(size: Any) -> None:
    body, n = binary_body([fp32(1, binary_data_size=size)], b"\x00" * 4)
    assert "binary_data_size must be a non-negative integer" in raises(body, n)


def test_bytes_length_prefix_running_past_the_end() -> None:
    tail = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 10) + b"xyz"
    tensor = {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(tail)}}
    body, n = binary_body([tensor], tail)
    assert "BYTES element 1 declares 10 bytes, 3 remain" in raises(body, n)


def test_bytes_section_without_room_for_a_length() -> None:
    tail = struct.pack("<I", 1) + b"a" + b"\x00\x00\x00"
    tensor = {"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(tail)}}
    body, n = binary_body([tensor], tail)
    assert "BYTES element 1 has no 4-byte length" in raises(body, n)


def test_bytes_section_with_bytes_left_over() -> None:
    tail = struct.pack("<I", 1) + b"a" + b"zz"
    tensor = {"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(tail)}}
    body, n = binary_body([tensor], tail)
    assert "2 bytes left after 1 BYTES elements" in raises(body, n)


def test_bytes_shape_far_larger_than_the_section() -> None:
    # A huge declared shape must be an error, not an attempt to allocate it.
    tensor = {"name": "s", "shape": [2**40, 2**20], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}
    body, n = binary_body([tensor], b"\x00" * 8)
    assert "binary_data_size 8 is too small for" in raises(body, n)


def test_bool_byte_other_than_zero_or_one() -> None:
    tensor = {"name": "b", "shape": [3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}}
    body, n = binary_body([tensor], b"\x01\x00\x02")
    assert "BOOL byte 2 at element 2 is not 0 or 1" in raises(body, n)


def test_negative_shape_in_binary_tensor() -> None:
    tensor = {"name": "x", "shape": [-1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}
    body, n = binary_body([tensor], b"\x00" * 4)
    assert "negative dimension in shape [-1]" in raises(body, n)


def test_response_binary_errors_are_codec_errors() -> None:
    body, n = server_response({"y": np.arange(4, dtype=np.int32)})
    assert "runs past" in raises(body[:-1], n, response=True)
    assert "left over" in raises(body + b"\x00", n, response=True)


def test_every_truncation_of_a_valid_body_is_a_codec_error() -> None:
    # However a body is cut (a capture cap, a broken client), decoding fails cleanly.
    arrays = {"a": sample("FP32", (2, 2)), "s": sample("BYTES", (3,)), "b": sample("BOOL", (2,))}
    body, json_size = triton_request(arrays)
    assert json_size is not None
    for cut in range(len(body)):
        with pytest.raises(CodecError):
            decode(body[:cut], json_size)
