"""A full refresh that rebuilds its tables (dlt drops them first) keeps the old ones whole until
the new ones are in: a load step that fails, is interrupted or is killed leaves the tables as
they were before it, and the next load finishes the rebuild."""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb
import pytest
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

import analytics_kit as ak
from analytics_kit import cli
from analytics_kit.read import query as read_query
from tests.helpers import loaded, served
from tests.test_faults import snapshot

DATABASE = "analytics.duckdb"
EXECUTE_MANY = DuckDbSqlClient.execute_many
EXECUTE_SQL = DuckDbSqlClient.execute_sql


def retyped(config: dict) -> dict:
    """``config`` with events.value declared text where it was double: its full refresh rebuilds the tables."""
    config = copy.deepcopy(config)
    config["resources"][0]["columns"]["value"] = {"data_type": "text", "nullable": True}
    return config


def column_types(table: str = "events") -> dict:
    return dict(ak.describe(table).set_index("column").type)


def kit_tables() -> list[str]:
    """Tables the kit made to keep old ones aside, which no finished load leaves behind."""
    with duckdb.connect(DATABASE, read_only=True) as con:
        return sorted(name for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE starts_with(table_name, '_analytics_kit_kept')").fetchall())


def _loads(table: str, statements: list) -> bool:
    """Whether one of dlt's ``statements`` writes rows into ``table`` (a merge's INSERT or MERGE, an append's copy)."""
    return any(f'{verb} INTO "main"."{table}"' in s and f'{verb} INTO "main"."{table}__' not in s
               for s in statements for verb in ("INSERT", "MERGE"))


def failing(table: str, fail: Callable[[], None]) -> tuple[Callable, Callable]:
    """DuckDB's client's ``execute_sql`` and ``execute_many``, calling ``fail`` where dlt loads ``table``'s rows."""
    def sql(self, statement, *args, **kwargs):
        if isinstance(statement, str) and _loads(table, [statement]):
            fail()
        return EXECUTE_SQL(self, statement, *args, **kwargs)

    def many(self, statements, *args, **kwargs):
        if _loads(table, statements):
            fail()
        return EXECUTE_MANY(self, statements, *args, **kwargs)

    return sql, many


@contextmanager
def failing_load(monkeypatch, table: str, fail: Callable[[], None]) -> Iterator[None]:
    """Within the block, ``fail`` is called where dlt loads ``table``'s rows."""
    sql, many = failing(table, fail)
    monkeypatch.setattr(DuckDbSqlClient, "execute_sql", sql)
    monkeypatch.setattr(DuckDbSqlClient, "execute_many", many)
    try:
        yield
    finally:
        monkeypatch.setattr(DuckDbSqlClient, "execute_sql", EXECUTE_SQL)
        monkeypatch.setattr(DuckDbSqlClient, "execute_many", EXECUTE_MANY)


def full_disk() -> None:
    raise RuntimeError("IO Error: No space left on device (injected)")


def interrupt() -> None:
    """Ctrl-C (the notebook's stop button) while dlt's worker runs the statement."""
    signal.raise_signal(signal.SIGINT)
    time.sleep(1)  # the main thread takes the interrupt while this job is still running
    raise RuntimeError("the job ran on past the interrupt (injected)")


def with_disposition(disposition: Any) -> Callable[[dict], dict]:
    def make(config: dict) -> dict:
        config = copy.deepcopy(config)
        config["resources"][0]["write_disposition"] = disposition
        return config
    return make


# Why a full refresh loads into tables dlt drops first: (the config loaded before, the full refresh's config).
DROPS_FIRST = {
    "declared types changed": (lambda c: c, retyped),
    "an upsert merge": (with_disposition({"disposition": "merge", "strategy": "upsert"}),
                        with_disposition({"disposition": "merge", "strategy": "upsert"})),
    "an scd2 merge": (with_disposition({"disposition": "merge", "strategy": "scd2"}),
                      with_disposition({"disposition": "merge", "strategy": "scd2"})),
}


@pytest.mark.parametrize("why", list(DROPS_FIRST))
@pytest.mark.parametrize("table", ["events", "customers"])
@pytest.mark.parametrize("fail", [full_disk, interrupt], ids=["a full disk", "an interrupt"])
def test_a_full_refresh_dlt_drops_tables_for_that_fails_leaves_the_old_tables_whole(api, config, monkeypatch,
                                                                                    interruptible, why, table, fail):
    before_config, refresh_config = (make(config) for make in DROPS_FIRST[why])
    ak.load(before_config, progress=False)
    api.advance(new=3, updated=4)
    ak.load(before_config, progress=False)
    before, types = snapshot(), column_types()
    with failing_load(monkeypatch, table, fail), pytest.raises((ak.LoadError, KeyboardInterrupt)):
        ak.load(refresh_config, mode="full_refresh", progress=False)
    assert snapshot() == before and column_types() == types
    assert kit_tables() == []
    # the full refresh is still owed: the next load, even an incremental one, runs it
    report = ak.load(refresh_config, progress=False)
    assert report.mode == "full_refresh" and kit_tables() == []
    assert column_types() == column_types_of_a_fresh_load(refresh_config)
    assert report.rows["events"] == len(served(api))


def column_types_of_a_fresh_load(config: dict) -> dict:
    """events' column types as a full refresh into a new file makes them."""
    ak.load(config, mode="full_refresh", database="fresh.duckdb", progress=False)
    return dict(ak.describe("events", database="fresh.duckdb").set_index("column").type)


def tags() -> list:
    return ak.query("SELECT count(*) AS n, sum(hash(t, _dlt_parent_id)) AS h FROM events__tags").values.tolist()


def test_a_failed_rebuild_drops_the_nested_tables_it_made_and_keeps_the_old_ones(api, config, monkeypatch):
    """A list in the records makes nested tables: the old ones come back with their root, and one only the
    failed load made (its records gained a list) is gone."""
    def with_lists(labels: bool) -> Callable[[dict], dict]:
        def add(body: dict) -> dict:
            for record in body["data"]:
                record["tags"] = [{"t": record["id"] % 3}, {"t": 7}]
                if labels:
                    record["labels"] = ["a", str(record["id"])]
            return body
        return add

    api.inject("transform", path="/v1/events", times=None, fn=with_lists(labels=False))
    ak.load(config, progress=False)
    before = snapshot(), tags()
    api.inject("transform", path="/v1/events", times=None, fn=with_lists(labels=True))
    with failing_load(monkeypatch, "events", full_disk), pytest.raises(ak.LoadError):
        ak.load(retyped(config), mode="full_refresh", progress=False)
    assert (snapshot(), tags()) == before
    assert set(ak.tables().table) == {"events", "events__tags", "customers"} and kit_tables() == []
    ak.load(retyped(config), progress=False)
    assert {"events__tags", "events__labels"} <= set(ak.tables().table)
    assert loaded(api) == served(api)


def test_a_rebuild_that_succeeds_leaves_nothing_of_the_kit_behind(api, config):
    ak.load(config, progress=False)
    api.advance(new=5)
    report = ak.load(retyped(config), mode="full_refresh", progress=False)
    assert report.rows["events"] == len(served(api)) and loaded(api) == served(api)
    assert column_types()["value"] == "VARCHAR" and kit_tables() == []


def _killed_at(config: dict, point: str) -> None:
    """In a child: the rebuild, the process ending at once (as ``kill -9`` ends it) at ``point``: where dlt loads
    that table's rows, or (``"create"``) as it creates the new tables, after its drop deleted the schema's versions."""
    def kill() -> None:
        os._exit(9)

    if point == "create":
        def many(self, statements, *args, **kwargs):
            if any(s.startswith('CREATE TABLE "main"."events"') for s in statements):
                kill()
            return EXECUTE_MANY(self, statements, *args, **kwargs)
        DuckDbSqlClient.execute_many = many
    else:
        DuckDbSqlClient.execute_sql, DuckDbSqlClient.execute_many = failing(point, kill)
    ak.load(config, mode="full_refresh", progress=False)


def declared_value_type() -> str:
    """events.value's type as the data dictionary (dlt's stored schema) gives it."""
    columns = ak.schema().columns
    return columns[(columns.table == "events") & (columns.column == "value")].type.iloc[0]


@pytest.mark.parametrize("unreachable", [True, False], ids=["then a load that cannot reach the API", "then a load"])
@pytest.mark.parametrize("point", ["create", "events", "customers"])
def test_a_rebuild_killed_in_its_load_step_is_put_back_by_the_next_load_before_it_fetches(api, config, point,
                                                                                          unreachable):
    ak.load(config, progress=False)
    before = snapshot()
    child = multiprocessing.get_context("spawn").Process(target=_killed_at, args=(retyped(config), point))
    child.start()
    child.join(120)
    assert child.exitcode == 9
    assert kit_tables()  # what the kill left: the old tables under the kit's names
    if unreachable:  # the next load puts them back before it asks the API for anything
        elsewhere = copy.deepcopy(retyped(config))
        elsewhere["client"]["base_url"] = "http://127.0.0.1:9/v1/"
        with pytest.raises(ak.LoadError):
            ak.load(elsewhere, progress=False)
        assert snapshot() == before and kit_tables() == []
        assert declared_value_type() == "double"  # the schema's versions came back with the tables
    report = ak.load(retyped(config), progress=False)
    assert report.mode == "full_refresh" and column_types()["value"] == "VARCHAR"
    assert declared_value_type() == "text"
    assert loaded(api) == served(api) and kit_tables() == []


def test_a_table_duckdb_will_not_rename_is_copied_aside(api, config, monkeypatch):
    """An index on a table makes DuckDB refuse to rename it: it is copied aside instead (its index goes with
    dlt's drop, as in any rebuild), and a failed rebuild puts it back whole with its nested rows' parents."""
    ak.load(config, progress=False)
    before, nullable = snapshot(), dict(ak.describe("events").set_index("column").nullable)
    with duckdb.connect(DATABASE) as con:
        con.execute("CREATE INDEX by_type ON events (event_type)")
    with failing_load(monkeypatch, "customers", full_disk), pytest.raises(ak.LoadError):
        ak.load(retyped(config), mode="full_refresh", progress=False)
    assert snapshot() == before and kit_tables() == [] and column_types()["value"] == "DOUBLE"
    assert dict(ak.describe("events").set_index("column").nullable) == nullable  # NOT NULL came back too
    report = ak.load(retyped(config), progress=False)
    assert report.mode == "full_refresh" and loaded(api) == served(api) and column_types()["value"] == "VARCHAR"


def test_a_table_of_the_users_under_a_kept_name_is_left_alone(api, config, monkeypatch):
    ak.load(config, progress=False)
    before = snapshot()
    with duckdb.connect(DATABASE) as con:
        for n in range(4):
            con.execute(f"CREATE TABLE _analytics_kit_kept_{n}_events AS SELECT 'mine' AS what")
            con.execute(f"CREATE TABLE _analytics_kit_kept_{n}_customers AS SELECT 'mine' AS what")
    with failing_load(monkeypatch, "customers", full_disk), pytest.raises(ak.LoadError):
        ak.load(retyped(config), mode="full_refresh", progress=False)
    assert snapshot() == before
    ak.load(retyped(config), progress=False)
    assert loaded(api) == served(api)
    with duckdb.connect(DATABASE, read_only=True) as con:
        assert len(kit_tables()) == 8 and all(con.execute(f"SELECT what FROM {name}").fetchall() == [("mine",)]
                                              for name in kit_tables())


def test_a_table_of_the_users_named_as_the_kits_record_is_named_in_the_error(api, config):
    ak.load(config, progress=False)
    with duckdb.connect(DATABASE) as con:
        con.execute("CREATE TABLE _analytics_kit_kept AS SELECT 1 AS mine")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the readers read on: the table is not the kit's
        assert set(ak.tables().table) == {"customers", "events"} and ak.query("SELECT 1 AS one").one[0] == 1
    with pytest.raises(ak.LoadError, match="_analytics_kit_kept") as raised:
        ak.load(config, progress=False)
    assert "Rename or drop your table _analytics_kit_kept" in str(raised.value)


def test_the_readers_say_what_a_killed_rebuild_left_and_what_to_run(api, config, capsys):
    ak.load(config, progress=False)
    child = multiprocessing.get_context("spawn").Process(target=_killed_at, args=(retyped(config), "create"))
    child.start()
    child.join(120)
    assert child.exitcode == 9
    with pytest.warns(UserWarning, match="rebuilding customers, events was stopped before it finished") as said:
        listed = ak.tables()
    assert f"The next load into {Path(DATABASE).resolve()} puts them back" in str(said[0].message)
    assert set(listed.table) <= {"customers", "events"}
    missing = next(name for name in ("events", "customers") if name not in set(listed.table))
    with pytest.raises(ak.QueryError, match="was stopped before it finished"):
        ak.query(f"SELECT count(*) FROM {missing}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ak.query("SELECT 1")  # said once per stopped load in a process: schema() reads the history with query()
    read_query._WARNED.clear()  # as in a new process
    with pytest.warns(UserWarning, match="was stopped before it finished"):
        ak.query("SELECT 1")
    read_query._WARNED.clear()
    assert cli.main(["tables"]) == 0
    assert "warning: A full refresh that was rebuilding customers, events was stopped" in capsys.readouterr().err
    ak.load(retyped(config), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(ak.tables().table) == {"customers", "events"}


def _killed_dropping_kept(config: dict) -> None:
    """In a child: the rebuild, killed as the kit drops the kept tables, once dlt marked the load complete."""
    def sql(self, statement, *args, **kwargs):
        if isinstance(statement, str) and statement.startswith('DROP TABLE "main"."_analytics_kit_kept_'):
            os._exit(9)
        return EXECUTE_SQL(self, statement, *args, **kwargs)

    DuckDbSqlClient.execute_sql = sql
    ak.load(config, mode="full_refresh", progress=False)


def test_a_rebuild_killed_after_its_load_completed_keeps_the_new_tables(api, config):
    ak.load(config, progress=False)
    api.advance(new=4)
    child = multiprocessing.get_context("spawn").Process(target=_killed_dropping_kept, args=(retyped(config),))
    child.start()
    child.join(120)
    assert child.exitcode == 9 and kit_tables()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tables are the complete new ones: nothing to warn of
        assert column_types()["value"] == "VARCHAR" and loaded(api) == served(api)
    report = ak.load(retyped(config), progress=False)
    assert kit_tables() == [] and column_types()["value"] == "VARCHAR" and loaded(api) == served(api)
    assert report.mode == "full_refresh"  # the pending record was not yet removed: run again, as before
