"""Decoded tensors and payloads, the codecs' output."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from infertap.logger.codecs.datatypes import Datatype
from infertap.logger.errors import CodecError


@dataclass(frozen=True, slots=True)
class Tensor:
    """One named tensor.

    Attributes:
        name: tensor name (V2 ``name``; for V1, ``instances`` / ``predictions`` or the key of named instances).
        datatype: its V2 datatype.
        shape: the V2 shape; ``shape[0]`` is the batch dimension when the model has one.
        data: the elements, flat, in row-major order, of dtype ``datatype.numpy`` (for BYTES, an object array of
            ``bytes``); ``data.size == prod(shape)``.
    """

    name: str
    datatype: Datatype
    shape: tuple[int, ...]
    data: np.ndarray[Any, np.dtype[Any]]

    @staticmethod
    def build(name: str, datatype: Datatype, shape: tuple[int, ...], data: np.ndarray[Any, np.dtype[Any]]) -> Tensor:
        """A tensor after checking that ``data`` holds exactly ``prod(shape)`` elements.

        Raises:
            CodecError: a negative dimension, or an element count that does not match the shape.
        """
        if any(d < 0 for d in shape):
            raise CodecError(f"negative dimension in shape {list(shape)}", tensor=name, datatype=datatype.name)
        expected = math.prod(shape)
        flat = data.reshape(-1)
        if flat.size != expected:
            raise CodecError(
                f"shape {list(shape)} needs {expected} elements, got {flat.size}",
                tensor=name,
                datatype=datatype.name,
            )
        return Tensor(name, datatype, shape, flat)


@dataclass(frozen=True, slots=True)
class Payload:
    """One decoded request or response body.

    Attributes:
        protocol: ``"v1"``, ``"v2"`` (JSON) or ``"v2-binary"`` (binary tensor extension).
        tensors: decoded tensors in body order (V2 ``inputs`` or ``outputs``; V1 instances or predictions).
        model_name: ``model_name`` from a V2 response body, else ``""``.
        model_version: ``model_version`` from a V2 response body, else ``""``.
        id: the V2 ``id`` field, else ``""``.
        parameters: the body's top-level ``parameters`` object (V2), else empty.
    """

    protocol: str
    tensors: tuple[Tensor, ...]
    model_name: str = ""
    model_version: str = ""
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


def json_object(body: bytes) -> dict[str, Any]:
    """The JSON object a V1 or V2 body holds.

    Raises:
        CodecError: invalid JSON, or JSON that is not an object.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CodecError(f"body must be a JSON object, got {type(doc).__name__}")
    return doc
