"""One load at a time for each database, across processes.

Two loads of one database (two notebooks, or a scheduled job and a notebook) share its
pipeline folder, and every load clears that folder first: the other load then lost its
package mid-run (``FileNotFoundError``, ``LoadPackageNotFound``). DuckDB's own file lock
does not cover this: the kit holds the file only while dlt reads or writes it, and a
warehouse has no file at all. So each load holds an exclusive ``flock`` on a file in the
pipeline folder for the whole run. The kernel drops the lock when its holder exits, killed
or not, so a crashed load never leaves a stale lock behind; the holder writes its PID into
the file only so that a waiting load can name it.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from analytics_kit.errors import LoadError
from analytics_kit.interrupts import raise_if_dropped

LOCK_FILE = "load.lock"
POLL_SECONDS = 0.1


@contextmanager
def load_lock(folder: Path, wait: float, label: str,
              on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Holds the load lock of the database whose pipeline folder is ``folder``.

    Waits up to ``wait`` seconds for another load to finish, then raises ``LoadError``
    naming the holder's PID.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, wait, label, on_wait)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, wait: float, label: str, on_wait: Callable[[str], None] | None) -> None:
    deadline = time.monotonic() + wait
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
