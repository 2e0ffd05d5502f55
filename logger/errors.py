"""Exceptions of the :mod:`logger` package: one base class, subclasses carrying their context."""

from __future__ import annotations


class InfertapError(Exception):
    """Base class of every error raised on purpose by :mod:`logger`."""


class CodecError(InfertapError):
    """A payload or one of its tensors could not be decoded.

    Attributes:
        tensor: name of the tensor at fault, or ``""`` when the fault is in the envelope.
        datatype: its V2 datatype (``"FP32"`` ...), or ``""`` when unknown.
    """

    def __init__(self, message: str, *, tensor: str = "", datatype: str = "") -> None:
        where = ", ".join(p for p in (f"tensor {tensor!r}" if tensor else "", datatype) if p)
        super().__init__(f"{message} ({where})" if where else message)
        self.tensor = tensor
        self.datatype = datatype


class RegistryError(InfertapError):
    """A codec or datatype was registered twice, or looked up and not found."""


class SinkError(InfertapError):
    """A sink could not write, flush or close.

    Attributes:
        sink: the sink's name (``"file"``, ``"s3"`` ...).
    """

    def __init__(self, message: str, *, sink: str) -> None:
        super().__init__(f"{sink}: {message}")
        self.sink = sink


class SchemaError(InfertapError):
    """Records or files do not follow the record schema (missing column, wrong type, other version)."""
