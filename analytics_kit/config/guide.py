"""The integration guide's config, filled in for a base URL: what ``make demo`` and the CLI use.

The dict is the guide's, plus its Schema section as dlt ``columns`` hints, the
incremental cursor, and the demo API's soft-delete flag as dlt's ``hard_delete`` hint.
"""

from __future__ import annotations

import copy
import os
from typing import Any

BASE_URL_ENV = "ANALYTICS_API_BASE_URL"
# The dlt source's name: its secrets sections (sources.<name>.credentials) and its state.
SOURCE_NAME = "analytics"
INITIAL_CURSOR = "2025-01-01T00:00:00Z"

ERROR_HANDLER = {"retry_on_status_codes": [429, 500, 502, 503, 504], "max_retries": 3, "backoff_factor": 2}

EVENTS_COLUMNS: dict[str, dict[str, Any]] = {
    "id": {"data_type": "bigint", "nullable": False},
    "customer_id": {"data_type": "text", "nullable": False},
    "timestamp": {"data_type": "timestamp", "nullable": False},
    "event_type": {"data_type": "text", "nullable": False},
    "value": {"data_type": "double", "nullable": True},
    # Kept whole as one JSON column: the keys vary between events.
    "properties": {"data_type": "json", "nullable": True},
    # Two versions of one id in a load (a page repeated, a record updated mid-run): merge keeps
    # the newest.
    "updated_at": {"data_type": "timestamp", "nullable": False, "dedup_sort": "desc"},
    "deleted": {"data_type": "bool", "nullable": True, "hard_delete": True},
}

CUSTOMERS_COLUMNS: dict[str, dict[str, Any]] = {
    "id": {"data_type": "text", "nullable": False},
    "name": {"data_type": "text", "nullable": True},
    "email": {"data_type": "text", "nullable": True},
    "plan": {"data_type": "text", "nullable": False},
    "country": {"data_type": "text", "nullable": True},
    "created_at": {"data_type": "timestamp", "nullable": False},
    "updated_at": {"data_type": "timestamp", "nullable": False, "dedup_sort": "desc"},
    "deleted": {"data_type": "bool", "nullable": True, "hard_delete": True},
}

COLUMNS = {"events": EVENTS_COLUMNS, "customers": CUSTOMERS_COLUMNS}


def endpoint(path: str, *, limit: int = 100, incremental: bool = True) -> dict[str, Any]:
    """One endpoint as the guide writes it, with the incremental cursor on ``updated_at``."""
    spec: dict[str, Any] = {
        "path": path,
        "data_selector": "data",
        "paginator": {"type": "offset", "limit": limit},
        "error_handler": dict(ERROR_HANDLER),
    }
    if incremental:
        spec["incremental"] = {
            "cursor_path": "updated_at",
            "start_param": "updated_since",
            "initial_value": INITIAL_CURSOR,
        }
    return spec


def guide_config(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    resources: tuple[str, ...] = ("events", "customers"),
    limit: int = 100,
) -> dict[str, Any]:
    """The guide's config for ``base_url`` (default: ``$ANALYTICS_API_BASE_URL``).

    ``api_key=None`` leaves the key to dlt secrets, where dlt looks for it
    (``SOURCES__ANALYTICS__CREDENTIALS__API_KEY``, ``CREDENTIALS__API_KEY``, or those sections of
    ``.dlt/secrets.toml``), and then to ``API_KEY`` (or ``api_key`` in ``.dlt/secrets.toml``).
    """
    base_url = base_url or os.environ.get(BASE_URL_ENV)
    return {
        "client": {
            "base_url": base_url,
            "auth": {"type": "api_key", "name": "api_key", "api_key": api_key, "location": "query"},
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            # copies: a notebook that edits its config must not change the next one's
            {"name": name, "endpoint": endpoint(f"/v1/{name}", limit=limit), "columns": copy.deepcopy(COLUMNS[name])}
            for name in resources
        ],
    }
