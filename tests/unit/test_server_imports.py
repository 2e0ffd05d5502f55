"""What the local sidecar process loads: pyarrow's lazy pandas shim must not bring pandas in."""

from __future__ import annotations

import subprocess
import sys

import pytest


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
