"""KServe V1 (TensorFlow-Serving-style) ``:predict`` requests and responses.

Source: KServe "V1 Inference Protocol" (kserve.github.io, ``modelserving/data_plane/v1_protocol``): a request is
``{"instances": [...]}`` (row format) or ``{"inputs": ...}`` (columnar format); a response is
``{"predictions": [...]}`` or ``{"outputs": ...}``. Each instance is a value, a (nested) list, or an object of
named values; the list index is the batch dimension.

Datatypes are inferred from the JSON values: booleans BOOL, integers INT64 (UINT64 when some exceed INT64 and
none is negative), numbers with any non-integer FP64, strings BYTES; a mix of kinds (booleans and numbers, strings
and numbers), nulls or objects are an error, never a silent conversion. Integers are stored exactly or not at all:
integers beyond UINT64, below INT64, or spanning both, and integers of magnitude beyond 2**53 (the largest FP64
holds exactly) among non-integer numbers are a decode error. orjson parses integer literals beyond 64 bits as
floats; when a tensor holds such a float, the body is parsed again with the standard library's exact integers to
tell an integer literal (an error) from a float literal such as ``1e20`` (FP64).
Row-format instances that are objects become one tensor per key, the batch dimension first; columnar ``inputs``
that are objects likewise (one tensor per key, as given).

Binary values follow TensorFlow Serving's REST convention, which KServe's V1 protocol inherits: an object
``{"b64": "<base64>"}`` stands for the decoded bytes (a BYTES element), as an instance or as a named value.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from infertap.logger.codecs import datatypes, elements
from infertap.logger.codecs.tensor import Payload, Tensor, json_object
from infertap.logger.errors import CodecError

_KIND_TO_DATATYPE: dict[type, str] = {bool: "BOOL", int: "INT64", float: "FP64", str: "BYTES"}
_EXACT_FP64 = 2**53  # integers of larger magnitude have no exact FP64 value (IEEE 754 binary64: 53-bit significand)
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


class _MaybeBigInteger(Exception):
    """A tensor holds an integral float beyond 64 bits: orjson's reading of an integer literal, or a float literal."""


def decode(body: bytes, *, response: bool) -> Payload:
    """Decode a V1 request or response body.

    Returns:
        A :class:`Payload` with protocol ``"v1"``.

    Raises:
        CodecError: invalid JSON, neither of the two keys of its kind, ragged or mixed-type instances, objects
            whose keys differ between instances.
    """
    try:
        return _decode(json_object(body), response, exact=False)
    except _MaybeBigInteger:
        try:
            doc = json.loads(body)  # exact integers of any size; orjson has already checked the syntax
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise CodecError(f"invalid JSON: {exc}") from None
        return _decode(doc, response, exact=True)


def _decode(doc: dict[str, Any], response: bool, *, exact: bool) -> Payload:
    keys = ("predictions", "outputs") if response else ("instances", "inputs")
    key = next((k for k in keys if k in doc), None)
    if key is None:
        raise CodecError(f"V1 {'response' if response else 'request'} has neither '{keys[0]}' nor '{keys[1]}'")
    value = doc[key]
    if key in ("instances", "predictions"):
        if not isinstance(value, list):
            raise CodecError(f"'{key}' must be a list")
        if value and all(isinstance(v, dict) and not _is_b64(v) for v in value):
            tensors = _named_rows(value, exact)
        else:
            tensors = (_tensor(key, value, exact),)
    elif isinstance(value, dict):
        tensors = tuple(_tensor(str(name), v, exact) for name, v in value.items())
    else:
        tensors = (_tensor(key, value, exact),)
    return Payload(protocol="v1", tensors=tensors)


def _named_rows(rows: list[dict[str, Any]], exact: bool) -> tuple[Tensor, ...]:
    names = list(rows[0])
    for i, row in enumerate(rows):
        if list(row) != names and set(row) != set(names):
            raise CodecError(f"instance {i} has keys {sorted(row)}, instance 0 has {sorted(names)}")
    return tuple(_tensor(name, [row[name] for row in rows], exact) for name in names)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _b64_tensor(name: str, values: list[Any]) -> Tensor:
    """A 1-D BYTES tensor of ``{"b64": ...}`` objects, decoded.

    Raises:
        CodecError: a value that is not a base64 string.
    """
    data = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        text = v["b64"]
        try:
            if not isinstance(text, str):
                raise ValueError(f"not a string but {type(text).__name__}")
            data[i] = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise CodecError(f"element {i}: invalid b64 value: {exc}", tensor=name, datatype="BYTES") from None
    return Tensor.build(name, datatypes.lookup("BYTES"), (len(values),), data)


def _tensor(name: str, value: Any, exact: bool) -> Tensor:
    if isinstance(value, list) and value and all(_is_b64(v) for v in value):
        return _b64_tensor(name, value)
    if _is_b64(value):  # one named binary value (columnar inputs): a scalar
        one = _b64_tensor(name, [value])
        return Tensor.build(name, one.datatype, (), one.data)
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError):
        raise CodecError("ragged nesting: lists at the same depth must all have the same length", tensor=name) from None
    kinds = elements.leaf_types(value, raw.ndim)
    if list in kinds:
        raise CodecError("ragged nesting: lists at the same depth must all have the same length", tensor=name)
    if not kinds or (kinds <= {int, float} and float in kinds):  # no elements: keep the shape, as FP64
        dt_name = "FP64"
        if kinds:
            _check_fp64_exact(name, list(elements.leaves(value, raw.ndim)), exact)
    else:
        dt_name = _KIND_TO_DATATYPE.get(kinds.pop(), "") if len(kinds) == 1 else ""
    if not dt_name:
        raise CodecError(
            "values must be all numbers, all booleans or all strings, got "
            + elements.describe(elements.leaf_types(value, raw.ndim)),
            tensor=name,
        )
    datatype = datatypes.lookup(dt_name)
    shape = tuple(int(d) for d in raw.shape)
    if dt_name == "BYTES":
        data = np.empty(raw.size, dtype=object)
        data[:] = [s.encode("utf-8") for s in elements.leaves(value, raw.ndim)]
    elif dt_name == "INT64" and raw.dtype.kind != "i":
        # orjson gives integers up to 2**64 - 1, and NumPy makes floats of int64 and uint64 values together:
        # beyond int64 they are UINT64 when none is negative.
        values = list(elements.leaves(value, raw.ndim))
        lo, hi = min(values), max(values)
        if lo < _INT64_MIN or hi > _UINT64_MAX:
            beyond = lo if lo < _INT64_MIN else hi
            raise CodecError(f"integer {beyond} is beyond INT64 and UINT64: not stored inexactly", tensor=name)
        if lo < 0:
            raise CodecError("integers span beyond both INT64 and UINT64", tensor=name)
        datatype = datatypes.lookup("UINT64")
        data = np.array(values, dtype=datatype.numpy)
    else:
        data = raw.astype(datatype.numpy, copy=False)
    return Tensor.build(name, datatype, shape, data)


def _check_fp64_exact(name: str, values: list[Any], exact: bool) -> None:
    """Check that a tensor stored as FP64 loses no integer.

    Raises:
        _MaybeBigInteger: (first pass) an integral float beyond 64 bits, which may be an integer literal.
        CodecError: an integer of magnitude beyond 2**53 among non-integer numbers.
    """
    if not exact and any(type(v) is float and abs(v) >= 2**63 and v.is_integer() for v in values):
        raise _MaybeBigInteger
    beyond = next((v for v in values if type(v) is int and abs(v) > _EXACT_FP64), None)
    if beyond is not None:
        raise CodecError(
            f"integer {beyond} among non-integer numbers has no exact FP64 value (beyond 2**53)", tensor=name
        )
