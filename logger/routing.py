"""The route of an exchange: protocol, model, version and endpoint kind from the path and the binary header.

Imports nothing beyond the standard library, so that the forward-mode sidecar (docs/forward-protocol.md), which
routes every exchange on its hot path, never loads NumPy or pyarrow. The codec registry
(:mod:`infertap.logger.codecs.registry`) re-exports every name here.

Detection uses the path and the ``Inference-Header-Content-Length`` header only, never ``Content-Type``
(tritonclient sends JSON bodies without one):

- ``/v1/models/<name>:predict`` is KServe V1;
- ``/v2/models/<name>[/versions/<version>]/infer`` is the Open Inference Protocol; with the header on the request
  or the response it is the binary tensor extension;
- ``/v2/models/<name>[/versions/<version>]/generate`` and ``generate_stream`` are the Open Inference Protocol's
  generate extension (``v2-generate``);
- ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` (vLLM, llama.cpp, OpenAI) and the same under
  ``/openai`` (KServe's Hugging Face runtime) are the OpenAI-compatible API (``openai``).

Generative exchanges (``openai``, ``v2-generate``) are decoded by :mod:`infertap.logger.genai`, not by a codec
of this registry. Other paths (health, metadata, explain) are protocol ``other`` and are not decoded.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class InferenceProtocol(enum.StrEnum):
    """The protocol of an exchange; the value is what the record's ``protocol`` column holds."""

    V1 = "v1"
    V2 = "v2"
    V2_BINARY = "v2-binary"
    V2_GENERATE = "v2-generate"
    OPENAI = "openai"
    OTHER = "other"

    @property
    def codec(self) -> str:
        """Key of the codec that decodes it (``"v1"``, ``"v2"``; ``"other"`` has none): the binary extension is V2.

        The generative protocols answer their own name: :mod:`infertap.logger.genai` decodes them.
        """
        return _CODEC[self]

    @property
    def generative(self) -> bool:
        """Whether :mod:`infertap.logger.genai` decodes it (OpenAI-compatible API, V2 generate)."""
        return self is InferenceProtocol.OPENAI or self is InferenceProtocol.V2_GENERATE


_CODEC = {
    InferenceProtocol.V1: "v1",
    InferenceProtocol.V2: "v2",
    InferenceProtocol.V2_BINARY: "v2",
    InferenceProtocol.V2_GENERATE: "v2-generate",
    InferenceProtocol.OPENAI: "openai",
    InferenceProtocol.OTHER: "other",
}
#: Endpoint kinds, the ``endpoint`` label of the request metrics.
V1_PREDICT, V2_INFER, OTHER_ENDPOINT = "v1:predict", "v2:infer", "other"
#: Generative endpoint kinds: the part after ``:`` is the API of :mod:`infertap.logger.genai.model`.
OPENAI_CHAT, OPENAI_COMPLETION, OPENAI_EMBEDDING = "openai:chat", "openai:completion", "openai:embedding"
V2_GENERATE, V2_GENERATE_STREAM = "v2:generate", "v2:generate_stream"
_OPENAI_PATHS = {"chat/completions": OPENAI_CHAT, "completions": OPENAI_COMPLETION, "embeddings": OPENAI_EMBEDDING}


def binary_length(value: bytes | None) -> int | None:
    """The length an ``Inference-Header-Content-Length`` value gives: spaces stripped, a decimal integer of at most
    18 digits; ``None`` when the value is absent or is no such number (then a decode error of its side)."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 18 else None  # bytes.isdigit: ASCII digits only


class Route(NamedTuple):
    """Where an exchange goes, computed once per exchange on the hot path (:func:`route`) and carried with it.

    Attributes:
        protocol: the protocol (V2 binary when either side has ``Inference-Header-Content-Length``).
        model_name: the model named in the path, ``""`` when none.
        model_version: the version named in the path (V2 ``/versions/<v>``), ``""`` when none.
        endpoint: the endpoint kind, the ``endpoint`` label of the request metrics: ``v1:predict``, ``v2:infer``
            (JSON or binary) or ``other``.
        request_header: the request's ``Inference-Header-Content-Length`` as received, ``None`` when absent (or
            not a V2 inference path); its length is :attr:`request_length`, parsed where it is used, off the hot path.
        response_header: the same header of the response.
    """

    protocol: InferenceProtocol
    model_name: str
    model_version: str
    endpoint: str
    request_header: bytes | None = None
    response_header: bytes | None = None

    @property
    def request_length(self) -> int | None:
        """The request's binary header length (:func:`binary_length`): ``None`` when absent or unusable."""
        return binary_length(self.request_header)

    @property
    def response_length(self) -> int | None:
        """The response's binary header length (:func:`binary_length`): ``None`` when absent or unusable."""
        return binary_length(self.response_header)


_V1, _V2, _OTHER = InferenceProtocol.V1, InferenceProtocol.V2, InferenceProtocol.OTHER
_V2_BINARY = InferenceProtocol.V2_BINARY


_make = tuple.__new__  # builds a NamedTuple from all its fields without the generated __new__'s extra call (hot path)


def route(path: str, request_header: bytes | None = None, response_header: bytes | None = None) -> Route:
    """The route of an exchange from its path (no query string) and raw binary header values.

    Args:
        path: the request path, percent-decoded.
        request_header: the request's ``Inference-Header-Content-Length`` value as received, ``None`` if absent.
        response_header: the same header of the response.

    >>> route("/v2/models/iris/versions/2/infer")[:3]
    (<InferenceProtocol.V2: 'v2'>, 'iris', '2')
    """
    if path.startswith("/v2/models/"):
        name, _, tail = path[11:].partition("/")
        if tail == "infer":
            version = ""
        elif tail.startswith("versions/") and tail.endswith("/infer"):
            version = tail[9:-6]
        else:
            return _generate(name, tail)
        if request_header is None and response_header is None:
            return _make(Route, (_V2, name, version, V2_INFER, None, None))
        return _make(Route, (_V2_BINARY, name, version, V2_INFER, request_header, response_header))
    if path.startswith("/v1/models/"):
        name, sep, verb = path[11:].partition(":")
        if sep and verb == "predict":
            return _make(Route, (_V1, name, "", V1_PREDICT, None, None))
        return Route(_OTHER, name, "", OTHER_ENDPOINT)
    if path.startswith("/v1/"):
        kind = _OPENAI_PATHS.get(path[4:])
        if kind is not None:
            return Route(InferenceProtocol.OPENAI, "", "", kind)
    elif path.startswith("/openai/v1/"):
        kind = _OPENAI_PATHS.get(path[11:])
        if kind is not None:
            return Route(InferenceProtocol.OPENAI, "", "", kind)
    return Route(_OTHER, "", "", OTHER_ENDPOINT)


def _generate(name: str, tail: str) -> Route:
    """The route of ``/v2/models/<name>/<tail>`` that is not ``infer``: generate, generate_stream, or other."""
    version = ""
    if tail.startswith("versions/"):
        version, _, tail = tail[9:].partition("/")
        if not version:
            return Route(_OTHER, name, "", OTHER_ENDPOINT)
    if name and tail in ("generate", "generate_stream"):
        if tail == "generate":
            return Route(InferenceProtocol.V2_GENERATE, name, version, V2_GENERATE)
        return Route(InferenceProtocol.V2_GENERATE, name, version, V2_GENERATE_STREAM)
    return Route(_OTHER, name, "", OTHER_ENDPOINT)
