"""Hypothesis profiles of the fuzz targets: ``ci`` (the default, seconds in ``make test``) and ``fuzz``
(``make fuzz``: ``pytest tests/fuzz --hypothesis-profile=fuzz``, ``FUZZ_EXAMPLES`` examples per target).

No deadline: a slow example is not a failure here (the charter keeps wall-clock assertions out of tests); a hang
is caught by pytest-timeout."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
#: ``make test``: a fixed sequence of examples per target (derandomized, so a run is repeatable).
settings.register_profile("ci", max_examples=60, derandomize=True, database=None, **_COMMON)
#: ``make fuzz``: FUZZ_EXAMPLES random examples per target, failures kept in .hypothesis/ and replayed first.
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "3000")), **_COMMON)
settings.load_profile("ci")
