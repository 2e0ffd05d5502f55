"""Protocol detection from the path, and the codec and datatype registries."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from infertap.logger.codecs import datatypes, registry
from infertap.logger.codecs.registry import Route
from infertap.logger.errors import RegistryError


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/iris/infer", Route("v2", "iris", "")),
        ("/v2/models/iris/versions/2/infer", Route("v2", "iris", "2")),
        ("/v2/models/my-model.v1/versions/2024-01/infer", Route("v2", "my-model.v1", "2024-01")),
        ("/v2/models/iris", Route("other", "iris", "")),
        ("/v2/models/iris/ready", Route("other", "iris", "")),
        ("/v2/models/iris/versions/2", Route("other", "iris", "")),
        ("/v2/models/iris/generate", Route("other", "iris", "")),
        ("/v2/models/iris/infer/", Route("other", "iris", "")),
        ("/v2/health/ready", Route("other", "", "")),
        ("/v2", Route("other", "", "")),
        ("/v1/models/iris:predict", Route("v1", "iris", "")),
        ("/v1/models/iris:explain", Route("other", "iris", "")),
        ("/v1/models/iris", Route("other", "iris", "")),
        ("/v1/models/iris:predict/extra", Route("other", "iris", "")),
        ("/", Route("other", "", "")),
        ("/metrics", Route("other", "", "")),
        ("", Route("other", "", "")),
        ("/V2/models/iris/infer", Route("other", "", "")),
    ],
)
def test_route(path: str, expected: Route) -> None:
    assert registry.route(path) == expected


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
