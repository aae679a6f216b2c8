"""What is wrong with a DuckDB file DuckDB cannot read, or a folder the load cannot write, in words that say what to do.

DuckDB's own text ("Could not read enough bytes from file", "version number 68") reached the user with the load's
usual advice, "Fix the cause and run the load again. Nothing is lost", which no second run could follow: a file cut
short fails every load and every query the same way (helper-116).
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import duckdb

from analytics_kit.store.open_here import open_here

# DuckDB's words for a file whose bytes are not what its own headers say: cut short, overwritten, bit rot
_DAMAGED = ("could not read enough bytes", "corrupt", "checksum", "invalid block", "failed to read database header",
            "invalid metadata", "serialization error", "expected file size")
_VERSION = re.compile(r"version number (\d+), but we can only read versions between (\d+) and (\d+)")
RECOVER = ("Restore it from a backup; or move it (and a .wal file beside it) aside and load into a new file: a full "
           "refresh (analytics-kit load --full-refresh) fetches everything again.")


def unreadable(error: BaseException, path: Path | str) -> tuple[str, str] | None:
    """(what is wrong with the DuckDB file at ``path``, what to do) for an error DuckDB raised reading it; None for
    anything else."""
    if not isinstance(error, duckdb.Error):
        return None
    text = str(error)
    lower = text.lower()
    version = _VERSION.search(text)
    if version is not None:
        found, low, high = (int(n) for n in version.groups())
        newer = found > high
        return (f"{path} was written by {'a newer' if newer else 'an older'} DuckDB than this one (duckdb "
                f"{duckdb.__version__}): its storage version is {found}, and this DuckDB reads {low} to {high}",
                "Upgrade duckdb where you read or load it (pip install -U duckdb), or use the environment that "
                "wrote it." if newer else "Open it once with a DuckDB that reads it, or load into a new file.")
    if "failure while replaying wal file" in lower:
        # a .wal beside a file it was not written for: a killed process's, beside a file since restored from a backup
        # or copied without it; every load and reader failed the same way, told to "run the load again" (helper-148)
        wal = re.search(r'replaying WAL file "([^"]+)"', text)
        wal_path = wal.group(1) if wal else f"{path}.wal"
        return (f"{path} cannot be opened: DuckDB's log of its last changes beside it, {wal_path}, does not belong "
                "to it",
                f"Move {wal_path} aside (do not delete it yet: it may hold the last load of the file it came with), "
                "then run again. This happens when a file is restored from a backup, or copied, without its .wal "
                "while one left by a killed process stays.")
    if "not a valid duckdb database file" in lower:
        return (f"{path} is not a DuckDB database file (or its first bytes are damaged)",
                "Pass the DuckDB file a load wrote (database=...). If this was one, it is damaged: " + RECOVER)
    if any(words in lower for words in _DAMAGED):
        return f"{path} is damaged: DuckDB cannot read it ({_first_line(text)})", RECOVER
    return None


# Files DuckDB opens as something other than a database, where a database is asked for: a CSV, JSON or Parquet file
# (by its name, compressed or not) as an in-memory database that reads it, so that a load "into" it was thrown away
# when it closed; a SQLite file through an extension it tries to download (helper-125). Others it refuses itself.
_FORMATS = ((b"SQLite format 3\x00", "a SQLite database"), (b"PAR1", "a Parquet file"), (b"\x1f\x8b", "a gzip file"),
            (b"\x28\xb5\x2f\xfd", "a zstd file"), (b"PK\x03\x04", "a zip file (an Excel workbook, perhaps)"))
_DATA_SUFFIXES = {".csv": "a CSV file", ".tsv": "a CSV file", ".json": "a JSON file", ".jsonl": "a JSON file",
                  ".ndjson": "a JSON file", ".parquet": "a Parquet file"}
DUCKDB_MAGIC = b"DUCK"  # at byte 8 of every DuckDB database file
MAGIC_AT = 8


def not_duckdb(path: Path) -> str | None:
    """What the existing, non-empty file at ``path`` is, where DuckDB would open it as something other than a
    database; None for a DuckDB file, an empty one (the load makes it anew), one that cannot be read, and any other
    file (DuckDB's own error names it, damaged or foreign)."""
    if open_here(path):
        # this process has the file open (a connection of the caller's): it is not opened again here, as closing any
        # descriptor of it drops the locks DuckDB holds on it for that connection (helper-124: a load in another
        # process then wrote under it, and the file was damaged)
        return None
    try:
        with open(path, "rb") as file:
            head = file.read(64)
    except OSError:
        return None
    if not head or head[MAGIC_AT:MAGIC_AT + len(DUCKDB_MAGIC)] == DUCKDB_MAGIC:
        return None
    by_name = next((_DATA_SUFFIXES[s] for s in map(str.lower, path.suffixes) if s in _DATA_SUFFIXES), None)
    return next((what for magic, what in _FORMATS if head.startswith(magic)), by_name)


# errno values that say what is wrong with a folder or file on the load's way, as an OSError names them
_FOLDER_FAULTS = {
    errno.EROFS: "is on a read-only file system",
    errno.EACCES: "may not be written by this user",
    errno.EPERM: "may not be written by this user",
    errno.EISDIR: "is a folder where the kit keeps a file",
    errno.ENOTDIR: "has a file where the kit keeps a folder",
    errno.ELOOP: "is a link that leads back to itself",
    errno.EEXIST: "is in the way (a file where a folder is due)",
    errno.ENAMETOOLONG: "has a name longer than the file system allows",
}


def unwritable(error: BaseException, database: str, workdir: str | None) -> tuple[str, str] | None:
    """(what, what to do) for an operating system's refusal to write the load's own file or working folder."""
    if not isinstance(error, OSError) or error.errno not in _FOLDER_FAULTS or not error.filename:
        return None
    where = os.fsdecode(error.filename)
    ours = [p for p in (database, workdir) if p]
    if not any(where == p or where.startswith(p.rstrip(os.sep) + os.sep) or p.startswith(where + os.sep)
               for p in ours):
        return None  # another file (a certificate, a config file): the failure's own words say it better
    folder = workdir or "the folder beside it"
    fault = _FOLDER_FAULTS[error.errno]
    table = os.path.basename(where).split(".")[0]  # a working file is named for its table: table.<id>.<n>.parquet
    if error.errno == errno.ENAMETOOLONG and "__" in table:  # a nested table's, named by the path to it: items__a__b
        return (f"dlt makes a table of the lists in a field, and of every level of lists nested in them, named by the "
                f"path to it ({table[:60]}...): that name made a working file's name longer than the file system "
                "allows",
                "Keep the field whole as JSON: declare it in the resource's columns as json (\"columns\": "
                "{\"<field>\": {\"data_type\": \"json\"}}), or set max_table_nesting on the resource (2, say) to keep "
                "deeper levels as JSON; a field whose own name is that long needs a shorter one (a map step that "
                "renames it).")
    if error.errno == errno.EEXIST and os.path.islink(where) and not os.path.exists(where):
        fault = _FOLDER_FAULTS[errno.ELOOP] if os.path.realpath(where) == os.path.abspath(where) else \
            "is a link to nowhere"  # mkdir on a link says only "File exists" (helper-117)
    return (f"{where} {fault}",
            f"The load keeps its working files in {folder}: make that folder and the database's writable and remove "
            f"what is in the way (the working folder may be deleted: the next load rebuilds it from the database), "
            "or pass database= a file in a folder you can write.")


def conflicting(error: BaseException, database: str) -> tuple[str, str] | None:
    """(what, what to do) for DuckDB refusing the load's writes over rows another connection of this process changed in
    a transaction still open: the load shares the caller's plain ``duckdb.connect(path)`` (one database instance), and
    dlt's retries of the job ended in "TransactionContext Error: Conflict on tuple deletion!" (helper-116)."""
    if not isinstance(error, duckdb.TransactionException) or "conflict" not in str(error).lower():
        return None
    return (f"another connection of this process to {database} holds a transaction that changed the rows this load "
            f"writes (a BEGIN without COMMIT or ROLLBACK, or a write under way in another thread): DuckDB refused the "
            f"load's writes ({_first_line(str(error))})",
            "Commit or roll back that transaction (con.commit() or con.rollback()), or close that connection, and run "
            "the load again.")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= 200 else line[:200] + "..."
