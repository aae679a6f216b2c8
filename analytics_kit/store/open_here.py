"""Whether this process already has a DuckDB file open, through a DuckDB instance other than the kit's.

DuckDB locks its file with POSIX ``fcntl`` locks, which belong to the process, not to the descriptor:
closing *any* descriptor of the file drops every lock the process holds on it. The readers open the
file a second time (attached read-only to an in-memory database, under the kit's catalog name) and
close it before they return; beside a notebook's own ``duckdb.connect(path, read_only=True)`` that
close dropped the notebook's lock, a load in another process then wrote under it, and the notebook's
connection read corrupt segments (helper-103). So a reader first looks for a descriptor of the file
among the process's own (``/proc/self/fd``, Linux; elsewhere none is found, as before).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import duckdb

_FDS = "/proc/self/fd"
_LOCKS = "/proc/locks"
_HAVE_GC = 1 << 14  # Py_TPFLAGS_HAVE_GC: the type's objects are tracked by the garbage collector


def open_here(path: Path, *, by_another_name: bool = False) -> bool:
    """Whether a descriptor of this process has the file at ``path`` open (the same device and inode);
    ``by_another_name``: only one opened under another path (a hard link), which DuckDB, whose own registry
    of open files is keyed by path, would open the file beside (helper-109: a load through a hard link)."""
    try:
        target = os.stat(path)
        names = os.listdir(_FDS)
        here = os.path.realpath(path)
    except OSError:
        return False
    for name in names:
        try:
            found = os.stat(f"{_FDS}/{name}")
            if found.st_ino == target.st_ino and found.st_dev == target.st_dev and (
                    not by_another_name or os.readlink(f"{_FDS}/{name}") != here):
                return True
        except OSError:  # closed meanwhile, or the listing's own descriptor
            continue
    return False


def locked_here(path: Path) -> set[str]:
    """The kinds of POSIX lock ("READ", "WRITE") this process holds on the file at ``path`` (``/proc/locks``, Linux;
    elsewhere none). DuckDB takes READ for a read-only open, WRITE for a read-write one, by connect or ATTACH alike."""
    try:
        found = os.stat(path)
        with open(_LOCKS) as listing:
            lines = listing.read().splitlines()
    except OSError:
        return set()
    # e.g. "1: POSIX  ADVISORY  WRITE 5278 fe:00:2163230 0 EOF"
    inode = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    pid = str(os.getpid())
    kinds = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "POSIX" and fields[4] == pid and fields[5] == inode:
            kinds.add(fields[3])
    return kinds


def connections_holding(path: Path) -> list[tuple[bool, bool]] | None:
    """(own, read_only) for each live DuckDB connection of this process that has the file at ``path`` open:
    ``own`` where it is the connection's own database (``duckdb.connect(path)``, which a load of this process
    shares), not ATTACHed. Asked on a cursor of each, never by opening the file: a refused open beside an ATTACH
    had opened the file and closed it, which dropped the connection's lock (helper-111). None where this duckdb's
    connections are not known to the garbage collector (duckdb 1.4's), so cannot be found."""
    if not duckdb.DuckDBPyConnection.__flags__ & _HAVE_GC:
        return None
    found = []
    for candidate in gc.get_objects():
        if not isinstance(candidate, duckdb.DuckDBPyConnection):
            continue
        try:
            cursor = candidate.cursor()
        except duckdb.Error:  # closed
            continue
        try:
            rows = cursor.execute("SELECT path, readonly, database_name = current_database() FROM duckdb_databases() "
                                  "WHERE path IS NOT NULL AND path <> ''").fetchall()
        except duckdb.Error:
            rows = []
        finally:
            cursor.close()
        for where, read_only, own in rows:
            try:
                if os.path.samefile(where, path):
                    found.append((bool(own), bool(read_only)))
            except OSError:
                continue
    return found
