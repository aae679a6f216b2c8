"""The load command runs lean: without importing pandas, and with dlt's modules out of the collector's way.

pyarrow asks for pandas the first time it builds an array, to recognise pandas objects, and
importing pandas took ~0.5 s: a quarter of a 1,000-row incremental run from the shell. The
load never hands pyarrow a pandas object, so the ``load`` command lets pyarrow's one probe
fail. pyarrow remembers the answer: its checks for pandas objects (``pa.array(a_series)``
with NaNs or categories) would go wrong for later code in the process, so only a process
that ends with the command does this (``cli.main(lean=True)``, as ``cli.run`` calls it).
``ak.load()`` and ``cli.main()`` called from Python leave pyarrow and the collector alone.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Callable


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


def import_load() -> Callable[..., Any]:
    """``run.load.load``, imported with the cyclic collector paused and what it imported frozen, and
    without dlt's other destination factories (``seam.defer_destination_factories``).

    Importing dlt leaves ~100,000 objects the collector tracks, and each full collection, during
    the import and throughout the load, scanned them all again: ~0.2 s of a 1-s incremental run.
    A command's process ends with its load and modules live that long anyway, so they are moved
    to the permanent generation (gc.freeze). Only for a process that ends with the command:
    the freeze would keep whatever garbage a longer-lived caller holds at that moment.
    """
    from analytics_kit.seam import defer_destination_factories

    enabled = gc.isenabled()
    gc.disable()
    try:
        defer_destination_factories()
        from analytics_kit.run.load import load
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return load
