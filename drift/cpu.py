"""NumPy's sort on AMD Zen 4: the drift commands choose NumPy's AVX2 kernels there, five times faster.

NumPy 2.4 sorts float64 with the AVX-512 kernels of x86-simd-sort whenever the CPU has AVX-512. They write every
partition step with ``VCOMPRESSPD``/``VPCOMPRESSQ`` to memory, which AMD's Zen 4 (family 19h with AVX-512) runs as
microcode at over a hundred cycles an instruction (Zen 5 does not), so there ``np.sort`` of 1,000,000 float64 takes
52 ms and its AVX2 kernels 9 ms (measured on an AMD EPYC; numpy/x86-simd-sort#6, numpy/numpy#32690). A baseline
sorts every numeric reference feature once (:func:`infertap.drift.summary.reference_summary`), so on Zen 4 the
sorts are most of ``infertap drift baseline``'s time.

NumPy reads ``NPY_DISABLE_CPU_FEATURES`` once, when it is imported: :func:`prefer_avx2_sort` sets it to ``X86_V4``
(NumPy 2.4's name for the AVX-512 group) before the drift commands import NumPy. The rest of NumPy's kernels that
a drift command runs are as fast on AVX2 there (``drift run``: 0.53 s either way on 1,000,000 records). Results do
not change: a sort's output does not depend on its kernel. A variable the user set is left as it is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

VARIABLE = "NPY_DISABLE_CPU_FEATURES"
#: NumPy's CPU feature group of the AVX-512 kernels (NumPy >= 2.4; older NumPy ignores the name with an
#: ``ImportWarning``, so the variable is set only when the installed NumPy knows it).
AVX512_GROUP = "X86_V4"


def is_zen4(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo`` text describes AMD Zen 4 with AVX-512: vendor ``AuthenticAMD``, ``cpu family``
    25 (19h, Zen 3 and Zen 4; only Zen 4 has ``avx512f``). The first processor's block is read."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == "25"
        and "avx512f" in fields.get("flags", "").split()
    )


def numpy_knows_group(version: str) -> bool:
    """Whether NumPy ``version`` (``"2.4.6"``) names its AVX-512 kernels :data:`AVX512_GROUP`."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (2, 4)


def prefer_avx2_sort(environ: MutableMapping[str, str] = os.environ, cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Set ``NPY_DISABLE_CPU_FEATURES=X86_V4`` in ``environ`` on Zen 4, before NumPy is imported; returns whether
    it did. Nothing is done when NumPy is already imported (too late), when ``environ`` has the variable (even
    empty), when the CPU is not Zen 4 or cannot be told (no ``/proc/cpuinfo``), or when NumPy is older than 2.4."""
    if "numpy" in sys.modules or VARIABLE in environ:
        return False
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 16)  # the first processor's block is well inside
    except OSError:
        return False
    if not is_zen4(text):
        return False
    from importlib.metadata import PackageNotFoundError, version

    try:
        if not numpy_knows_group(version("numpy")):
            return False
    except PackageNotFoundError:
        return False
    environ[VARIABLE] = AVX512_GROUP
    return True
