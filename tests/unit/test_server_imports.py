"""What the local sidecar process loads (neither pandas, through pyarrow's lazy shim, nor pyarrow.compute) and how
it allocates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_proxy_process_encodes_records_without_loading_pandas() -> None:
    pytest.importorskip("pandas")  # the drift extra's; without it there is nothing to refuse
    code = (
        "import sys\n"
        "from infertap.logger.server import refuse_pandas\n"
        "refuse_pandas()\n"
        "import pyarrow as pa\n"
        "assert pa.array(['a', None]).to_pylist() == ['a', None]\n"  # a list: pyarrow's shim looks for pandas
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


def test_capture_writes_parquet_without_loading_pyarrow_compute(tmp_path: Path) -> None:
    # pyarrow.compute's library is ~13 MB of the sidecar's RSS: encoding and the file sink do without it
    code = f"""
import json, sys
from pathlib import Path
from infertap.logger.server import refuse_pandas
refuse_pandas()  # as infertap proxy does (pandas would import pyarrow.compute itself)
from infertap.logger import batching
from infertap.logger.sinks.file import FileSink
from tests.unit.conftest import IDENTITY, make_exchange
from infertap.logger.capture import Capturer
from infertap.logger.config import CaptureMode
from infertap.logger.metrics import ProxyMetrics
from infertap.logger.redact import HeaderFilter
from infertap.logger.sampling import Sampler
cap = Capturer(mode=CaptureMode.ALL, sampler=Sampler(1.0, seed=0), headers=HeaderFilter(()), identity=IDENTITY,
               default_model="m", keep_raw_bodies=False, metrics=ProxyMetrics())
x = {{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}}
bodies = [json.dumps({{"inputs": [x] if i % 2 else []}}).encode() for i in range(4)]
recs = [cap.process(make_exchange(request_id=str(i), request_body=b)) for i, b in enumerate(bodies)]
sink = FileSink(Path({str(tmp_path)!r}))
sink.start()
for batch in batching.to_batches(recs):
    sink.write(batch)
sink.flush()
print(len(sink.files()), "pyarrow.compute" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["1", "False"]


def test_the_proxy_process_allocates_arrow_memory_from_malloc_with_two_arenas() -> None:
    code = (
        "import pyarrow as pa\n"
        "from infertap.logger import memory\n"
        "from infertap.logger.server import tune_allocators\n"
        "tune_allocators()\n"
        "memory.trim_malloc()\n"
        "print(pa.default_memory_pool().backend_name, memory.limit_malloc_arenas(2))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["system", "True"]  # glibc (this project's images are Debian)
    pinned = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env=env | {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"},
    ).stdout  # fmt: skip
    assert pinned.split()[0] == "jemalloc"  # the operator's choice stands
