"""The kit's record of each load, kept in the dataset beside dlt's own ``_dlt_loads``.

``_dlt_loads`` says which loads committed and when; it does not say what they did. So
before dlt's load step, each run writes one row to ``_analytics_kit_loads``: its load id,
mode, start, rows per table, requests, retries, cursors before and after, and the columns
the config declared. The row is written before the commit and counts only once dlt has
marked that load id complete in ``_dlt_loads`` (the last thing dlt writes, after every
table): readers join the two, as dlt itself trusts a state row only once its load is in
``_dlt_loads``. A run that fails or is killed before that leaves a row no reader shows,
and the next load deletes it. The SQL is plain enough for DuckDB and any warehouse dlt
writes to (PostgreSQL is tested).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from analytics_kit import seam
from analytics_kit.fetch.stats import LoadStats
from analytics_kit.store.cursor_state import stored_cursors

if TYPE_CHECKING:
    from dlt import Pipeline
    from dlt.sources import DltSource

TABLE = "_analytics_kit_loads"
LOADS_TABLE = "_dlt_loads"  # dlt's: one row per committed load (status 0)
COLUMNS = ("load_id", "started_at", "mode", "total_rows", "total_requests", "total_retries", "facts")
# What ``facts`` holds (JSON): rows, fetched and requests per table, retries, cursor_before and
# cursor_after per resource's table, declared: {table: [columns from the config]}.
FACTS_VERSION = 1


def record(pipeline: Pipeline, source: DltSource, stats: LoadStats, *, source_name: str,
           cursor_before: Mapping[str, Any], row_counts: Mapping[str, int], started: float,
           check: Callable[[Any], None] | None = None) -> str | None:
    """Writes this run's row, keyed by the normalized package's load id, before dlt loads it.

    ``started`` is the run's ``time.perf_counter()`` start; ``check`` is called first with the same SQL client
    (``dropped.py``: what SQL dropped while the pages were fetched). Returns the load id, or None when there is no
    package to load.
    """
    packages = pipeline.list_normalized_load_packages()
    if not packages:
        return None
    load_id = packages[-1]
    table = _naming(pipeline)
    rows = {name: n for name, n in row_counts.items() if not name.startswith("_dlt")}
    requests = by_table(stats.requests, table, add=True)
    facts = {
        "version": FACTS_VERSION,
        "rows": rows,
        "fetched": by_table(stats.rows, table, add=True),
        "requests": requests,
        "retries": len(stats.retries),
        "cursor_before": by_table(cursor_before, table),
        "cursor_after": by_table(stored_cursors(pipeline, source_name), table),
        "declared": declared_columns(pipeline, source),
    }
    began = datetime.now(timezone.utc) - timedelta(seconds=time.perf_counter() - started)
    with pipeline.sql_client() as client:
        if check is not None:
            check(client)
        if not client.has_dataset():
            client.create_dataset()  # dlt's load step would create it next, and skips it now
        name = client.make_qualified_table_name(TABLE)
        client.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {name} (load_id VARCHAR NOT NULL, started_at VARCHAR, mode VARCHAR, "
            "total_rows BIGINT, total_requests BIGINT, total_retries BIGINT, facts VARCHAR)"
        )
        client.execute_sql(f"DELETE FROM {name} WHERE load_id = %s", load_id)
        client.execute_sql(
            f"INSERT INTO {name} ({', '.join(COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            load_id, began.isoformat(), stats.mode, sum(rows.values()), sum(requests.values()),
            len(stats.retries), json.dumps(facts, default=str, sort_keys=True),
        )
    return load_id


def drop_uncommitted(client: Any, tables: set[tuple[str, str]]) -> None:
    """Deletes rows of loads that never committed (a failed or killed run's), before a load.

    ``client`` is a dlt sql client of the dataset; ``tables`` its tables (``sql.tables_of``).
    """
    if (client.dataset_name, TABLE) not in tables:
        return
    name = client.make_qualified_table_name(TABLE)
    if (client.dataset_name, LOADS_TABLE) in tables:
        loads = client.make_qualified_table_name(LOADS_TABLE)
        client.execute_sql(f"DELETE FROM {name} WHERE load_id NOT IN (SELECT load_id FROM {loads} WHERE status = 0)")
    else:
        client.execute_sql(f"DELETE FROM {name}")


def declared_columns(pipeline: Pipeline, source: DltSource) -> dict[str, list[str]]:
    """{table: [column]} of the columns each resource's config declares (``columns``), named as
    dlt names them in the tables."""
    schema = pipeline.default_schema if pipeline.default_schema_name else None
    column = schema.naming.normalize_identifier if schema is not None else str
    table = _naming(pipeline)
    declared: dict[str, list[str]] = {}
    for resource in source.selected_resources.values():
        hint = resource.columns
        if isinstance(hint, Mapping):
            # not a cursor the kit gave only its dedup_sort hint (it read "config" where undeclared: helper-142),
            # and the primary key wherever the config set it (resource_defaults' read "inferred")
            key = seam.primary_key(resource)
            names = [str(name) for name, column in hint.items() if not isinstance(column, Mapping)
                     or set(column) - {"name", "dedup_sort"}] + ([key] if isinstance(key, str) else list(key or ()))
        elif isinstance(hint, (list, tuple)):
            names = [str(c["name"]) for c in hint if isinstance(c, Mapping) and "name" in c]
        else:
            continue  # a callable or model: decided per record, not declared up front
        target = resource.table_name if isinstance(resource.table_name, str) else resource.name
        declared[table(target)] = sorted({column(name) for name in names})
    return declared


def by_table(values: Mapping[str, Any], table: Callable[[str], str], add: bool = False) -> dict[str, Any]:
    """Values per resource under their tables' names, as rows are counted ("page-views" loads into page_views).
    Resources whose names dlt makes one ("Orders" and "orders") are added up where ``add``, else each keeps its own
    name: the report counted one's requests and showed one cursor (helper-142)."""
    named: dict[str, list[str]] = {}
    for name in values:
        named.setdefault(table(name), []).append(name)
    out: dict[str, Any] = {}
    for key, names in named.items():
        if len(names) == 1:
            out[key] = values[names[0]]
        elif add:
            out[key] = sum(values[name] for name in names)
        else:
            out.update({name: values[name] for name in names})
    return out


def _naming(pipeline: Pipeline):  # type: ignore[no-untyped-def]
    """How dlt names a resource's table ("page-views" loads into page_views)."""
    if pipeline.default_schema_name:
        return pipeline.default_schema.naming.normalize_table_identifier
    return str
