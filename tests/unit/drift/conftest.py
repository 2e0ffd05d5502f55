"""Evidently 0.7 touches ``numpy.core`` on import (a DeprecationWarning, an error under ``filterwarnings=error``):
import it once here with that warning silenced, before the test modules import from it."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import evidently.legacy.calculations.stattests
    import evidently.presets  # noqa: F401
