"""Which API a resource's stored cursor came from, so that an incremental load never goes on from another's.

A database file loaded from one API (``make demo``'s demo API) and then, incrementally, from another
(``ak.demo.serve()`` in a script, or a real API) went on from the first API's cursors: the second
API's records before that point were never fetched, and its rows were merged into the first one's
tables, without a word (helper-104). Each run records, next to the cursor in the resource's dlt
state, the origin and path of the API's base URL (``ORIGIN``; masked like any text the kit shows,
no user, password or query); an incremental load whose config names another one stops before it
sends a request. A full refresh starts the cursors over, and so records the new API.
"""

from __future__ import annotations

from typing import Any, Callable, MutableMapping
from urllib.parse import urlsplit

from analytics_kit.errors import LoadError
from analytics_kit.fetch.transport import origin

ORIGIN = "analytics_kit_cursor_origin"


def api_of(base_url: str | None, redact: Callable[[str], str]) -> str | None:
    """``scheme://host:port/path`` of ``base_url``, as stored and shown; None without one (full URLs in paths)."""
    return redact(origin(base_url) + urlsplit(base_url).path.rstrip("/")) if base_url else None


def check_and_record(state: MutableMapping[str, Any], resource: str, api: str | None) -> None:
    """Refuses to go on from a cursor ``state`` holds for another API than ``api``; records ``api``."""
    if api is None:
        return
    stored = state.get(ORIGIN)
    if stored is not None and stored != api and state.get("incremental"):
        raise LoadError(
            f"Resource '{resource}': this database's stored cursor for it came from the API at {stored}, and this "
            f"config loads from {api}. An incremental load would go on from the other API's cursor, skip this "
            "one's records before it, and merge its rows into the other's tables. Nothing from this run was committed.",
            guidance="Load this API into a file of its own (database=\"other.duckdb\", or --database on the "
            "command line). If it is the same API at a new address, run one full refresh (mode=\"full_refresh\", "
            "or --full-refresh): it replaces the tables and starts the cursors over from this API.",
            resource=resource)
    state[ORIGIN] = api
