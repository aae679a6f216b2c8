"""Tables and columns of a load's tables dropped from the destination outside the kit (SQL in the DuckDB CLI).

dlt's schema still lists them, and dlt makes a table or a column only where its schema changed: after ``DROP TABLE
customers``, an incremental run made the table again from its own changes alone (3 rows of 52) and moved the cursor
past the rest, without a word; a full refresh failed on every run with "Table with name events does not exist!", and
a dropped column failed both modes for good (helper-154). Told at the load's start, with the file held, from the
columns ``recovery.begin`` read in the same query as ever (dlt's reflection cost 20-35 ms a run here): a full
refresh, or a resource that reloads its whole listing, has dlt's own DDL make them again (its job client's
``update_stored_schema`` with ``force``, as a refresh's load runs it); an incremental run of a resource with a cursor
is refused, as it would fill them with its changes only.
"""

from __future__ import annotations

from typing import Any

from analytics_kit import seam
from analytics_kit.errors import ConfigError
from analytics_kit.fetch.replace import table_of
from analytics_kit.store.sql import ViewColumns


def check_dropped(pipeline: Any, source: Any, mode: str, stored: dict[str, set[str]],
                  before: dict[str, set[str]] | None = None) -> None:
    """Makes the load's tables and columns that the destination lacks again, or refuses an incremental run (above);
    ``stored``: each table of the dataset with its columns. Run again as the load step starts, with ``before``, the
    columns at the start: the file is let go of while the pages are fetched, and a table dropped then lost the rows
    the run did not bring (helper-156); only what was there at the start counts then, not what this run adds."""
    if not pipeline.default_schema_name:
        return
    schema = pipeline.default_schema
    naming = schema.naming.normalize_table_identifier
    roots = {naming(table_of(resource)): resource for resource in source.resources.values()}
    tables = {t["name"]: t for t in schema.data_tables(seen_data_only=True)
              if seam.get_root_table(schema.tables, t["name"])["name"] in roots}
    if not tables:
        return
    lacking: dict[str, list[str] | None] = {}
    for name, table in tables.items():
        if before is not None and name not in before:
            continue
        if name not in stored:
            lacking[name] = None
        elif columns := [c for c, column in table["columns"].items() if seam.is_complete_column(column)
                         and c not in stored[name] and (before is None or c in before[name])]:
            lacking[name] = columns
    # a view, or a table without dlt's own columns, is no table of the load's: made by SQL in its place, which a full
    # refresh failed on ("Can only modify view with ALTER VIEW"; "NOT NULL constraint failed: items._dlt_load_id"),
    # emptied without a word, or renamed a view aside so that every later load failed (helper-156, helper-157)
    # ... and one of the user's own named like a table the load had not made yet: dlt added its columns to it and
    # loaded rows into it (helper-158)
    foreign = next((name for name in tables if name in stored and (
        isinstance(stored[name], ViewColumns) or {"_dlt_id", "_dlt_load_id"} & set(tables[name]["columns"])
        - stored[name])), None)
    if foreign is not None:
        absent = sorted({"_dlt_id", "_dlt_load_id"} & set(tables[foreign]["columns"]) - stored[foreign])
        what = "a view" if isinstance(stored[foreign], ViewColumns) else \
            f"a table without the load's own columns ({', '.join(map(repr, absent))})"
        raise ConfigError(f"the table {foreign!r} in the destination is not the one the load made: it is {what}, made "
                          "in its place outside the kit; nothing from this run was committed", path="mode",
                          guidance=f"Rename your own {foreign!r} (ALTER TABLE or ALTER VIEW ... RENAME TO ...), or "
                          "drop it, then run a full refresh once to make the load's table again.")
    if not lacking:
        return
    cursored = [name for name in lacking
                if seam.resource_incremental(roots[seam.get_root_table(schema.tables, name)["name"]]) is not None]
    if before is not None or mode == "incremental" and cursored:
        # while the load ran, in any mode: its files were written for the tables as they were (a full refresh
        # then loaded without a column dropped meanwhile); the next run's start makes them again
        name = cursored[0] if mode == "incremental" and cursored else next(iter(lacking))
        gone = (f"the table {name!r} is gone from the destination" if lacking[name] is None else
                f"the table {name!r} has lost its column(s) {', '.join(map(repr, lacking[name]))}")
        since = "since its last load" if before is None else "while this load ran"
        refresh = mode == "incremental" and name in cursored
        raise ConfigError(f"{gone}, dropped outside the kit {since}: "
                          + ("an incremental load would fill it with this run's changes alone, and its cursor would "
                             "move past the rest" if refresh else "this run's files were written for it as it was")
                          + "; nothing from this run was committed", path="mode",
                          guidance="Run a full refresh once (mode=\"full_refresh\", or --full-refresh): it loads "
                          "every record again, into the table and columns made anew." if refresh else
                          "Run the load again: it makes the table and columns anew before it writes.")
    # the nested rows of a table dropped whole belong to no row now: reloaded beside them, they were twice (helper-156)
    orphans = [t["name"] for name in lacking if lacking[name] is None
               for t in seam.get_nested_tables(schema.tables, name) if t["name"] != name and t["name"] in stored]
    if orphans:
        with pipeline.sql_client() as sql:
            for name in orphans:
                sql.execute_sql(f"DELETE FROM {sql.make_qualified_table_name(name)}")
    with pipeline.destination_client() as client:  # public: every destination's job client updates its schema so
        client.update_stored_schema(force=True)
