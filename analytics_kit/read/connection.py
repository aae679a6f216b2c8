"""The DuckDB file as the readers open it, and the errors a reader meets, each with the fix.

**One name for every file.** The readers open an in-memory database and attach the file to
it read-only as the catalog ``analytics``, then ``USE`` it: ``analytics.events`` and plain
``events`` name the same table whatever the file is called (DuckDB itself names a file's
catalog after the file, so ``analytics.events`` worked in ``analytics.duckdb`` only). On a
warehouse the dataset is the schema ``analytics`` and dlt puts it on the search path, so the
same SQL runs there.

**Readers never create a file**, and a file without a completed load (a first load that
failed leaves one) is named as such, with what to run, instead of "(no rows)".

**SQL errors** become one ``QueryError``: DuckDB's message without its catalog-wide guesses
(``Did you mean "pg_enum"?``), a "did you mean" among the loaded tables and their columns,
and the tables there are.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from analytics_kit.errors import QueryError
from analytics_kit.store.kept_aside import KEPT_TABLE, STOPPED, stopped_tables
from analytics_kit.store.file_faults import unreadable
from analytics_kit.store.lock import running_load
from analytics_kit.store.sql import literal
from analytics_kit.store.database import (
    DATABASE_ENV,
    DEFAULT_DATABASE,
    DEFAULT_DATASET,
    LOCK_WAIT_SECONDS,
    READER_CATALOG,
    DefaultDatabase,
    OpenHere,
    connect_waiting,
    reading,
)

# dlt's bookkeeping and the kit's: not what an analyst loaded.
BOOKKEEPING = ("_dlt", "_analytics_kit")
SHOWN_TABLES = 20
LOAD_HINT = ("Run a load into it: analytics_kit.load(config, database=...) in Python, or `analytics-kit load "
             "--config FILE --database ...` in a shell (`make demo` loads the demo API into ./analytics.duckdb).")


def user_tables(con: duckdb.DuckDBPyConnection, dataset: str = DEFAULT_DATASET) -> list[str]:
    """The dataset's tables in the attached file, bookkeeping left out, sorted."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
        "ORDER BY table_name", [READER_CATALOG, dataset],
    ).fetchall()
    return [name for (name,) in rows if not name.startswith(BOOKKEEPING)]


def missing_database(path: Path, given: object) -> QueryError:
    """No file at ``path``: which path was looked at, why there, and what to run."""
    if isinstance(given, DefaultDatabase):
        why = (f" (${DATABASE_ENV})" if os.environ.get(DATABASE_ENV, "").strip()
               else f" (the default database: {given} in the current folder)")
    elif not Path(str(given)).expanduser().is_absolute():
        why = f" (database={str(given)!r}, resolved against the current folder)"
    else:
        why = ""
    nearby = next((p / path.name for p in list(path.parent.parents)[:3] if (p / path.name).is_file()), None)
    elsewhere = (f" Found {nearby} in a folder above: pass database={str(nearby)!r}, or set "
                 f"{DATABASE_ENV}={nearby}." if nearby else "")
    return QueryError(
        f"There is no DuckDB file at {path}{why}; the readers do not create one.",
        guidance=f"{LOAD_HINT} To read another file, pass database=... or set {DATABASE_ENV}.{elsewhere}",
        database=str(path),
    )


def empty_database(label: str, elsewhere: list[str] | None = None, dataset: str | None = None) -> QueryError:
    """``elsewhere``: the file's datasets that loads completed into, where the reader looked in another (``dataset``,
    where known)."""
    if elsewhere:
        named = ", ".join(repr(d) for d in elsewhere)
        read = f"{dataset!r}" if dataset else f"{DEFAULT_DATASET!r} unless one is given"
        # a dataset named as the readers name the file (a plain dlt pipeline's): "pass dataset='analytics'" was
        # refused in turn (helper-143)
        other = next((d for d in elsewhere if d != READER_CATALOG), None)
        return QueryError(
            f"{label} holds no loaded tables in the dataset read, {read}; loads completed into dataset {named}.",
            guidance=(f"Pass dataset={other!r} (--dataset {other} on the command line), as the load was given it."
                      if other else f"The readers name the file {READER_CATALOG!r}, so its dataset of that name is "
                      f"read in SQL only, as {READER_CATALOG}.{READER_CATALOG}.<table> (ak.query, analytics-kit "
                      "query); tables, describe, state and history cannot take it."),
            database=label)
    running = running_load(Path(label + ".state"))  # the file's pipeline folder (see file_paths)
    if running is not None:  # its first load, under way: read as a failed one (helper-147)
        return QueryError(f"{label} holds no loaded tables yet: its first load is running ({running}).",
                          guidance="Wait for that load to finish, then read again.", database=label)
    return QueryError(
        f"{label} holds no loaded tables: no load into it has completed (a first load that failed leaves its tables "
        "behind with no load recorded, empty or some of them filled: the DuckDB CLI shows them as they are).",
        guidance=LOAD_HINT, database=label,
    )


def empty_file(con: duckdb.DuckDBPyConnection, label: str, dataset: str) -> QueryError:
    """``empty_database`` for a file whose ``dataset`` no load completed into, naming those loads went to."""
    try:
        schemas = [s for (s,) in con.execute(
            "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_catalog = ? "
            "AND table_name = '_dlt_loads' ORDER BY 1", [READER_CATALOG]).fetchall()]
    except duckdb.Error:
        schemas = []
    return empty_database(label, [s for s in schemas if s != dataset and completed_loads(con, s)], dataset)


def _has_loads_table(con: duckdb.DuckDBPyConnection, dataset: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? "
        "AND table_name = '_dlt_loads'", [READER_CATALOG, dataset]).fetchone()
    return bool(found and found[0])


def completed_loads(con: duckdb.DuckDBPyConnection, dataset: str = DEFAULT_DATASET) -> int:
    if not _has_loads_table(con, dataset):
        return 0
    row = con.execute(f'SELECT count(*) FROM "{READER_CATALOG}"."{dataset}"."_dlt_loads" WHERE status = 0').fetchone()
    return int(row[0]) if row else 0


def stopped_rebuild(con: duckdb.DuckDBPyConnection, dataset: str) -> list[tuple[str, str]]:
    """(table, load id) of the tables a killed full refresh was rebuilding, their old rows kept aside until
    the next load (see store.kept_aside); none where no load was stopped so."""
    # looked up first: a SELECT from a table that is not there cost ~5 ms, DuckDB's message naming near ones
    there = {name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name IN (?, ?)",
        [READER_CATALOG, dataset, KEPT_TABLE, "_dlt_loads"]).fetchall()}
    return stopped_tables(there, lambda name: f'"{READER_CATALOG}"."{dataset}"."{name}"',
                          lambda sql: con.execute(sql).fetchall())


def never_loaded(con: duckdb.DuckDBPyConnection, dataset: str, tables: list) -> bool:
    """Whether no load completed into the file: no tables at all, or dlt's bookkeeping without a
    committed load (a first load that failed after dlt created its tables). A DuckDB file of
    one's own, with tables and no dlt bookkeeping, is read as it is."""
    if completed_loads(con, dataset):
        return False
    return not tables or _has_loads_table(con, dataset)


@contextmanager
def connect(path: Path, given: object = None, dataset: str = DEFAULT_DATASET) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection, in UTC, to the file at ``path`` (resolved), as ``analytics``.

    Waits like a load does while another process, or another connection of this one, has
    the file open for writing; a file that is not there is never created.
    """
    if not path.exists():
        raise missing_database(path, given if given is not None else str(path))
    with reading(path):
        yield from _connected(path, dataset)


def _connected(path: Path, dataset: str) -> Iterator[duckdb.DuckDBPyConnection]:
    try:
        con = connect_waiting(
            path, True, LOCK_WAIT_SECONDS, None, QueryError,
            "Run the query again when the load has finished. If no load is running, close what holds the file: a "
            "connection your own code opened (duckdb.connect(...)), or the program named.",
            attach_as=READER_CATALOG,
        )
    except duckdb.Error as error:  # not a DuckDB file, unreadable, a newer storage format
        what, todo = unreadable(error, path) or (f"{path} cannot be opened as a DuckDB database: {_first_line(error)}",
                                                 "Pass the DuckDB file a load wrote (database=...).")
        if "\\" in str(path):  # "Q3\2024.duckdb" was said not to exist at Q3/2024.duckdb (helper-142)
            todo = ("DuckDB reads a backslash in a path as a folder separator: rename the file to a name without "
                    "one (mv 'Q3\\2024.duckdb' q3_2024.duckdb).")
        raise QueryError(f"{what}.", guidance=todo, database=str(path)) from None
    except OpenHere:
        raise QueryError(
            f"{path} is open in another connection of this process (duckdb.connect(...) or ATTACH in your code). "
            "The kit's readers would open it a second time, and closing that would drop your connection's lock on "
            "the file (locks belong to the process), so that a load elsewhere could write under it.",
            guidance="Query through your own connection, or close it first (with duckdb.connect(...) as con: "
            "closes it at the block's end).", database=str(path)) from None
    spill = tempfile.mkdtemp(prefix="analytics-kit-reader-")  # where DuckDB spills a large result, and nothing else
    try:
        con.execute("SET TimeZone = 'UTC'")
        if dataset != DEFAULT_DATASET and con.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE catalog_name = ? AND schema_name = ?",
                [READER_CATALOG, dataset]).fetchone()[0]:
            con.execute(f'USE "{READER_CATALOG}"."{dataset}"')
        # the file alone: a reader's SQL wrote other files (COPY TO), read any (read_csv('/etc/passwd')), fetched
        # extensions (INSTALL), and, its file DETACHed and ATTACHed again, dropped tables (helper-118). DuckDB still
        # lets SQL reach the file's own paths and the temporary folder (./.tmp, where an IMPORT DATABASE of files
        # written there ran an ATTACH unseen: helper-119): the folder is a new empty one of the reader's own, and the
        # statements that write or attach anything are refused before they run (``reads_only``)
        con.execute(f"SET temp_directory = {literal(spill)}")
        # secrets are files too: duckdb 1.4 wrote a persistent one wherever its name led and read ~/.duckdb's
        con.execute("SET allow_persistent_secrets = false")
        con.execute(f"SET secret_directory = {literal(spill)}")
        # duckdb 1.4 installs (downloads) a known extension a statement needs, external access or not (helper-120)
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def require_loaded(database: object = None, dataset: str | None = None, destination: str | None = None) -> None:
    """Raises the ``QueryError`` for a DuckDB file that is missing or that no load completed into.

    For readers that go through dlt (which would create the file) rather than ``connect``.
    """
    from analytics_kit.store.target import Target

    target = Target.of(destination, database if database is not None else DEFAULT_DATABASE, dataset)
    if not target.is_file:
        return
    with connect(target.database, database, target.dataset) as con:
        if never_loaded(con, target.dataset, user_tables(con, target.dataset)):
            raise empty_file(con, str(target.database), target.dataset)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def sql_error(error: duckdb.Error, con: duckdb.DuckDBPyConnection, label: str, stem: str,
              dataset: str = DEFAULT_DATASET) -> QueryError:
    """The ``QueryError`` for SQL DuckDB refused on ``con`` (still open: the tables are read from it)."""
    fault = unreadable(error, label)
    if fault is not None:  # a file cut short or damaged fails in the read of its blocks, not at its open
        return QueryError(f"{fault[0]}.", guidance=fault[1], database=label)
    text = str(error).strip()
    head, _, rest = text.partition("\n")
    lowered = text.lower()
    extension = re.search(r"(?:automatically install the required extension '|, but it exists in the )(\w+)", text)
    if (isinstance(error, duckdb.PermissionException) and "configuration" in lowered) or extension:  # see _connected
        what = (f"the SQL needs DuckDB's {extension.group(1)} extension, which they do not install or load"
                if extension else _first_line(error))
        return QueryError(f"The readers read {label} and nothing else: {what}.",
                          guidance="Read or write other files, or use extensions, with duckdb yourself: "
                          "duckdb.sql(\"SELECT * FROM 'my.csv'\").df().", database=label)
    if "attached in read-only mode" in lowered:  # CREATE TABLE t AS ...: the reader's own objects live in memory
        return QueryError(_sentence(head), guidance="The readers read the file: make tables, views and macros of "
                          "your own in memory, with CREATE TEMP TABLE (TEMP VIEW, TEMP MACRO), or after USE memory.",
                          database=label)
    if "configuration has been locked" in lowered:
        zone = ": convert in the SQL instead, e.g. timezone('Europe/Paris', ts) or ts AT TIME ZONE 'Europe/Paris'" \
            if "timezone" in lowered else ""
        return QueryError(_sentence(head), guidance=f"The readers' settings are fixed, UTC among them{zone}.",
                          database=label)
    detail = "\n".join(line for line in rest.splitlines() if line.strip() and not _is_hint(line))
    own_hints = [line.strip() for line in rest.splitlines() if _is_hint(line)]
    try:
        tables = user_tables(con, dataset)
        empty = never_loaded(con, dataset, tables)
        columns = {c for (c,) in con.execute(
            "SELECT DISTINCT column_name FROM information_schema.columns WHERE table_catalog = ? AND table_schema = ?",
            [READER_CATALOG, dataset]).fetchall()}
    except duckdb.Error:  # an interrupted or broken connection: DuckDB's message alone
        tables, empty, columns = [], False, set()
    missing_table = re.search(r'Table with name "?([^"!\s]+)"? does not exist', head)
    missing_schema = re.search(r'because schema "([^"]+)" does not exist', head)
    missing_column = re.search(r'Referenced column "([^"]+)" not found', head)
    if empty and (missing_table or missing_column):
        empty_error = empty_file(con, label, dataset)
        return QueryError(f"{head.rstrip('!. ')}, since {empty_error.message}", guidance=empty_error.guidance,
                          detail=detail, tables=(), database=label)
    hints: list[str] = []
    if missing_schema and missing_schema.group(1).lower() == stem.lower() and stem.lower() != READER_CATALOG:
        table = missing_table.group(1).split(".")[-1] if missing_table else "events"
        hints.append(f"The kit's readers name the file {READER_CATALOG!r} whatever it is called: write "
                     f"{READER_CATALOG}.{table} or {table}.")
    elif missing_table:
        name = missing_table.group(1).split(".")[-1]
        close = difflib.get_close_matches(name, tables, n=1, cutoff=0.6)
        if name in (stopped := [table for table, _ in stopped_rebuild(con, dataset)]):
            hints.append(STOPPED.format(tables=", ".join(stopped), database=label).replace("these tables hold",
                                                                                          "what they hold is"))
        elif close:  # a misspelt schema or catalog before a table that exists: the kit's name for it
            hints.append(f"Did you mean {READER_CATALOG + '.' if missing_schema else ''}{close[0]}?")
    elif missing_column:
        close = difflib.get_close_matches(missing_column.group(1), sorted(columns), n=1, cutoff=0.6)
        if close:
            hints.append(f"Did you mean {close[0]}?")
        else:
            hints += [h for h in own_hints if h.startswith("Candidate")]
    elif not (missing_table or missing_schema):
        hints += own_hints  # functions, bindings: DuckDB's own candidates are the relevant ones
    if missing_table or missing_schema or missing_column:
        hints.append(_listing(label, tables, dataset))
    hints = [h if h.endswith((".", "?", "!")) else h + "." for h in hints]
    return QueryError(head, guidance=" ".join(hints) or None, detail=detail, tables=tuple(tables), database=label)


def _is_hint(line: str) -> bool:
    return line.strip().startswith(("Did you mean", "Candidate bindings", "Candidate tables"))


def _listing(label: str, tables: list[str], dataset: str) -> str:
    if not tables:
        return f"{label} holds no loaded tables."
    shown = ", ".join(tables[:SHOWN_TABLES]) + (f" and {len(tables) - SHOWN_TABLES} more" if len(tables) > SHOWN_TABLES else "")
    prefix = READER_CATALOG if dataset == DEFAULT_DATASET else dataset
    return f"Tables in {label}: {shown} (as {prefix}.<table> or <table>)."
