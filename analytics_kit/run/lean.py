"""A load runs lean: without importing pandas, and from the shell with dlt's modules out of the collector's way.

pyarrow asks for pandas the first time it builds an array, to recognise pandas objects, and
importing pandas took ~0.5 s (a quarter of a 1,000-row incremental run from the shell) and
~30 MB (a tenth of a 1,000,000-row load's peak). A load never hands pyarrow a pandas object,
so a load in a process without pandas lets pyarrow's one probe fail. pandas itself stays
importable, and pyarrow takes it up on its first call that needs it (``to_pandas()``,
``pa.array(a_series)``, ``pa.table(a_frame)`` work afterwards). Where pandas is already
imported, as in most notebooks, nothing changes.
"""

from __future__ import annotations

import gc
import sys
import threading
from typing import Any, Callable


class _Refuse:
    """A meta-path finder that refuses pandas to one thread while pyarrow probes for it there
    (another thread, an ``ak.query`` beside the load, imports it as usual)."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if (name == "pandas" or name.startswith("pandas.")) and threading.get_ident() == self.thread:
            raise ImportError(f"{name} is not imported by a load")


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
    """``run.load.load``, imported with the cyclic collector paused and what it imported frozen.

    Importing dlt leaves ~100,000 objects the collector tracks, and each full collection, during
    the import and throughout the load, scanned them all again: ~0.2 s of a 1-s incremental run.
    A command's process ends with its load and modules live that long anyway, so they are moved
    to the permanent generation (gc.freeze). Not done by ``ak.load()``: in a notebook the freeze
    would keep whatever garbage the analyst's session holds at that moment.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        from analytics_kit.run.load import load
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return load
