"""Open Inference Protocol (V2) inference requests and responses, JSON and binary tensor extension.

Sources:
- Open Inference Protocol REST, "Inference Request JSON Object" / "Inference Response JSON Object" / "Request
  Input" / "Response Output" (kserve/open-inference-protocol ``specification/protocol/inference_rest.md``):
  ``inputs`` / ``outputs`` are lists of ``{name, shape, datatype, parameters?, data}``; ``data`` is flat or nested
  in row-major order.
- Binary tensor data extension (triton-inference-server/server ``docs/protocol/extension_binary_data.md``): the
  ``Inference-Header-Content-Length`` header gives the size of the JSON part; the remaining bytes are the tensors
  that carry ``parameters.binary_data_size``, concatenated in the order those tensors appear in the JSON.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

from infertap.logger.codecs import datatypes, elements
from infertap.logger.codecs.tensor import Payload, Tensor, json_object
from infertap.logger.errors import CodecError, RegistryError

_MAX_DIM = 2**63 - 1  # shapes are stored as Arrow int64


def decode(body: bytes, header_length: int | None, *, response: bool) -> Payload:
    """Decode a V2 request (``inputs``) or response (``outputs``) body.

    Args:
        body: the whole HTTP body.
        header_length: value of ``Inference-Header-Content-Length`` (binary extension), or ``None`` for pure JSON.
        response: decode ``outputs`` (a response) instead of ``inputs`` (a request).

    Returns:
        A :class:`Payload` with protocol ``"v2"`` or ``"v2-binary"``; its tensors in JSON order.

    Raises:
        CodecError: invalid JSON, a missing or malformed field, an unknown datatype, data that does not match the
            shape, or a binary section whose sizes do not add up.
    """
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        if header_length < 0:
            raise CodecError(f"Inference-Header-Content-Length {header_length} is negative")
        if header_length > len(body):
            raise CodecError(
                f"Inference-Header-Content-Length {header_length} is beyond the end of the {len(body)}-byte body"
            )
        view = memoryview(body)
        json_part, binary = bytes(view[:header_length]), view[header_length:]
    doc = json_object(json_part)
    key = "outputs" if response else "inputs"
    if key not in doc:
        raise CodecError(f"V2 {'response' if response else 'request'} has no '{key}'")
    items = doc[key]
    if not isinstance(items, list):
        raise CodecError(f"'{key}' must be a list of tensors, got {type(items).__name__}")
    tensors: list[Tensor] = []
    names: set[str] = set()
    offset = 0
    # no ``true`` / ``false`` in the text: no JSON boolean anywhere, float data may take the fast conversion
    may_hold_booleans = b"true" in json_part or b"false" in json_part
    for index, item in enumerate(items):
        tensor, used = _tensor(item, index, binary, offset, header_length is not None, may_hold_booleans)
        if tensor.name in names:
            raise CodecError(f"duplicate tensor name in '{key}'", tensor=tensor.name)
        names.add(tensor.name)
        tensors.append(tensor)
        offset += used
    if offset != len(binary):
        raise CodecError(
            f"binary section has {len(binary)} bytes, tensors declare {offset}: {len(binary) - offset} bytes left over"
        )
    params = doc.get("parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise CodecError(f"'parameters' must be an object, got {type(params).__name__}")
    return Payload(
        protocol="v2" if header_length is None else "v2-binary",
        tensors=tuple(tensors),
        model_name=str(doc.get("model_name") or ""),
        model_version=str(doc.get("model_version") or ""),
        id=str(doc.get("id") or ""),
        parameters=params,
    )


def _tensor(
    item: Any, index: int, binary: memoryview, offset: int, has_header: bool, may_hold_booleans: bool
) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise CodecError(f"tensor #{index} must be an object, got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise CodecError(f"tensor #{index} has no name")
    dt_name = item.get("datatype")
    if not isinstance(dt_name, str):
        raise CodecError("missing datatype", tensor=name)
    try:
        datatype = datatypes.lookup(dt_name)
    except RegistryError as exc:
        raise CodecError(str(exc), tensor=name, datatype=dt_name) from None
    shape = item.get("shape")
    if not isinstance(shape, list) or not _plain_dims(shape):
        _bad_shape(shape, name, dt_name)
    params = item.get("parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise CodecError("'parameters' must be an object", tensor=name, datatype=dt_name)
    size = params.get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise CodecError("no 'data' and no binary_data_size", tensor=name, datatype=dt_name)
        data = elements.from_json(item["data"], datatype, name, may_hold_booleans=may_hold_booleans)
        if data.ndim == 1 and data.size == math.prod(shape):  # what Tensor.build checks, for dimensions checked above
            return Tensor(name, datatype, tuple(shape), data), 0
        return Tensor.build(name, datatype, tuple(shape), data), 0
    if "data" in item:
        raise CodecError("both 'data' and binary_data_size", tensor=name, datatype=dt_name)
    if type(size) is not int or size < 0:
        raise CodecError(
            f"binary_data_size must be a non-negative integer, got {size!r}", tensor=name, datatype=dt_name
        )
    if not has_header:
        raise CodecError(
            "binary_data_size without an Inference-Header-Content-Length header", tensor=name, datatype=dt_name
        )
    if offset + size > len(binary):
        raise CodecError(
            f"binary_data_size {size} at offset {offset} runs past the {len(binary)}-byte binary section",
            tensor=name,
            datatype=dt_name,
        )
    data = elements.from_binary(binary[offset : offset + size], datatype, math.prod(shape), name)
    return Tensor.build(name, datatype, tuple(shape), data), size


def _plain_dims(shape: list[Any]) -> bool:
    """Whether every dimension is an integer in ``[0, 2**63 - 1]`` (one pass, for the common case)."""
    for d in shape:  # noqa: SIM110 (a loop: cheaper than all() over a generator for a few dimensions)
        if type(d) is not int or d < 0 or d > _MAX_DIM:
            return False
    return True


def _bad_shape(shape: Any, name: str, dt_name: str) -> NoReturn:
    """Raise the :class:`CodecError` that says what is wrong with ``shape``."""
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise CodecError(f"shape must be a list of integers, got {shape!r}", tensor=name, datatype=dt_name)
    if any(d < 0 for d in shape):
        raise CodecError(f"negative dimension in shape {shape}", tensor=name, datatype=dt_name)
    raise CodecError(f"dimension beyond int64 in shape {shape}", tensor=name, datatype=dt_name)
