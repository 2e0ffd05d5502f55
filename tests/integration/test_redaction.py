"""Secrets in query strings and JSON bodies never reach a written file: a real sidecar, a real upstream, every file
under the output directory searched (Parquet files decoded, since their pages are compressed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import pyarrow.parquet as pq
import tritonclient.http as httpclient
from aiohttp import web

from tests.integration.proxy_fixtures import run, sidecar, upstream

SECRETS = {
    "SECRET-QUERY-TOKEN", "SECRET-QUERY-SIG", "SECRET-QUERY-EXTRA", "SECRET-PARAM-KEY", "SECRET-TENSOR-USER",
    "SECRET-BROKEN-PASSWORD", "SECRET-V1-SSN", "SECRET-BINARY-KEY", "SECRET-RESPONSE-TOKEN",
}  # fmt: skip
V2_BODY = {
    "id": "r-1",
    "parameters": {"api_key": "SECRET-PARAM-KEY", "temperature": 0.5},
    "inputs": [
        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.5], "parameters": {"user": "SECRET-TENSOR-USER"}}
    ],
}


async def predictor(request: web.Request) -> web.Response:
    """A V2 / V1 answer whose parameters hold a secret of the server's own."""
    await request.read()
    if request.path.startswith("/v1/"):
        return web.json_response({"predictions": [1]})
    return web.json_response(
        {
            "model_name": "m",
            "parameters": {"Access_Token": "SECRET-RESPONSE-TOKEN"},
            "outputs": [{"name": "y", "shape": [1], "datatype": "INT64", "data": [7]}],
        }
    )


def binary_request() -> tuple[bytes, int]:
    inp = httpclient.InferInput("pixels", [2], "UINT8")
    inp.set_data_from_numpy(np.array([3, 4], dtype=np.uint8), binary_data=True)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [inp], parameters={"api_key": "SECRET-BINARY-KEY"}
    )
    return bytes(body), int(json_size)


def written(root: Path) -> tuple[bytes, list[dict[str, Any]]]:
    """Every byte of every file under ``root``, plus the rows of every Parquet file (decoded)."""
    blob, rows = b"", []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        blob += path.read_bytes()
        if path.suffix == ".parquet":
            rows += pq.read_table(path).to_pylist()
    return blob, rows


def test_no_written_file_holds_a_query_or_body_secret(tmp_path: Path) -> None:
    out = tmp_path / "records"
    binary, json_size = binary_request()

    async def scenario() -> list[tuple[int, bytes]]:
        async with (
            upstream({"/{tail:.*}": predictor}) as url,
            sidecar(
                url,
                out,
                keep_raw_bodies=True,
                redact_query_params_extra=["session_hint"],
                redact_json_fields_extra=["$.inputs[*].parameters.user", "ssn"],
            ) as car,
            aiohttp.ClientSession() as s,
        ):
            base = f"http://127.0.0.1:{car.port}"
            sent = [
                (
                    "/v2/models/m/infer?token=SECRET-QUERY-TOKEN&X-Amz-Signature=SECRET-QUERY-SIG&page=2"
                    "&session_hint=SECRET-QUERY-EXTRA",
                    orjson.dumps(V2_BODY),
                    {},
                ),
                ("/v2/models/m/infer", b'{"password": "SECRET-BROKEN-PASSWORD", "inputs": [', {}),
                ("/v1/models/m:predict", b'{"instances": [{"ssn": "SECRET-V1-SSN", "age": 31}]}', {}),
                ("/v2/models/m/infer", binary, {"Inference-Header-Content-Length": str(json_size)}),
            ]
            answers = []
            for target, body, headers in sent:
                async with s.post(base + target, data=body, headers=headers) as r:
                    answers.append((r.status, await r.read()))
            return answers

    answers = run(scenario())
    assert [status for status, _ in answers] == [200, 200, 200, 200]
    assert b"SECRET-RESPONSE-TOKEN" in answers[0][1]  # the client gets the answer as the predictor sent it

    blob, rows = written(out)
    assert len(rows) == 4
    text = repr(rows).encode()
    for secret in SECRETS:
        assert secret.encode() not in blob, secret
        assert secret.encode() not in text, secret

    by_path = {(r["path"], r["protocol"], r["decode_error"] is None): r for r in rows}
    v2 = by_path[("/v2/models/m/infer", "v2", True)]
    assert v2["query"] == "token=REDACTED&X-Amz-Signature=REDACTED&page=2&session_hint=REDACTED"
    assert orjson.loads(v2["request_parameters"]) == {"api_key": "[REDACTED]", "temperature": 0.5}
    assert orjson.loads(v2["response_parameters"]) == {"Access_Token": "[REDACTED]"}
    kept = orjson.loads(v2["request_body"])
    assert kept["inputs"][0]["parameters"] == {"user": "[REDACTED]"}
    assert kept["inputs"][0]["data"] == [1.5]
    assert v2["input.x"] == {"shape": [1], "data": [1.5]}
    assert v2["inference_id"] == "r-1"

    broken = by_path[("/v2/models/m/infer", "v2", False)]
    assert broken["request_body"] == b'{"password": "[REDACTED]", "inputs": ['

    v1 = by_path[("/v1/models/m:predict", "v1", True)]
    assert v1["input.age"] == {"shape": [1], "data": [31]}
    assert "input.ssn" not in v1 or v1["input.ssn"] is None  # a tensor named like a redacted field is not stored

    bin_row = by_path[("/v2/models/m/infer", "v2-binary", True)]
    assert bin_row["input.pixels"] == {"shape": [2], "data": [3, 4]}
    raw = bin_row["request_body"]
    assert raw[json_size:] == binary[json_size:]  # the binary part is kept as sent
    assert orjson.loads(raw[:json_size])["parameters"]["api_key"] == "[REDACTED]"  # the header length still fits
