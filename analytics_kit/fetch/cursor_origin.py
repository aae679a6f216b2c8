"""Which API a resource's stored cursor came from, so that an incremental load never goes on from another's.

A database file loaded from one API (``make demo``'s demo API) and then, incrementally, from another
(a real API, or ``ak.demo.serve()`` in a script against make demo's file) went on from the first
API's cursors: the second API's records before that point were never fetched, and its rows were
merged into the first one's tables, without a word (helper-104). Each run records, next to the
cursor in the resource's dlt state, the origin of the URL the resource reads (``ORIGIN``: the
endpoint's own where its path is a full URL, else ``client.base_url``'s; masked like any text the
kit shows, so no user, password, path or query); an incremental load whose resource reads from
another origin stops before it sends a request. A full refresh starts the cursors over, and so
records the new one.

Every address of this machine (127.0.0.1, localhost, ::1) counts as one origin, whatever its port:
the demo API starts on a new port each time, and a notebook or the README's steps run again would
be refused (helper-105).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, MutableMapping
from urllib.parse import urlsplit

from analytics_kit.errors import LoadError

ORIGIN = "analytics_kit_cursor_origin"
THIS_MACHINE = "this machine (127.0.0.1, localhost)"


def origin_of(base_url: str | None, path: Any, redact: Callable[[str], str]) -> str | None:
    """The origin the resource reads, as stored and shown; None where neither URL names one."""
    url = path if isinstance(path, str) and "://" in path else base_url
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port that is no number: dlt's request fails on it, and says so
        return None
    if _loopback(host):
        return THIS_MACHINE
    return redact(f"{parts.scheme.lower()}://{f'[{host}]' if ':' in host else host}:{port}")


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_and_record(state: MutableMapping[str, Any], resource: str, origin: str | None) -> None:
    """Refuses to go on from a cursor ``state`` holds for another origin than ``origin``; records ``origin``."""
    if origin is None:
        return
    stored = state.get(ORIGIN)
    if stored is not None and stored != origin and state.get("incremental"):
        raise LoadError(
            f"Resource '{resource}': this database's stored cursor for it came from the API at {stored}, and this "
            f"config reads it from {origin}. An incremental load would go on from the other API's cursor, skip this "
            "one's records before it, and merge its rows into the other's tables. Nothing from this run was committed.",
            guidance="Load this API into a file of its own (database=\"other.duckdb\", or --database on the "
            "command line). If it is the same API at a new address, run one full refresh (mode=\"full_refresh\", "
            "or --full-refresh): it replaces the tables and starts the cursors over from this API.",
            resource=resource)
    state[ORIGIN] = origin
