"""Hypothesis strategies for inference payloads: JSON shaped like KServe V1 and Open Inference Protocol (V2)
bodies, with wrong types, shapes and sizes mixed in, and the V2 binary tensor extension's header + tail."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from infertap.logger.codecs import datatypes

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
SCALARS = st.one_of(st.none(), NUMBERS, st.text(max_size=12))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=40,
)
DATATYPES = st.one_of(st.sampled_from(datatypes.names()), st.text(max_size=6))
SHAPES = st.lists(st.one_of(st.integers(min_value=-2, max_value=6), st.integers(), st.text(max_size=2)), max_size=4)
NESTED_NUMBERS = st.recursive(st.lists(NUMBERS, max_size=6), lambda inner: st.lists(inner, max_size=4), max_leaves=30)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def v1_body(draw: st.DrawFn) -> bytes:
    """A V1 ``:predict`` request or response body, mostly well-formed, often not."""
    key = draw(st.sampled_from(["instances", "inputs", "predictions", "outputs", "signature_name", "other"]))
    value = draw(
        st.one_of(
            NESTED_NUMBERS,
            st.lists(st.dictionaries(st.text(max_size=6), st.one_of(NESTED_NUMBERS, SCALARS, JSON), max_size=4)),
            st.lists(st.fixed_dictionaries({"b64": st.one_of(st.text(max_size=12), SCALARS)}), max_size=4),
            JSON,
        )
    )
    body = {key: value, **draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2))}
    return _dumps(body)


@st.composite
def v2_tensor(draw: st.DrawFn, binary: bool = False) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": draw(st.one_of(st.text(max_size=8), SCALARS)),
        "shape": draw(SHAPES),
        "datatype": draw(DATATYPES),
    }
    if binary and draw(st.booleans()):
        tensor["parameters"] = {"binary_data_size": draw(st.one_of(st.integers(-4, 64), st.integers(), SCALARS))}
    else:
        tensor["data"] = draw(st.one_of(NESTED_NUMBERS, st.lists(st.text(max_size=6), max_size=6), JSON))
    if draw(st.integers(0, 9)) == 0:
        del tensor[draw(st.sampled_from(sorted(tensor)))]
    return tensor


@st.composite
def v2_body(draw: st.DrawFn) -> bytes:
    """A V2 JSON request or response body."""
    key = draw(st.sampled_from(["inputs", "outputs"]))
    body: dict[str, Any] = {key: draw(st.lists(v2_tensor(), max_size=4))}
    if draw(st.booleans()):
        body["id"] = draw(SCALARS)
    if draw(st.booleans()):
        body["parameters"] = draw(JSON)
    return _dumps(body)


@st.composite
def v2_binary(draw: st.DrawFn) -> tuple[bytes, str]:
    """A V2 binary-extension body and its ``Inference-Header-Content-Length`` value (sometimes wrong)."""
    key = draw(st.sampled_from(["inputs", "outputs"]))
    header = _dumps({key: draw(st.lists(v2_tensor(binary=True), max_size=3))})
    tail = draw(st.binary(max_size=256))
    length = draw(
        st.one_of(
            st.just(str(len(header))),
            st.integers(-3, len(header) + len(tail) + 3).map(str),
            st.text(max_size=4),
        )
    )
    return header + tail, length
