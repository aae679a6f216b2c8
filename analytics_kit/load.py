"""``load``: runs the API into the DuckDB file, incrementally or as a full refresh."""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from dlt.pipeline.pipeline import Pipeline

from .config import check_concurrency, prepare
from .cursors import beyond, render, restart_point
from .database import DEFAULT_DATABASE, LOCK_WAIT_SECONDS, check_room, ensure_database, open_for_writing
from .destinations import Target
from .errors import ConfigError, KitError, secret_safe
from .failures import explain
from .lock import load_lock
from .memory import release_unused
from .progress import Progress
from .redact import Redactor, redacted_logging
from .report import LoadReport
from .seam import settle_cursors, stored_cursors
from .source import SOURCE_NAME, _build
from .stats import LoadStats

logger = logging.getLogger(__name__)

Mode = Literal["incremental", "full_refresh"]
MODES = ("incremental", "full_refresh")
# Beside the pipeline's own folder, which every run clears (see _from_destination).
FULL_REFRESH_PENDING = "full_refresh.pending"
# Parquet files instead of dlt's default insert_values for DuckDB: 100k rows took 11 s
# and 2.5 GB as INSERT statements, and well under a second as parquet. PostgreSQL
# takes parquet only through the optional ADBC driver, so it gets CSV (COPY); other
# destinations get dlt's own preferred format.
LOADER_FILE_FORMATS = {"duckdb": "parquet", "motherduck": "parquet", "postgres": "csv"}
# dlt's 20 load workers suit remote warehouses, where each job waits on the network. The
# local file gains nothing from more than two (DuckDB runs each statement on all cores),
# and with one job per file of 100,000 rows, 1,000,000 rows made DuckDB stage ten at
# once: 15 MB more at the peak, and no faster.
LOAD_WORKERS = {"duckdb": 2}


def cursors(pipeline: Pipeline, source: str = SOURCE_NAME) -> dict[str, Any]:
    """The incremental cursor value of each resource, from the pipeline's state."""
    return stored_cursors(pipeline, source)


@secret_safe
def load(
    config: Mapping[str, Any],
    mode: Mode = "incremental",
    database: str = DEFAULT_DATABASE,
    dataset: str | None = None,
    *,
    destination: str | None = None,
    progress: bool = True,
    lock_timeout: float = LOCK_WAIT_SECONDS,
    concurrency: int | None = None,
) -> LoadReport:
    """Loads the API described by ``config`` into ``database`` and returns a ``LoadReport``.

    ``incremental`` fetches what changed since the stored cursor and merges it on the
    primary key; ``full_refresh`` drops this source's tables and cursors and reloads
    everything. Every failure is one ``LoadError`` that says what to do; nothing is left
    half-written, and the cursors stay at the last completed load. One load of a database
    runs at a time: another load of it, in any process, or a program holding the file
    makes this one wait up to ``lock_timeout`` seconds.

    ``destination`` (default: the config's ``destination`` key, else the DuckDB file
    ``database``) names any dlt destination, e.g. ``postgres`` or ``motherduck``; its
    credentials come from dlt secrets. ``dataset`` defaults to the file's ``main``
    schema, or ``analytics`` on a warehouse. ``concurrency`` (default: the config's
    ``concurrency`` keys, else 8; 2 against an API that answers within 20 ms) is how many
    offset pages are fetched at once; 1 fetches them one after another.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}", path="mode")
    if concurrency is not None:
        check_concurrency(concurrency, "concurrency")
    prepared = prepare(config)
    # The caller's dict may hold the key in plain text; a traceback printed with its
    # local variables (IPython's verbose mode) would show it. ``prepared`` masks it.
    del config
    target = Target.of(destination or prepared.destination, database, dataset)
    stats = LoadStats()
    redactor = Redactor(prepared.secrets + target.secrets())
    display = Progress(stats, enabled=progress)
    source = _build(prepared, stats=stats, on_page=display.on_page, name=SOURCE_NAME, concurrency=concurrency)

    failure: KitError | None = None
    with redacted_logging(redactor), _without_dedup_notice():
        try:
            with load_lock(target.pipelines_dir, lock_timeout, target.label, on_wait=logger.warning):
                report = _run(target, source, mode, stats, lock_timeout)
        except Exception as error:  # noqa: BLE001 - every failure becomes one LoadError
            failure = explain(error, redactor=redactor, stats=stats, database=target.label,
                              destination=target.destination)
        finally:
            display.close()
    if failure is not None:
        raise failure
    return report


def _run(target: Target, source: Any, mode: str, stats: LoadStats, lock_timeout: float) -> LoadReport:
    """The load itself, under the load lock: dlt's steps one by one."""
    if target.is_file:
        ensure_database(target.database)
    pipeline, recovered = _from_destination(target.pipeline())
    mode = _resume_full_refresh(target, mode)
    started = time.perf_counter()
    try:
        # run()'s steps one by one, so the file is held only while dlt reads or writes
        # it: readers such as the duckdb CLI can open it while the API is fetched.
        with _holding(target, lock_timeout):
            pipeline.sync_destination()
            _remove_uncommitted_appends(pipeline)
        for resource, moved in settle_cursors(pipeline, SOURCE_NAME):
            stats.warn(resource, moved)
        before = cursors(pipeline)
        pipeline.extract(
            source,
            loader_file_format=LOADER_FILE_FORMATS.get(target.destination),
            refresh="drop_sources" if mode == "full_refresh" else None,
        )
        normalized = pipeline.normalize()
        release_unused()
        if target.is_file:
            _check_room(pipeline, target.database)
        with _holding(target, lock_timeout):
            info = pipeline.load(workers=LOAD_WORKERS.get(target.destination, 20))
    except BaseException:
        # the next run starts from what the destination committed
        _forget(pipeline)
        raise
    (target.pipelines_dir / FULL_REFRESH_PENDING).unlink(missing_ok=True)

    # dlt returns None from a step that found nothing to do
    counts = normalized.row_counts if normalized else {}
    rows = {table: count for table, count in counts.items() if not table.startswith("_dlt")}
    after = cursors(pipeline)
    _warn_of_the_future(after, stats)
    return LoadReport(
        mode=mode,
        rows=rows,
        requests=dict(stats.requests),
        retries=tuple(stats.retries),
        cursor_before=before,
        cursor_after=after,
        recovered_packages=recovered,
        warnings=tuple(stats.warnings),
        duration=time.perf_counter() - started,
        load_id=info.loads_ids[-1] if info and info.loads_ids else None,
        database=target.label,
    )


def _warn_of_the_future(after: dict[str, Any], stats: LoadStats) -> None:
    """Names each stored cursor that lies ahead of this run's start (see ``cursors``)."""
    for resource, value in after.items():
        if beyond(value, stats.started):
            stats.warn(resource, f"the newest cursor value, {value}, lies in the future (this run started "
                    f"{render(stats.started)}); the records are loaded as they are, and the next load starts "
                    f"from {restart_point(stats.started)} instead of it, so later changes are not missed")


class _DedupNotice(logging.Filter):
    """dlt's warning that ``dedup_sort`` is ignored because the staged rows are declared
    deduplicated: the kit declares that only after proving the keys distinct (see
    ``pages.KitPaginate._batched``), so there is nothing to sort and nothing to warn of."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "declared as already deduplicated" not in record.getMessage()


@contextmanager
def _without_dedup_notice() -> Iterator[None]:
    dlt_logger, notice = logging.getLogger("dlt"), _DedupNotice()
    dlt_logger.addFilter(notice)
    try:
        yield
    finally:
        dlt_logger.removeFilter(notice)


@contextmanager
def _holding(target: Target, lock_timeout: float) -> Iterator[None]:
    """Holds the DuckDB file open for a step, waiting for another process's lock first.

    Besides the wait, this saves dlt's repeated opening of the file within the step
    (see ``open_for_writing``): about 60 ms of a 1,000-row incremental load.
    """
    if not target.is_file:
        yield
        return
    connection = open_for_writing(target.database, lock_timeout, on_wait=logger.warning)
    try:
        yield
    finally:
        connection.close()


def _check_room(pipeline: Pipeline, database: Path) -> None:
    """Fails before the load step if the file's disk cannot hold what the package will write."""
    staged = sum(
        job.file_size
        for load_id in pipeline.list_normalized_load_packages()
        for job in pipeline.get_load_package_info(load_id).jobs.get("new_jobs", [])
    )
    check_room(database, staged)


def _forget(pipeline: Pipeline) -> None:
    """Drops the local state and the unfinished package: the destination holds what was committed."""
    try:
        pipeline.drop()
    except OSError as error:  # the run's own failure is the one to report
        logger.warning("Could not clear the pipeline folder %s: %s", pipeline.working_dir, error)


def _remove_uncommitted_appends(pipeline: Pipeline) -> None:
    """Deletes rows that a killed run appended but never committed.

    dlt commits each job of a load on its own and marks the load complete last. A run
    killed in between leaves an append table holding rows of an unfinished load; the
    rerun fetches them again from the committed cursor, and they would be there twice.
    Merge tables need nothing: their rows reach the table in the final merge step, one
    transaction per table (``Target.pipeline`` sets ``supports_transactions``).
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
            if not client.has_dataset() or not _table_exists(client, table):
                continue
            name = client.make_qualified_table_name(table)
            client.execute_sql(
                f"DELETE FROM {name} WHERE _dlt_load_id NOT IN (SELECT load_id FROM {loads} WHERE status = 0)"
            )


def _table_exists(client: Any, table: str) -> bool:
    rows = client.execute_sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        client.dataset_name, table,
    )
    return bool(rows and rows[0][0])


def _resume_full_refresh(target: Target, mode: str) -> str:
    """The mode to run, with a marker that survives a killed full refresh.

    dlt's ``refresh="drop_sources"`` empties the tables in a transaction of its own,
    committed before the new rows and cursor are. A run killed in between leaves empty
    tables behind a cursor that says all is loaded: the next incremental run would
    fetch only changes, and the rest would be silently gone. So a full refresh writes a
    marker first and removes it when it has succeeded; while the marker is there, every
    run is a full refresh.
    """
    marker = target.pipelines_dir / FULL_REFRESH_PENDING
    if mode == "incremental" and marker.exists():
        logger.warning("An earlier full refresh did not finish; running it again instead of an incremental load.")
        mode = "full_refresh"
    if mode == "full_refresh":
        marker.parent.mkdir(parents=True, exist_ok=True)
        with open(marker, "w") as handle:
            handle.write("a full refresh started and has not finished\n")
            handle.flush()
            os.fsync(handle.fileno())
    return mode


def _from_destination(pipeline: Pipeline) -> tuple[Pipeline, int]:
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
