"""The hot path's routing work per exchange, before and after routing became one typed call (issue 7, item 3).

Runs ``N`` times what the proxy does per exchange for routing: scanning the request head's fields (``Content-Length``,
``Expect``, ``X-Request-Id`` and, after, ``Inference-Header-Content-Length``), scanning the upstream answer's fields
(after: also ``Inference-Header-Content-Length``), and routing the path (before: ``route(path)`` and an endpoint
table; after: ``route(path, request_header, response_header)`` with the endpoint on the route). ``before`` loads
``logger/codecs/registry.py`` of commit ``8b1ac45`` (``git show``), so run it inside the repository.

Count instructions with Valgrind and subtract a run with ``N = 0`` (interpreter start and imports)::

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/hot_path_route.py after binary 20000

and divide the difference by ``N``. Without Valgrind the script prints nanoseconds per exchange (noisy on a shared
machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

BEFORE_COMMIT = "8b1ac45"
BIN = b"inference-header-content-length"
ENDPOINT = {"v1": "v1:predict", "v2": "v2:infer", "other": "other"}
LIMIT = 1 << 26
PATH = "/v2/models/iris/infer"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _headers(binary: bool) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    request = [
        (b"Host", b"127.0.0.1:8081"), (b"User-Agent", b"python-requests/2.32"), (b"Accept-Encoding", b"gzip"),
        (b"Accept", b"*/*"), (b"Connection", b"keep-alive"), (b"Content-Type", b"application/json"),
        (b"Content-Length", b"120"),
    ]  # fmt: skip
    response = [
        (b"date", b"Sun, 29 Nov 2026 19:00:00 GMT"), (b"server", b"uvicorn"), (b"content-length", b"200"),
        (b"content-type", b"application/json"),
    ]  # fmt: skip
    if binary:
        request.append((b"Inference-Header-Content-Length", b"88"))
        response.append((b"inference-header-content-length", b"60"))
    return request, response


def before(registry: Any, n: int, request: list[tuple[bytes, bytes]], response: list[tuple[bytes, bytes]]) -> None:
    """The routing work of commit 8b1ac45's proxy and upstream, per exchange."""
    state: list[Any] = [False, False, b"", False]
    for _ in range(n):
        for name, value in request:
            low = name.lower()
            if low == b"content-length" and value.isdigit() and int(value) > LIMIT:
                state[0] = True
            elif low == b"expect" and value.lower() == b"100-continue":
                state[1] = True
            elif low == b"x-request-id" and value:
                state[2] = value
        for name, value in response:
            low = name.lower()
            if low == b"content-length":
                int(value)
            elif low == b"transfer-encoding":
                state[3] = b"chunked" in value.lower()
        r = registry.route(PATH)
        _ = r.model_name, ENDPOINT[r.protocol]


def after(registry: Any, n: int, request: list[tuple[bytes, bytes]], response: list[tuple[bytes, bytes]]) -> None:
    """The routing work of today's proxy and upstream, per exchange."""
    state: list[Any] = [False, False, b"", False]
    for _ in range(n):
        bh = rbh = None
        for name, value in request:
            low = name.lower()
            if low == b"content-length" and value.isdigit() and int(value) > LIMIT:
                state[0] = True
            elif low == b"expect" and value.lower() == b"100-continue":
                state[1] = True
            elif low == b"x-request-id" and value:
                state[2] = value
            elif low == BIN:
                bh = value
        for name, value in response:
            low = name.lower()
            if low == b"content-length":
                int(value)
            elif low == b"transfer-encoding":
                state[3] = b"chunked" in value.lower()
            elif low == BIN:
                rbh = value
        r = registry.route(PATH, bh, rbh)
        _ = r.model_name, r.endpoint


def main() -> None:
    """Parse arguments, run, print nanoseconds per exchange."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("version", choices=["before", "after"])
    parser.add_argument("payload", choices=["json", "binary"])
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    request, response = _headers(args.payload == "binary")
    if args.version == "before":
        source = subprocess.run(
            ["git", "show", f"{BEFORE_COMMIT}:logger/codecs/registry.py"], check=True, capture_output=True
        ).stdout
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "registry_before.py"
            path.write_bytes(source)
            registry = _load("registry_before", path)
        run = before
    else:
        from infertap.logger.codecs import registry as current

        registry, run = current, after
    t0 = time.perf_counter_ns()
    run(registry, args.n, request, response)
    if args.n:
        print(f"{args.version} {args.payload}: {(time.perf_counter_ns() - t0) / args.n:.0f} ns per exchange")


if __name__ == "__main__":
    main()
