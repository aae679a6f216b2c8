"""The main job, end to end on the embedded demo API: what ``make demo`` runs."""

from __future__ import annotations

import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from analytics_kit import demo
from analytics_kit.config.guide import guide_config
from analytics_kit.read.query import query, tables
from analytics_kit.run.load import load
from analytics_kit.store.database import DEFAULT_DATABASE, READER_CATALOG, file_paths
from analytics_kit.store.sql import literal


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


def run(database: str = DEFAULT_DATABASE, events: int = 5000) -> int:
    """Serves the demo API, loads it in full, changes it, loads incrementally, and shows the tables."""
    with demo.serve(events=events, customers=max(10, events // 50)) as api, _api_key(api.api_key):
        print(f"demo API on {api.base_url}: {events:,} events")
        config = guide_config(api.base_url)
        print("\n1. full refresh into", _shown(database))
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
    print(f"\nAd-hoc SQL: {duckdb_command(database)}")
    return 0


def duckdb_command(database: str | Path, sql: str = "SELECT count(*) FROM analytics.events") -> str:
    """The DuckDB CLI command that runs ``sql`` on the file as the kit's readers name it.

    The CLI names a file's catalog after the file, so ``analytics.events`` works as is in
    ``analytics.duckdb`` only; any other file is attached under the name ``analytics``.
    """
    shown, cli = _shown(database), _cli()
    # in UTC, as the kit's readers: a date cut from a timestamp fell on another day in the CLI's local zone
    if Path(shown).stem == READER_CATALOG:
        return f'{cli} -readonly {shlex.quote(shown)} -cmd "SET TimeZone = \'UTC\'" -c "{sql}"'
    attach = f"SET TimeZone = 'UTC'; ATTACH {literal(shown)} AS {READER_CATALOG} (READ_ONLY); USE {READER_CATALOG}"
    # double quotes read best; shlex's single quotes only where the shell would change the text
    quoted = f'"{attach}"' if not set(attach) & set('"$`\\!') else shlex.quote(attach)
    return f'{cli} -cmd {quoted} -c "{sql}"'


def _cli() -> str:
    """The project's duckdb CLI (the one beside this Python), as a path that works from here: relative inside the
    current folder (.venv/bin/duckdb from the project's root), absolute elsewhere (helper-118: the relative one
    failed from any other folder)."""
    cli = Path(sys.executable).with_name("duckdb")
    if not cli.exists():
        return "duckdb"
    here = Path.cwd().resolve()
    return shlex.quote(str(cli.relative_to(here) if cli.is_relative_to(here) else cli))


def _shown(database: str | Path) -> str:
    """The file as resolved (``$ANALYTICS_DATABASE`` for the default), relative to here when inside."""
    path, _ = file_paths(database)
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
