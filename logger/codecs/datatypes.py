"""Open Inference Protocol (V2) tensor datatypes and their NumPy / Arrow counterparts.

Source: the Open Inference Protocol, "Tensor Data Types" (kserve/open-inference-protocol,
``specification/protocol/inference_rest.md``): BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES.
The binary tensor extension stores fixed-size types little-endian, BOOL as one byte per element, and BYTES as a
4-byte little-endian length followed by the bytes, per element.

The registry is keyed by the datatype name and raises on duplicate registration, as MLServer's codec registry does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from infertap.logger.errors import RegistryError


@dataclass(frozen=True, slots=True)
class Datatype:
    """One V2 datatype.

    Attributes:
        name: the V2 name (``"FP32"``).
        numpy: the NumPy dtype of decoded elements, little-endian (``object`` for BYTES, holding ``bytes``).
        arrow: the Arrow type of one element in the record schema (``binary`` for BYTES).
        itemsize: bytes per element in the binary extension, 0 for the variable-size BYTES.
    """

    name: str
    numpy: np.dtype[np.generic]
    arrow: pa.DataType
    itemsize: int


_REGISTRY: dict[str, Datatype] = {}


def register(datatype: Datatype) -> None:
    """Add a datatype to the registry.

    Raises:
        RegistryError: a datatype of that name is already registered.
    """
    if datatype.name in _REGISTRY:
        raise RegistryError(f"datatype {datatype.name!r} is already registered")
    _REGISTRY[datatype.name] = datatype


def lookup(name: str) -> Datatype:
    """The registered datatype called ``name`` (case-sensitive, as the spec spells them).

    Raises:
        RegistryError: no such datatype.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RegistryError(f"unknown V2 datatype {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    """Names of every registered datatype, in registration order."""
    return list(_REGISTRY)


def from_arrow(arrow_type: pa.DataType) -> Datatype:
    """The datatype whose Arrow element type is ``arrow_type`` (BYTES for ``binary``).

    Raises:
        RegistryError: no datatype maps to that Arrow type.
    """
    for dt in _REGISTRY.values():
        if dt.arrow.equals(arrow_type):
            return dt
    raise RegistryError(f"no V2 datatype for Arrow type {arrow_type}")


for _name, _np, _pa in (
    ("BOOL", np.dtype(np.bool_), pa.bool_()),
    ("UINT8", np.dtype("<u1"), pa.uint8()),
    ("UINT16", np.dtype("<u2"), pa.uint16()),
    ("UINT32", np.dtype("<u4"), pa.uint32()),
    ("UINT64", np.dtype("<u8"), pa.uint64()),
    ("INT8", np.dtype("<i1"), pa.int8()),
    ("INT16", np.dtype("<i2"), pa.int16()),
    ("INT32", np.dtype("<i4"), pa.int32()),
    ("INT64", np.dtype("<i8"), pa.int64()),
    ("FP16", np.dtype("<f2"), pa.float16()),
    ("FP32", np.dtype("<f4"), pa.float32()),
    ("FP64", np.dtype("<f8"), pa.float64()),
):
    register(Datatype(_name, _np, _pa, _np.itemsize))
register(Datatype("BYTES", np.dtype(object), pa.binary(), 0))
