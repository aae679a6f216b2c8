"""Where a load writes: the DuckDB file, the pipeline folder beside it, and its lock."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb

from analytics_kit.errors import ConfigError, KitError, LoadError, QueryError
from analytics_kit.interrupts import raise_if_dropped
from analytics_kit.store.duckdb_versions import duckdb_in_use_errors, new_file_config
from analytics_kit.store.open_here import connections_holding, locked_here, open_here
from analytics_kit.store.sql import literal

logger = logging.getLogger(__name__)


class DefaultDatabase(str):
    """The default ``database`` of ``load`` and the readers: ``$ANALYTICS_DATABASE`` when it is
    set, else ``analytics.duckdb`` in the current folder.

    A str, so signatures and ``--help`` show the file name; told apart from an explicit
    ``"analytics.duckdb"`` by its type, so a path the caller passes always wins.
    """


DEFAULT_DATABASE = DefaultDatabase("analytics.duckdb")
# Where the default database is, for every entry point; `make lab` points it at the
# repository's analytics.duckdb, where `make demo` writes, for notebooks run from notebooks/.
DATABASE_ENV = "ANALYTICS_DATABASE"
# Tables go to the file's default schema. DuckDB 2.x (and the 1.5 CLI) refuse
# `analytics.events` as ambiguous when a schema has the catalog's name, "analytics",
# while with `main` it names catalog `analytics`, schema `main`, table `events`.
DEFAULT_DATASET = "main"
# The catalog name the kit's readers give the file, whatever it is called (they attach it
# under this name), so `analytics.events` names the same table in every file and on a
# warehouse, where the dataset is the schema `analytics`.
READER_CATALOG = "analytics"
# How long a load waits for another process to let go of the file.
LOCK_WAIT_SECONDS = 10.0
# Disk the load step needs beside the DuckDB file, per byte of the normalized package: DuckDB
# logs the staged rows to its WAL twice (staging table, then the merge), uncompressed, and on
# close checkpoints them into the file while the WAL still exists. Measured peaks: 5.9x-10.8x
# the package for 300 to 300,000 events, plus about 1 MB of blocks however small the load.
# The spill folder (<file>.tmp) is on the same disk; 4 MB more covered the smallest loads.
LOAD_SPACE_FACTOR = 12
LOAD_SPACE_MARGIN = 4 * 1024 * 1024


def file_paths(database: str | Path) -> tuple[Path, Path]:
    """The DuckDB file and the pipeline folder (state, packages, traces) that belongs to it.

    Resolved against the current folder on every call: dlt would otherwise keep using the
    path of the first run, wherever the next one starts. The default database follows
    ``$ANALYTICS_DATABASE`` (see ``DefaultDatabase``).
    """
    if isinstance(database, DefaultDatabase):
        database = os.environ.get(DATABASE_ENV, "").strip() or str(database)
    path = Path(database).expanduser().resolve()
    return path, path.with_name(path.name + ".state")


def check_dataset(database: Path, dataset: str) -> None:
    """Rejects a dataset named like the file's catalog: DuckDB then cannot resolve ``dataset.table``.

    Two catalog names count: the file's own (its stem, as the DuckDB CLI opens it) and
    ``analytics``, which the kit's readers give every file.
    """
    if dataset.lower() == READER_CATALOG and database.stem.lower() != READER_CATALOG:
        raise ConfigError(
            f"dataset {dataset!r} would hide the tables from the kit's readers: they open every DuckDB file "
            f"as the catalog {READER_CATALOG!r}, so {dataset}.events would name both that catalog and the schema",
            path="dataset",
            guidance=f"Use the default dataset 'main' (then {READER_CATALOG}.events and events work), or another name.",
        )
    if dataset.lower() == database.stem.lower():
        raise ConfigError(
            f"dataset {dataset!r} has the same name as the DuckDB file {database.name}, so DuckDB "
            f"cannot tell the schema {dataset}.* from the file's catalog {dataset}.* and refuses such queries",
            path="dataset",
            guidance=("Rename the file (e.g. analytics.duckdb), or pass another dataset."
                      if dataset.lower() == DEFAULT_DATASET else
                      f"Use the default dataset 'main' (then {database.stem}.events works), "
                      "or another dataset or file name."),
        )


def ensure_database(path: Path) -> bool:
    """Creates the DuckDB file, readable by the DuckDB CLI, if it does not exist yet; says whether it did."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    # made under another name and renamed into place: a run killed halfway left a broken file later runs tripped on
    partial = path.with_name(f".{path.name}.{os.getpid()}.creating")
    partial.unlink(missing_ok=True)
    duckdb.connect(str(partial), config=new_file_config()).close()
    os.replace(partial, path)
    return True


def open_for_writing(path: Path, wait: float = LOCK_WAIT_SECONDS, on_wait=None) -> duckdb.DuckDBPyConnection:  # type: ignore[no-untyped-def]
    """A read-write connection to ``path``, opened as dlt opens it, once nothing else holds it.

    Raises ``LoadError`` naming the holder after ``wait`` seconds. While the connection is
    open, dlt's own connections to ``path`` in this process share its database instance
    (DuckDB caches one per file and configuration): opening the file costs 12-15 ms of
    catalog and WAL reading, and dlt opens it four or five times in a short load.

    It takes the readers' turn first (see ``reading``): DuckDB refuses a read-write connection beside a reader's
    read-only one, but only after opening the file, and closing it dropped the reader's lock (helper-111).
    """
    deadline = time.monotonic() + wait
    turn = _turn(path)
    if not turn.acquire(blocking=False):
        if on_wait is not None:
            on_wait(f"{path.name} is in use by a query or a load of this process in another thread; waiting up to "
                    f"{wait:g} s")
        if not turn.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise LoadError(f"The DuckDB file {path} is in use by a query or a load of this process in another "
                            "thread.", guidance="Let it finish, and run the load again.", database=str(path),
                            holder="this process")
    try:
        _refuse_callers_own(path)
        # No config: dlt connects with none and SETs its settings afterwards; another
        # configuration would make DuckDB refuse dlt's connections in this process.
        connection = connect_waiting(path, False, max(0.0, deadline - time.monotonic()), on_wait, LoadError,
                                     "Close the other connection (con.close() in your notebook, or quit the duckdb "
                                     "CLI or the other kernel), or let the query in another thread finish, and run "
                                     "the load again. analytics_kit.query() closes its connections for you.")
        # a load's from here to closed_for_writing: the readers wait for it. Marked in the turn, once open: marked
        # while it waited for the turn, a reader holding the turn waited for it in turn (helper-112)
        key = _file_id(path)
        if key is not None:
            _LOADS_HERE[key] += 1
            _MARKED[id(connection)] = key
        return connection
    finally:
        turn.release()


def closed_for_writing(connection: duckdb.DuckDBPyConnection) -> None:
    """Closes a connection of ``open_for_writing``; the readers no longer wait for it."""
    try:
        connection.close()
    finally:
        key = _MARKED.pop(id(connection), None)
        if key is not None:
            _LOADS_HERE[key] -= 1


def _refuse_callers_own(path: Path) -> None:
    """Refuses at once a load beside a connection of the caller's it cannot share (read-only, an ATTACH, another
    name or configuration): DuckDB opens none beside it (helper-109: the load waited 10 s), and each refused open
    dropped the caller's lock (helper-108, helper-111). Told without opening the file; ``duckdb.connect(path)`` is
    shared."""
    if not open_here(path):
        return
    another_load = _LOADS_HERE.get(_file_id(path) or (0, 0), 0) > 0
    if open_here(path, by_another_name=True):
        held = ("a load of this process in another thread holds it under another name (a hard link to it)" if
                another_load else "it is open in another connection of this process under another name (a hard "
                "link to it)")
        raise LoadError(f"The DuckDB file {path} cannot be loaded now: {held}. The load would open it beside that "
                        "connection, and closing it would drop that connection's lock on the file (locks belong to "
                        "the process).", guidance="Close that connection, or load through the same path it opened.",
                        database=str(path), holder="this process")
    if another_load:
        return  # its connection is DuckDB's own database for this path, with no configuration: shared
    how = _unshareable(path)
    for _ in range(2):  # a connection of the caller's closed while it was looked at read as an ATTACH (helper-112)
        if how is None or not how.startswith("ATTACHed"):
            break
        time.sleep(0.01)
        how = _unshareable(path)
    if how is None:
        return
    raise LoadError(f"The DuckDB file {path} is open in another connection of this process, {how}, not the kit's: "
                    "DuckDB opens no read-write connection beside it, and waiting would not end it.",
                    guidance="Close that connection (con.close(), or open it in a with block), and run the load "
                    "again; a plain read-write duckdb.connect(path) may stay open: the load shares it.",
                    database=str(path), holder="this process")


def _unshareable(path: Path) -> str | None:
    """How a connection of the caller's that a load cannot share holds ``path``, or None."""
    locks = locked_here(path)
    if not locks:  # open, not by DuckDB (no lock): nothing to keep
        return None
    if locks == {"READ"}:
        return "read-only (duckdb.connect(..., read_only=True), or an ATTACH with READ_ONLY)"
    holding = connections_holding(path)
    if holding is None:  # this duckdb's connections cannot be looked at: connected to as before (shared, or waited)
        return None
    if any(own and not read_only for own, read_only in holding):
        try:  # shared; in another configuration DuckDB refuses before it opens anything
            duckdb.connect(str(path)).close()
            return None
        except duckdb_in_use_errors() as failure:
            if not in_use_here(failure):
                raise
            return "with a configuration of its own (duckdb.connect(path, config=...))"
    if not open_here(path):  # closed meanwhile
        return None
    return "ATTACHed (ATTACH '...' in a connection of yours)"


def connect_waiting(path: Path, read_only: bool, wait: float, on_wait: Callable[[str], None] | None,
                    error: type[KitError], guidance: str, *, attach_as: str | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to ``path`` once no other process, and no other connection of this
    process with another configuration, holds it; ``error`` naming the holder after ``wait`` s.

    A loader and a reader in one process (``ak.query`` in a thread while a load runs) collide
    as two processes do: DuckDB refuses a read-only and a read-write connection to one file
    side by side. Both wait for the other's short-lived connection, like for a lock.

    With ``attach_as`` the connection is an in-memory database with the file attached
    read-only under that catalog name and in use, whatever the file is called.
    """
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            if attach_as is None:
                return duckdb.connect(str(path), read_only=read_only)
            return _attached(path, attach_as)
        except duckdb.IOException as failure:
            holder = _lock_holder(failure)
            held = f"is locked by another process ({holder})"
        except _LoadedHere:
            holder = "this process"
            held = "is being loaded by this process (a load running in another thread)"
        except duckdb_in_use_errors() as failure:
            if not in_use_here(failure):
                raise
            holder = "this process"
            held = ("is open in another connection of this process (one left open, e.g. duckdb.connect() in "
                    "your notebook, or a query or load running in another thread)")
        if time.monotonic() >= deadline:
            raise error(f"The DuckDB file {path} {held}.", guidance=guidance, database=str(path), holder=holder)
        if not told and on_wait is not None:
            on_wait(f"{path.name} {held}; waiting up to {round(wait, 1):g} s")  # what the load has left: not 2.99982
            told = True
        raise_if_dropped()
        time.sleep(0.1)


class OpenHere(Exception):
    """The file is open in a connection of this process that is not a load's: the caller's own."""


class _LoadedHere(Exception):
    """A load of this process holds the file open: the readers wait for it, as for another process's."""


_LOADS_HERE: Counter[tuple[int, int]] = Counter()  # the files (device, inode) this process's loads hold open
_MARKED: dict[int, tuple[int, int]] = {}  # a load's connection: the file it counts in _LOADS_HERE
_READERS: dict[Any, threading.Lock] = {}  # one reader (or a load's opening) at a time per file (see ``reading``)
_READERS_LOCK = threading.Lock()


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino



def _turn(path: Path) -> threading.Lock:
    """The file's turn, whatever name it is reached by (helper-111: two names, two readers side by side)."""
    with _READERS_LOCK:
        return _READERS.setdefault(_file_id(path) or str(path), threading.Lock())


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """One reader at a time per file in this process: two readers' handles side by side, the first one closed
    dropped the other's lock (see ``open_here``); a load opens the file in its turn too (``open_for_writing``).
    Waited for up to ``LOCK_WAIT_SECONDS`` (helper-113: a query waited 34 s behind a load waiting for a process)."""
    turn = _turn(path)
    if not turn.acquire(timeout=LOCK_WAIT_SECONDS):
        raise QueryError(f"The DuckDB file {path} is in use by a load or a query of this process in another thread.",
                         guidance="Run the query again when the load has finished.", database=str(path),
                         holder="this process")
    try:
        yield
    finally:
        turn.release()


def _attached(path: Path, catalog: str) -> duckdb.DuckDBPyConnection:
    # a descriptor that holds no lock is no DuckDB connection (a backup copying the file): nothing to drop
    if open_here(path) and (locked_here(path) or _LOADS_HERE.get(_file_id(path) or (0, 0))):
        # Not opened beside it: a second handle, closed, drops the process's lock on the file (see open_here).
        # Sharing that connection's database through duckdb.connect opened a second one anyway where it was
        # ATTACHed or reached by a hard link (helper-108).
        if _LOADS_HERE.get(_file_id(path) or (0, 0)):
            raise _LoadedHere(path.name)
        raise OpenHere(path.name)
    con = duckdb.connect(":memory:")
    try:
        con.execute(f'ATTACH {literal(str(path))} AS "{catalog}" (READ_ONLY)')
        con.execute(f'USE "{catalog}"')
    except BaseException:
        con.close()
        raise
    return con


def in_use_here(error: BaseException) -> bool:
    """Whether DuckDB refused the file because another connection of this process has it open.

    Opened with ``duckdb.connect`` in another configuration, or attached by another database
    instance ("Unique file handle conflict"): DuckDB says so in these words only.
    """
    text = str(error).lower()
    return "different configuration" in text or "unique file handle conflict" in text


def _lock_holder(error: duckdb.IOException) -> str:
    """Who holds the file's lock in another process ("PID 123"); re-raises other I/O errors."""
    text = str(error)
    if "conflicting lock" not in text.lower() and "could not set lock" not in text.lower():
        raise error
    match = re.search(r"PID (\d+)", text)
    return f"PID {match.group(1)}" if match else "another process"


def check_room(path: Path, staged: int) -> None:
    """Refuses a load step that the disk holding ``path`` cannot fit, before it opens the file.

    Not needed for consistency (each table's merge is one transaction, see ``Target.pipeline``),
    but a full disk would fail only after the staging tables were written, with DuckDB's WAL
    error. ``staged`` is the size of the load package's files.
    """
    need = staged * LOAD_SPACE_FACTOR + LOAD_SPACE_MARGIN
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise LoadError(
            f"The disk holding {path} has {free / 2**20:,.1f} MB free; loading this run's "
            f"{staged / 2**20:,.1f} MB of data needs about {need / 2**20:,.0f} MB "
            "(DuckDB's write-ahead log, its spill folder and the checkpoint).",
            guidance="Free some space on that disk, or move the file to a larger one, and run the load "
            "again; nothing was written to the database.",
            database=str(path),
        )


# Settings dlt SETs on the database instance as it connects (the kit's memory cap, UTC, its
# checkpoint threshold), which a connection the user holds to the file in this process shares:
# a notebook's own connection was left at 91.5 MiB, in UTC, with another checkpoint threshold.
SHARED_SETTINGS = ("memory_limit", "TimeZone", "checkpoint_threshold")
# DuckDB shows a size cut to one decimal ("2.7 GiB" for 2.79 GiB) and SET takes it the same way
# (2.7 GiB showed as 2.6 GiB): a size is set back half a step up, so that it does not creep down.
_SHOWN_SIZE = re.compile(r"(\d+(?:\.\d)?) (KiB|MiB|GiB|TiB|PiB)")


def instance_settings(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """``SHARED_SETTINGS`` as DuckDB shows them (``current_setting``: a sixth of the time of a
    ``duckdb_settings()`` scan, which lists every setting; read four times a load)."""
    shown = ", ".join(f"current_setting('{name}')" for name in SHARED_SETTINGS)
    values = connection.execute(f"SELECT {shown}").fetchone()
    return {name: str(value) for name, value in zip(SHARED_SETTINGS, values)}


def restore_settings(connection: duckdb.DuckDBPyConnection, before: dict[str, str]) -> None:
    """Sets back each of ``before`` that changed since; one that DuckDB refuses is logged, not
    raised: the load's data is the user's business here, their connection's settings a courtesy."""
    now = instance_settings(connection)
    for name, value in before.items():
        if now.get(name) == value:
            continue
        try:
            connection.execute(f"SET GLOBAL {name} = '{_settable(name, value).replace(chr(39), chr(39) * 2)}'")
        except duckdb.Error as error:
            logger.warning("Could not set %s back to %s on this process's connections to the file (%s); "
                           "SET it again on your connection if you need it.", name, value, error)


def _settable(name: str, shown: str) -> str:
    """A value DuckDB showed, as SET takes it back."""
    size = _SHOWN_SIZE.fullmatch(shown)
    if size is None:
        return shown
    if name == "memory_limit" and shown == "16383.9 PiB":
        return "-1"  # no limit, as DuckDB shows it
    amount, unit = float(size.group(1)) + 0.05, size.group(2)  # half a shown step up
    if unit == "PiB":  # SET knows no PiB
        amount, unit = amount * 1024, "TiB"
    return f"{amount:.2f} {unit}"
