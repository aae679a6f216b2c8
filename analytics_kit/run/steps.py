"""Around each of dlt's steps in a load: its wall time, the DuckDB file held open, and what an
interrupt during a wait for a lock names."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from analytics_kit.fetch.stats import LoadStats
from analytics_kit.interrupts import raise_if_dropped
from analytics_kit.store.database import closed_for_writing, instance_settings, open_for_writing, restore_settings
from analytics_kit.store.target import Target

logger = logging.getLogger("analytics_kit.run.load")  # the load's own messages, as before they moved here


@contextmanager
def timed(steps: dict[str, float], step: str, stats: LoadStats) -> Iterator[None]:
    """Adds the block's wall time to ``steps[step]`` (see ``LoadReport.steps``)."""
    stats.step = step
    raise_if_dropped()
    began = time.perf_counter()
    try:
        yield
        raise_if_dropped()
    finally:
        steps[step] = steps.get(step, 0.0) + time.perf_counter() - began


@contextmanager
def holding(target: Target, lock_timeout: float, stats: LoadStats) -> Iterator[None]:
    """Holds the DuckDB file open for a step, waiting for another process's lock first.

    Besides the wait, this saves dlt's repeated opening of the file within the step
    (see ``open_for_writing``): about 60 ms of a 1,000-row incremental load.
    """
    if not target.is_file:
        yield
        return
    step = stats.step
    # the readers of this process wait for it until it is closed (store/database)
    connection = open_for_writing(target.database, lock_timeout, on_wait=waiting(stats, "the wait for the DuckDB file"))
    stats.step = step
    try:
        before = instance_settings(connection)  # a connection of the user's shares them (see there)
        try:
            yield
        finally:
            restore_settings(connection, before)
    finally:
        closed_for_writing(connection)


def waiting(stats: LoadStats, step: str) -> Callable[[str], None]:
    """What a wait for a lock says, and the step an interrupt then names."""
    def on_wait(message: str) -> None:
        stats.step = step
        logger.warning(message)
    return on_wait
