"""Fewer runs of Python's cyclic garbage collector while a load runs.

A load makes and drops a few hundred dicts per page. Each 700 of them (Python's default)
started a collection, and now and then a full one over every object the imports left
alive: 1.1 s of a 24 s load of 1,000,000 events, 0.6 s of it in 14 full collections
(``bench/gc_cost.py``). The rows are freed by their reference counts as each group is
converted; the collector is only for cycles, of which a load makes few, so it can run far
less often and free the same objects a little later.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations (net of frees) between collections of the youngest generation during a load: nearly
# all of the saving; the peak of a load of 1,000,000 events stayed at 292-295 MB (50,000: 300 MB once).
YOUNG_OBJECTS = 10_000

_lock = threading.Lock()
_loads = 0  # loads running in this process: the first sets the threshold, the last restores it
_before: tuple[int, ...] = ()
_set: tuple[int, ...] = ()  # the threshold the kit set: one set by other code meanwhile stays


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raises the collector's first threshold for the block, for the whole process."""
    global _loads, _before, _set
    with _lock:
        if _loads == 0:
            _before = gc.get_threshold()
            if _before[0]:  # 0: the caller turned automatic collection off; leave it so
                gc.set_threshold(max(YOUNG_OBJECTS, _before[0]), *_before[1:])
            _set = gc.get_threshold()
        _loads += 1
    try:
        yield
    finally:
        with _lock:
            _loads -= 1
            if _loads == 0 and gc.get_threshold() == _set:
                gc.set_threshold(*_before)
