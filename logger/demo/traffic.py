"""Demo traffic, sent with tritonclient's HTTP client: V2 JSON to the tabular model, V2 binary tensors to the image
model, and a few malformed requests sent raw.

Every request carries its own ``X-Request-Id`` so that what was sent can be matched, element by element, with
what the sidecar wrote.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from infertap.demo.models import DemoModel


@dataclass
class Sent:
    """One request the demo sent: its id, period, the input sent (``None`` for malformed ones), the outcome."""

    request_id: str
    model: str
    period: str
    inputs: np.ndarray[Any, np.dtype[Any]] | None
    ok: bool
    latency_s: float
    status: str = ""
    outputs: np.ndarray[Any, np.dtype[Any]] | None = None


@dataclass
class TrafficLog:
    """Everything the demo sent, in order, and when each traffic period began and ended.

    Attributes:
        sent: every request.
        periods: period name -> (first send, last answer) as aware UTC datetimes.
    """

    sent: list[Sent] = field(default_factory=list)
    periods: dict[str, tuple[dt.datetime, dt.datetime]] = field(default_factory=dict)

    @contextmanager
    def period(self, name: str) -> Iterator[None]:
        """Record the UTC time span of the requests sent inside the ``with`` block as period ``name``."""
        start = dt.datetime.now(dt.UTC)
        yield
        self.periods[name] = (start, dt.datetime.now(dt.UTC))


def send_v2(
    url: str,
    model: DemoModel,
    rows: np.ndarray[Any, np.dtype[Any]],
    *,
    period: str,
    binary: bool,
    batch: int,
    log: TrafficLog,
    tag: str = "",
) -> None:
    """Send ``rows`` to ``model`` through ``url`` (``host:port``) in requests of ``batch`` instances.

    Request ids are ``<model>-<period>-<tag><offset>``, unique within a run as long as ``tag`` tells apart
    several calls for one model and period.

    With ``binary`` the inputs and the requested output use the binary tensor extension; otherwise JSON.
    """
    client = triton.InferenceServerClient(url=url, connection_timeout=30.0, network_timeout=30.0)
    datatype = "FP64" if rows.dtype == np.float64 else "FP32"
    try:
        for start in range(0, len(rows), batch):
            x = np.ascontiguousarray(rows[start : start + batch])
            rid = f"{model.name}-{period}-{tag}{start:05d}"
            inp = triton.InferInput("input-0", list(x.shape), datatype)
            inp.set_data_from_numpy(x, binary_data=binary)
            outputs = [triton.InferRequestedOutput("predict", binary_data=True)] if binary else None
            t0 = time.perf_counter()
            predicted = None
            try:
                result = client.infer(model.name, [inp], outputs=outputs, headers={"X-Request-Id": rid}, request_id=rid)
                ok, status, predicted = True, "200", result.as_numpy("predict")
            except InferenceServerException as exc:
                ok, status = False, str(exc.status() or exc.message())
            log.sent.append(Sent(rid, model.name, period, x, ok, time.perf_counter() - t0, status, predicted))
    finally:
        client.close()


#: Malformed V2 requests: (label, body, extra headers). Each reaches the predictor, which rejects it.
MALFORMED: tuple[tuple[str, bytes, dict[str, str]], ...] = (
    ("invalid-json", b'{"inputs": [', {}),
    (
        "strings-in-fp32",
        b'{"inputs":[{"name":"input-0","shape":[1,2],"datatype":"FP32","data":["a","b"]}]}',
        {},
    ),
    (
        "shape-mismatch",
        b'{"inputs":[{"name":"input-0","shape":[2,3],"datatype":"FP64","data":[1.0,2.0]}]}',
        {},
    ),
    (
        "binary-header-past-body",
        b'{"inputs":[{"name":"input-0","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}',
        {"Inference-Header-Content-Length": "4096"},
    ),
)


def send_malformed(base_url: str, model: str, log: TrafficLog) -> None:
    """POST each of :data:`MALFORMED` to ``base_url`` (``http://host:port``) for ``model``."""
    for label, body, headers in MALFORMED:
        rid = f"{model}-malformed-{label}"
        req = urllib.request.Request(
            f"{base_url}/v2/models/{model}/infer",
            data=body,
            headers={"X-Request-Id": rid, **headers},
            method="POST",
        )
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status = str(resp.status)
        except urllib.error.HTTPError as exc:
            status = str(exc.code)
        log.sent.append(Sent(rid, model, "malformed", None, status == "200", time.perf_counter() - t0, status))
