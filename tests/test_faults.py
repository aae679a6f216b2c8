"""The fault matrix: each failure leaves tables and cursors as they were, and a rerun ends exact."""

from __future__ import annotations

import copy
import shutil
import time
from email.utils import formatdate
from typing import Any, Callable

import pytest

import analytics_kit as ak
from helpers import FAST_RETRIES, loaded, merge_sql, served


def checksum(table: str = "events") -> tuple:
    frame = ak.query(
        f"SELECT count(*) AS n, sum(hash(id, updated_at, value)) AS h FROM analytics.{table}"
        if table == "events" else f"SELECT count(*) AS n, sum(hash(id, updated_at)) AS h FROM analytics.{table}"
    )
    return tuple(frame.iloc[0])


def snapshot() -> tuple:
    return checksum("events"), checksum("customers"), ak.state()["cursors"]


def with_policy(config: dict, **handler) -> dict:
    config = copy.deepcopy(config)
    for resource in config["resources"]:
        resource["endpoint"]["error_handler"] = {**FAST_RETRIES, **handler}
    return config


def first_record(field: str, change: Callable[[Any], Any]) -> dict:
    """A fault that changes ``field`` of the first record on every events page."""
    def transform(body: dict) -> dict:
        if body["data"]:
            body["data"][0][field] = change(body["data"][0][field])
        return body

    return {"kind": "transform", "path": "/v1/events", "times": None, "fn": transform}


def fails_then_recovers(api, config, match: str, *, inject: dict) -> None:
    """A first load, then the change + fault: the load fails, nothing moves; the rerun is exact."""
    ak.load(config, progress=False)
    before = snapshot()
    api.advance(new=120, updated=8, deleted=2)
    api.inject(**inject)
    with pytest.raises(ak.LoadError, match=match):
        ak.load(config, progress=False)
    assert snapshot() == before
    api.clear_faults()
    ak.load(config, progress=False)
    assert loaded(api) == served(api)


@pytest.mark.parametrize("retry_after", ["seconds", "http-date"])
def test_429_waits_at_least_retry_after_then_succeeds(api, config, retry_after):
    # An HTTP date has whole seconds: five seconds ahead is at least four away when it is written,
    # and at least two when the 429 is read, however slowly a busy machine starts the load.
    value = 1 if retry_after == "seconds" else formatdate(time.time() + 5, usegmt=True)
    least = 1 if retry_after == "seconds" else 2
    api.inject("status", path="/v1/events", status=429, retry_after=value, times=1)
    started = time.monotonic()
    report = ak.load(config, progress=False)
    assert time.monotonic() - started >= least
    assert report.retries[0].reason == "HTTP 429" and report.retries[0].wait >= least
    assert loaded(api) == served(api)


def test_a_huge_retry_after_is_capped_by_max_retry_delay(api, config):
    config = with_policy(config, max_retry_delay=0.2)
    api.inject("status", path="/v1/events", status=429, retry_after=3600, times=2)
    started = time.monotonic()
    report = ak.load(config, progress=False)
    assert time.monotonic() - started < 5
    assert [e.wait for e in report.retries] == [0.2, 0.2]


def test_503_forever_fails_after_exactly_four_requests_for_that_page(api, config):
    api.inject("status", path="/v1/events", status=503, times=None, offset=100)
    with pytest.raises(ak.LoadError, match=r"'events' failed with HTTP 503 on GET /v1/events\?.*offset=100.* after 4"):
        ak.load(config, progress=False)
    assert sum(1 for r in api.requests if r.path == "/v1/events" and r.params.get("offset") == "100") == 4
    with pytest.raises(ak.QueryError, match="holds no loaded tables: no load into it has completed"):
        ak.tables()  # the first load failed: nothing committed


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_is_one_request(api, config, status):
    api.inject("status", path="/v1/events", status=status, times=None)
    with pytest.raises(ak.LoadError, match=rf"rejected the key \(HTTP {status}\)"):
        ak.load(config, progress=False)
    assert api.count(path="/v1/events") == 1


@pytest.mark.parametrize("kind", ["reset", "short_body"])
def test_broken_connections_mid_run_recover(api, config, kind):
    ak.load(config, progress=False)
    api.advance(new=150)
    api.inject(kind, path="/v1/events", times=2, skip=1)
    report = ak.load(config, progress=False)
    assert len(report.retries) == 2
    assert loaded(api) == served(api)


@pytest.mark.parametrize("kind, match", [
    ("truncated_json", r"not valid JSON"),
    ("html", r"not valid JSON"),
])
def test_malformed_bodies_fail_clearly_and_leave_the_cursor(api, config, kind, match):
    fails_then_recovers(api, config, match, inject={"kind": kind, "path": "/v1/events", "times": 1, "skip": 1})


def test_a_missing_data_selector_path_is_an_error_not_zero_rows(api, config):
    def drop_data(body: dict) -> dict:
        return {"items": body["data"], "total": body["total"]}

    fails_then_recovers(api, config, r"no 'data' in the response",
                        inject={"kind": "transform", "path": "/v1/events", "times": None, "fn": drop_data})


def test_a_missing_total_names_the_total_path_option(api, config):
    def drop_total(body: dict) -> dict:
        return {k: v for k, v in body.items() if k != "total"}

    fails_then_recovers(api, config, r"total_path",
                        inject={"kind": "transform", "path": "/v1/events", "times": None, "fn": drop_total})


def test_duplicate_ids_keep_the_latest_version(api, config):
    def duplicate_older(body: dict) -> dict:
        if body["data"]:
            newest = body["data"][-1]
            older = {**newest, "updated_at": "2025-06-01T00:00:00Z", "value": -1.0}
            body["data"] = body["data"] + [older]  # the older copy comes after the newer
        return body

    ak.load(config, progress=False)
    change = api.advance(updated=3)
    api.inject("transform", path="/v1/events", times=None, fn=duplicate_older)
    ak.load(config, progress=False)
    # The first load proved its keys distinct and skipped dlt's dedup; this one must not.
    assert "ROW_NUMBER()" in merge_sql()
    assert loaded(api) == served(api)
    assert ak.query("SELECT count(*) - count(DISTINCT id) AS d FROM analytics.events").d[0] == 0
    assert change.updated_ids


def test_two_runs_without_new_data_change_nothing(api, config):
    ak.load(config, progress=False)
    before = snapshot()
    api.clear_log()
    report = ak.load(config, progress=False)
    assert snapshot() == before
    assert report.cursor_before == report.cursor_after
    assert report.rows.get("events", 0) <= 1  # at most the boundary record, merged, not duplicated


def test_an_id_that_changes_type_is_rejected_and_nothing_sticks(api, config):
    fails_then_recovers(api, config, r"id='evt-\d+'.*'evt-\d+' in column 'id'.*declares of type bigint",
                        inject=first_record("id", lambda old: "evt-" + str(old)))


def test_a_null_id_is_a_clear_error(api, config):
    fails_then_recovers(api, config, r"(?i)id.*(null|none|missing)", inject=first_record("id", lambda old: None))


def test_a_null_cursor_field_is_refused_by_policy(api, config):
    fails_then_recovers(api, config, r"updated_at", inject=first_record("updated_at", lambda old: None))


def test_a_database_restored_from_an_older_copy_is_caught_up(api, config, tmp_path):
    ak.load(config, progress=False)
    shutil.copy("analytics.duckdb", tmp_path / "backup.duckdb")
    api.advance(new=40, updated=5)
    ak.load(config, progress=False)
    # The file goes back in time; the pipeline folder beside it does not.
    shutil.copy(tmp_path / "backup.duckdb", "analytics.duckdb")
    api.advance(new=3)
    ak.load(config, progress=False)
    assert loaded(api) == served(api)


def test_a_deleted_database_is_loaded_again_in_full(api, config):
    ak.load(config, progress=False)
    import os

    os.remove("analytics.duckdb")
    report = ak.load(config, progress=False)
    assert report.rows["events"] == 250
    assert loaded(api) == served(api)


def test_data_that_changes_during_offset_paging(api, config):
    """Records updated mid-run move to the end of the order; offset paging would skip one."""
    ak.load(config, progress=False)
    api.advance(new=250)
    moved = []

    def update_one(server) -> None:
        if not moved:
            moved.append(server.advance(updated=3, new=0))

    api.inject("callback", path="/v1/events", times=1, skip=1, fn=update_one)
    try:
        ak.load(config, progress=False)
    except ak.LoadError:
        pass  # refusing an inconsistent snapshot is fine; a silent gap is not
    ak.load(config, progress=False)
    assert loaded(api) == served(api)


def test_a_full_refresh_that_failed_before_the_load_step_changes_nothing(api, config):
    ak.load(config, progress=False)
    before = snapshot()
    api.inject("status", path="/v1/events", status=503, times=None)
    with pytest.raises(ak.LoadError):
        ak.load(config, mode="full_refresh", progress=False)
    assert snapshot() == before
    api.clear_faults()
    assert ak.load(config, progress=False).mode == "incremental"  # nothing was dropped
    assert loaded(api) == served(api)


def test_a_file_left_half_created_is_not_in_the_way(api, config, tmp_path):
    (tmp_path / ".analytics.duckdb.123.creating").write_bytes(b"")  # what a kill mid-creation leaves
    ak.load(config, progress=False)
    assert loaded(api) == served(api)


def test_rows_appended_by_an_unfinished_load_are_not_kept(api, config):
    """dlt commits each job on its own: a kill after an append job committed left its rows behind."""
    import duckdb

    config = _plain_append(config)
    ak.load(config, progress=False)
    con = duckdb.connect("analytics.duckdb")
    # what a run killed after its append job committed leaves: rows of a load never marked complete
    con.execute("INSERT INTO main.events SELECT * REPLACE ('1999999999.0' AS _dlt_load_id) FROM main.events LIMIT 7")
    con.close()
    ak.load(config, progress=False)
    counts = ak.query("SELECT count(*) AS n, count(DISTINCT _dlt_load_id) AS loads FROM analytics.events")
    assert counts.n[0] == 2 * 250 and counts.loads[0] == 2


def _plain_append(config: dict, incremental: bool = False) -> dict:
    """``config`` appending, without soft deletes; without ``incremental``, each run appends the whole listing."""
    config = copy.deepcopy(config)
    config["resource_defaults"]["write_disposition"] = "append"
    for resource in config["resources"]:
        if not incremental:
            resource["endpoint"].pop("incremental")
        resource["columns"] = {k: v for k, v in resource["columns"].items() if not v.get("hard_delete")}
    return config


def test_rows_appended_after_a_full_refresh_by_an_unfinished_load_are_not_kept(api, config):
    """The schema of a full refresh reads "replace" for an append table: the tidying missed the
    rows a killed append after it had committed, and the rerun held them twice."""
    import duckdb

    config = _plain_append(config)
    ak.load(config, mode="full_refresh", progress=False)
    with duckdb.connect("analytics.duckdb") as con:
        con.execute("INSERT INTO main.events SELECT * REPLACE ('1999999999.0' AS _dlt_load_id) FROM main.events "
                    "LIMIT 7")
    ak.load(config, progress=False)
    counts = ak.query("SELECT count(*) AS n, count(DISTINCT _dlt_load_id) AS loads FROM analytics.events")
    assert counts.n[0] == 2 * 250 and counts.loads[0] == 2


def test_an_append_table_a_killed_full_refresh_swapped_in_keeps_its_rows(api, config):
    """A full refresh killed after its swap committed leaves the table whole with rows of a load
    never marked complete, and no other rows: the next append keeps them (emptying it would lose them)."""
    import duckdb

    config = _plain_append(config)
    ak.load(config, mode="full_refresh", progress=False)
    with duckdb.connect("analytics.duckdb") as con:
        con.execute("UPDATE main.events SET _dlt_load_id = '1999999999.0'")
    ak.load(config, progress=False)
    counts = ak.query("SELECT count(*) AS n FROM analytics.events")
    assert counts.n[0] == 2 * 250


def test_an_append_tables_full_refresh_that_never_completed_is_run_again(api, config, monkeypatch):
    """A full refresh that swapped an append table in and died before dlt marked the load complete
    left the table's new rows behind the old cursor: the next run appended the changes again, and
    the one after deleted the swapped-in rows as uncommitted, losing them (helper-72)."""
    from dlt.destinations.job_client_impl import SqlJobClientBase

    config = _plain_append(config, incremental=True)
    ak.load(config, mode="full_refresh", progress=False)
    api.advance(new=5, updated=3)
    complete = SqlJobClientBase.complete_load

    def dies_before_the_mark(self, load_id):
        raise RuntimeError("killed before the load was marked complete (injected)")

    monkeypatch.setattr(SqlJobClientBase, "complete_load", dies_before_the_mark)
    with pytest.raises(ak.LoadError, match="(?s)the next load, whatever its mode, runs the full refresh again"):
        ak.load(config, mode="full_refresh", progress=False)
    monkeypatch.setattr(SqlJobClientBase, "complete_load", complete)
    for _ in range(2):
        report = ak.load(config, progress=False)
        rows = ak.query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM analytics.events").iloc[0]
        assert rows.n == rows.ids == len(api.records("events", include_deleted=True)), (report, rows)
    assert report.mode == "incremental"


def test_duckdb_out_of_memory_is_named_as_such(api, config, monkeypatch):
    """DuckDB's "could not allocate block" once read as a lock ("b-lock") error."""
    monkeypatch.setenv("ANALYTICS_KIT_DUCKDB_MEMORY", "1MB")
    with pytest.raises(ak.LoadError, match=r"(?s)ran out of the memory.*ANALYTICS_KIT_DUCKDB_MEMORY"):
        ak.load(config, progress=False)
    monkeypatch.delenv("ANALYTICS_KIT_DUCKDB_MEMORY")
    ak.load(config, progress=False)
    assert loaded(api) == served(api)


@pytest.mark.parametrize("value", ["lots", "0", "-5MB", "96", "150%", "99999999999999999999GB", "\u0669\u0666MB"])
def test_a_memory_cap_duckdb_cannot_read_is_named_before_any_request(api, config, monkeypatch, value):
    """"lots" failed deep in the load step as a ParserException; "-5MB" removed the cap silently."""
    monkeypatch.setenv("ANALYTICS_KIT_DUCKDB_MEMORY", value)
    api.clear_log()
    with pytest.raises(ak.ConfigError, match=r"(?s)ANALYTICS_KIT_DUCKDB_MEMORY.*96MB or 1GB"):
        ak.load(config, progress=False)
    assert api.requests == []


@pytest.mark.parametrize("drops_tables", [False, True], ids=["a replace", "a merge into dropped tables"])
def test_running_out_of_memory_at_a_commit_is_named_with_what_a_full_refresh_left(drops_tables):
    """At a commit DuckDB says "could not allocate block", which read as an unknown failure whose
    advice said a full refresh may have dropped the tables, also where each table is swapped whole."""
    import duckdb

    from analytics_kit.fetch.stats import LoadStats
    from analytics_kit.redact import Redactor
    from analytics_kit.run.failures import explain

    stats = LoadStats()
    stats.mode, stats.drops_tables = "full_refresh", drops_tables
    error = duckdb.TransactionException(
        "TransactionContext Error: Failed to commit: could not allocate block of size 256.0 KiB (30.3 MiB/30.5 MiB used)")
    text = str(explain(error, redactor=Redactor(()), stats=stats, database="analytics.duckdb"))
    assert "ran out of the memory" in text and "ANALYTICS_KIT_DUCKDB_MEMORY" in text
    assert ("may have dropped the tables" in text) == drops_tables
    assert ("swapped in one transaction" in text) != drops_tables


def test_a_load_leaves_the_settings_of_the_users_own_connection_as_they_were(api, config):
    """dlt SETs its memory cap, UTC and a checkpoint threshold on the database instance, which a
    notebook's own connection to the file in the same process shares: it was left at the kit's
    91.5 MiB, in UTC; and a cap set back as DuckDB shows it crept down with every load."""
    import duckdb

    ak.load(config, progress=False)
    mine = duckdb.connect("analytics.duckdb")
    try:
        mine.execute("SET memory_limit = '3GB'")
        mine.execute("SET TimeZone = 'Europe/Berlin'")
        mine.execute("SET checkpoint_threshold = '20MB'")
        shown = "SELECT name, value FROM duckdb_settings() WHERE name IN ('memory_limit', 'TimeZone', 'checkpoint_threshold')"
        before = dict(mine.execute(shown).fetchall())
        for round_ in range(3):
            api.advance(new=5, updated=5, deleted=1)
            ak.load(config, progress=False, mode="full_refresh" if round_ == 1 else "incremental")
            assert dict(mine.execute(shown).fetchall()) == before, round_
        assert before["memory_limit"] == "2.7 GiB" and before["TimeZone"] == "Europe/Berlin"
    finally:
        mine.close()


def test_a_load_beside_a_connection_without_a_memory_limit_runs_and_sets_it_back(api, config):
    """DuckDB shows memory_limit = -1 as '16383.9 PiB', which SET refuses: setting it back failed
    every load of such a user's file (helper-25), and a huge checkpoint threshold too."""
    import duckdb

    ak.load(config, progress=False)
    mine = duckdb.connect("analytics.duckdb")
    try:
        mine.execute("SET GLOBAL memory_limit = '-1'")
        mine.execute("SET GLOBAL checkpoint_threshold = '2000TiB'")
        shown = "SELECT current_setting('memory_limit'), current_setting('checkpoint_threshold')"
        before = mine.execute(shown).fetchone()
        api.advance(new=5, updated=5)
        ak.load(config, progress=False)
        assert mine.execute(shown).fetchone() == before == ("16383.9 PiB", "1.9 PiB")
    finally:
        mine.close()
    assert loaded(api) == served(api)


def test_nested_rows_of_an_unfinished_append_are_not_kept(tmp_path):
    """A list in each record becomes dlt's events__tags table, committed by a job of its own:
    a kill left its rows behind too, pointing at parent rows the rerun deletes."""
    import duckdb
    from adversary import Adversary
    from test_adversary import config_for

    with Adversary(n=200) as api:
        api.transform = lambda body, offset: {**body, "data": [{**r, "tags": [f"t{r['id']}", "x"]}
                                                                for r in body["data"]]}
        config = config_for(api, incremental=False)
        config["resource_defaults"]["write_disposition"] = "append"
        ak.load(config, progress=False)
        con = duckdb.connect("analytics.duckdb")
        # what a run killed after its jobs committed leaves: rows of a load never marked complete,
        # and their nested rows
        con.execute("INSERT INTO events SELECT * REPLACE ('1999999999.0' AS _dlt_load_id, _dlt_id || 'k' AS _dlt_id) "
                    "FROM events LIMIT 7")
        con.execute("INSERT INTO events__tags SELECT * REPLACE (_dlt_parent_id || 'k' AS _dlt_parent_id, "
                    "_dlt_id || 'k' AS _dlt_id) FROM events__tags WHERE _dlt_parent_id IN "
                    "(SELECT left(_dlt_id, -1) FROM events WHERE _dlt_load_id = '1999999999.0')")
        con.close()
        ak.load(config, progress=False)
    counts = ak.query("SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM events__tags) AS tags, "
                      "(SELECT count(*) FROM events__tags WHERE _dlt_parent_id NOT IN (SELECT _dlt_id FROM events))"
                      " AS orphans")
    assert tuple(counts.iloc[0]) == (400, 800, 0)


def test_duckdb_interrupted_inside_a_query_is_explained_as_an_interrupt():
    """A kernel's stop button during the load step can reach DuckDB inside a query: it raises its own
    InterruptException ("Query interrupted"), not a KeyboardInterrupt; the load was still interrupted."""
    import threading

    import duckdb

    from analytics_kit.fetch.stats import LoadStats
    from analytics_kit.redact import Redactor
    from analytics_kit.run.failures import explain

    con = duckdb.connect()
    caught: list[BaseException] = []

    def long_query() -> None:
        try:
            con.execute("SELECT count(*) FROM range(10000000000) a")
        except duckdb.Error as error:
            caught.append(error)

    worker = threading.Thread(target=long_query)
    worker.start()
    time.sleep(0.3)
    con.interrupt()
    worker.join(30)
    con.close()
    assert caught and isinstance(caught[0], duckdb.InterruptException), caught
    for error in (caught[0], RuntimeError("Query interrupted")):
        explained = explain(error, redactor=Redactor(()), stats=LoadStats(), database="analytics.duckdb")
        assert str(explained).startswith("The load was interrupted") and explained.context["interrupted"]
    other = explain(RuntimeError("Query failed"), redactor=Redactor(()), stats=LoadStats(), database="a.duckdb")
    assert "interrupted" not in str(other)


def _failed_in(step: str, cause: BaseException) -> BaseException:
    """``cause`` as dlt raises it: inside an error that names the pipeline step."""
    error = RuntimeError(f"Pipeline execution failed at stage {step}")
    error.step = step  # as dlt's PipelineStepFailed carries it
    error.__cause__ = cause
    return error


@pytest.mark.parametrize("step, cause, said, workdir", [
    ("load", OSError(28, "No space left on device", "/data/a.duckdb.state/pipelines/p/load/x.parquet"),
     "while dlt wrote its working files in /data/a.duckdb.state (its load step)", None),
    ("extract", OSError(28, "No space left on device", "/data/a.duckdb.state/pipelines/p/extract/x.parquet"),
     "while dlt wrote its working files in /data/a.duckdb.state (its extract step)", None),
    ("sync", "duckdb", "while writing to a.duckdb", None),
    # dlt moving a job from the system's temp folder into the .state folder: the destination is the write
    # that failed, not the DuckDB file (helper-103)
    ("load", OSError(28, "No space left on device", "/tmp/customers.c1260f4371.0.sql", None,
                     "/data/a.duckdb.state/analytics_kit_main/load/normalized/1/new_jobs/customers.sql"),
     "while dlt wrote its working files in /data/a.duckdb.state (its load step)", None),
    ("extract", OSError(28, "No space left on device", "/tmp/pages.json"),
     "while preparing the data (dlt's extract step), before anything was written to a.duckdb", None),
    # dlt's writers often raise ENOSPC without a file name (helper-55)
    ("extract", OSError(28, "No space left on device"), "while preparing the data (dlt's extract step, writing its "
     "working files in /data/a.duckdb.state), before anything was written to a.duckdb", "/data/a.duckdb.state"),
    # in the load step too, where dlt's own writes of the .state folder name no file either (helper-124)
    ("load", OSError(28, "No space left on device"), "while writing to a.duckdb or dlt's working files in "
     "/data/a.duckdb.state (its load step)", "/data/a.duckdb.state"),
    ("load", "duckdb", "while writing to a.duckdb", "/data/a.duckdb.state"),
])
def test_a_full_disk_names_the_write_that_failed(step, cause, said, workdir):
    """A write of the .state folder in the load step was said as "while writing to a.duckdb", and a failed
    write of a.duckdb.wal outside the load step as "before anything was written to a.duckdb" (helper-53)."""
    import duckdb

    from analytics_kit.fetch.stats import LoadStats
    from analytics_kit.redact import Redactor
    from analytics_kit.run.failures import explain

    if cause == "duckdb":
        cause = duckdb.IOException('Could not write file "a.duckdb.wal": No space left on device')
    text = str(explain(_failed_in(step, cause), redactor=Redactor(()), stats=LoadStats(), database="a.duckdb",
                       workdir=workdir))
    assert text.startswith("The disk ran out of space " + said), text


def _interrupt(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt


def _interrupt_in_an_import(*args: Any, **kwargs: Any) -> Any:
    try:  # Python wraps an interrupt landing in a class body's __set_name__ (while a module imports)
        raise KeyboardInterrupt
    except KeyboardInterrupt as interrupt:
        raise RuntimeError("Error calling __set_name__") from interrupt


@pytest.mark.parametrize("where, how", [("prepare", _interrupt), ("_build", _interrupt),
                                        ("_build", _interrupt_in_an_import)],
                         ids=["checking the config", "building the source", "wrapped in an import"])
def test_an_interrupt_while_the_load_starts_is_the_loads_error(api, config, monkeypatch, where, how):
    """A Ctrl-C before anything is fetched escaped load() as a bare KeyboardInterrupt (helper-85); it lands
    where the test says, as the moment cannot be hit from outside reliably."""
    import analytics_kit.run.load as run_load

    original = getattr(run_load, where)
    monkeypatch.setattr(run_load, where, how)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    assert str(caught.value).startswith("The load was interrupted during its start"), caught.value
    assert caught.value.context["interrupted"] and api.requests == []
    monkeypatch.setattr(run_load, where, original)
    ak.load(config, progress=False)
    assert loaded(api) == served(api)
