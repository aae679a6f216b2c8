"""``state``: the cursor values and the last loads of a DuckDB file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .database import DEFAULT_DATABASE, DEFAULT_DATASET, Location
from .query import query


def state(database: str | Path = DEFAULT_DATABASE, dataset: str = DEFAULT_DATASET, last: int = 5) -> dict[str, Any]:
    """``{"cursors": {resource: value}, "loads": DataFrame}`` read from the destination.

    The destination is the record of what was committed; the local pipeline folder is
    only a cache of it.
    """
    from .load import cursors, pipeline_for  # imported late: load imports dlt's pipeline machinery

    location = Location.of(database)
    pipeline = pipeline_for(location, dataset)
    pipeline.sync_destination()
    loads = query(
        f'SELECT load_id, status, inserted_at FROM "{dataset}"."_dlt_loads" ORDER BY inserted_at DESC LIMIT ?',
        database,
        [last],
    )
    return {"cursors": cursors(pipeline), "loads": loads}
