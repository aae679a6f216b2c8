"""The same config and readers on a warehouse: a real PostgreSQL server on 127.0.0.1.

The server is Debian's (scripts/ensure-postgres installs it; `make test` runs that),
started fresh for this module and stopped afterwards. Where it cannot run here these
tests skip with the reason (under CI=true they fail instead: a skip would pass the run untested).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import analytics_kit as ak
from analytics_kit.fetch.cursors import canonical
import pgserver
from helpers import NEWEST_READ, served
from test_kept_aside import retyped

PG = {"destination": "postgres"}


@pytest.fixture(scope="module")
def server():
    reason = pgserver.why_not()
    if reason:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            # on CI a skip would pass the run without testing the warehouse path at all
            pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    instance = pgserver.start()
    yield instance
    instance.stop()


@pytest.fixture
def postgres(server, monkeypatch, request):
    """Credentials in dlt secrets (never in code), and a dataset of this test's own."""
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", server.dsn)
    dataset = "t_" + request.node.name.split("[")[0][-40:].lower().replace("-", "_")
    return {"destination": "postgres", "dataset": dataset}


def loaded(api, where: dict, table: str = "events") -> dict:
    frame = ak.query(f"SELECT id, updated_at FROM {where['dataset']}.{table} ORDER BY id", **where)
    return {row.id: row.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ") for row in frame.itertuples()}


def test_incremental_soft_deletes_and_full_refresh(api, config, postgres):
    first = ak.load(config, progress=False, **postgres)
    assert first.rows == {"events": 250, "customers": 20}
    assert loaded(api, postgres) == served(api)

    change = api.advance(new=5, updated=4, deleted=3)
    api.clear_log()
    second = ak.load(config, progress=False, **postgres)
    # the stored cursor, sent in the layout of the guide's initial_value (...Z)
    sent = [r.params.get("updated_since") for r in api.requests if r.path == "/v1/events"]
    assert sent == [first.cursor_after["events"].replace("+00:00", "Z")]
    assert loaded(api, postgres) == served(api)
    assert not set(change.deleted_ids) & set(loaded(api, postgres))
    assert second.cursor_before == first.cursor_after

    purge = api.advance(purged=4, new=0, updated=0)
    ak.load(config, mode="full_refresh", progress=False, **postgres)
    assert loaded(api, postgres) == served(api)
    assert not set(purge.purged_ids) & set(loaded(api, postgres))
    assert ak.state(**postgres)["cursors"]["events"] == canonical(api.records("events")[-1]["updated_at"])

    # a key twice: dlt's merge, each table emptied in the merge's transaction on PostgreSQL too
    purge = api.advance(purged=3, new=0, updated=0)
    api.inject("transform", path="/v1/events", times=None, fn=lambda body: {**body, "data": body["data"] * 2})
    twice = ak.load(config, mode="full_refresh", progress=False, **postgres)
    assert loaded(api, postgres) == served(api) and not set(purge.purged_ids) & set(loaded(api, postgres))
    assert twice.passes == {}  # the replace's pages became the merge's: the listing was paged once


def test_records_that_stay_dicts_are_counted_as_rows(api, config, postgres):
    """dlt's csv writer (PostgreSQL's files) counted a dict row's values as rows: the report said 9x the rows."""
    api.inject("transform", path="/v1/events", times=None,
               fn=lambda body: {**body, "data": [{**r, "tags": [{"t": 1}, {"t": 2}]} for r in body["data"]]})
    for mode in ("incremental", "full_refresh"):
        report = ak.load(config, mode, progress=False, **postgres)
        held = {t: int(ak.query(f"SELECT count(*) AS n FROM {postgres['dataset']}.{t}", **postgres).n[0])
                for t in ("events", "events__tags", "customers")}
        assert held == {"events": 250, "events__tags": 500, "customers": 20}
        assert {t: report.rows[t] for t in held} == held, (mode, report.rows)


def test_typed_columns_and_readers(api, config, postgres):
    ak.load(config, progress=False, **postgres)
    described = ak.describe("events", **postgres).set_index("column")
    expected = {
        "id": ("bigint", False),
        "customer_id": ("character varying", False),
        "timestamp": ("timestamp with time zone", False),
        "value": ("double precision", True),
        "properties": ("jsonb", True),
    }
    for column, (kind, nullable) in expected.items():
        assert (described.loc[column, "type"], bool(described.loc[column, "nullable"])) == (kind, nullable), column
    assert ak.tables(**postgres).to_dict("records") == [{"table": "customers", "rows": 20}, {"table": "events", "rows": 250}]
    frame = ak.query(f"SELECT id, customer_id, timestamp, value FROM {postgres['dataset']}.events ORDER BY id", **postgres)
    assert [str(t) for t in frame.dtypes] == ["Int64", "string", "datetime64[us, UTC]", "Float64"]
    # the same JSON question as on DuckDB
    devices = ak.query(f"SELECT DISTINCT properties->>'device' AS d FROM {postgres['dataset']}.events ORDER BY 1", **postgres)
    assert set(devices.d) <= {"mobile", "desktop", "tablet"}


def test_a_declared_type_is_judged_as_the_table_stores_it(api, config, postgres):
    """After a run with a new declared type, dlt's schema says it and PostgreSQL's column does not: the kit reads
    the table's types at the load's start, so a value the declared type would round is refused, and a full refresh
    rebuilds the column (helper-86's left item)."""
    def valued(value):
        api.clear_faults()
        api.inject("transform", path="/v1/events", times=None,
                   fn=lambda body: {**body, "data": [{**r, "value": value} for r in body["data"]]})

    ak.load(config, progress=False, **postgres)  # value: double precision
    config["resources"][0]["columns"]["value"] = {"data_type": "decimal", "precision": 10, "scale": 0}
    valued(9)
    api.advance(new=0, updated=2)
    assert ak.load(config, progress=False, **postgres).rows == {"events": 2, "customers": 0}
    valued(7.5)
    api.advance(new=0, updated=2)
    with pytest.raises(ak.LoadError, match="where the table stores double"):
        ak.load(config, progress=False, **postgres)
    ak.load(config, mode="full_refresh", progress=False, **postgres)
    described = ak.describe("events", **postgres).set_index("column")
    assert described.loc["value", "type"] == "numeric", described.loc["value"]
    assert set(ak.query(f"SELECT DISTINCT value::text AS v FROM {postgres['dataset']}.events", **postgres).v) == {"8"}


def test_the_retry_path(api, config, postgres):
    api.inject("status", path="/v1/events", status=503, times=2)
    report = ak.load(config, progress=False, **postgres)
    assert report.total_retries == 2
    assert loaded(api, postgres) == served(api)


def test_dialect_differences_are_named(api, config, postgres):
    ak.load(config, progress=False, **postgres)
    with pytest.raises(ak.KitError, match=r"(?s)The query failed on postgres.*own dialect"):
        ak.query("SELECT epoch_ms(0)", **postgres)


def test_missing_credentials_say_where_they_go(api, config, monkeypatch):
    monkeypatch.delenv("DESTINATION__POSTGRES__CREDENTIALS", raising=False)
    with pytest.raises(ak.MissingSecretError, match=r"DESTINATION__POSTGRES__CREDENTIALS"):
        ak.load(config, progress=False, destination="postgres")


def test_a_password_never_shows(api, config, server, monkeypatch):
    canary = "pw-canary-93b1"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", server.dsn.replace("postgres:test@", f"postgres:{canary}@").replace(str(server.port), "1"))
    with pytest.raises(ak.KitError) as caught:
        ak.load(config, progress=False, destination="postgres")
    assert canary not in str(caught.value) + repr(caught.value)


@pytest.mark.parametrize("port", ["1", "notaport"])
def test_a_server_the_kit_cannot_connect_to_names_the_credentials(api, config, monkeypatch, port):
    """A closed port or a port that is no number ended the load with "Fix the cause and run the load again", and a
    reader with advice on SQL dialects (helper-124); no password is shown."""
    canary = "pw-canary-5d2e"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", f"postgresql://loader:{canary}@127.0.0.1:{port}/analytics")
    api.clear_log()
    for call, kind in ((lambda: ak.load(config, progress=False, destination="postgres"), ak.LoadError),
                       (lambda: ak.tables(destination="postgres"), ak.QueryError)):
        with pytest.raises(kind) as caught:
            call()
        text = str(caught.value)
        assert "could not connect to postgres (dataset analytics)" in text, text
        assert "DESTINATION__POSTGRES__CREDENTIALS" in text and "dialect" not in text and "Fix the cause" not in text
        assert canary not in text + repr(caught.value)


def test_unknown_destination(config):
    with pytest.raises(ak.ConfigError, match="did you mean 'postgres'"):
        ak.load(config, destination="postgress")


def test_cli_destination(api, postgres, tmp_path):
    config = ak.guide_config(api.base_url)
    config["client"]["auth"].pop("api_key")
    import json

    (tmp_path / "api.json").write_text(json.dumps(config))
    env = {**os.environ, "API_KEY": api.api_key}
    bin_dir = Path(sys.executable).parent
    load = subprocess.run([str(bin_dir / "analytics-kit"), "load", "--quiet", "--config", "api.json",
                           "--destination", "postgres", "--dataset", postgres["dataset"]],
                          capture_output=True, text=True, env=env, timeout=120)
    assert load.returncode == 0, load.stderr
    tables = subprocess.run([str(bin_dir / "analytics-kit"), "tables", "--destination", "postgres",
                             "--dataset", postgres["dataset"]], capture_output=True, text=True, env=env, timeout=120)
    assert tables.returncode == 0 and "events" in tables.stdout and "250" in tables.stdout


def test_the_config_file_can_name_the_destination(api, config, postgres):
    config = {**config, "destination": "postgres"}
    report = ak.load(config, progress=False, dataset=postgres["dataset"])
    assert report.database.startswith("postgres")
    assert not Path("analytics.duckdb").exists()
    assert ak.tables(**postgres).rows.sum() == 270


def test_history_on_a_warehouse(api, config, postgres):
    first = ak.load(config, progress=False, **postgres)
    api.advance(new=5, updated=3, deleted=2)
    api.inject("status", path="/v1/events", status=503, times=None)
    with pytest.raises(ak.LoadError):
        ak.load(config, progress=False, **postgres)  # failed: never in the history
    api.clear_faults()
    second = ak.load(config, progress=False, **postgres)

    history = ak.history(**postgres)
    assert history["load_id"].tolist() == [first.load_id, second.load_id]
    assert history["rows"].tolist() == [270, second.total_rows] and history["requests"].tolist() == [4 + NEWEST_READ, 2]
    assert history["cursor_events_after"].tolist() == [first.cursor_after["events"], second.cursor_after["events"]]
    assert (history["duration"] > 0).all()

    state = ak.state(**postgres)
    assert state["cursors"] == second.cursor_after
    assert state.loads["load_id"].tolist() == [second.load_id, first.load_id]

    columns = ak.schema(**postgres).columns.set_index(["table", "column"])
    assert columns.loc[("events", "id"), "primary_key"] and columns.loc[("events", "id"), "source"] == "config"
    assert columns.loc[("events", "_dlt_id"), "source"] == "dlt"


def test_the_readme_sql_runs_on_the_warehouse_unchanged(api, config, server, monkeypatch):
    """The default dataset is the schema `analytics`, on PostgreSQL's search path: both names work."""
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", server.dsn)
    ak.load(config, progress=False, destination="postgres")
    for sql in ("SELECT count(*) AS n FROM analytics.events", "SELECT count(*) AS n FROM events"):
        assert ak.query(sql, destination="postgres")["n"].iloc[0] == 250, sql
    with pytest.raises(ak.QueryError, match=r"The query failed on postgres \(dataset analytics\).*evnts"):
        ak.query("SELECT * FROM evnts", destination="postgres")


def _events(postgres: dict) -> tuple:
    table = f"{postgres['dataset']}.events"
    rows = ak.query(f"SELECT count(*) AS n, sum(id) AS ids, max(updated_at) AS newest FROM {table}", **postgres)
    types = ak.query("SELECT data_type FROM information_schema.columns WHERE table_schema = %s "
                     "AND table_name = 'events' AND column_name = 'value'".replace("%s", f"'{postgres['dataset']}'"),
                     **postgres)
    return tuple(rows.iloc[0]), types.data_type.tolist()


def test_a_rebuild_whose_load_step_fails_leaves_the_old_tables_whole(api, config, postgres, monkeypatch):
    from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient

    ak.load(config, progress=False, **postgres)
    before = _events(postgres)
    assert before[1] == ["double precision"]
    execute_many = Psycopg2SqlClient.execute_many

    def full_disk(self, statements, *args, **kwargs):
        if any(f'INSERT INTO "{postgres["dataset"]}"."events"(' in s for s in statements):
            raise RuntimeError("could not extend file: No space left on device (injected)")
        return execute_many(self, statements, *args, **kwargs)

    monkeypatch.setattr(Psycopg2SqlClient, "execute_many", full_disk)
    with pytest.raises(ak.LoadError):
        ak.load(retyped(config), mode="full_refresh", progress=False, **postgres)
    monkeypatch.setattr(Psycopg2SqlClient, "execute_many", execute_many)
    assert _events(postgres) == before
    kept = ak.query("SELECT count(*) AS n FROM information_schema.tables WHERE starts_with(table_name, "
                    "'_analytics_kit_kept')", **postgres)
    assert kept.n[0] == 0
    columns = ak.schema(**postgres).columns  # dlt's stored schema came back with the tables
    assert columns[(columns.table == "events") & (columns.column == "value")].type.tolist() == ["double"]
    report = ak.load(retyped(config), progress=False, **postgres)
    assert report.mode == "full_refresh" and _events(postgres)[1] == ["character varying"]
    assert loaded(api, postgres) == served(api)


def test_a_table_that_a_view_reads_is_not_moved_away(api, config, postgres, server):
    """A view follows a renamed table in PostgreSQL: such a table is left to dlt's drop, which refuses it
    while the view is there, as before; the other tables are put back, and the view still reads the old rows."""
    import psycopg2

    ak.load(config, progress=False, **postgres)
    before = _events(postgres)
    with psycopg2.connect(server.dsn) as con, con.cursor() as cur:
        cur.execute(f"CREATE VIEW {postgres['dataset']}.recent AS SELECT id FROM {postgres['dataset']}.events")
    with pytest.raises(ak.LoadError, match="depend"):
        ak.load(retyped(config), mode="full_refresh", progress=False, **postgres)
    assert _events(postgres) == before
    assert ak.query(f"SELECT count(*) AS n FROM {postgres['dataset']}.recent", **postgres).n[0] == before[0][0]
    assert ak.query(f"SELECT count(*) AS n FROM {postgres['dataset']}.customers", **postgres).n[0] == 20


def _killed_merging_events(config: dict, dataset: str) -> None:
    """In a child: the rebuild, ended at once (as ``kill -9`` ends it) as dlt merges the events in."""
    import os

    from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient

    execute_many = Psycopg2SqlClient.execute_many

    def killed(self, statements, *args, **kwargs):
        if any(f'INSERT INTO "{dataset}"."events"(' in s for s in statements):
            os._exit(9)
        return execute_many(self, statements, *args, **kwargs)

    Psycopg2SqlClient.execute_many = killed
    ak.load(config, mode="full_refresh", progress=False, destination="postgres", dataset=dataset)


def test_the_readers_warn_where_a_killed_rebuild_left_the_tables(api, config, postgres):
    import multiprocessing
    import warnings

    from analytics_kit.read import query as read_query

    ak.load(config, progress=False, **postgres)
    before = _events(postgres)
    child = multiprocessing.get_context("spawn").Process(target=_killed_merging_events,
                                                         args=(retyped(config), postgres["dataset"]))
    child.start()
    child.join(120)
    assert child.exitcode == 9
    with pytest.warns(UserWarning, match="rebuilding customers, events was stopped before it finished"):
        ak.tables(**postgres)
    read_query._WARNED.clear()  # once per stopped load in a process: as in a new one
    with pytest.warns(UserWarning, match="was stopped before it finished"):
        ak.query("SELECT 1 AS one", **postgres)
    unreachable = retyped(config)
    unreachable["client"]["base_url"] = "http://127.0.0.1:9/v1/"
    with pytest.raises(ak.LoadError):
        ak.load(unreachable, progress=False, **postgres)
    assert _events(postgres) == before  # put back before the API was asked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ak.tables(**postgres)


def test_a_table_of_the_users_named_as_the_kits_record_does_not_stop_the_readers(api, config, postgres, server):
    import psycopg2

    ak.load(config, progress=False, **postgres)
    with psycopg2.connect(server.dsn) as con, con.cursor() as cur:
        cur.execute(f"CREATE TABLE {postgres['dataset']}._analytics_kit_kept AS SELECT 1 AS mine")
    assert set(ak.tables(**postgres).table) == {"customers", "events"}
    assert ak.query("SELECT 1 AS one", **postgres).one[0] == 1
