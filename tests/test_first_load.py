"""A first load into an empty dataset is a replace: each row written once, no merge.

The tables do not exist yet, so a replace leaves what dlt's merge would: soft-deleted records
out, each key once. A dataset holding any table, dlt's or one made by hand, is merged into as
before, and a first load whose listing repeats a key falls back to the merge's dedup.
"""

from __future__ import annotations

import duckdb
import pytest
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

import analytics_kit as ak

from tests.helpers import loaded, merge_sql, served
from tests.test_full_refresh import deleted_and_live, followup_sql


def test_a_first_load_is_a_replace_that_leaves_soft_deleted_records_out_and_the_next_merges(api, config, caplog):
    api.advance(new=20, updated=30, deleted=15)  # the API already holds deleted records
    report = ak.load(config, progress=False)
    swap = followup_sql()
    assert report.mode == "incremental"
    assert 'DELETE FROM "main"."events" WHERE 1=1' in swap and "read_parquet" in swap
    assert "ROW_NUMBER" not in swap and "_dlt_dedup" not in swap and " IN (SELECT" not in swap
    gone, live = deleted_and_live(api)
    assert gone and loaded(api) == served(api) and not (set(loaded(api)) & gone)
    assert report.rows["events"] == len(live) and report.cursor_after["events"]
    # the next run merges what changed since the cursor the first one stored
    api.advance(new=10, updated=10, deleted=5)
    again = ak.load(config, progress=False)
    assert again.mode == "incremental" and again.cursor_before["events"] == report.cursor_after["events"]
    assert "WHERE EXISTS" in merge_sql() and "read_parquet" not in merge_sql()
    assert loaded(api) == served(api)
    assert "first load is loaded as a merge" not in caplog.text


def test_a_first_load_whose_listing_repeats_a_key_is_a_merge_that_keeps_the_newest_version(api, config, caplog):
    """The replace's pages become dlt's merge in place: the listing is paged once, as a merge pages it."""
    api.advance(new=0, updated=20, deleted=10)
    api.inject("transform", path="/v1/events", times=None, fn=lambda body: {**body, "data": body["data"] * 2})
    with caplog.at_level("INFO", logger="analytics_kit"):
        report = ak.load(config, progress=False)
    assert "events: the listing returned a key more than once; loaded as a merge into its table" in caplog.text
    assert "ROW_NUMBER" in merge_sql()
    copies = ak.query("SELECT id, count(*) AS n FROM analytics.events GROUP BY id")
    assert set(copies.n) == {1} and loaded(api) == served(api)
    assert report.mode == "incremental" and report.passes == {}
    assert report.fetched["events"] == 2 * len(api.records("events", include_deleted=True))
    # the deleted ones are counted, as a merge counts what it staged
    assert report.rows["events"] == len(api.records("events", include_deleted=True))


def test_a_dataset_holding_a_table_made_by_hand_is_merged_into(api, config):
    with duckdb.connect("analytics.duckdb") as db:
        db.execute("CREATE TABLE main.notes (id INTEGER, note VARCHAR)")
        db.execute("INSERT INTO main.notes VALUES (1, 'kept')")
    ak.load(config, progress=False)
    assert "read_parquet" not in merge_sql() and "WHERE EXISTS" in merge_sql()
    assert loaded(api) == served(api)
    assert ak.query("SELECT note FROM main.notes").note.tolist() == ["kept"]


def test_a_first_load_failing_in_its_swap_commits_nothing_and_the_next_load_is_whole(api, config, monkeypatch):
    many = DuckDbSqlClient.execute_many

    def full_at_the_swap(self, sqls, *args, **kwargs):
        sqls = list(sqls)
        if any("read_parquet" in s and '"main"."events"' in s for s in sqls):
            raise RuntimeError("IO Error: No space left on device (injected)")
        return many(self, sqls, *args, **kwargs)

    monkeypatch.setattr(DuckDbSqlClient, "execute_many", full_at_the_swap)
    with pytest.raises(ak.LoadError):
        ak.load(config, progress=False)
    monkeypatch.setattr(DuckDbSqlClient, "execute_many", many)
    with duckdb.connect("analytics.duckdb", read_only=True) as db:
        tables = {name for (name,) in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        assert "events" not in tables or db.execute("SELECT count(*) FROM main.events").fetchone()[0] == 0
    with pytest.raises(ak.QueryError, match="no load into it has completed"):
        ak.state()
    report = ak.load(config, progress=False)
    assert report.mode == "incremental" and loaded(api) == served(api)
    assert report.rows["events"] == len(served(api))
