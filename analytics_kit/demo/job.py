"""The main job, end to end on the embedded demo API: what ``make demo`` runs."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from analytics_kit import demo
from analytics_kit.config.guide import guide_config
from analytics_kit.read.query import query, tables
from analytics_kit.run.load import load


@contextmanager
def _api_key(value: str) -> Iterator[None]:
    """Sets API_KEY, where dlt secrets look for it, for the block only."""
    old = os.environ.get("API_KEY")
    os.environ["API_KEY"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("API_KEY", None)
        else:
            os.environ["API_KEY"] = old


def run(database: str = "analytics.duckdb", events: int = 5000) -> int:
    """Serves the demo API, loads it in full, changes it, loads incrementally, and shows the tables."""
    with demo.serve(events=events, customers=max(10, events // 50)) as api, _api_key(api.api_key):
        print(f"demo API on {api.base_url}: {events:,} events")
        config = guide_config(api.base_url)
        print("\n1. full refresh into", database)
        print(load(config, mode="full_refresh", database=database))
        change = api.advance(new=events // 100, updated=events // 50, deleted=events // 200)
        print(
            f"\n2. the API changed: {len(change.new_ids)} new, {len(change.updated_ids)} updated, "
            f"{len(change.deleted_ids)} deleted events; incremental load"
        )
        print(load(config, mode="incremental", database=database))
    print("\n3. tables and row counts")
    print(tables(database).to_string(index=False))
    print("\n4. events per type (analytics_kit.query)")
    frame = query(
        "SELECT event_type, count(*) AS events, round(sum(value), 2) AS value "
        "FROM analytics.events GROUP BY event_type ORDER BY events DESC",
        database,
    )
    print(frame.to_string(index=False))
    print(f'\nAd-hoc SQL: .venv/bin/duckdb -readonly {database} -c "SELECT count(*) FROM analytics.events"')
    return 0
