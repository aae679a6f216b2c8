"""An interrupt during a load is not lost in a finalizer.

CPython runs a SIGINT handler at the next bytecode of the main thread, wherever that is. When
that is inside an object's finalizer (a ``__del__`` or a weakref callback, which a garbage
collection can run at any allocation), the handler's KeyboardInterrupt is printed as
"Exception ignored in ..." and dropped: the notebook's stop button (or Ctrl-C) did nothing,
and a load waiting for a locked file went on waiting its whole ``lock_timeout``. Python hands
every such dropped exception to ``sys.unraisablehook``: while a load runs in the main thread,
``interrupts_kept`` notes a dropped KeyboardInterrupt there (and passes it on, so it is still
printed), and the load's wait loops, pages and steps call ``raise_if_dropped``, which raises it
again where it can arrive.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from analytics_kit.errors import causes

_dropped = False  # a KeyboardInterrupt was dropped in a finalizer and not yet raised again


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Notes a KeyboardInterrupt dropped in a finalizer during the block (in the main thread only,
    the one interrupts arrive in)."""
    global _dropped
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = sys.unraisablehook

    def note(unraisable: Any) -> None:
        global _dropped
        # only the main thread's: another thread's own KeyboardInterrupt is not the user's Ctrl-C (helper-101)
        main = threading.current_thread() is threading.main_thread()
        if main and isinstance(unraisable.exc_value, KeyboardInterrupt):
            _dropped = True
        previous(unraisable)

    _dropped = False
    sys.unraisablehook = note
    try:
        yield
    finally:
        dropped, _dropped = _dropped, False
        if sys.unraisablehook is note:
            sys.unraisablehook = previous
    if dropped:  # after the block's last step (helper-100: a weakref finalizer as the collector setting ended)
        raise KeyboardInterrupt


def raise_if_dropped() -> None:
    """Raises, in the main thread, a KeyboardInterrupt a finalizer dropped since the load began."""
    global _dropped
    if _dropped and threading.current_thread() is threading.main_thread():
        _dropped = False
        raise KeyboardInterrupt


def note_if_interrupt(error: BaseException) -> None:
    """Keeps an interrupt that an ``except Exception`` caught in order to carry on (DuckDB's "Query
    interrupted" in a tidying query): ``raise_if_dropped`` raises it at the load's next step (helper-98)."""
    global _dropped
    if is_interrupt(error) and threading.current_thread() is threading.main_thread():
        _dropped = True


def is_interrupt(error: BaseException | None) -> bool:
    """Whether ``error`` is an interrupt, or was raised while handling one: Python wraps one that lands
    in a class body's ``__set_name__`` (while a module imports) in a RuntimeError, and DuckDB one that
    reaches it inside a query (in a kernel, the stop button's SIGINT) in its "Query interrupted"."""
    return any(isinstance(cause, KeyboardInterrupt) or type(cause).__name__ == "InterruptException" or (
        type(cause) is RuntimeError and str(cause).strip() == "Query interrupted") for cause in causes(error))
