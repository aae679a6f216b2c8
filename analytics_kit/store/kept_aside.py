"""A full refresh that rebuilds its tables keeps the old ones whole until the new ones are in.

dlt's ``refresh="drop_sources"`` drops the source's tables, and deletes its stored schema versions,
at the start of the load step, committed on its own: a load step that then failed (a full disk, a
value the new column type refuses) or was killed left them empty until the next load. So before that
step each table dlt is about to drop is renamed to a free name of the kit's
(``_analytics_kit_kept_<n>_<table>``; copied there where the database will not rename it), one
transaction per table with its row in ``_analytics_kit_kept``. The record also names the tables the
load will create new, and a copy of the schema's rows of ``_dlt_version``. dlt's ``DROP TABLE IF
EXISTS`` then finds nothing, and it creates the tables anew.

- The load succeeds: the kept tables are dropped.
- It fails (or is interrupted): the tables it made are dropped, the kept ones renamed back and the
  schema's versions restored, in one transaction.
- A run killed in between leaves the record, and the next run's ``begin`` settles it: the kept
  tables are dropped if dlt marked the package's load complete, else put back.

A PostgreSQL table that a view reads is left to dlt's drop, as before (which PostgreSQL refuses
while the view is there): renamed, the view would follow it to the old rows.
"""

from __future__ import annotations

import itertools
import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from analytics_kit.errors import LoadError
from analytics_kit.interrupts import is_interrupt, note_if_interrupt
from analytics_kit.store.sql import ident, tables_of

if TYPE_CHECKING:  # the readers name kept tables (read.connection) without importing dlt
    from dlt import Pipeline

logger = logging.getLogger(__name__)

KEPT_TABLE = "_analytics_kit_kept"
PREFIX = "_analytics_kit_kept_"
# The record's table_name for the copy of the schema's rows of _dlt_version: this, then the schema's name.
VERSIONS = "_dlt_version of "


def stopped_tables(there: set[str], qualified: Callable[[str], str], rows: Callable[[str], Any]) -> list[tuple]:
    """(table, load id) of each table a killed rebuild left, for the readers (the file's and a warehouse's):
    ``there`` holds which of ``KEPT_TABLE`` and ``_dlt_loads`` the dataset has, ``rows`` runs a query. Those
    whose load dlt marked complete are left out: their tables are the new ones."""
    if KEPT_TABLE not in there:
        return []
    done = (f" AND load_id NOT IN (SELECT load_id FROM {qualified('_dlt_loads')} WHERE status = 0)"
            if "_dlt_loads" in there else "")
    try:
        return [tuple(row) for row in rows(
            f"SELECT table_name, load_id FROM {qualified(KEPT_TABLE)} WHERE kept IS NOT NULL AND NOT "
            f"starts_with(table_name, '{VERSIONS}'){done} ORDER BY 1") or ()]
    except Exception:  # noqa: BLE001 - a table of the user's under the kit's name: not the kit's to read (a load says so)
        return []


STOPPED = ("A full refresh that was rebuilding {tables} was stopped before it finished: these tables hold what it "
           "left, and their old rows are kept aside. The next load into {database} puts them back before it fetches "
           "anything.")

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
    try:
        _keep(pipeline, postgres)  # an interrupt in it puts back what it had renamed
        yield
    except BaseException:
        _settle_or_warn(pipeline, "put the old tables back after the failed load")
        raise
    _settle_or_warn(pipeline, "drop the old tables after the load")


def _settle_or_warn(pipeline: Pipeline, what: str) -> None:
    try:
        with pipeline.sql_client() as client:
            settle(client, *bookkeeping(pipeline))
    except Exception as error:  # noqa: BLE001 - the load's own outcome is the one to report
        note_if_interrupt(error)
        logger.warning("Could not %s (%s: %s); the next load does.", what, type(error).__name__, str(error)[:200])


def bookkeeping(pipeline: Pipeline) -> tuple[str, str]:
    """The names of dlt's loads and schema versions tables."""
    if not pipeline.default_schema_name:
        return "_dlt_loads", "_dlt_version"
    return pipeline.default_schema.loads_table_name, pipeline.default_schema.version_table_name


def _keep(pipeline: Pipeline, postgres: bool) -> None:
    """Keeps aside the tables the package's load drops first, and the schema's versions; records them
    and the tables the load creates new."""
    packages = pipeline.list_normalized_load_packages()
    if not packages:
        return
    load_id, schema = packages[-1], pipeline.default_schema
    dropped = [t["name"] for t in pipeline.get_load_package_state(load_id).get("dropped_tables", [])]
    created = [t["name"] for t in schema.data_tables(include_incomplete=True)]
    with pipeline.sql_client() as client:
        existing = {name for _, name in tables_of(client, client.dataset_name)}
        record = client.make_qualified_table_name(KEPT_TABLE)
        names = _free_names(existing, client.capabilities.max_identifier_length)
        with client.begin_transaction():
            client.execute_sql(f"CREATE TABLE {record} (kept VARCHAR, table_name VARCHAR, load_id VARCHAR)")
            for name in sorted(set(created) - existing):
                client.execute_sql(f"INSERT INTO {record} VALUES (NULL, %s, %s)", name, load_id)
            if schema.version_table_name in existing:
                versions = next(names(VERSIONS))
                client.execute_sql(f"CREATE TABLE {client.make_qualified_table_name(versions)} AS SELECT * FROM "
                                   f"{client.make_qualified_table_name(schema.version_table_name)} "
                                   "WHERE schema_name = %s", schema.name)
                client.execute_sql(f"INSERT INTO {record} VALUES (%s, %s, %s)", versions, VERSIONS + schema.name,
                                   load_id)
        for name in sorted(set(dropped) & existing):
            table = client.make_qualified_table_name(name)
            if postgres and client.execute_sql(_PG_VIEWS, table)[0][0]:
                logger.info("Table %s is dropped, not kept aside: a view reads it.", name)
                continue
            kept = next(names(name))
            try:
                _move(client, [f"ALTER TABLE {table} RENAME TO {ident(kept)}"], record, kept, name, load_id)
            except Exception as error:  # noqa: BLE001 - e.g. DuckDB will not rename a table with an index on it
                if is_interrupt(error):
                    raise
                copy = client.make_qualified_table_name(kept)
                required = client.execute_sql(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                    "AND is_nullable = 'NO'", client.dataset_name, name) or []
                not_null = [f"ALTER TABLE {copy} ALTER COLUMN {ident(column)} SET NOT NULL" for (column,) in required]
                _move(client, [f"CREATE TABLE {copy} AS SELECT * FROM {table}", *not_null], record, kept, name,
                      load_id)


def _move(client: Any, statements: list[str], record: str, kept: str, name: str, load_id: str) -> None:
    with client.begin_transaction():
        for statement in statements:
            client.execute_sql(statement)
        client.execute_sql(f"INSERT INTO {record} VALUES (%s, %s, %s)", kept, name, load_id)


def _free_names(existing: set[str], limit: int) -> Callable[[str], Iterator[str]]:
    """Kept names for tables, none of them a table the dataset has or another kept table's."""
    taken = set(existing)
    counter = itertools.count()

    def names(name: str) -> Iterator[str]:
        while True:
            candidate = f"{PREFIX}{next(counter)}_{name}"[:limit]
            if candidate not in taken:
                taken.add(candidate)
                yield candidate
    return names


def settle(client: Any, loads_table: str, versions_table: str) -> None:
    """Finishes what ``kept_aside`` began: the kept tables dropped if their load completed, else put
    back in place of what the load made. One transaction; nothing to do without the record."""
    existing = {name for _, name in tables_of(client, client.dataset_name)}
    if KEPT_TABLE not in existing:
        return
    record = client.make_qualified_table_name(KEPT_TABLE)
    try:
        rows = client.execute_sql(f"SELECT kept, table_name, load_id FROM {record}") or []
    except Exception as error:  # noqa: BLE001 - not the kit's table
        if is_interrupt(error):
            raise
        raise LoadError(f"The table {KEPT_TABLE} in dataset {client.dataset_name} is not the one the kit keeps "
                        f"there ({type(error).__name__}: {str(error)[:200]}).",
                        guidance=f"Rename or drop your table {KEPT_TABLE}: the kit records in it the tables a full "
                        "refresh keeps aside, and checks it before every load.") from None
    loads = client.make_qualified_table_name(loads_table)
    completed = {load_id for (load_id,) in client.execute_sql(
        f"SELECT load_id FROM {loads} WHERE status = 0") or []} if loads_table in existing else set()
    with client.begin_transaction():
        for kept, name, load_id in rows:
            if kept is not None and kept not in existing:
                continue  # nothing to drop or put back: what is there stays
            if load_id in completed:
                if kept is not None:
                    client.execute_sql(f"DROP TABLE {client.make_qualified_table_name(kept)}")
            elif name.startswith(VERSIONS):  # the versions dlt deleted, in place of the failed load's
                versions = client.make_qualified_table_name(versions_table)
                client.execute_sql(f"DELETE FROM {versions} WHERE schema_name = %s", name[len(VERSIONS):])
                client.execute_sql(f"INSERT INTO {versions} SELECT * FROM {client.make_qualified_table_name(kept)}")
                client.execute_sql(f"DROP TABLE {client.make_qualified_table_name(kept)}")
            else:
                if name in existing:  # what the unfinished load made of it
                    client.execute_sql(f"DROP TABLE {client.make_qualified_table_name(name)}")
                if kept is not None:
                    client.execute_sql(f"ALTER TABLE {client.make_qualified_table_name(kept)} RENAME TO {ident(name)}")
        client.execute_sql(f"DROP TABLE {record}")
    put_back = sorted(name for kept, name, load_id in rows
                      if kept is not None and load_id not in completed and not name.startswith(VERSIONS))
    if put_back:
        logger.warning("The full refresh did not finish; the tables it was rebuilding are as they were before it "
                       "(%s).", ", ".join(put_back))
