"""The registry of payload codecs, keyed by protocol (MLServer's codec registry: a duplicate registration raises).

Protocol detection, the route of an exchange, is :mod:`infertap.logger.routing` (standard library only, so that
the forward-mode sidecar can route without loading NumPy); its names are re-exported here for the decoding side.
Generative exchanges (``openai``, ``v2-generate``) are decoded by :mod:`infertap.logger.genai`, not by a codec
of this registry; protocol ``other`` (health, metadata, explain) is not decoded.
"""

from __future__ import annotations

from typing import Protocol

from infertap.logger.codecs import v1, v2
from infertap.logger.codecs.tensor import Payload
from infertap.logger.errors import RegistryError
from infertap.logger.routing import (
    OPENAI_CHAT,
    OPENAI_COMPLETION,
    OPENAI_EMBEDDING,
    OTHER_ENDPOINT,
    V1_PREDICT,
    V2_GENERATE,
    V2_GENERATE_STREAM,
    V2_INFER,
    InferenceProtocol,
    Route,
    binary_length,
    route,
)

__all__ = [
    "OPENAI_CHAT",
    "OPENAI_COMPLETION",
    "OPENAI_EMBEDDING",
    "OTHER_ENDPOINT",
    "V1_PREDICT",
    "V2_GENERATE",
    "V2_GENERATE_STREAM",
    "V2_INFER",
    "InferenceProtocol",
    "PayloadCodec",
    "Route",
    "binary_length",
    "codec_for",
    "decode",
    "register",
    "route",
]


class PayloadCodec(Protocol):
    """Decodes one protocol's bodies into a :class:`Payload`; raises :class:`infertap.logger.errors.CodecError`."""

    def __call__(self, body: bytes, header_length: int | None, *, response: bool) -> Payload: ...


def _v1(body: bytes, header_length: int | None, *, response: bool) -> Payload:
    return v1.decode(body, response=response)


_CODECS: dict[str, PayloadCodec] = {}


def register(protocol: str, codec: PayloadCodec) -> None:
    """Register the codec of a protocol family.

    Raises:
        RegistryError: the protocol already has a codec.
    """
    if protocol in _CODECS:
        raise RegistryError(f"protocol {protocol!r} already has a codec")
    _CODECS[protocol] = codec


def codec_for(protocol: str) -> PayloadCodec:
    """The codec registered for ``protocol``.

    Raises:
        RegistryError: none is registered.
    """
    try:
        return _CODECS[protocol]
    except KeyError:
        raise RegistryError(f"no codec for protocol {protocol!r}") from None


def decode(protocol: str, body: bytes, header_length: int | None, *, response: bool) -> Payload:
    """Decode ``body`` with the codec of ``protocol`` (``"v1"`` or ``"v2"``).

    Args:
        protocol: :attr:`InferenceProtocol.codec` of the route.
        body: the whole HTTP body.
        header_length: ``Inference-Header-Content-Length`` as an int, or ``None`` when absent.
        response: the body is a response.

    Raises:
        CodecError: the body is not a valid payload of that protocol.
        RegistryError: no codec for ``protocol``.
    """
    return codec_for(protocol)(body, header_length, response=response)


register("v1", _v1)
register("v2", v2.decode)
