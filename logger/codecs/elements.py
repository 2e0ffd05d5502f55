"""Turning JSON ``data`` (flat or nested, row-major) into a flat NumPy array of one V2 datatype.

The checks are strict so that what is stored is what the client meant: a boolean where a number is declared (or a
number where BOOL is), a string where a number is, a non-integer where an integer is, a non-string in BYTES data,
or a value out of the datatype's range is a :class:`infertap.logger.errors.CodecError`, never a silent cast.
"""

from __future__ import annotations

import array
from collections.abc import Iterator
from itertools import chain
from typing import Any, cast

import numpy as np

from infertap.logger.codecs.datatypes import Datatype
from infertap.logger.errors import CodecError

#: Python types of JSON leaves accepted for each NumPy kind of a datatype (``orjson`` gives exact types).
_ALLOWED_LEAVES: dict[str, frozenset[type]] = {
    "b": frozenset({bool}),
    "u": frozenset({int}),
    "i": frozenset({int}),
    "f": frozenset({int, float}),
    "O": frozenset({str}),
}
_JSON_KIND = {bool: "booleans", int: "integers", float: "non-integer numbers", str: "strings", dict: "objects"}
_RAGGED = "ragged nesting: lists at the same depth must all have the same length"
#: Float datatypes :func:`from_json` has a fast path for.
_FAST_FLOATS = frozenset({"FP16", "FP32", "FP64"})
#: FP32 values the fast path keeps are below this magnitude: every integer below 2**53 is exact as a double, so
#: converting it through a double gives what converting the integer gives (and no such value overflows FP32).
_FP32_EXACT_BELOW = 2.0**53
#: FP16's largest finite value: beyond it the fast path leaves the value to the checked path (an overflow).
_FP16_MAX = 65504.0


def leaves(data: Any, ndim: int) -> Iterator[Any]:
    """The leaves of ``data``, a (nested) list that is a regular array of ``ndim`` dimensions, in row-major order."""
    items: Any = [data] if ndim == 0 else data
    for _ in range(ndim - 1):
        items = chain.from_iterable(items)
    return iter(items)


def leaf_types(data: Any, ndim: int) -> set[type]:
    """Python types of the leaves of ``data`` (see :func:`leaves`)."""
    return set(map(type, leaves(data, ndim)))


def describe(kinds: set[type]) -> str:
    """Human words for a set of JSON leaf types (``"booleans"``, ``"nulls"`` ...)."""
    words = sorted(
        "nulls" if t is type(None) else "nested lists" if t is list else _JSON_KIND.get(t, t.__name__) for t in kinds
    )
    return " and ".join(words)


def from_json(
    data: Any, datatype: Datatype, tensor: str, *, may_hold_booleans: bool = True
) -> np.ndarray[Any, np.dtype[Any]]:
    """Flat array of ``datatype.numpy`` from JSON ``data`` (a scalar, a flat list or nested lists).

    ``may_hold_booleans=False`` says that the JSON document ``data`` comes from holds no ``true`` / ``false``
    literal (its text has neither word): a flat list for a float datatype then takes a fast path (one conversion
    through doubles, which refuses strings, nulls, lists and objects) with the same result as the checked path; anything
    the fast path does not take (a non-number, a value it cannot convert exactly) goes the checked way.

    Raises:
        CodecError: ragged nesting, a value of the wrong JSON kind (a boolean for a number, a number for BOOL, a
            string for a number, a non-string for BYTES, null, an object), a non-integer for an integer datatype,
            a value outside the datatype's range.
    """
    if not may_hold_booleans and type(data) is list and data and datatype.name in _FAST_FLOATS:
        fast = _floats(data, datatype)
        if fast is not None:
            return fast
    if datatype.name == "BYTES":
        return _bytes_from_json(data, tensor)
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError):
        raise CodecError(_RAGGED, tensor=tensor, datatype=datatype.name) from None
    if raw.size == 0:
        return np.empty(0, dtype=datatype.numpy)
    kind = datatype.numpy.kind
    kinds = leaf_types(data, raw.ndim)
    if list in kinds:
        raise CodecError(_RAGGED, tensor=tensor, datatype=datatype.name)
    if kind in "iu":
        return _integers(data, raw, kinds, datatype, tensor)
    bad = kinds - _ALLOWED_LEAVES[kind]
    if bad:
        raise CodecError(f"{describe(bad)} in {datatype.name} data", tensor=tensor, datatype=datatype.name)
    if kind == "b":
        return raw.reshape(-1)
    with np.errstate(over="ignore"):
        out = raw.astype(datatype.numpy, copy=False).reshape(-1)
    if not np.isfinite(out).all():  # JSON has no inf/nan, so this is an overflow of the datatype
        finfo = np.finfo(cast("np.dtype[np.floating[Any]]", datatype.numpy))
        value = raw.reshape(-1)[~np.isfinite(out)][0]
        raise CodecError(
            f"value out of range [{float(finfo.min)}, {float(finfo.max)}]: {value}",
            tensor=tensor,
            datatype=datatype.name,
        )
    return out


def _floats(data: list[Any], datatype: Datatype) -> np.ndarray[Any, np.dtype[Any]] | None:
    """A flat list of JSON numbers (no booleans: the caller checked) as FP16, FP32 or FP64, or ``None`` when it holds
    anything else (``array.array`` refuses strings, nulls, lists and objects) or a value the checked path should
    judge: FP32 magnitudes from 2**53 (an overflow or an integer that a double would round), FP16 beyond its range.

    ``array.array("f")`` stores each value as C's ``(float)`` of its double, the conversion NumPy's cast makes.
    """
    try:
        if datatype.name == "FP32":
            out = np.frombuffer(array.array("f", data), dtype=np.float32)
            return out if np.abs(out).max() < _FP32_EXACT_BELOW else None
        wide = np.frombuffer(array.array("d", data), dtype=np.float64)
    except (TypeError, OverflowError):
        return None
    if datatype.name == "FP64":  # a double is what the checked path makes of every JSON number, integers included
        return wide
    return wide.astype(np.float16) if np.abs(wide).max() <= _FP16_MAX else None


def _integers(
    data: Any, raw: np.ndarray[Any, np.dtype[Any]], kinds: set[type], datatype: Datatype, tensor: str
) -> np.ndarray[Any, np.dtype[Any]]:
    info = np.iinfo(cast("np.dtype[np.integer[Any]]", datatype.numpy))
    if kinds == {int}:
        flat: list[int] = []
        if raw.dtype.kind in "iu":
            lo, hi = int(raw.min()), int(raw.max())
        else:  # NumPy makes floats of a mix of negative and beyond-int64 integers: compare exact Python ints
            flat = list(leaves(data, raw.ndim))
            lo, hi = min(flat), max(flat)
        if lo < info.min or hi > info.max:
            raise CodecError(
                f"value out of range [{info.min}, {info.max}]: {lo if lo < info.min else hi}",
                tensor=tensor,
                datatype=datatype.name,
            )
        if raw.dtype.kind in "iu":
            return raw.astype(datatype.numpy, copy=False).reshape(-1)
        return np.array(flat, dtype=datatype.numpy)
    if kinds <= {int, float}:
        floats = [v for v in leaves(data, raw.ndim) if type(v) is float]
        # orjson parses integers beyond 64 bits as floats: those are out of range, not "non-integer".
        beyond = next((v for v in floats if v < info.min or v > info.max or v <= -(2**63)), None)
        if beyond is not None:
            raise CodecError(
                f"value out of range [{info.min}, {info.max}]: {beyond}", tensor=tensor, datatype=datatype.name
            )
        value = next((v for v in floats if not v.is_integer()), floats[0])
        raise CodecError(f"non-integer number {value} in {datatype.name} data", tensor=tensor, datatype=datatype.name)
    raise CodecError(f"{describe(kinds - {int})} in {datatype.name} data", tensor=tensor, datatype=datatype.name)


def _bytes_from_json(data: Any, tensor: str) -> np.ndarray[Any, np.dtype[Any]]:
    # dtype=object keeps strings intact (a NumPy unicode array would drop trailing NULs) and turns ragged nesting
    # into list leaves instead of an exception.
    raw = np.asarray(data, dtype=object)
    leaves = raw.reshape(-1).tolist()
    kinds = set(map(type, leaves))
    if list in kinds:
        raise CodecError(_RAGGED, tensor=tensor, datatype="BYTES")
    if kinds - {str}:
        raise CodecError(f"BYTES data must be strings, got {describe(kinds - {str})}", tensor=tensor, datatype="BYTES")
    out = np.empty(len(leaves), dtype=object)
    out[:] = [s.encode("utf-8") for s in leaves]
    return out


def from_binary(buf: memoryview, datatype: Datatype, count: int, tensor: str) -> np.ndarray[Any, np.dtype[Any]]:
    """Flat array of ``count`` elements from a binary-extension tensor section.

    Fixed-size types are little-endian (a zero-copy, read-only view of ``buf``); BOOL is one byte per element
    (0 or 1); BYTES is, per element, a 4-byte little-endian length then that many bytes.

    Raises:
        CodecError: the section's size does not match ``count`` elements, a BOOL byte other than 0/1, or a BYTES
            length that runs past the section.
    """
    if datatype.name == "BYTES":
        return _bytes_elements(buf, count, tensor)
    expected = count * datatype.itemsize
    if len(buf) != expected:
        raise CodecError(
            f"binary_data_size is {len(buf)} bytes, shape needs {count} x {datatype.itemsize} = {expected}",
            tensor=tensor,
            datatype=datatype.name,
        )
    if datatype.name == "BOOL":
        raw = np.frombuffer(buf, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            index = int(np.argmax(raw > 1))
            raise CodecError(
                f"BOOL byte {int(raw[index])} at element {index} is not 0 or 1", tensor=tensor, datatype="BOOL"
            )
        return raw.view(np.bool_)
    return np.frombuffer(buf, dtype=datatype.numpy)


def _bytes_elements(buf: memoryview, count: int, tensor: str) -> np.ndarray[Any, np.dtype[Any]]:
    end = len(buf)
    if count * 4 > end:  # every element has at least its 4-byte length
        raise CodecError(
            f"binary_data_size {end} is too small for {count} BYTES elements (4-byte length each)",
            tensor=tensor,
            datatype="BYTES",
        )
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > end:
            raise CodecError(f"BYTES element {i} has no 4-byte length", tensor=tensor, datatype="BYTES")
        n = int.from_bytes(buf[pos : pos + 4], "little")
        pos += 4
        if pos + n > end:
            raise CodecError(
                f"BYTES element {i} declares {n} bytes, {end - pos} remain", tensor=tensor, datatype="BYTES"
            )
        out[i] = bytes(buf[pos : pos + n])
        pos += n
    if pos != end:
        raise CodecError(f"{end - pos} bytes left after {count} BYTES elements", tensor=tensor, datatype="BYTES")
    return out
