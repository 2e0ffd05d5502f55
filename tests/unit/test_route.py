"""Protocol detection from the path, and the codec and datatype registries."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from infertap.logger.codecs import datatypes, registry
from infertap.logger.codecs.registry import InferenceProtocol, Route
from infertap.logger.errors import RegistryError

V1, V2, OTHER = InferenceProtocol.V1, InferenceProtocol.V2, InferenceProtocol.OTHER


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/iris/infer", Route(V2, "iris", "", "v2:infer")),
        ("/v2/models/iris/versions/2/infer", Route(V2, "iris", "2", "v2:infer")),
        ("/v2/models/my-model.v1/versions/2024-01/infer", Route(V2, "my-model.v1", "2024-01", "v2:infer")),
        ("/v2/models/iris", Route(OTHER, "iris", "", "other")),
        ("/v2/models/iris/ready", Route(OTHER, "iris", "", "other")),
        ("/v2/models/iris/versions/2", Route(OTHER, "iris", "", "other")),
        ("/v2/models/iris/generate", Route(InferenceProtocol.V2_GENERATE, "iris", "", "v2:generate")),
        (
            "/v2/models/iris/versions/4/generate_stream",
            Route(InferenceProtocol.V2_GENERATE, "iris", "4", "v2:generate_stream"),
        ),
        ("/v2/models/iris/versions//generate", Route(OTHER, "iris", "", "other")),
        ("/v2/models//generate", Route(OTHER, "", "", "other")),
        ("/v2/models/iris/generate/x", Route(OTHER, "iris", "", "other")),
        ("/v1/chat/completions", Route(InferenceProtocol.OPENAI, "", "", "openai:chat")),
        ("/openai/v1/chat/completions", Route(InferenceProtocol.OPENAI, "", "", "openai:chat")),
        ("/v1/completions", Route(InferenceProtocol.OPENAI, "", "", "openai:completion")),
        ("/openai/v1/embeddings", Route(InferenceProtocol.OPENAI, "", "", "openai:embedding")),
        ("/v1/models", Route(OTHER, "", "", "other")),
        ("/openai/v1/models", Route(OTHER, "", "", "other")),
        ("/v1/chat/completions/", Route(OTHER, "", "", "other")),
        ("/v2/models/iris/infer/", Route(OTHER, "iris", "", "other")),
        ("/v2/health/ready", Route(OTHER, "", "", "other")),
        ("/v2", Route(OTHER, "", "", "other")),
        ("/v1/models/iris:predict", Route(V1, "iris", "", "v1:predict")),
        ("/v1/models/iris:explain", Route(OTHER, "iris", "", "other")),
        ("/v1/models/iris", Route(OTHER, "iris", "", "other")),
        ("/v1/models/iris:predict/extra", Route(OTHER, "iris", "", "other")),
        ("/", Route(OTHER, "", "", "other")),
        ("/metrics", Route(OTHER, "", "", "other")),
        ("", Route(OTHER, "", "", "other")),
        ("/V2/models/iris/infer", Route(OTHER, "", "", "other")),
    ],
)
def test_route(path: str, expected: Route) -> None:
    assert registry.route(path) == expected


def test_binary_header_on_either_side_makes_v2_binary() -> None:
    req = registry.route("/v2/models/m/versions/3/infer", b" 42 ", None)
    assert req == Route(InferenceProtocol.V2_BINARY, "m", "3", "v2:infer", b" 42 ", None)
    assert (req.request_length, req.response_length, req.protocol.codec) == (42, None, "v2")
    resp = registry.route("/v2/models/m/infer", None, b"7")
    assert resp == Route(InferenceProtocol.V2_BINARY, "m", "", "v2:infer", None, b"7")
    assert resp.response_length == 7
    for unusable in (b"1e3", b"-3", b"9" * 19, b"", b"0x10"):
        bad = registry.route("/v2/models/m/infer", unusable, None)
        assert (bad.protocol, bad.request_header, bad.request_length) == (InferenceProtocol.V2_BINARY, unusable, None)
    # the header means nothing outside V2 inference paths
    assert registry.route("/v1/models/m:predict", b"42", None) == Route(V1, "m", "", "v1:predict")
    assert registry.route("/v2/models/m/ready", b"42", b"42") == Route(OTHER, "m", "", "other")


def test_codec_registry_rejects_duplicates_and_unknown_protocols() -> None:
    with pytest.raises(RegistryError, match="protocol 'v2' already has a codec"):
        registry.register("v2", registry.codec_for("v1"))
    with pytest.raises(RegistryError, match="no codec for protocol 'other'"):
        registry.decode("other", b"{}", None, response=False)
    # the failed registration left the original codec in place
    assert registry.decode("v2", b'{"inputs": []}', None, response=False).protocol == "v2"


def test_datatype_registry() -> None:
    assert datatypes.names() == [
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    ]  # fmt: skip
    fp16 = datatypes.lookup("FP16")
    assert (fp16.numpy, fp16.itemsize) == (np.dtype("<f2"), 2)
    assert datatypes.lookup("BYTES").itemsize == 0
    assert datatypes.from_arrow(pa.binary()).name == "BYTES"
    assert datatypes.from_arrow(pa.uint8()).name == "UINT8"
    with pytest.raises(RegistryError, match="datatype 'FP32' is already registered"):
        datatypes.register(datatypes.lookup("FP32"))
    with pytest.raises(RegistryError, match="unknown V2 datatype 'fp32'"):
        datatypes.lookup("fp32")
    with pytest.raises(RegistryError, match="no V2 datatype for Arrow type string"):
        datatypes.from_arrow(pa.string())
