"""Shared fixtures: every test runs in its own folder with a clean environment.

Servers are real (the demo API on 127.0.0.1), databases are real DuckDB files under
the test's temp folder, and dlt's pipeline folders sit beside them.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import analytics_kit as ak
from analytics_kit import demo

from helpers import fast


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder, and no key, base URL or default database from the developer's environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("API_KEY", "ANALYTICS_API_BASE_URL", "ANALYTICS_DATABASE"):
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


@pytest.fixture
def loaded(api, config) -> Path:
    """The demo API loaded into ``analytics.duckdb`` in the test's folder."""
    ak.load(config, progress=False)
    return Path("analytics.duckdb").resolve()


@pytest.fixture
def interruptible():
    """SIGINT raises KeyboardInterrupt, as in a Jupyter kernel running a cell: a process started in
    the background by a shell inherits SIGINT ignored, and ``_thread.interrupt_main`` then does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
