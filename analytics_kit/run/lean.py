"""A command-line load runs without importing pandas.

pyarrow asks for pandas the first time it builds an array, to recognise pandas objects, and
importing pandas took ~0.5 s: a quarter of a 1,000-row incremental run from the shell. The
load never hands pyarrow a pandas object, so the ``load`` command lets pyarrow's one probe
fail; pyarrow remembers the answer. pandas itself stays importable (``to_pandas()`` and
``import pandas`` work afterwards), only ``pa.array(a_series)`` would no longer see a Series
as one, which the command never does. ``ak.load()`` in a notebook is left alone: there pandas
is imported anyway, and an analyst's later pyarrow calls must behave as usual.
"""

from __future__ import annotations

import sys
from typing import Any


class _Refuse:
    """A meta-path finder that refuses pandas while pyarrow probes for it."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(f"{name} is not imported by a command-line load")


def skip_pandas_probe() -> None:
    """Makes pyarrow settle, without importing it, that pandas is not there; a no-op once it is imported."""
    if "pandas" in sys.modules:
        return
    refuse = _Refuse()
    sys.meta_path.insert(0, refuse)
    try:
        import pyarrow as pa

        pa.array([0])  # the probe: pyarrow looks for pandas once, on its first array from a list
    finally:
        sys.meta_path.remove(refuse)
