"""The load command runs lean: without importing pandas, and with dlt's modules out of the collector's way.

pyarrow asks for pandas the first time it builds an array, to recognise pandas objects, and
importing pandas took ~0.5 s: a quarter of a 1,000-row incremental run from the shell. The
load never hands pyarrow a pandas object, so the ``load`` command lets pyarrow's one probe
fail. pyarrow remembers the answer: its checks for pandas objects (``pa.array(a_series)``
with NaNs or categories) would go wrong for later code in the process until something asks
pyarrow for pandas itself. A process that ends with the command leaves it so
(``cli.main(lean=True)``, as ``cli.run`` calls it). ``ak.load()`` in a process that goes on
(``pandas_after_load``) asks pyarrow for pandas once the load is over: pandas' ~35 MB then
come after the load's peak, not on top of it. Only the command freezes the collector.
"""

from __future__ import annotations

import gc
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

# pyarrow was told pandas is missing and not yet told otherwise
_probe_skipped = False


class _Refuse:
    """A meta-path finder that refuses pandas to the thread that probes for it.

    ``sys.meta_path`` is the process's: another thread importing pandas meanwhile (a
    notebook's background work beside ``ak.load``) imports it as usual.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if (name == "pandas" or name.startswith("pandas.")) and threading.get_ident() == self.thread:
            raise ImportError(f"{name} is not imported while analytics-kit loads")


def skip_pandas_probe() -> bool:
    """Makes pyarrow settle, without importing it, that pandas is not there; returns whether it
    did (not once pandas is imported, or when an earlier call did)."""
    global _probe_skipped
    if "pandas" in sys.modules or _probe_skipped:
        return False
    refuse = _Refuse()
    sys.meta_path.insert(0, refuse)
    try:
        import pyarrow as pa

        pa.array([0])  # the probe: pyarrow looks for pandas once, on its first array from a list
    finally:
        sys.meta_path.remove(refuse)
    _probe_skipped = True
    return True


@contextmanager
def pandas_after_load() -> Iterator[None]:
    """The block runs with pyarrow's pandas probe skipped; afterwards pyarrow has pandas again.

    For ``ak.load()``: a notebook goes on to use pandas with pyarrow, so the probe's answer
    is put right, by importing pandas, once the load's peak is behind it. Until then the
    answer is the process's: another thread converting pandas objects with pyarrow during the
    load gets them as plain sequences (a NaN not null), as if pandas were not installed.
    """
    import pyarrow as pa

    # pyarrow's private shim (`_pandas_api`, checked by tests/test_run_cost.py) puts its answer right:
    # without it the probe is left alone
    shim = getattr(pa.lib, "_pandas_api", None)
    skipped = shim is not None and skip_pandas_probe()
    try:
        yield
    finally:
        if skipped:
            _restore_pandas(shim)


def _restore_pandas(shim: Any) -> None:
    """Has pyarrow import pandas and recognise its objects again."""
    global _probe_skipped
    try:
        _ = shim.pd  # a call that needs pandas makes pyarrow import it again, and remember it
    except ImportError:
        return  # pandas is not installed: pyarrow's answer was right
    _probe_skipped = False


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
