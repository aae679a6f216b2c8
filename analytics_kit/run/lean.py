"""The load command runs lean: without importing pandas, and with dlt's modules out of the collector's way.

pyarrow asks for pandas the first time it builds an array, to recognise pandas objects, and
importing pandas took ~0.5 s: a quarter of a 1,000-row incremental run from the shell. The
load never hands pyarrow a pandas object, so the ``load`` command lets pyarrow's one probe
fail. pyarrow remembers the answer: its checks for pandas objects (``pa.array(a_series)``
with NaNs or categories) would go wrong for later code in the process until something asks
pyarrow for pandas itself. A process that ends with the command leaves it so
(``cli.main(lean=True)``, as ``cli.run`` calls it). ``ak.load()`` in a process that goes on
(``pandas_after_load``) has pyarrow take pandas up right after whatever imports it next (a
hook registered once the probe is over), and catches up at each load's start and end. A process that never uses
pandas never pays for it (~0.3 s and ~35 MB: a fifth of what a 100,000-row load took beyond
fetching and parsing its pages); one that does pays when it first needs it, after the load.
Only the command freezes the collector.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

logger = logging.getLogger(__name__)

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
    try:
        sys.meta_path.insert(0, refuse)  # inside: an interrupt just after it must still take it out
        import pyarrow as pa

        pa.array([0])  # the probe: pyarrow looks for pandas once, on its first array from a list
    finally:
        if refuse in sys.meta_path:
            sys.meta_path.remove(refuse)
    _probe_skipped = True
    return True


@contextmanager
def pandas_after_load() -> Iterator[None]:
    """The block runs with pyarrow's pandas probe skipped; pyarrow knows pandas again as soon as
    pandas is imported, and at the block's end if it was imported meanwhile.

    For ``ak.load()``: a notebook goes on to use pandas with pyarrow, so the probe's answer
    must be put right before any pandas object can reach pyarrow, and there is none until
    pandas is imported. The hook (``_when_pandas_imported``) comes once the probe is over,
    interrupted or not, and never before: run inside another thread's ``import pandas``, it
    asks pyarrow's shim for pandas, which takes the shim's lock only while a probe holds it,
    and the probe itself waits on that import (a deadlock, helper-48). An import already past
    the import system's finders when the hook came is caught at the block's end, which waits
    for it as any import does.
    """
    import pyarrow as pa

    # pyarrow's private shim (`_pandas_api`, checked by tests/test_run_cost.py) puts its answer right:
    # without it the probe is left alone
    shim = getattr(pa.lib, "_pandas_api", None)
    if shim is None:
        yield
        return
    _catch_up(shim)  # an import the hook did not see (a finder ahead of wrapt's returned its spec)
    probed = False
    try:
        probed = skip_pandas_probe()
    finally:
        # not when the command skipped the probe itself: its process ends with the load
        if "pandas" not in sys.modules and (probed or not _probe_skipped):
            _when_pandas_imported(shim)
    try:
        yield
    finally:
        _catch_up(shim)


def _catch_up(shim: Any) -> None:
    """Has pyarrow take up a pandas imported since the probe, if nothing did yet."""
    if _probe_skipped and "pandas" in sys.modules:
        _restore_pandas(shim)


_hooked = False  # a post-import hook for pandas is registered and has not run


def _when_pandas_imported(shim: Any) -> None:
    """Puts pyarrow's answer right just after pandas' import, by whatever imports it (at once if
    it is imported already). One hook at a time, however many loads run before pandas comes.

    wrapt's post-import hook runs once pandas' module has run, in the importing thread, before
    its ``import`` statement returns.
    """
    global _hooked
    if _hooked:
        return
    import wrapt

    try:
        # what pyarrow imports when it takes pandas up, imported now: the hook then runs for
        # microseconds, not ~4 ms, inside the caller's import, where a Ctrl-C fails that import
        # after wrapt has dropped the hook (helper-48)
        import pyarrow.pandas_compat  # noqa: F401
    except ImportError:  # numpy missing: pyarrow cannot take pandas up anyway
        pass

    def hook(_module: Any) -> None:
        global _hooked
        _hooked = False
        # pyarrow's shim holds its lock only for its first probe. A thread holding it now (an
        # interrupt had come before the kit's probe) waits on this very import, and finds pandas
        # itself once it is over; waiting for the lock here would wait for ever (helper-48)
        lock = getattr(shim, "_lock", None)
        if lock is not None:
            if not lock.acquire(blocking=False):
                return
            lock.release()
        _restore_pandas(shim)

    _hooked = True
    wrapt.register_post_import_hook(hook, "pandas")


def _restore_pandas(shim: Any) -> None:
    """Has pyarrow import pandas and recognise its objects again."""
    global _probe_skipped
    try:
        _ = shim.pd  # a call that needs pandas makes pyarrow import it again, and remember it
    except ImportError:
        return  # pandas is not installed (or too old for pyarrow): pyarrow's answer was right
    except Exception:  # noqa: BLE001 - run inside a caller's ``import pandas``, which must not fail for it
        logger.debug("pyarrow could not take up pandas after a load", exc_info=True)
        return
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
