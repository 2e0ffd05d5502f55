"""Protocol detection and the registry of payload codecs.

Detection uses the path and the ``Inference-Header-Content-Length`` header only, never ``Content-Type``
(tritonclient sends JSON bodies without one):

- ``/v1/models/<name>:predict`` is KServe V1;
- ``/v2/models/<name>[/versions/<version>]/infer`` is the Open Inference Protocol; with the header it is the binary
  tensor extension.

Other paths (health, metadata, explain) are protocol ``"other"`` and are not decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from infertap.logger.codecs import v1, v2
from infertap.logger.codecs.tensor import Payload
from infertap.logger.errors import RegistryError

BINARY_HEADER = "inference-header-content-length"


@dataclass(frozen=True, slots=True)
class Route:
    """What a request path says: the protocol family and the model it addresses.

    Attributes:
        protocol: ``"v1"``, ``"v2"`` or ``"other"``.
        model_name: the model named in the path, ``""`` when none.
        model_version: the version named in the path (V2 ``/versions/<v>``), ``""`` when none.
    """

    protocol: str
    model_name: str
    model_version: str


def route(path: str) -> Route:
    """Classify a request path (no query string).

    >>> route("/v2/models/iris/versions/2/infer")
    Route(protocol='v2', model_name='iris', model_version='2')
    """
    if path.startswith("/v2/models/"):
        rest = path[len("/v2/models/") :]
        name, _, tail = rest.partition("/")
        if tail == "infer":
            return Route("v2", name, "")
        if tail.startswith("versions/") and tail.endswith("/infer"):
            return Route("v2", name, tail[len("versions/") : -len("/infer")])
        return Route("other", name, "")
    if path.startswith("/v1/models/"):
        rest = path[len("/v1/models/") :]
        name, sep, verb = rest.partition(":")
        return Route("v1" if sep and verb == "predict" else "other", name, "")
    return Route("other", "", "")


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
        protocol: from :func:`route`.
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
