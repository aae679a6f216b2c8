"""``state``: the cursor values and the last loads, as the destination records them."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from analytics_kit.config.prepared import SOURCE_NAME
from analytics_kit.read.query import query
from analytics_kit.store.cursor_state import stored_cursors
from analytics_kit.store.database import DEFAULT_DATABASE
from analytics_kit.store.sql import qualified
from analytics_kit.store.target import Target


def state(database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, last: int = 5, *,
          destination: str | None = None) -> dict[str, Any]:
    """``{"cursors": {resource: value}, "loads": DataFrame}`` of the last committed loads.

    Read from the destination, the record of what was committed; the local pipeline
    folder is only a cache of it and is left alone.
    """
    target = Target.of(destination, database, dataset)
    with tempfile.TemporaryDirectory(prefix="analytics-kit-state-") as scratch:
        pipeline = Target(target.destination, target.dataset, Path(scratch), target.database).pipeline()
        pipeline.sync_destination()
        found = stored_cursors(pipeline, SOURCE_NAME)
    loads = query(
        f"SELECT load_id, status, inserted_at FROM {qualified(target.dataset, '_dlt_loads')} "
        f"ORDER BY inserted_at DESC LIMIT {int(last)}",
        database, destination=destination, dataset=dataset,
    )
    return {"cursors": found, "loads": loads}
