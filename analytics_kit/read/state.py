"""``state``: the cursor values and the last loads, as the destination records them.

From a DuckDB file the state is read with plain SQL, as dlt would restore it (``seam.stored_state``),
without importing dlt; from a warehouse, by a throwaway dlt pipeline synced with it.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from analytics_kit import seam
from analytics_kit.config.guide import SOURCE_NAME
from analytics_kit.display import block, html_table, missing, plural, text_table
from analytics_kit.errors import arguments_safe
from analytics_kit.read import connection
from analytics_kit.read.history import committed_loads
from analytics_kit.store.cursor_state import cursor_values
from analytics_kit.store.database import DEFAULT_DATABASE
from analytics_kit.store.target import Target

if TYPE_CHECKING:
    import pandas as pd
    from dlt import Pipeline


# dlt writes a load's row to _dlt_loads, with status 0, only once every table of it is
# written: a load listed there is committed. (dlt 1.x writes no other status.)
COMMITTED = "committed"
LOADS_NOTE = "each committed: dlt lists a load once all its tables are written"
CURSORS_NOTE = "where the next incremental load of each resource starts"


@dataclass(frozen=True, eq=False)
class State:
    """The stored cursors and the last committed loads, newest first.

    ``cursors`` maps each resource to its cursor value; ``loads`` is a DataFrame with
    ``load_id``, ``loaded_at`` (UTC), ``status``, ``mode``, ``rows``, ``requests`` and
    ``retries``. ``state["cursors"]`` and ``state["loads"]`` work as they did when
    ``state()`` returned a dict. The displays leave out load ids and times, which change
    from run to run; ``loads`` has them.
    """

    cursors: dict[str, Any]
    loads: pd.DataFrame = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        if key not in ("cursors", "loads"):
            raise KeyError(key)
        return getattr(self, key)

    def _load_rows(self) -> list[tuple]:
        return [(row["mode"] if isinstance(row["mode"], str) else "?", row["rows"], row["requests"],
                 row["retries"], row["status"]) for row in self.loads.to_dict("records")]

    def __repr__(self) -> str:
        lines = [f"State({plural(len(self.cursors), 'cursor')}, last {plural(len(self.loads), 'load')})",
                 f"  cursors ({CURSORS_NOTE}):"]
        lines += text_table(None, self.cursors.items(), indent="    ") or ["    (none yet)"]
        lines.append(f"  last loads, newest first ({LOADS_NOTE}):")
        lines += text_table(None, [(m, _counted(r, "row"), _counted(q, "request"), _counted(t, "retry", "retries"))
                                   for m, r, q, t, _ in self._load_rows()], right=(1, 2, 3), indent="    ")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cursors = html_table(["resource", "cursor"], self.cursors.items(),
                             caption=f"<b>Cursors</b>: {CURSORS_NOTE}") if self.cursors else \
            "<p><b>Cursors</b>: none yet</p>"
        loads = html_table(["mode", "rows", "requests", "retries", "status"], self._load_rows(), right=(1, 2, 3),
                           caption=f"<b>Last loads</b>, newest first ({LOADS_NOTE})")
        return block(cursors, loads)


def _counted(value: Any, word: str, words: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``? rows`` (a count the log lacks)."""
    return f"? {words or word + 's'}" if missing(value) else plural(int(value), word, words)


@contextmanager
def restored(target: Target) -> Iterator[Pipeline]:
    """A throwaway pipeline holding the destination's committed state and schema (the readers
    use it for a warehouse; a DuckDB file they read without dlt).

    Read from the destination, the record of what was committed; the local pipeline
    folder is only a cache of it and is left alone.
    """
    with tempfile.TemporaryDirectory(prefix="analytics-kit-state-") as scratch:
        pipeline = Target(target.destination, target.dataset, Path(scratch), target.database).pipeline()
        pipeline.sync_destination()
        yield pipeline


def stored_state(target: Target, given: object = None) -> dict:
    """The destination's committed pipeline state, as dlt restores it ({} before any)."""
    if not target.is_file:
        with restored(target) as pipeline:
            return pipeline.state
    with connection.connect(target.database, given, target.dataset) as con:
        return seam.stored_state(con, target.dataset, target.pipeline_name) or {}


@arguments_safe
def state(database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, last: int = 5, *,
          destination: str | None = None) -> State:
    """The cursor values and the ``last`` committed loads, newest first, as a ``State``."""
    import pandas as pd

    target = Target.of(destination, database, dataset)
    # the loads first: a missing or empty database is reported before dlt touches it
    records = committed_loads(database, dataset, destination=destination)[::-1][: max(0, int(last))]
    found = cursor_values(stored_state(target, database), SOURCE_NAME)
    loads = pd.DataFrame({
        "load_id": pd.Series([r.load_id for r in records], dtype="string"),
        "loaded_at": pd.to_datetime(pd.Series([r.loaded_at for r in records], dtype=object), utc=True),
        "status": pd.Series([COMMITTED] * len(records), dtype="string"),
        "mode": pd.Series([r.mode for r in records], dtype="string"),
        "rows": pd.Series([sum(r.get("rows").values()) if r.facts else None for r in records], dtype="Int64"),
        "requests": pd.Series([sum(r.get("requests").values()) if r.facts else None for r in records], dtype="Int64"),
        "retries": pd.Series([r.facts.get("retries") if r.facts else None for r in records], dtype="Int64"),
    })
    return State(found, loads)
