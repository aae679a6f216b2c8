"""Which API a resource's stored cursor came from, so that an incremental load never goes on from another's.

A database file loaded from one API (``make demo``'s demo API) and then, incrementally, from another
(a real API, or ``ak.demo.serve()`` in a script against make demo's file) went on from the first
API's cursors: the second API's records before that point were never fetched, and its rows were
merged into the first one's tables, without a word (helper-104). Each run records, next to the
cursor in the resource's dlt state, the origin of the URL the resource reads (``ORIGIN``: the
endpoint's own where its path is a full URL, else ``client.base_url``'s; scheme, host and port, so no
path or query; a URL holding credentials is refused before any of this, see ``config.checks``). An
incremental load whose resource reads from another origin stops before it sends a request. A full
refresh starts the cursors over, and so records the new one.

Every address of this machine counts as one origin, whatever its port: the demo API starts on a new
port each time, and the README's steps or a notebook run again were refused (helper-105). Written as
127.0.0.1 (or 127.1), localhost, ::1 or 0.0.0.0 it is told at once; the machine's own name or one of
its own addresses (helper-106) only when two origins differ, by asking whether this machine can bind the
address, and for a name, by the hosts file: nothing is sent, not even a DNS query (helper-107: a refused load
looked both hosts up, with the resolver's own timeout, and through a proxy the load itself resolves nothing). A
name only DNS gives this machine counts as another origin: the refusal says how to take the file over.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, MutableMapping
from urllib.parse import urlsplit

from analytics_kit.errors import LoadError
from analytics_kit.fetch.transport import address_of, canonical_host

ORIGIN = "analytics_kit_cursor_origin"
THIS_MACHINE = "this machine (127.0.0.1, localhost)"
_PORTS = {"http": 80, "https": 443}


def origin_of(base_url: str | None, path: Any, *, resolve: bool = False) -> str | None:
    """The origin the resource reads; None where neither URL names one. ``resolve``: also look the host up."""
    url = path if isinstance(path, str) and "://" in path else base_url
    if not url:
        return None
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), canonical_host(parts.hostname or "")
        port = parts.port or _PORTS.get(scheme)
    except ValueError:  # a port that is no number: dlt's request fails on it, and says so
        return None
    if _this_machine(host, resolve):
        return THIS_MACHINE
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or address.is_unspecified or (mapped is not None and _local(mapped))


def _mine(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if _local(address):
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:  # only an address of this machine can be bound; nothing is sent
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
        return True
    except OSError:
        return False


def _this_machine(host: str, resolve: bool) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = address_of(host)
    if address is not None:
        return _local(address) or (resolve and _mine(address))
    if not resolve:
        return False
    if host == socket.gethostname().lower():
        return True
    found = _hosts_file().get(host, ())
    return bool(found) and all(_mine(address) for address in found)


def _hosts_file() -> dict[str, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    return read_hosts("/etc/hosts")


def read_hosts(path: str) -> dict[str, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """{name: its addresses} as the hosts file gives them; empty where there is none."""
    names: dict[str, list] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as hosts:
            lines = hosts.read().splitlines()
    except OSError:
        return names
    for line in lines:
        fields = line.split("#", 1)[0].split()
        try:
            address = ipaddress.ip_address(fields[0].split("%")[0]) if fields else None
        except ValueError:
            continue
        for name in fields[1:]:
            names.setdefault(name.lower().rstrip("."), []).append(address)
    return names


def check_and_record(state: MutableMapping[str, Any], resource: str, base_url: str | None, path: Any) -> None:
    """Refuses to go on from a cursor ``state`` holds for another origin than the one the resource reads;
    records that origin."""
    origin = origin_of(base_url, path)
    if origin is None:
        return
    stored = state.get(ORIGIN)
    if stored is not None and stored != origin and state.get("incremental"):
        # told apart by their text: the same machine under two names, or an address of its own, is looked for
        origin = origin_of(base_url, path, resolve=True)
        if stored != THIS_MACHINE:
            stored = origin_of(stored, None, resolve=True) or stored
        if stored != origin:
            raise LoadError(
                f"Resource '{resource}': this database's stored cursor for it came from the API at {stored}, and "
                f"this config reads it from {origin}. An incremental load would go on from the other API's cursor, "
                "skip this one's records before it, and merge its rows into the other's tables. Nothing from this "
                "run was committed.",
                guidance="Load this API into a file of its own (database=\"other.duckdb\", or --database on the "
                "command line). If it is the same API at a new address, run one full refresh (mode=\"full_refresh\", "
                "or --full-refresh): it replaces the tables and starts the cursors over from this API.",
                resource=resource)
    state[ORIGIN] = origin


def mark_run_start(resource: str, base_url: str | None, path: Any, started: Any) -> None:
    """Records in the resource's state, with its cursor, when this run started (see ``cursors``) and from which API
    (``check_and_record``)."""
    import dlt

    from analytics_kit.fetch import cursors

    try:  # outside a pipeline (a source iterated by hand) there is no state
        state = dlt.current.resource_state(resource)
    except Exception:  # noqa: BLE001
        return
    check_and_record(state, resource, base_url, path)
    state[cursors.RUN_STARTED] = cursors.render(started)
