"""``load``: runs the API into the DuckDB file, incrementally or as a full refresh."""

from __future__ import annotations

import difflib
import functools
import logging
import math
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from dlt import Pipeline

from analytics_kit import _settings
from analytics_kit.config.prepared import SOURCE_NAME, check_concurrency, prepare
from analytics_kit.errors import ConfigError, KitError, secret_safe
from analytics_kit.fetch.cursors import render, restart_point
from analytics_kit.fetch.replace import MergeNeeded, is_append, merges_by_key, stale_columns, table_of
from analytics_kit.fetch.source import _build, appended_roots, linked_roots, rewrites_cursor, unproven
from analytics_kit.fetch.stats import LoadStats
from analytics_kit.interrupts import interrupts_kept, is_interrupt, note_if_interrupt
from analytics_kit.redact import Redactor, redacted_logging
from analytics_kit.run.collector import fewer_collections
from analytics_kit.run.failures import explain, find_cause, starting, tidying_failed
from analytics_kit.run.lean import pandas_after_load
from analytics_kit.run.progress import Progress
from analytics_kit.run.report import LoadReport, row_counts
from analytics_kit.run.steps import holding, timed, waiting
from analytics_kit.seam import (complete_row_columns, delete_flagged, identifier_naming, drop_extracted,
                                keep_traces_in_memory, memoise_secret_hints, memoise_typeddict_hints,
                                merge_into_emptied, mute_dedup_notice, read_schemas_only_when_changed,
                                replace_from_files, reset_resource_states)
from analytics_kit.store.cursor_state import future_cursors, settle_cursors, stored_cursors
from analytics_kit.store.database import (
    DEFAULT_DATABASE,
    LOCK_WAIT_SECONDS,
    check_room,
    ensure_database,
)
from analytics_kit.store.kept_aside import kept_aside
from analytics_kit.store.load_log import by_table, record
from analytics_kit.store.lock import load_lock
from analytics_kit.store.memory import release_unused
from analytics_kit.store.recovery import (begin, committed, drop_staging, empty_tables, forget, full_refresh_done,
                                          mark_full_refresh, open_pipeline)
from analytics_kit.store.dropped import check_dropped
from analytics_kit.store.sql import columns_of
from analytics_kit.store.stored_types import judged_as_stored, refuse_retyped_columns
from analytics_kit.store.target import Target, duckdb_memory

logger = logging.getLogger(__name__)

Mode = Literal["incremental", "full_refresh"]
MODES = ("incremental", "full_refresh")
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


@secret_safe
@interrupts_kept()  # from the start: a Ctrl-C a finalizer drops while the config is checked counts too
@fewer_collections()
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
    primary key; ``full_refresh`` resets the cursors and replaces this source's tables with
    everything the API has (staged, then each table swapped in one transaction: a failed one
    leaves the old table whole). Every failure is one ``LoadError`` that says what to do; nothing is left
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
        near = difflib.get_close_matches(str(mode).lower().replace("-", "_").replace(" ", "_"), MODES, 1, 0.6)
        raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}", path="mode",
                          guidance=(f"Did you mean mode={near[0]!r}? " if near else "") + "Pass mode=\"incremental\" "
                          "(the default: from the stored cursors on) or mode=\"full_refresh\" (everything again).")
    if concurrency is not None:
        check_concurrency(concurrency, "concurrency")
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or not 0 <= lock_timeout < math.inf:
        raise ConfigError(f"got {lock_timeout!r}; expected a number of seconds >= 0", path="lock_timeout",
                          guidance="Pass how long to wait for another load of the same database, e.g. 10.")
    with starting():  # an interrupt before anything is fetched is the load's error too
        memoise_typeddict_hints()  # before the config's checks, which validate it as dlt does
        prepared = prepare(config, destination=destination)
        _settings.apply_tuning()
        memoise_secret_hints()
        keep_traces_in_memory()
        # The caller's dict may hold the key in plain text; a traceback printed with its
        # local variables (IPython's verbose mode) would show it. ``prepared`` masks it.
        del config
        target = Target.of(destination or prepared.destination, database, dataset, loading=True)
        if target.is_file:
            duckdb_memory()  # a cap DuckDB cannot read fails here, not deep in the load step
            _refuse_unloadable(target.database)
        redactor = Redactor(prepared.secrets + target.secrets())
        stats = LoadStats(redactor)
        stats.mode = mode  # what the display says from its first tick
        display = Progress(stats, enabled=progress)
        build = functools.partial(_build, prepared, stats=stats, on_page=display.on_page, name=SOURCE_NAME,
                                  concurrency=concurrency, redactor=redactor)
        replace = mode == "full_refresh" and target.replaces_atomically()
        try:
            source = build(replace=replace)
        except MergeNeeded as needed:
            logger.info("%s; this full refresh loads into tables dlt drops first", needed)
            replace, source = False, build()

    failure: KitError | None = None
    report: LoadReport | None = None
    # pandas, if nothing imported it yet, comes after the load's peak memory (see run/lean)
    with ExitStack() as stack:
        with starting():  # pandas' probe (see run/lean) is the load's start too (helper-100)
            for context in (redacted_logging(redactor), mute_dedup_notice(), pandas_after_load()):
                stack.enter_context(context)
        try:
            stats.step = "setup"
            display.start()
            # made by the lock's folder, so looked for first; said only by the load that makes the file
            stats.new_folder = next((p for p in reversed(target.database.parents) if not p.exists()), None) \
                if target.is_file else None
            with load_lock(target.pipelines_dir, lock_timeout, target.label,
                           on_wait=waiting(stats, "the wait for another load of this database"),
                           database=target.database if target.is_file else None):
                report = _run(target, source, build, mode, replace, stats, lock_timeout)
        except BaseException as error:  # noqa: BLE001 - a failure, or an interrupt before the commit: one LoadError
            if is_interrupt(error) and stats.committed:  # stays one, unwrapped from dlt's (README: "Three limits")
                # saying so: a bare "interrupted" after the commit read as a load that committed nothing (helper-118)
                raise KeyboardInterrupt("the load was committed before the interrupt, its rows are in; the next "
                                        "load finishes the tidying up it left") from None
            if not isinstance(error, Exception) and not is_interrupt(error):
                raise
            failure = (tidying_failed(error, redactor) if stats.committed else
                       explain(error, redactor=redactor, stats=stats, database=target.label,
                               destination=target.destination, workdir=str(target.pipelines_dir)))
        finally:
            display.close(report)  # the final counts are the report's
    if failure is not None:
        raise failure
    return report


# Characters a load cannot write its file under; each failed only after the API was paged (helper-69, helper-70).
_UNLOADABLE = {
    "'": "a single quote: dlt's loader writes the path into its SQL unquoted",
    "?": "DuckDB takes it as the start of a path's options",
    "\\": "DuckDB takes it as a folder separator",
    "=": "DuckDB takes a folder named k=v as a partition column of the files it reads",
    "%": "dlt's file writer takes the path as a template",
}


def _refuse_unloadable(database: Path) -> None:
    """Refuses a DuckDB file path the load could not write (readers open such paths fine)."""
    odd = next((c for c in _UNLOADABLE if c in str(database)), None)
    if odd is not None:
        raise ConfigError(f"the DuckDB file's path {str(database)!r} has \"{odd}\" ({_UNLOADABLE[odd]}), which "
                          "DuckDB or dlt does not read as part of a name", path="database",
                          guidance="Pass a file whose name and folders have no ' ? \\ = or % (spaces are fine), or "
                          "run the load from another folder if the default file's folder has one.")

def _run(target: Target, source: Any, build: Callable[..., Any], mode: str, replace: bool, stats: LoadStats,
         lock_timeout: float) -> LoadReport:
    """The load itself, under the load lock: dlt's steps one by one.

    A full refresh is a replace (dlt's insert-from-staging: each table swapped in one
    transaction, the old one whole until then) when its pages proved every key distinct;
    otherwise it is extracted again as dlt's merge, each table emptied in the merge's own
    transaction, or (see ``_extract``) a merge into tables dlt drops first.
    """
    started, stats.step = time.perf_counter(), "setup"  # not a wait for the lock, which has ended
    if target.is_file and ensure_database(target.database):
        stats.created = "a new file" + (f"; the folder {stats.new_folder} is new too" if stats.new_folder else "")
    steps: dict[str, float] = {}
    pipeline = open_pipeline(target)
    stats.mode, load_id = mode, None
    try:
        # run()'s steps one by one, so the file is held only while dlt reads or writes
        # it: readers such as the duckdb CLI can open it while the API is fetched.
        with timed(steps, "setup", stats), holding(target, lock_timeout, stats):
            start = begin(pipeline, tidy_staging=target.is_file,
                          appends=[table_of(r) for r in source.resources.values() if is_append(r)])
            pipeline = start.pipeline
            read_schemas_only_when_changed(pipeline)
            source, build = judged_as_stored(pipeline, source, build, target.destination, mode, replace)
            if mode == "incremental" and start.full_refresh_pending:
                logger.warning("An earlier full refresh did not finish (it may have emptied or swapped tables); "
                               "running it again instead of an incremental load.")
                mode = stats.mode = "full_refresh"
            if mode == "incremental":
                refuse_retyped_columns(pipeline, source, target.destination)
            check_dropped(pipeline, source, mode, start.columns)  # tables or columns dropped by SQL
        if (mode == "incremental" and start.fresh and target.replaces_atomically()
                and all(merges_by_key(resource) for resource in source.resources.values())):
            # Into an empty dataset a replace leaves what the merge by key would, each row written once, no merge
            # (1,000,000 events: a peak of 259 MB against 296). Keys not proven distinct make it the merge in place.
            try:
                replace, source = True, build(replace=True, first_load=True)
            except MergeNeeded as needed:
                logger.info("%s; this first load is loaded as a merge", needed)
        if replace:
            stale = stale_columns(pipeline.default_schema if pipeline.default_schema_name else None, source,
                                  linked_roots(source))
            if stale is not None:
                logger.info("%s; this full refresh rebuilds the tables", stale)
                replace, source = False, build()
        named = identifier_naming(source, fields=True)
        as_written = [name for name, r in source.resources.items() if not rewrites_cursor(r, named)]
        for resource, moved in settle_cursors(pipeline, SOURCE_NAME, as_written):
            stats.warn(resource, moved)
        before = stored_cursors(pipeline, SOURCE_NAME)
        with timed(steps, "extract", stats):
            source, merged, emptied = _extract(pipeline, source, build, mode, replace,
                                               LOADER_FILE_FORMATS.get(target.destination), stats)
        stats.drops_tables, stats.kept_aside = merged, merged and target.replaces_atomically()
        complete_row_columns(pipeline)
        with timed(steps, "normalize", stats):
            normalized = pipeline.normalize()
        # dlt returns None from a step that found nothing to do
        counts = row_counts(normalized.row_counts if normalized else {}, stats, pipeline, emptied)
        release_unused()
        if target.is_file:
            _check_room(pipeline, target.database)
        # a swap of a table that runs append to is pending until the load completes (see appended_roots)
        stats.swaps_appends = bool(appended_roots(source))
        pending = merged or stats.swaps_appends
        with timed(steps, "load", stats), holding(target, lock_timeout, stats):
            if pending:
                mark_full_refresh(pipeline)  # before dlt drops or swaps the tables (see recovery)
            # counted only once dlt marks the load complete (see load_log)
            record(pipeline, source, stats, source_name=SOURCE_NAME, cursor_before=before, row_counts=counts,
                   started=started, check=lambda client: check_dropped(  # the file was let go of meanwhile
                       pipeline, source, mode, columns_of(client, client.dataset_name), start.columns))
            # a merge touches only the tables it has rows for: the others the API now leaves empty
            empty_tables(pipeline, [table for table in emptied if not counts.get(table)])
            try:
                packages = pipeline.list_normalized_load_packages()
                load_id = packages[-1] if packages else None
                with (kept_aside(pipeline, stats.kept_aside, target.destination == "postgres"),
                      merge_into_emptied(emptied), replace_from_files(packages if target.is_file else ()),
                      delete_flagged(linked_roots(source))):
                    stats.in_dlts_load = True
                    info = pipeline.load(workers=LOAD_WORKERS.get(target.destination, 20))
                    stats.committed = True
            finally:
                if target.is_file:
                    # dlt's main_staging serves inside pipeline.load() only, whether it succeeded
                    # or not: the kit never resumes a failed load's package
                    drop_staging(pipeline)
            if pending or start.full_refresh_pending and mode == "full_refresh":
                try:
                    full_refresh_done(pipeline)
                except Exception as error:  # noqa: BLE001 - committed: this only makes the next a full refresh
                    note_if_interrupt(error)
                    stats.warn("the load", f"committed, but its mark of a full refresh under way was not removed "
                               f"({error}); the next load runs a full refresh again")
    except BaseException:
        try:
            stats.committed = stats.committed or stats.in_dlts_load and committed(pipeline, load_id)
        finally:
            forget(pipeline)  # the next run starts from what the destination committed
        raise

    # every table the source loads, 0 where this run brought none: rows["events"] raised KeyError (helper-138)
    rows = {**dict.fromkeys(_root_tables(pipeline, source), 0),
            **{table: count for table, count in counts.items() if not table.startswith("_dlt")}}
    for resource, value in future_cursors(pipeline, SOURCE_NAME, stats.started):
        stats.warn(resource, f"the newest cursor value, {value}, lies in the future (this run started "
                   f"{render(stats.started)}); the records are loaded as they are, and the next load starts from "
                   f"{restart_point(stats.started, like=value)} instead of it, so later changes are not missed")
    after = stored_cursors(pipeline, SOURCE_NAME)
    # rows are counted per table, requests and cursors per resource: one name for both
    # ("page-views" loads into page_views)
    table = pipeline.default_schema.naming.normalize_table_identifier if pipeline.default_schema_name else str
    # a resource that loads into a table of another name (table_name) has no rows of its own to show
    into = {table(name): table(resource.table_name) for name, resource in source.resources.items()
            if isinstance(resource.table_name, str) and table(resource.table_name) != table(name)}
    cursor_before, cursor_after = by_table(before, table), by_table(after, table)
    # and one of the resources whose names dlt makes one: "Orders 0 rows 0 requests" beside orders (helper-143)
    into.update({name: table(name) for name in (*cursor_before, *cursor_after) if table(name) != name})
    return LoadReport(
        mode=mode,
        rows=rows,
        requests=by_table(stats.requests, table, add=True),
        retries=tuple(stats.retries),
        cursor_before=cursor_before,
        cursor_after=cursor_after,
        recovered_packages=start.dropped,
        warnings=tuple(stats.warnings),
        duration=time.perf_counter() - started,
        load_id=info.loads_ids[-1] if info and info.loads_ids else None,
        database=target.label,
        created=stats.created,
        fetched=by_table(stats.rows, table, add=True),
        steps={**steps, "page_wait": stats.page_wait},
        passes={table(name): n for name, n in stats.passes.items() if n > 1},
        children=tuple(sorted(table(name) for name in stats.children)),
        into=into,
        feeding=tuple(sorted(table(name) for name, resource in source.resources.items() if not resource.selected)),
    )


def _extract(pipeline: Pipeline, source: Any, build: Callable[..., Any], mode: str, replace: bool,
             file_format: str | None, stats: LoadStats) -> tuple[Any, bool, frozenset[str]]:
    """Extracts the run; returns the source extracted, whether a full refresh is loaded as a
    merge into tables dlt drops first, and the root tables a merge empties in its own transaction."""
    if replace:
        # the cursors start over; dropped from the state here rather than by dlt's refresh,
        # which would also empty the tables at the start of the load step
        reset_resource_states(pipeline, SOURCE_NAME, list(source.resources))
        needed = unproven(source)
        if needed is None:
            try:
                pipeline.extract(source, loader_file_format=file_format)
            except Exception as error:  # noqa: BLE001 - only MergeNeeded is handled here
                needed = find_cause(error, MergeNeeded)
                if needed is None:
                    raise
            else:
                merged_in_place, needed = _merged_in_place(pipeline, stats)
                if needed is None:
                    return source, False, merged_in_place
                drop_extracted(pipeline)
        # a failed extract commits no package, and dlt rolled back its state and schema; a dropped one's cursors go
        source = build()
        reset_resource_states(pipeline, SOURCE_NAME, list(source.resources))
        stats.extracting_again()
        if mode == "incremental":  # a first load (see _run): the tables are new, nothing to empty
            logger.info("%s; this first load is loaded as a merge", needed)
        elif all(merges_by_key(resource) for resource in source.resources.values()):
            # dlt's merge dedups; each table is emptied in the merge's transaction (see the seam):
            # a failed or killed load leaves the old tables whole, as the replace does
            logger.info("%s; this full refresh is loaded as a merge into tables emptied in the same transaction",
                        needed)
            pipeline.extract(source, loader_file_format=file_format)
            return source, False, frozenset(_root_tables(pipeline, source))
        else:
            logger.info("%s; this full refresh loads into tables dlt drops first", needed)
    pipeline.extract(source, loader_file_format=file_format,
                     refresh="drop_sources" if mode == "full_refresh" else None)
    return source, mode == "full_refresh", frozenset()


def _merged_in_place(pipeline: Pipeline, stats: LoadStats) -> tuple[frozenset[str], MergeNeeded | None]:
    """The root tables a replace's pages made dlt's merge (see ``Replace``), or why the run is extracted again."""
    roots = {table.get("resource"): table for table in pipeline.default_schema.data_tables() if not table.get("parent")}
    if left_out := sorted(stats.dropped_flagged - stats.staged_any):
        # every record flagged, all left out: dlt got nothing to make the table of, where its merge leaves it empty
        return frozenset(), MergeNeeded(left_out[0], "every record it fetched was flagged deleted")
    for resource, why in stats.merged_instead.items():
        # the hint rode on an item a filter step dropped, or the merge would miss soft-deleted records left out
        if roots.get(resource, {}).get("write_disposition") != "merge" or resource in stats.dropped_flagged:
            return frozenset(), MergeNeeded(resource, why)
        logger.info("%s: %s; loaded as a merge into its table, emptied in the same transaction", resource, why)
    return frozenset(roots[resource]["name"] for resource in stats.merged_instead), None


def _root_tables(pipeline: Pipeline, source: Any) -> list[str]:
    """The schema's root tables that ``source``'s resources load."""
    names = {name for name, resource in source.resources.items() if resource.selected}
    return [table["name"] for table in pipeline.default_schema.data_tables()
            if not table.get("parent") and table.get("resource") in names]


def _check_room(pipeline: Pipeline, database: Path) -> None:
    """Fails before the load step if the file's disk cannot hold what the package will write."""
    staged = sum(job.file_size for load_id in pipeline.list_normalized_load_packages()
                 for job in pipeline.get_load_package_info(load_id).jobs.get("new_jobs", []))
    check_room(database, staged)
