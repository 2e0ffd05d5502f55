"""The drift commands choose NumPy's AVX2 sort on AMD Zen 4 (infertap.drift.cpu)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infertap.drift import cpu

ZEN4 = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
    "flags\t\t: fpu sse2 avx2 avx512f avx512bw\n\nprocessor\t: 1\n"
)
ZEN3 = ZEN4.replace(" avx512f avx512bw", "")
ZEN5 = ZEN4.replace("cpu family\t: 25", "cpu family\t: 26")
INTEL = ZEN4.replace("AuthenticAMD", "GenuineIntel").replace(": 25", ": 6")


@pytest.mark.parametrize(("text", "zen4"), [(ZEN4, True), (ZEN3, False), (ZEN5, False), (INTEL, False), ("", False)])
def test_only_zen4_with_avx512_is_recognised(text: str, zen4: bool) -> None:
    assert cpu.is_zen4(text) is zen4


@pytest.mark.parametrize(("version", "knows"), [("2.4.6", True), ("3.0.0", True), ("2.3.5", False), ("1.26.4", False)])
def test_the_feature_group_is_named_only_for_numpy_that_knows_it(version: str, knows: bool) -> None:
    assert cpu.numpy_knows_group(version) is knows


def _decide(tmp_path: Path, text: str | None, environ: dict[str, str]) -> tuple[bool, dict[str, str]]:
    """prefer_avx2_sort in a fresh interpreter (this one has NumPy loaded already); ``text=None``: no cpuinfo."""
    info = tmp_path / "cpuinfo"
    if text is not None:
        info.write_text(text)
    code = (
        "import json, sys; from infertap.drift.cpu import prefer_avx2_sort; env = json.loads(sys.argv[1]); "
        "done = prefer_avx2_sort(env, sys.argv[2]); print(json.dumps([done, env]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(environ), str(info)], capture_output=True, text=True, check=True
    )
    done, env = json.loads(out.stdout)
    return done, env


def test_zen4_gets_numpy_avx2_kernels(tmp_path: Path) -> None:
    assert _decide(tmp_path, ZEN4, {}) == (True, {"NPY_DISABLE_CPU_FEATURES": "X86_V4"})


def test_other_cpus_and_the_users_own_setting_are_left_alone(tmp_path: Path) -> None:
    assert _decide(tmp_path, INTEL, {}) == (False, {})
    assert _decide(tmp_path, ZEN4, {"NPY_DISABLE_CPU_FEATURES": ""}) == (False, {"NPY_DISABLE_CPU_FEATURES": ""})


def test_nothing_is_set_once_numpy_is_loaded(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN4)
    env: dict[str, str] = {}
    assert "numpy" in sys.modules
    assert cpu.prefer_avx2_sort(env, str(info)) is False
    assert env == {}


def test_no_cpuinfo_no_change(tmp_path: Path) -> None:
    assert _decide(tmp_path, None, {}) == (False, {})
