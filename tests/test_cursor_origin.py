"""A database's stored cursors belong to the API that loaded them: an incremental load from another API
stops, before it commits anything, instead of going on from them (helper-104: the README's "In Python"
steps after ``make demo`` loaded 1 row of a new demo API into ``make demo``'s tables)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dlt
import duckdb
import pytest
from dlt.pipeline.state_sync import decompress_state

import analytics_kit as ak
from analytics_kit.fetch.cursor_origin import ORIGIN

from helpers import fast, loaded


@pytest.fixture
def two_apis():
    with ak.demo.serve(events=300, customers=10, seed=1) as first, \
            ak.demo.serve(events=200, customers=10, seed=2) as second:
        yield first, second


def config_for(api, base_url: str | None = None) -> dict:
    os.environ["API_KEY"] = api.api_key
    return fast(ak.guide_config(base_url or api.base_url))


def stored_origins(database: Path) -> dict:
    with duckdb.connect(str(database), read_only=True) as con:
        (blob,), = con.execute("SELECT state FROM analytics._dlt_pipeline_state ORDER BY created_at DESC LIMIT 1"
                               ).fetchall()
    resources = decompress_state(blob)["sources"]["analytics"]["resources"]
    return {name: state.get(ORIGIN) for name, state in resources.items()}


def test_an_incremental_load_from_another_api_stops_and_keeps_the_tables(two_apis, tmp_path, monkeypatch):
    first, second = two_apis
    monkeypatch.setenv("API_KEY", "unset")
    database = tmp_path / "analytics.duckdb"
    ak.load(config_for(first), database=database, progress=False)
    before = loaded(first, database=str(database))
    assert len(before) == 300
    assert set(stored_origins(database).values()) == {first.base_url.rstrip("/")}

    with pytest.raises(ak.LoadError) as caught:
        ak.load(config_for(second), database=database, progress=False)
    text = str(caught.value)
    assert f"came from the API at {first.base_url}" in text and f"loads from {second.base_url}" in text, text
    assert "mode=\"full_refresh\"" in caught.value.guidance and "database=" in caught.value.guidance
    assert loaded(first, database=str(database)) == before  # nothing of the second API's
    assert len(ak.history(database)) == 1

    # the same API at a new address: one full refresh takes it over, and incremental loads go on from it
    report = ak.load(config_for(second), "full_refresh", database=database, progress=False)
    assert report.rows["events"] == 200
    assert set(stored_origins(database).values()) == {second.base_url.rstrip("/")}
    second.advance(new=5, updated=3)
    report = ak.load(config_for(second), database=database, progress=False)
    assert report.rows["events"] == 8
    assert ak.query("SELECT count(*) AS n FROM events", database).n[0] == 205


def test_the_same_api_goes_on_and_the_stored_origin_holds_no_secret(two_apis, tmp_path, monkeypatch):
    """Spelled differently (a trailing slash, the host's case, a user and password in the URL), it is the same
    API; what is stored is its origin and path, never the credentials."""
    first, _ = two_apis
    database = tmp_path / "analytics.duckdb"
    ak.load(config_for(first), database=database, progress=False)
    host = first.base_url.split("://", 1)[1]
    first.advance(new=4, updated=0)
    # a user and password in the URL: requests sends them as basic auth, which the demo API ignores
    spelled = f"HTTP://someone:pa55-w0rd-canary@{host.upper()}/"
    report = ak.load(config_for(first, spelled), database=database, progress=False)
    assert report.rows["events"] == 4
    stored = json.dumps(stored_origins(database))
    assert "pa55-w0rd-canary" not in stored and "someone" not in stored, stored
