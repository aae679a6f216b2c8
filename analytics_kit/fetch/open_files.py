"""The process's limit of open files, reached: said as such, not as the API's fault.

Under a low ``ulimit -n`` a new connection failed with "[Errno 24] Too many open files", which the kit took for a
dropped connection: retried with the whole backoff, then blamed on the server with advice to raise max_retries; dlt's
own steps failed on it with their raw errors (helper-148).
"""

from __future__ import annotations

import errno
import resource
from typing import Iterable

from analytics_kit.errors import LoadError

_SIGNS = (f"[Errno {errno.EMFILE}]", f"[Errno {errno.ENFILE}]", "Too many open files")


def out_of_files(errors: Iterable[BaseException]) -> bool:
    """Whether one of ``errors`` (an error and its causes) is the open-files limit reached, as an errno or in the text
    of an error that wrapped it (urllib3's)."""
    return any((isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE))
               or any(sign in str(e) for sign in _SIGNS) for e in errors)


def open_files_error(doing: str, aftermath: str | None = None) -> LoadError:
    """The ``LoadError`` for the limit reached while ``doing``; ``aftermath``: what the failure left, where it is not
    "nothing from this run was committed" (a failure in dlt's steps)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = "no limit" if soft == resource.RLIM_INFINITY else f"{soft:,}"
    return LoadError(
        f"This process ran out of open files (its limit: {limit}, `ulimit -n`) while it {doing}"
        + ("." if aftermath else "; nothing from this run was committed."),
        guidance="Raise the limit where the load runs (`ulimit -n 4096` in its shell, or the service's LimitNOFILE), "
        "or close what else the process holds open; then run the load again. The API is not at fault."
        + (f" {aftermath}" if aftermath else ""))
