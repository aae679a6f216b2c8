"""Shared fixtures: every test runs in its own folder with a clean environment.

Servers are real (the demo API on 127.0.0.1), databases are real DuckDB files under
the test's temp folder, and dlt's pipeline folders sit beside them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import analytics_kit as ak
from analytics_kit import demo

REPO = Path(__file__).resolve().parents[1]
# A small backoff so tests that really retry stay fast.
FAST_RETRIES = {"retry_on_status_codes": [429, 500, 502, 503, 504], "max_retries": 3, "backoff_factor": 0.001}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder, and no key or base URL from the developer's environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("API_KEY", "ANALYTICS_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def api():
    """A small demo API of its own for one test."""
    with demo.serve(events=250, customers=20, seed=11) as server:
        yield server


@pytest.fixture
def config(api, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The guide's config for ``api``, the key coming from dlt secrets (API_KEY), fast retries."""
    monkeypatch.setenv("API_KEY", api.api_key)
    return fast(ak.guide_config(api.base_url))


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
