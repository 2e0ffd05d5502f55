"""The forward protocol's frames and batches: what leaves the pod is redacted, and the collector reads it back."""

from __future__ import annotations

import msgpack
import pytest

from infertap.logger.exchange import Exchange
from infertap.logger.forward import wire
from infertap.logger.forward.shipper import Framer
from infertap.logger.redact import HeaderFilter, QueryRedactor
from infertap.logger.routing import InferenceProtocol, route
from infertap.logger.sampling import Sampler

META = {k: "" for k in wire.META_KEYS} | {"sample_rate": 1.0, "header_allowlist": [], "redact_json_fields": []}


def _exchange(**kw: object) -> Exchange:
    base: dict[str, object] = dict(
        request_id="r1", start_unix_ns=1_700_000_000_000_000_000, end_unix_ns=1_700_000_000_002_000_000,
        upstream_s=0.0015, total_s=0.002, method="POST", path="/v2/models/iris/infer", query="api_key=s3cret&x=1",
        status_code=200,
        request_headers=[(b"Authorization", b"Bearer t0ken"), (b"X-Tenant", b"acme"),
                         (b"Inference-Header-Content-Length", b"42")],
        response_headers=[(b"Content-Type", b"application/json")],
        request_body=b'{"inputs":[]}', response_body=b'{"outputs":[]}', request_body_bytes=13, response_body_bytes=14,
    )  # fmt: skip
    base.update(kw)
    ex = Exchange(**base)  # type: ignore[arg-type]
    ex.route = route(ex.path, b"42", None)  # as the proxy sets it when it hands the exchange over
    return ex


def _framer(mode: str = "all", rate: float = 1.0) -> Framer:
    return Framer(Sampler(rate, seed=1), HeaderFilter(["x-tenant", "authorization"]), QueryRedactor(["api_key"]), mode)


def test_a_frame_carries_redacted_headers_and_query_and_reads_back() -> None:
    frame = _framer().frame(_exchange())
    assert frame is not None
    assert b"t0ken" not in frame
    assert b"s3cret" not in frame
    ex = wire.unpack_frame(frame)
    assert ex.request_headers == [(b"x-tenant", b"acme")]  # Authorization never passes the allow-list
    assert ex.query == "api_key=REDACTED&x=1"
    assert (ex.request_id, ex.status_code, ex.upstream_s, ex.request_body) == ("r1", 200, 0.0015, b'{"inputs":[]}')
    assert ex.route.protocol is InferenceProtocol.V2_BINARY  # from the binary header, sent raw
    assert ex.route.request_length == 42


def test_capture_mode_leaves_the_other_side_body_behind() -> None:
    frame = _framer("request").frame(_exchange())
    assert frame is not None
    ex = wire.unpack_frame(frame)
    assert ex.response_body == b""
    assert ex.response_body_bytes == 14
    assert ex.request_body


def test_sampling_happens_in_the_sidecar_and_failures_are_kept() -> None:
    framer = _framer(rate=0.0)
    assert framer.frame(_exchange()) is None
    assert framer.frame(_exchange(status_code=503)) is not None


def test_batches_round_trip_and_other_versions_are_refused() -> None:
    frames = [b"a", b"bc"]
    meta, got = wire.unpack_batch(wire.pack_batch(META, frames))
    assert (meta, got) == (META, frames)
    with pytest.raises(wire.WireError, match="version 2 not supported"):
        wire.unpack_batch(msgpack.packb({"v": 2, "meta": META, "frames": []}))
    with pytest.raises(wire.WireError, match="lacks pod"):
        wire.unpack_batch(wire.pack_batch({k: v for k, v in META.items() if k != "pod"}, frames))
    with pytest.raises(wire.WireError, match="not msgpack"):
        wire.unpack_batch(b"\xc1")
    with pytest.raises(wire.WireError, match="array of 23"):
        wire.unpack_frame(msgpack.packb([1, 2]))


def test_forward_mode_without_a_collector_url_exits_2_with_one_line() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERTAP_")}
    proc = subprocess.run(
        [sys.executable, "-m", "infertap.logger.forward"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "forward_collector_url must be http://host[:port]" in lines[0]
