"""A full refresh that rebuilds its tables keeps the old ones whole until the new ones are in.

dlt's ``refresh="drop_sources"`` drops the source's tables at the start of the load step,
committed on its own: a load step that then failed (a full disk, a value the new column type
refuses) or was killed left them empty until the next load. So before that step each table dlt
is about to drop is renamed to a name of the kit's (``_analytics_kit_kept_<n>_<table>``), one transaction
per table with its row in ``_analytics_kit_kept``, which also names the load package and the
tables the load will create new. dlt's ``DROP TABLE IF EXISTS`` then finds nothing, and it
creates the tables anew.

- The load succeeds: the kept tables are dropped.
- It fails (or is interrupted): the tables it made are dropped and the kept ones renamed back,
  in one transaction.
- A run killed in between leaves the record, and the next run's ``begin`` settles it: the kept
  tables are dropped if dlt marked the package's load complete, else put back.

A table the database will not rename as it would drop it (DuckDB: an index on it; PostgreSQL: a
view reads it, and would follow the rename to the old rows) is left to dlt's drop, as before.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

from dlt import Pipeline

from analytics_kit.store.sql import ident, tables_of

logger = logging.getLogger(__name__)

KEPT_TABLE = "_analytics_kit_kept"
PREFIX = "_analytics_kit_kept_"

# The views that read a PostgreSQL table: they follow a rename, so such a table is not renamed.
_PG_VIEWS = ("SELECT count(*) FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid "
             "WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refobjid = %s::regclass "
             "AND r.ev_class <> d.refobjid")


@contextmanager
def kept_aside(pipeline: Pipeline, enabled: bool, postgres: bool = False) -> Iterator[None]:
    """Around ``pipeline.load()`` of a full refresh whose tables dlt drops first (``enabled``)."""
    if not enabled or not pipeline.default_schema_name:
        yield
        return
    _keep(pipeline, postgres)
    try:
        yield
    except BaseException:
        _settle_or_warn(pipeline, "put the old tables back after the failed load")
        raise
    _settle_or_warn(pipeline, "drop the old tables after the load")


def _settle_or_warn(pipeline: Pipeline, what: str) -> None:
    try:
        with pipeline.sql_client() as client:
            settle(client, loads_table=pipeline.default_schema.loads_table_name)
    except Exception as error:  # noqa: BLE001 - the load's own outcome is the one to report
        logger.warning("Could not %s (%s: %s); the next load does.", what, type(error).__name__, str(error)[:200])


def _keep(pipeline: Pipeline, postgres: bool) -> None:
    """Renames the tables the package's load drops first; records them and the tables it creates new."""
    packages = pipeline.list_normalized_load_packages()
    if not packages:
        return
    load_id = packages[-1]
    dropped = [t["name"] for t in pipeline.get_load_package_state(load_id).get("dropped_tables", [])]
    created = [t["name"] for t in pipeline.default_schema.data_tables(include_incomplete=True)]
    with pipeline.sql_client() as client:
        dataset = client.dataset_name
        existing = {name for _, name in tables_of(client, dataset)}
        record = client.make_qualified_table_name(KEPT_TABLE)
        client.execute_sql(f"CREATE TABLE IF NOT EXISTS {record} (kept VARCHAR, table_name VARCHAR, load_id VARCHAR)")
        for name in sorted(set(created) - existing):
            client.execute_sql(f"INSERT INTO {record} VALUES (NULL, %s, %s)", name, load_id)
        limit = client.capabilities.max_identifier_length
        for n, name in enumerate(sorted(set(dropped) & existing)):
            table = client.make_qualified_table_name(name)
            if postgres and client.execute_sql(_PG_VIEWS, table)[0][0]:
                logger.info("Table %s is dropped, not kept aside: a view reads it.", name)
                continue
            kept = f"{PREFIX}{n}_{name}"[:limit]
            try:
                with client.begin_transaction():
                    client.execute_sql(f"ALTER TABLE {table} RENAME TO {ident(kept)}")
                    client.execute_sql(f"INSERT INTO {record} VALUES (%s, %s, %s)", kept, name, load_id)
            except Exception as error:  # noqa: BLE001 - dlt's drop takes it, as before
                logger.info("Table %s is dropped, not kept aside: %s", name, str(error)[:200])


def settle(client: Any, loads_table: str) -> None:
    """Finishes what ``kept_aside`` began: the kept tables dropped if their load completed, else put
    back in place of what the load made. One transaction; nothing to do without the record."""
    dataset = client.dataset_name
    existing = {name for _, name in tables_of(client, dataset)}
    if KEPT_TABLE not in existing:
        return
    record = client.make_qualified_table_name(KEPT_TABLE)
    rows = client.execute_sql(f"SELECT kept, table_name, load_id FROM {record}") or []
    loads = client.make_qualified_table_name(loads_table)
    completed = {load_id for (load_id,) in client.execute_sql(
        f"SELECT load_id FROM {loads} WHERE status = 0") or []} if loads_table in existing else set()
    with client.begin_transaction():
        for kept, name, load_id in rows:
            if load_id in completed:
                if kept is not None and kept in existing:
                    client.execute_sql(f"DROP TABLE {client.make_qualified_table_name(kept)}")
                continue
            if kept is not None and kept not in existing:
                continue  # nothing to put back: what is there stays
            if name in existing:  # what the unfinished load made of it
                client.execute_sql(f"DROP TABLE {client.make_qualified_table_name(name)}")
            if kept is not None:
                client.execute_sql(f"ALTER TABLE {client.make_qualified_table_name(kept)} RENAME TO {ident(name)}")
        client.execute_sql(f"DROP TABLE {record}")
    put_back = sorted(name for kept, name, load_id in rows if kept is not None and load_id not in completed)
    if put_back:
        logger.warning("The full refresh did not finish; the tables it was rebuilding are as they were before it "
                       "(%s).", ", ".join(put_back))
