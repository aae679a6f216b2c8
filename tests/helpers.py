"""Helpers the tests import: fast retry policies and comparisons with the demo API's records."""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path
from typing import Any

import analytics_kit as ak

# A small backoff so tests that really retry stay fast.
FAST_RETRIES = {"retry_on_status_codes": [429, 500, 502, 503, 504], "max_retries": 3, "backoff_factor": 0.001}
# Requests an incremental resource's offset listing of more than one page adds to its pages: its last page,
# read before them, and its first page again (analytics_kit/fetch/newest.py).
NEWEST_READ = 2


def without_newest_read(offsets: list) -> list:
    """The offsets a listing's pass asked for, in the order asked, without the reads of its newest cursor:
    the first page, the last page, then the first page again (or, where that last page did not end where the
    total said, the pass going on from it)."""
    if len(offsets) > 2 and offsets[0] == offsets[2] != offsets[1]:
        return offsets[:1] + offsets[3:]
    if len(offsets) > 2 and offsets[1] == offsets[2]:
        return offsets[:1] + offsets[2:]
    return list(offsets)


def guide_dict(base_url: str, api_key: Any) -> dict:
    """The integration guide's dict as printed (its generic resource), at ``base_url`` with ``api_key``."""
    return {
        "client": {"base_url": base_url, "auth": {"type": "api_key", "name": "api_key",
                   "api_key": api_key, "location": "query"}},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [{"name": "resource_name", "endpoint": {
            "path": "/v1/resource", "data_selector": "data",
            "paginator": {"type": "offset", "limit": 100},
            "error_handler": {"retry_on_status_codes": [429, 500, 502, 503, 504],
                              "max_retries": 3, "backoff_factor": 2}}}]}


def fast(config: dict) -> dict:
    """``config`` with tiny backoff on every endpoint."""
    config = copy.deepcopy(config)
    for resource in config["resources"]:
        resource["endpoint"]["error_handler"] = dict(FAST_RETRIES)
    return config


def loaded(api, table: str = "events", database: str = "analytics.duckdb") -> dict:
    """``{id: (updated_at, value-ish)}`` of the loaded table, to compare with the API's records."""
    frame = ak.query(f"SELECT id, updated_at FROM analytics.{table} ORDER BY id", database)
    return {row.id: row.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ") for row in frame.itertuples()}


def served(api, resource: str = "events") -> dict:
    return {r["id"]: r["updated_at"] for r in api.records(resource, include_deleted=False)}


def merge_sql(table: str = "events", database: str = "analytics.duckdb") -> str:
    """The SQL dlt ran to merge ``table`` in the last load (its package stays until the next run)."""
    jobs = sorted(Path(database + ".state").glob(f"*/load/loaded/*/completed_jobs/{table}.*.sql"))
    assert jobs, f"no merge job for {table}"
    return jobs[-1].read_text()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command_env(api) -> dict:
    """The environment a command or child process gets: the guide's config pointed at ``api``."""
    return {**os.environ, "ANALYTICS_API_BASE_URL": api.base_url, "API_KEY": api.api_key}
