"""One load at a time for each database, across processes.

Two loads of one database (two notebooks, or a scheduled job and a notebook) share its
pipeline folder, and every load clears that folder first: the other load then lost its
package mid-run (``FileNotFoundError``, ``LoadPackageNotFound``). DuckDB's own file lock
does not cover this: the kit holds the file only while dlt reads or writes it, and a
warehouse has no file at all. So each load holds an exclusive ``flock`` on a file in the
pipeline folder for the whole run. The kernel drops the lock when its holder exits, killed
or not, so a crashed load never leaves a stale lock behind; the holder writes its PID into
the file only so that a waiting load can name it.

The pipeline folder is named after the database's path, and a second name of one file (a hard link) has a folder,
and so a lock, of its own: two loads through two names ran side by side (helper-116). So a load of a file that
exists also holds a lock named after the file itself (its device and inode), in one folder for the machine
(``/tmp/analytics-kit-locks``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator

from analytics_kit.errors import LoadError
from analytics_kit.interrupts import raise_if_dropped

LOCK_FILE = "load.lock"
POLL_SECONDS = 0.1
FILES_FOLDER = "analytics-kit-locks"  # in the system's temporary folder: the locks named after files

logger = logging.getLogger(__name__)


@contextmanager
def load_lock(folder: Path, wait: float, label: str, on_wait: Callable[[str], None] | None = None, *,
              database: Path | None = None) -> Iterator[None]:
    """Holds the load lock of the database whose pipeline folder is ``folder``, and, where ``database`` names a file
    that exists, the lock of that file under any name.

    Waits up to ``wait`` seconds for another load to finish, then raises ``LoadError``
    naming the holder's PID.
    """
    deadline = time.monotonic() + wait
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        held.enter_context(_held(folder / LOCK_FILE, deadline, wait, label, on_wait))
        by_file = _file_lock(database) if database is not None else None
        if by_file is not None:
            try:
                # only a load through another name waits here: one through this name waited above
                held.enter_context(_held(by_file, deadline, wait, f"{label} under another name (a hard link to it)",
                                         on_wait, removed=True))
            except OSError as error:  # a link or a folder planted under its name: the lock by name stands alone
                logger.warning("Loads of %s through another name (a hard link) are not kept apart from this one: "
                               "its lock %s cannot be used (%s).", database, by_file, error)
        yield


def _file_lock(database: Path) -> Path | None:
    """The lock file named after ``database``'s device and inode; None where the file or the folder is not there to
    be had (no file yet: no other name of it either; a folder another user made without room for this one's)."""
    try:
        found = os.stat(database)
    except OSError:
        return None
    # /tmp first, whatever TMPDIR says: two processes with other TMPDIRs locked in two folders
    for temporary in dict.fromkeys(("/tmp", tempfile.gettempdir())):
        shared = Path(temporary) / FILES_FOLDER
        try:
            shared.mkdir(exist_ok=True)
            folder = os.lstat(shared)
            if not stat.S_ISDIR(folder.st_mode):  # a link planted in the shared temporary folder is not followed
                raise NotADirectoryError(f"{shared} is not a folder")
            if folder.st_uid == os.getuid():
                shared.chmod(0o1777)  # every user's loads lock here; each removes only its own files (sticky)
        except OSError as error:
            logger.debug("no lock by file for %s in %s: %s", database, temporary, error)
            continue
        return shared / f"{found.st_dev:x}-{found.st_ino}.lock"
    return None


@contextmanager
def _held(path: Path, deadline: float, wait: float, label: str, on_wait: Callable[[str], None] | None, *,
          removed: bool = False) -> Iterator[None]:
    """Holds the lock file at ``path``; ``removed``: it is removed on release (the lock by file: one a database,
    which kept every one of them for good in the shared folder, helper-117), so a lock is taken only on the file the
    name still holds."""
    fd = _locked(path, deadline, wait, label, on_wait, removed)
    try:
        _name_holder(fd, f"{os.getpid()}\n")
        yield
    finally:
        try:
            _name_holder(fd, "")
            if removed and _same(path, fd):
                with contextlib.suppress(OSError):  # another user's file in the sticky folder stays
                    os.unlink(path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _locked(path: Path, deadline: float, wait: float, label: str, on_wait: Callable[[str], None] | None,
            removed: bool) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except PermissionError:  # another user's lock file: it locks read-only all the same, and names no holder
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            _acquire(fd, deadline, wait, label, on_wait)
        except BaseException:
            os.close(fd)
            raise
        if not removed or _same(path, fd):
            return fd
        os.close(fd)  # its holder removed it while this load waited: the name holds a new file now


def _same(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open at ``fd``."""
    try:
        named, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _name_holder(fd: int, text: str) -> None:
    """Writes ``text`` into the lock file, only if it is a file of this user's alone (not another's, nor one linked
    under another name in a shared temporary folder)."""
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_uid != os.getuid() or found.st_nlink != 1:
        return
    try:
        os.ftruncate(fd, 0)
        if text:
            os.pwrite(fd, text.encode(), 0)
    except OSError:  # opened read-only
        pass


def _acquire(fd: int, deadline: float, wait: float, label: str, on_wait: Callable[[str], None] | None) -> None:
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = _holder(fd)
        if time.monotonic() >= deadline:
            raise LoadError(
                f"Another load of {label} is running ({holder}); this one waited {wait:g} s for it.",
                guidance="Let that load finish and run this one again, or wait longer for it: "
                "ak.load(..., lock_timeout=seconds), or analytics-kit load --lock-timeout seconds.",
                database=label, holder=holder,
            )
        if not told and on_wait is not None:
            on_wait(f"Another load of {label} is running ({holder}); waiting up to {wait:g} s for it")
            told = True
        raise_if_dropped()
        time.sleep(POLL_SECONDS)


def _holder(fd: int) -> str:
    """"PID 123" from the lock file, or "another process" while the holder has not written it."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    if text == str(os.getpid()):
        return f"another thread of this process, PID {text}"
    return f"PID {text}" if text.isdigit() else "another process"


def running_load(folder: Path) -> str | None:
    """Who holds the load lock of the pipeline folder ``folder`` ("PID 123"), or None when no load holds it; creates
    nothing (the readers never do)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
