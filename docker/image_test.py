"""Smoke-run the built images for real (``make image-test``; podman with the runc runtime, docs/deploy.md).

1. ``infertap --help`` in both images; the drift image's ``infertap drift --help``.
2. The sidecar image as it runs in a pod: read-only root filesystem, its own non-root user, no capabilities, the
   host network on loopback, one writable volume for the records. It serves ``/livez`` and ``/readyz`` and proxies V2
   traffic to KServe's ModelServer (a host process from ``.venv-kserve``); on SIGTERM it drains; the Parquet records
   are read back on the host and compared with what was sent.
3. The drift image, read-only too, builds a baseline from the model's training data and runs a drift verdict on
   those records.

Exit code 0 when everything held, 1 with the failing step on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infertap.demo.models import train_digits
from infertap.demo.predictors import start_kserve
from infertap.demo.processes import free_port

PODMAN = ["podman", "--runtime", "runc"]
RUN = [*PODMAN, "run", "--rm", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
HARDENED = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:size=64m"]


def _run(argv: list[str], timeout_s: float = 300) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise SystemExit(f"image-test: {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read()


def _wait(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"image-test: {url} did not answer 200 within {timeout_s:.0f} s")
        time.sleep(0.2)


def _infer(port: int, x: np.ndarray[Any, np.dtype[Any]]) -> dict[str, Any]:
    body = {
        "id": "",
        "inputs": [{"name": "input-0", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/digits/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


def check_help(image: str, drift: bool) -> None:
    out = _run([*RUN, *HARDENED, image, "--help"])
    for command in ("proxy", "collector", "webhook"):
        assert command in out, out
    user = _run([*PODMAN, "image", "inspect", "--format", "{{.Config.User}}", image]).strip()
    assert user == "65532:65532", f"{image} runs as {user!r}"
    labels = json.loads(_run([*PODMAN, "image", "inspect", "--format", "{{json .Config.Labels}}", image]))
    for key in ("source", "version", "licenses", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"{image}: no OCI label {key}: {labels}"
    if drift:
        out = _run([*RUN, *HARDENED, image, "drift", "--help"])
        assert "baseline" in out, out
        assert "canary" in out, out
    print(f"image-test: {image}: --help ok, user {user}, version {labels['org.opencontainers.image.version']}")


def check_sidecar(image: str, work: Path) -> tuple[Path, np.ndarray[Any, np.dtype[Any]]]:
    model = train_digits(work / "model")
    predictor = start_kserve(model.path, "digits", "1", work)
    data = work / "records"
    data.mkdir()
    os.chmod(data, 0o777)  # the container's user (65532) writes here
    port, admin = free_port(), free_port()
    name = f"infertap-image-test-{os.getpid()}"
    env = {
        "INFERTAP_UPSTREAM_URL": predictor.url,
        "INFERTAP_LISTEN_HOST": "127.0.0.1",
        "INFERTAP_LISTEN_PORT": str(port),
        "INFERTAP_ADMIN_PORT": str(admin),
        "INFERTAP_OUTPUT_DIR": "/var/lib/infertap/data",
        "INFERTAP_FLUSH_INTERVAL_S": "1",
        "INFERTAP_POD_NAME": "image-test",
    }
    argv = [*RUN, "-d", "--name", name, "--network", "host", *HARDENED, "-v", f"{data}:/var/lib/infertap/data:Z"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    try:
        _run([*argv, image])
        _wait(f"http://127.0.0.1:{admin}/livez")
        _wait(f"http://127.0.0.1:{admin}/readyz")
        sent = model.holdout_x[:40]
        for row in sent:
            answer = _infer(port, row[None])
            assert answer["model_name"] == "digits", answer
        metrics = _get(f"http://127.0.0.1:{admin}/metrics")[1].decode()
        assert "infertap_" in metrics
    finally:
        subprocess.run([*PODMAN, "stop", "-t", "30", name], capture_output=True, check=False, timeout=60)
        logs = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True, check=False)
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True, check=False)
        predictor.process.stop()
    files = sorted(data.rglob("*.parquet"))
    assert files, f"no Parquet written; container log: {logs.stdout[-2000:]}{logs.stderr[-2000:]}"
    table = pq.ParquetDataset([str(f) for f in files]).read()
    assert table.num_rows == len(sent), (table.num_rows, len(sent))
    assert set(table.column("status_code").to_pylist()) == {200}
    print(f"image-test: sidecar image: /livez, /readyz, {table.num_rows} records read back from {len(files)} file(s)")
    return data, model.train_x


def check_drift(image: str, records: Path, train_x: np.ndarray[Any, np.dtype[Any]], work: Path) -> None:
    out = work / "drift"
    out.mkdir()
    os.chmod(out, 0o777)
    flat = train_x.reshape(len(train_x), -1)
    pq.write_table(pa.table({f"pixel_{i}": flat[:, i] for i in range(flat.shape[1])}), out / "train.parquet")
    mounts = ["-v", f"{records}:/captures:ro,Z", "-v", f"{out}:/out:Z"]
    _run([*RUN, *HARDENED, *mounts, image, "drift", "baseline", "/out/train.parquet", "--model", "digits",
          "-o", "/out/baseline.json.gz"])  # fmt: skip
    argv = [*RUN, *HARDENED, *mounts, image, "drift", "run", "/captures", "--baseline", "/out/baseline.json.gz",
            "-o", "/out/verdict.json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["dataset_drift"] is False, verdict.get("dataset_drift")
    print(f"image-test: drift image: baseline and verdict from the sidecar's records (exit {done.returncode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the sidecar/collector/webhook image")
    parser.add_argument("--drift-image", required=True, help="the drift job's image")
    args = parser.parse_args()
    try:
        check_help(args.image, drift=False)
        check_help(args.drift_image, drift=True)
        with tempfile.TemporaryDirectory(prefix="infertap-image-test-") as tmp:
            records, train_x = check_sidecar(args.image, Path(tmp))
            check_drift(args.drift_image, records, train_x, Path(tmp))
    except AssertionError as exc:
        print(f"image-test: failed: {exc}", file=sys.stderr)
        return 1
    print("image-test: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
