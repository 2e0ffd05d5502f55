"""Keeping pandas out of processes that never use it.

pyarrow imports pandas, when installed, the first time its lazy pandas shim is asked whether an object is a pandas
object: the first ``pa.array`` or ``pa.scalar`` of anything but a NumPy array, and ``import pyarrow.dataset``
(whose module body makes a ``pa.scalar``). That import costs about a quarter of a second and 45 MB. When the import
fails, pyarrow takes pandas for absent and goes on; a later pyarrow call that needs pandas (``to_pandas``,
``Table.from_pandas``) imports it again.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class RefusePandas(importlib.abc.MetaPathFinder):
    """An import finder that refuses pandas (``ModuleNotFoundError`` naming ``who``)."""

    def __init__(self, who: str) -> None:
        self.who = who

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        """Refuse ``pandas`` and its submodules; leave every other module to the next finder."""
        if fullname.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {fullname!r} ({self.who} does not load pandas)", name=fullname)


def refuse_pandas(who: str = "the sidecar") -> None:
    """Make ``import pandas`` raise ``ModuleNotFoundError`` in this process for good (unless pandas is already
    loaded): the sidecar, which never uses pandas (its image has none; an install with the ``drift`` extra has)."""
    if "pandas" not in sys.modules and not any(isinstance(f, RefusePandas) for f in sys.meta_path):
        sys.meta_path.insert(0, RefusePandas(who))


@contextmanager
def pandas_refused(who: str) -> Iterator[None]:
    """``import pandas`` raises ``ModuleNotFoundError`` inside the block (nothing changes when pandas is loaded).

    After the block pyarrow keeps taking pandas for absent until one of its calls needs pandas: a caller that
    imports pandas afterwards and gives pandas objects to ``pa.array`` should first call ``Table.from_pandas`` or
    ``to_pandas`` once.
    """
    if "pandas" in sys.modules:
        yield
        return
    finder = RefusePandas(who)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
