"""A real V2 upstream (a thread) and forward-mode sidecars as real processes (`python -m infertap.logger.forward`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.served_process import ServedProcess, get
from tests.integration.sinks.components import free_port


class _Model(BaseHTTPRequestHandler):
    """``/v2/models/<m>/infer``: doubles every element of the first input (FP32) and names it ``out``."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        first = body["inputs"][0]
        answer = json.dumps(
            {
                "model_name": self.path.split("/")[3],
                "id": body.get("id", ""),
                "outputs": [
                    {
                        "name": "out",
                        "datatype": "FP32",
                        "shape": first["shape"],
                        "data": [2.0 * x for x in first["data"]],
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def model_server() -> Iterator[str]:
    """A V2 model server on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Model)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class ForwardProcess(ServedProcess):
    """A running forward-mode sidecar."""

    modules: Path

    def infer(self, request_id: str, values: list[float], query: str = "") -> dict[str, Any]:
        """A V2 JSON inference through the sidecar; the decoded answer (raises on a non-200)."""
        body = json.dumps({"id": request_id, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, len(values)],
                                                         "data": values}]}).encode()  # fmt: skip
        req = urllib.request.Request(
            f"{self.url}/v2/models/iris/infer{query}", data=body, method="POST",
            headers={"Content-Type": "application/json", "X-Request-Id": request_id, "Authorization": "Bearer t0ken",
                     "X-Tenant": "acme"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
            return dict(json.loads(resp.read()))


_RUN = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: open(sys.argv[1], 'w').write('\\n'.join(sorted(sys.modules))))\n"
    "runpy.run_module('infertap.logger.forward', run_name='__main__')\n"
)


def start_forward(
    work: Path, upstream: str, forward_collector_url: str, name: str = "pod-a", **settings: Any
) -> ForwardProcess:
    """Start a forward-mode sidecar (spool under ``work/name``); returns once its admin ``/livez`` answers.

    At exit the process writes the names of every module it imported to ``work/name/modules.txt``.
    """
    port, admin = free_port(), free_port()
    base = work / name
    base.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERTAP_")}
    conf: dict[str, Any] = {
        "upstream_url": upstream,
        "forward_collector_url": forward_collector_url,
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "admin_port": admin,
        "pod_name": name,
        "forward_spool_dir": base / "spool",
        "batch_max_delay_s": 0.2,
        "header_allowlist": '["x-tenant","authorization","content-type"]',
        "redact_query_params_extra": '["api_key"]',
        **settings,
    }
    env.update({f"INFERTAP_{k.upper()}": str(v) for k, v in conf.items()})
    log = base / "sidecar.log"
    modules = base / "modules.txt"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", _RUN, str(modules)], env=env, stdout=out, stderr=out)
    p = ForwardProcess(proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", log, modules)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sidecar exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if get(f"{p.admin}/livez")[0] == 200:
                return p
        except OSError:
            pass
        if time.monotonic() > deadline:
            p.kill()
            raise RuntimeError(f"sidecar not live after 60 s:\n{log.read_text()}")
        time.sleep(0.05)
