"""What an earlier run may have left behind, found and set right before a load.

Each run starts from what the destination committed: the local pipeline state is used only
when it is provably the committed one, else the folder is cleared and restored from the
destination; rows an unfinished load appended are deleted, and a full refresh that emptied
the tables but did not finish is run again.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Collection

from dlt import Pipeline

from analytics_kit import seam
from analytics_kit.errors import causes
from analytics_kit.interrupts import is_interrupt, note_if_interrupt
from analytics_kit.store.file_faults import unreadable
from analytics_kit.seam import nested_tables
from analytics_kit.store.kept_aside import KEPT_TABLE, bookkeeping, settle
from analytics_kit.store.load_log import drop_uncommitted
from analytics_kit.store.sql import columns_of, tables_of

logger = logging.getLogger(__name__)

# A table in the dataset, there only while a full refresh has emptied tables and not finished.
PENDING_TABLE = "_analytics_kit_pending"


@dataclass
class Start:
    """Where a load starts: the pipeline, and what ``begin`` found."""

    pipeline: Pipeline
    dropped: int  # unfinished load packages an earlier run left, dropped
    full_refresh_pending: bool
    fresh: bool = False  # the dataset held no table: nothing was ever loaded into it
    columns: dict[str, set[str]] = field(default_factory=dict)  # each table's, as the dataset has them


def open_pipeline(target: Any) -> Pipeline:
    """``target``'s pipeline; a pipeline folder dlt cannot read (a truncated state.json, a broken
    schema file) is removed, since the database holds what was committed, and it is opened again."""
    try:
        return target.pipeline()
    except Exception as error:  # noqa: BLE001 - dlt raises JSON, OS and state errors alike
        folder = Path(target.pipelines_dir) / target.pipeline_name
        if not folder.is_dir():
            raise
        logger.warning("The pipeline folder %s could not be read (%s: %s); it is removed and the state "
                       "restored from the database.", folder, type(error).__name__, str(error)[:200])
        shutil.rmtree(folder)
    return target.pipeline()


def begin(pipeline: Pipeline, *, tidy_staging: bool, appends: Collection[str] = ()) -> Start:
    """The pipeline with the state the destination committed, and the dataset tidied.

    The destination is the record of what was committed: dlt restores cursors only from
    completed loads there. The local folder can be ahead of it (a killed run's package and
    cursor, a file restored from an older copy, a normalize stuck on "Directory not empty")
    and dlt would trust it, loading a stale package instead of new data or skipping records
    the file never got. So the local state is kept only when no package is pending, its version
    hash is the one of the newest committed load's state, and its schema's version is stored
    there; otherwise the folder is cleared and restored from the destination. The check is two small queries;
    the restore it saves cost ~0.2 s of a 1,000-row run. Called with the file held. ``appends``: the
    tables (as the config names them) this run appends to.
    """
    try:
        unfinished = len(pipeline.list_extracted_load_packages()) + len(pipeline.list_normalized_load_packages())
        pipeline.list_completed_load_packages()  # read when the committed ones are deleted below
        if pipeline.default_schema_name:
            pipeline.default_schema  # noqa: B018 - the schema file the state names, read before sql_client() needs it
    except Exception as error:  # noqa: BLE001 - dlt raises OS, JSON and schema errors alike
        # a folder with parts missing (a run interrupted twice while dlt wrote it): the state names
        # a schema file that is not there, or a package folder is gone
        logger.warning("The pipeline folder could not be read (%s: %s); it is restored from the database.",
                       type(error).__name__, str(error)[:200])
        unfinished, settled = 0, False
    else:
        settled = True
        with pipeline.sql_client() as client:
            tables = _tables(client)
            if (client.dataset_name, KEPT_TABLE) in tables:  # a rebuild killed in its load step (see kept_aside)
                # before the state and schema are read from the destination: the schema's versions come back too
                settle(client, *bookkeeping(pipeline))
                tables = _tables(client)
            if not unfinished and _is_committed_or_false(pipeline, client, tables):
                # the last run's package, kept until now for a look at what it ran, is committed
                seam.delete_loaded_packages(pipeline)
                return Start(pipeline, 0, _tidy(pipeline, client, tables, tidy_staging, appends),
                             _fresh(client, tables), columns_of(client, client.dataset_name))
    if unfinished:
        logger.warning(
            "Dropping %d unfinished load package(s) left by an earlier failed run; "
            "this run fetches their data again.",
            unfinished,
        )
    pipeline = pipeline.drop()
    if not settled:  # before the state and schema are read from the destination, as above
        with pipeline.sql_client() as client:
            settle(client, *bookkeeping(pipeline))
    pipeline.sync_destination()
    with pipeline.sql_client() as client:
        tables = _tables(client)
        return Start(pipeline, unfinished, _tidy(pipeline, client, tables, tidy_staging, appends),
                     _fresh(client, tables), columns_of(client, client.dataset_name))


def _tables(client: Any) -> set[tuple[str, str]]:
    with client.with_staging_dataset():
        staging = client.dataset_name
    return tables_of(client, client.dataset_name, staging)


def _fresh(client: Any, tables: set[tuple[str, str]]) -> bool:
    """Whether the dataset has no table at all: not dlt's, not one made by hand."""
    return all(schema != client.dataset_name for schema, _ in tables)


def _is_committed_or_false(pipeline: Pipeline, client: Any, tables: set[tuple[str, str]]) -> bool:
    try:
        return _is_committed(pipeline, client, tables)
    except Exception as error:  # noqa: BLE001 - an unreadable local schema: restore it
        # an interrupt, or a database DuckDB cannot read: nothing to restore from (its error names it, helper-117)
        if is_interrupt(error) or any(unreadable(cause, "") for cause in causes(error)):
            raise
        logger.warning("The local pipeline state could not be read (%s: %s); it is restored from the database.",
                       type(error).__name__, str(error)[:200])
        return False


def _is_committed(pipeline: Pipeline, client: Any, tables: set[tuple[str, str]]) -> bool:
    """Whether the local state and schema are those of the newest load the destination committed."""
    if pipeline.first_run or not pipeline.default_schema_name:
        return False
    schema = pipeline.default_schema
    needed = (schema.state_table_name, schema.version_table_name, schema.loads_table_name)
    if any((client.dataset_name, name) not in tables for name in needed):
        return False
    local = seam.local_state_hash(pipeline)  # None for a state whose content lost its hash
    return (local is not None and local == seam.committed_state_hash(client, pipeline.pipeline_name)
            and seam.schema_stored(client, schema.name, schema.version_hash))


def _tidy(pipeline: Pipeline, client: Any, tables: set[tuple[str, str]], tidy_staging: bool,
          appends: Collection[str]) -> bool:
    """Clears what an unfinished run wrote; returns whether a full refresh is pending."""
    remove_uncommitted_appends(pipeline, client, tables, appends)
    drop_uncommitted(client, tables)  # the kit's record of loads that never committed
    if tidy_staging:
        # what a failed run staged; also an empty staging schema, which a run killed right after creating it
        # left, and on which dlt's next full refresh that rebuilds the tables failed (helper-49)
        _drop_staging(client)
    return (client.dataset_name, PENDING_TABLE) in tables


def committed(pipeline: Pipeline, load_id: str | None) -> bool:
    """Whether dlt marked ``load_id`` complete: its load step goes on after that (it moves the
    package's files, on the same disk), and a failure or an interrupt there leaves the load committed."""
    if load_id is None or not pipeline.default_schema_name:
        return False
    for _ in range(3):  # a second Ctrl-C, landing in here, asks again: the first one is being handled already
        try:
            with pipeline.sql_client() as client:
                loads = client.make_qualified_table_name(pipeline.default_schema.loads_table_name)
                return bool(client.execute_sql(f"SELECT 1 FROM {loads} WHERE load_id = %s AND status = 0", load_id))
        except Exception as error:  # noqa: BLE001 - unreadable (a full disk, a lock): taken as not committed
            if not is_interrupt(error):
                return False
        except KeyboardInterrupt:
            pass
    return False


def forget(pipeline: Pipeline) -> None:
    """Drops the local state and the unfinished package: the destination holds what was committed."""
    try:
        pipeline.drop()
    except OSError as error:  # the run's own failure is the one to report
        logger.warning("Could not clear the pipeline folder %s: %s", pipeline.working_dir, error)


# -- a full refresh that did not finish ---------------------------------------------------------
#
# dlt's refresh="drop_sources" drops the tables at the start of the load step, committed on
# its own, long before the new rows and the reset cursor are. A run that fails or is killed
# in between leaves empty tables behind a cursor that says all is loaded, and every later
# incremental run would fetch only changes. So a full refresh records, in the dataset itself
# and before dlt drops anything, that it is under way, and removes the record when it has
# succeeded. Kept in the database, the record travels with the file (a copy, a backup, a
# pipeline folder deleted); while it is there, every run is a full refresh.


def mark_full_refresh(pipeline: Pipeline) -> None:
    """Records that a full refresh is about to drop or swap the tables; nothing to record on a first load."""
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return
        table = client.make_qualified_table_name(PENDING_TABLE)
        client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} (pending VARCHAR, since VARCHAR)")
        client.execute_sql(f"INSERT INTO {table} VALUES (%s, %s)", "full_refresh",
                           datetime.now(timezone.utc).isoformat())


def full_refresh_done(pipeline: Pipeline) -> None:
    with pipeline.sql_client() as client:
        if client.has_dataset():
            client.execute_sql(f"DROP TABLE IF EXISTS {client.make_qualified_table_name(PENDING_TABLE)}")


def remove_uncommitted_appends(pipeline: Pipeline, client: Any, tables: set[tuple[str, str]],
                               appends: Collection[str] = ()) -> None:
    """Deletes rows that a killed run appended but never committed.

    dlt commits each job of a load on its own and marks the load complete last. A run
    killed in between leaves an append table holding rows of an unfinished load; the
    rerun fetches them again from the committed cursor, and they would be there twice.
    The nested tables of an append table (dlt's ``events__tags`` for a list in each record)
    lose the rows whose parent row is gone, level by level. Merge tables need nothing: their
    rows reach the table in the final merge step, one transaction per table
    (``Target.pipeline`` sets ``supports_transactions``).

    The schema is the last committed run's: after a full refresh an append table's reads
    ``replace``. Such a table that this run ``appends`` to loses the uncommitted rows only
    when committed ones are there too: a full refresh killed after its swap committed leaves
    the table all of its rows, whole, and emptying it would lose them.
    """
    schema = pipeline.default_schema if pipeline.default_schema_name else None
    if schema is None:
        return
    now_appended = {schema.naming.normalize_table_identifier(name) for name in appends}
    appended: dict[str, bool] = {}  # root table -> whether its stored disposition is a full refresh's "replace"
    for table in schema.data_tables():
        stored = table.get("write_disposition")
        if not table.get("parent") and (stored == "append" or stored == "replace" and table["name"] in now_appended):
            appended[table["name"]] = stored == "replace"
    if not appended:
        return
    loads = client.make_qualified_table_name(schema.loads_table_name)
    committed = f"SELECT load_id FROM {loads} WHERE status = 0"
    for table, replaced in appended.items():
        if (client.dataset_name, table) not in tables:
            continue
        name = client.make_qualified_table_name(table)
        on_top = f" AND EXISTS (SELECT 1 FROM {name} WHERE _dlt_load_id IN ({committed}))" if replaced else ""
        client.execute_sql(f"DELETE FROM {name} WHERE _dlt_load_id NOT IN ({committed}){on_top}")
        # parents before children: each level loses the rows the level above no longer has
        for nested, parent_table in nested_tables(schema, table):
            if (client.dataset_name, nested) not in tables:
                continue
            child = client.make_qualified_table_name(nested)
            parent = client.make_qualified_table_name(parent_table)
            client.execute_sql(f"DELETE FROM {child} WHERE _dlt_parent_id NOT IN (SELECT _dlt_id FROM {parent})")


def empty_tables(pipeline: Pipeline, tables: list[str]) -> None:
    """Empties ``tables`` and their nested tables in one transaction: the ones a full refresh
    loaded as a merge brought no rows for (a merge touches only tables it has rows for, and
    the API no longer has any). Each table then holds this run's result, as its swap would."""
    if not tables or not pipeline.default_schema_name:
        return
    schema = pipeline.default_schema
    names = [name for table in tables for name in (table, *(n for n, _ in nested_tables(schema, table)))]
    with pipeline.sql_client() as client:
        existing = {name for _, name in tables_of(client, client.dataset_name)}
        with client.begin_transaction():
            for name in names:
                if name in existing:
                    client.execute_sql(f"DELETE FROM {client.make_qualified_table_name(name)}")


def drop_staging(pipeline: Pipeline) -> None:
    """Drops dlt's staging dataset (``main_staging`` beside ``main``) from the DuckDB file.

    dlt stages each merge (and a full refresh's replace) there and leaves the tables behind,
    where the DuckDB CLI's ``.tables`` shows them beside the analyst's own. They matter only
    inside one load step: dlt recreates them (with their own ``_dlt_version``) in the next
    load that stages, and the kit never resumes a package a killed run left (``begin`` drops
    it), so nothing left in them is ever read again. Called under the load lock with the file
    held, after the load step (and by ``begin`` when a failed run left some); a failure to
    drop is logged, never the load's failure. Only for the DuckDB file: on a warehouse
    another machine's load may be using it.
    """
    try:
        with pipeline.sql_client() as client:
            _drop_staging(client)
    except Exception as error:  # noqa: BLE001 - tidying; the data is committed or untouched
        note_if_interrupt(error)
        logger.warning("Could not drop dlt's staging tables: %s", error)


def _drop_staging(client: Any) -> None:
    with client.with_staging_dataset():
        if client.has_dataset():
            client.drop_dataset()
