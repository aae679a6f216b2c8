"""What an earlier run may have left behind, found and set right before a load.

Each run starts from what the destination committed: the local pipeline folder is cleared,
rows an unfinished load appended are deleted, and a full refresh that emptied the tables but
did not finish is run again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from dlt import Pipeline

from analytics_kit.seam import nested_tables

logger = logging.getLogger(__name__)

# A table in the dataset, there only while a full refresh has emptied tables and not finished.
PENDING_TABLE = "_analytics_kit_pending"


def from_destination(pipeline: Pipeline) -> tuple[Pipeline, int]:
    """The pipeline with its local folder cleared, so its state comes from the destination.

    The DuckDB file is the record of what was committed: dlt restores cursors only
    from completed loads there. The local folder can be ahead of it (a killed run's
    package and cursor, a file restored from an older copy, a normalize stuck on
    "Directory not empty") and dlt would trust it, loading a stale package instead of
    new data or skipping records the file never got. Starting each run from the
    file's committed state costs a few milliseconds and closes all of these.
    Returns the pipeline and how many unfinished packages were dropped.
    """
    unfinished = len(pipeline.list_extracted_load_packages()) + len(pipeline.list_normalized_load_packages())
    if unfinished:
        logger.warning(
            "Dropping %d unfinished load package(s) left by an earlier failed run; "
            "this run fetches that data again from the last committed cursor.",
            unfinished,
        )
    return pipeline.drop(), unfinished


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


def full_refresh_pending(pipeline: Pipeline) -> bool:
    """Whether a full refresh emptied tables of this dataset and did not finish."""
    with pipeline.sql_client() as client:
        return client.has_dataset() and table_exists(client, PENDING_TABLE)


def mark_full_refresh(pipeline: Pipeline) -> None:
    """Records that a full refresh is about to drop the tables; nothing to record on a first load."""
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


def remove_uncommitted_appends(pipeline: Pipeline) -> None:
    """Deletes rows that a killed run appended but never committed.

    dlt commits each job of a load on its own and marks the load complete last. A run
    killed in between leaves an append table holding rows of an unfinished load; the
    rerun fetches them again from the committed cursor, and they would be there twice.
    The nested tables of an append table (dlt's ``events__tags`` for a list in each record)
    lose the rows whose parent row is gone, level by level. Merge tables need nothing: their
    rows reach the table in the final merge step, one transaction per table
    (``Target.pipeline`` sets ``supports_transactions``).
    """
    schema = pipeline.default_schema if pipeline.default_schema_name else None
    if schema is None:
        return
    appended = [t["name"] for t in schema.data_tables() if t.get("write_disposition") == "append"
                and not t.get("parent")]
    if not appended:
        return
    with pipeline.sql_client() as client:
        loads = client.make_qualified_table_name(schema.loads_table_name)
        for table in appended:
            if not client.has_dataset() or not table_exists(client, table):
                continue
            name = client.make_qualified_table_name(table)
            client.execute_sql(
                f"DELETE FROM {name} WHERE _dlt_load_id NOT IN (SELECT load_id FROM {loads} WHERE status = 0)"
            )
            # parents before children: each level loses the rows the level above no longer has
            for nested, parent_table in nested_tables(schema, table):
                if not table_exists(client, nested):
                    continue
                child = client.make_qualified_table_name(nested)
                parent = client.make_qualified_table_name(parent_table)
                client.execute_sql(f"DELETE FROM {child} WHERE _dlt_parent_id NOT IN (SELECT _dlt_id FROM {parent})")


def drop_staging(pipeline: Pipeline) -> None:
    """Drops dlt's staging dataset (``main_staging`` beside ``main``) from the DuckDB file.

    dlt stages each merge there and leaves the tables behind, where the DuckDB CLI's
    ``.tables`` shows them beside the analyst's own. They matter only inside one load step:
    dlt recreates them (with their own ``_dlt_version``) in the next load that merges, and
    the kit never resumes a package a killed run left (``from_destination`` drops it), so
    nothing left in them is ever read again. Called under the load lock with the file held,
    before the load step and after it; a failure to drop is logged, never the load's failure.
    Only for the DuckDB file: on a warehouse another machine's load may be using it.
    """
    try:
        with pipeline.sql_client() as client:
            with client.with_staging_dataset():
                if client.has_dataset():
                    client.drop_dataset()
    except Exception as error:  # noqa: BLE001 - tidying; the data is committed or untouched
        logger.warning("Could not drop dlt's staging tables: %s", error)


def table_exists(client: Any, table: str) -> bool:
    rows = client.execute_sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        client.dataset_name, table,
    )
    return bool(rows and rows[0][0])
