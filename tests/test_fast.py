"""The fast path (arrow pages, concurrent offset pages) against the slow path, on the real demo API."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

import analytics_kit as ak
from analytics_kit import seam
from analytics_kit.fetch import source as kit_source
from analytics_kit.fetch.cursors import canonical
from analytics_kit.fetch.retry import Gate
from analytics_kit.fetch.transport import KitSession
from analytics_kit.errors import ConfigError
from analytics_kit.read.query import describe, query

from helpers import NEWEST_READ, fast, merge_sql


def _load(monkeypatch: pytest.MonkeyPatch, config: dict, database: str, *, fast_path: bool,
          mode: str = "incremental", **kwargs) -> ak.LoadReport:
    monkeypatch.setattr(kit_source, "FAST_PATH", fast_path)
    return ak.load(config, mode, database=database, progress=False, **kwargs)


def _table(database: str, table: str) -> list[tuple]:
    frame = query(f"SELECT * EXCLUDE (_dlt_id, _dlt_load_id) FROM analytics.{table} ORDER BY id", database)
    return [tuple(row) for row in frame.itertuples(index=False)]


def _same(database_a: str, database_b: str) -> None:
    for table in ("events", "customers"):
        assert len(describe(table, database_a)) == 10
        assert describe(table, database_a).equals(describe(table, database_b)), table
        assert _table(database_a, table) == _table(database_b, table), table


def test_fast_and_slow_paths_load_the_same_tables(api, config, monkeypatch, capfd):
    fast_report = _load(monkeypatch, config, "fast/analytics.duckdb", fast_path=True)
    assert "WARNING" not in capfd.readouterr().err  # e.g. dlt's notice that dedup_sort goes unused
    slow_report = _load(monkeypatch, config, "slow/analytics.duckdb", fast_path=False)
    assert fast_report.rows == slow_report.rows == {"events": 250, "customers": 20}
    assert fast_report.cursor_after == slow_report.cursor_after
    assert all(isinstance(v, str) for v in fast_report.cursor_after.values())
    _same("fast/analytics.duckdb", "slow/analytics.duckdb")
    # a first load into a new file is a replace, the swap reading the files; the slow path's records stay
    # dicts and carry a flag, which a replace would leave out: dlt's merge from the start
    assert "read_parquet" in merge_sql(database="fast/analytics.duckdb")
    assert "ROW_NUMBER()" not in merge_sql(database="fast/analytics.duckdb")
    assert "ROW_NUMBER()" in merge_sql(database="slow/analytics.duckdb")
    kinds = describe("events", "fast/analytics.duckdb").set_index("column")
    assert kinds.loc["properties", "type"] == "JSON" and not kinds.loc["updated_at", "nullable"]

    # updates, new records and soft deletes: incremental merge, dedup and hard delete on both paths
    changed = api.advance(new=7, updated=9, deleted=4)
    fast_report = _load(monkeypatch, config, "fast/analytics.duckdb", fast_path=True)
    slow_report = _load(monkeypatch, config, "slow/analytics.duckdb", fast_path=False)
    assert fast_report.cursor_after == slow_report.cursor_after
    _same("fast/analytics.duckdb", "slow/analytics.duckdb")
    # One pass saw every key once, so the fast path lets dlt skip its ROW_NUMBER() dedup;
    # the slow path cannot tell. Both still drop soft-deleted rows in the merge.
    assert "ROW_NUMBER()" not in merge_sql(database="fast/analytics.duckdb")
    assert "ROW_NUMBER()" in merge_sql(database="slow/analytics.duckdb")
    assert '"deleted" = False' in merge_sql(database="fast/analytics.duckdb")
    ids = {row[0] for row in _table("fast/analytics.duckdb", "events")}
    assert not ids & set(changed.deleted_ids)
    assert ids == {r["id"] for r in api.records(include_deleted=False)}


def _stored_columns(database: str, table: str) -> dict:
    """The table's columns in the newest schema dlt stored in the file, in order."""
    import json

    import duckdb

    with duckdb.connect(database, read_only=True) as con:
        schema = con.execute("SELECT schema FROM main._dlt_version ORDER BY inserted_at DESC LIMIT 1").fetchone()[0]
    return json.loads(schema)["tables"][table]["columns"]


def test_the_fast_path_adds_dlts_row_columns_as_dlt_would(api, config, monkeypatch, capfd):
    """The fast path adds _dlt_load_id and _dlt_id to its arrow pages itself, so that dlt's
    normaliser imports the files instead of rewriting them: the columns, their order, their
    hints in the stored schema and their values are what dlt gives the slow path's rows."""
    for _ in range(2):  # a first load, then a merge
        fast_report = _load(monkeypatch, config, "fast/analytics.duckdb", fast_path=True)
        _load(monkeypatch, config, "slow/analytics.duckdb", fast_path=False)
        for table in ("events", "customers"):
            fast, slow = (_stored_columns(f"{p}/analytics.duckdb", table) for p in ("fast", "slow"))
            assert list(fast) == list(slow), table
            # as dlt's parquet normaliser declares them (its JSON one leaves out precision and description)
            for name, declared in seam.dlt_row_columns(str)[:2]:
                assert {k: v for k, v in fast[name].items() if k not in ("precision", "description")} == \
                    {k: v for k, v in slow[name].items() if k not in ("precision", "description")}, (table, name)
                assert {k: fast[name].get(k) for k in declared} == declared, (table, name)
            assert fast["_dlt_id"]["row_key"] and fast["_dlt_id"]["unique"]
        api.advance(new=5, updated=5, deleted=2)
    assert "WARNING" not in capfd.readouterr().err  # dlt warned of a package schema unlike the stored one
    rows = query("SELECT count(*) AS n, count(DISTINCT _dlt_id) AS ids, min(length(_dlt_id)) AS shortest, "
                 "count(*) FILTER (WHERE _dlt_load_id NOT IN (SELECT load_id FROM main._dlt_loads)) AS strays "
                 "FROM analytics.events", "fast/analytics.duckdb")
    assert rows.n[0] == rows.ids[0] > 250 and rows.shortest[0] >= 14 and rows.strays[0] == 0
    assert fast_report.load_id in set(query("SELECT DISTINCT _dlt_load_id AS l FROM analytics.events",
                                            "fast/analytics.duckdb").l)


def test_a_cursor_stored_by_the_slow_path_keeps_working(api, config, monkeypatch):
    _load(monkeypatch, config, "mixed/analytics.duckdb", fast_path=False)
    api.advance(new=3, updated=2, deleted=1)
    api.clear_log()
    report = _load(monkeypatch, config, "mixed/analytics.duckdb", fast_path=True)
    assert report.rows["events"] == 6  # 3 new, 2 updated, 1 soft-deleted (then removed)
    assert api.count("/v1/events") == 1
    ids = {row[0] for row in _table("mixed/analytics.duckdb", "events")}
    assert ids == {r["id"] for r in api.records(include_deleted=False)}


@pytest.fixture
def small_pages(api, config):
    """The guide's config with 20 records a page: 13 pages of events."""
    config = fast(ak.guide_config(api.base_url, limit=20))
    return config


def test_concurrent_pages_with_faults_load_every_record_once(api, small_pages, monkeypatch):
    config = small_pages
    for offset in (40, 120, 200):
        api.inject("status", path="/v1/events", offset=offset, status=503, times=2)
    report = _load(monkeypatch, config, "c/analytics.duckdb", fast_path=True, concurrency=4,
                   mode="full_refresh")
    assert report.rows["events"] == 250
    assert len([r for r in report.retries if r.resource == "events"]) == 6
    assert report.requests["events"] == 13 + NEWEST_READ + 6
    frame = query("SELECT id, count(*) n FROM analytics.events GROUP BY id", "c/analytics.duckdb")
    assert len(frame) == 250 and set(frame.n) == {1}
    last = max(r["updated_at"] for r in api.records())
    assert report.cursor_after["events"] == canonical(last)


def test_workers_overlap(api, small_pages, monkeypatch):
    config = small_pages
    api.set_latency(0.05)
    _load(monkeypatch, config, "o/analytics.duckdb", fast_path=True, concurrency=4, mode="full_refresh")
    log = sorted((r.started for r in api.requests if r.path == "/v1/events"))
    # with 50 ms per request, one-after-another requests start >= 50 ms apart
    close = sum(1 for a, b in zip(log, log[1:]) if b - a < 0.025)
    assert close >= len(log) // 2


def test_a_429_pauses_all_workers(api, small_pages, monkeypatch):
    config = small_pages
    api.set_latency(0.02)
    api.inject("status", path="/v1/events", offset=100, status=429, retry_after=1)
    # when the client sent each request and closed the gate (wall clock, as the server's log)
    sent: list[tuple[float, str]] = []
    paused: list[tuple[float, float]] = []
    real_send, real_pause = KitSession.send, Gate.pause

    def send(self, request, **kwargs):
        sent.append((time.time(), parse_qs(urlsplit(request.url).query).get("offset", ["0"])[0]))
        return real_send(self, request, **kwargs)

    def pause(self, seconds):
        real_pause(self, seconds)
        paused.append((time.time(), seconds))

    monkeypatch.setattr(KitSession, "send", send)
    monkeypatch.setattr(Gate, "pause", pause)
    report = _load(monkeypatch, config, "p/analytics.duckdb", fast_path=True, concurrency=4, mode="full_refresh")
    assert report.rows["events"] == 250
    (closed, seconds), = paused
    assert seconds == 1
    # no worker sends while the gate is shut (the 429's own retry opens it, at its end)
    assert [t for t, _ in sent if closed < t < closed + 0.95] == []
    log = [r for r in api.requests if r.path == "/v1/events"]
    refused = next(r for r in log if r.status == 429)
    # What the server saw meanwhile was sent before the 429's answer shut the gate: on a busy machine
    # such a request can reach the server's log late (the server's threads share this process's GIL).
    for r in log:
        if refused.started + 0.05 < r.started < refused.started + 0.9:
            assert any(o == str(r.params.get("offset", "0")) and t < closed for t, o in sent), (r, sent)
    assert any(r.started >= refused.started + 0.95 for r in log)


@pytest.mark.parametrize("value", [0, -1, "4", 2.5, True, 65])
def test_concurrency_must_be_a_small_positive_integer(config, value):
    bad = fast(config)
    bad["resources"][0]["endpoint"]["concurrency"] = value
    with pytest.raises(ConfigError) as raised:
        ak.build_source(bad)
    assert raised.value.path == "resources[0].endpoint.concurrency"
    with pytest.raises(ConfigError) as raised:
        ak.load(config, concurrency=value, progress=False)
    assert raised.value.path == "concurrency"


def test_concurrency_in_the_config(api, small_pages, monkeypatch):
    config = small_pages
    config["resource_defaults"]["endpoint"] = {"concurrency": 1}
    config["resources"][0]["endpoint"]["concurrency"] = 3
    from analytics_kit.config.prepared import prepare

    assert prepare(config).concurrency == {"events": 3, "customers": 1}
    api.set_latency(0.02)
    _load(monkeypatch, config, "k/analytics.duckdb", fast_path=True, mode="full_refresh")
    log = sorted(r.started for r in api.requests if r.path == "/v1/events")
    assert sum(1 for a, b in zip(log, log[1:]) if b - a < 0.01) >= 3
    customers = sorted(r.started for r in api.requests if r.path == "/v1/customers")
    # 20 customers fill one page of 20: a second request checks that the listing ended, after the first
    assert len(customers) == 2 and customers[1] - customers[0] >= 0.015


@pytest.mark.parametrize("types", [(int, str), (str, int), (bool, float)], ids=lambda t: f"{t[0].__name__}-{t[1].__name__}")
def test_resources_sharing_a_table_type_its_columns_alike(api, config, monkeypatch, types):
    """Two resources load into one table, and a column neither declares comes as one type from one and as
    another from the other. dlt's parquet writer refused the second's arrow pages ("Schema at index 1 was
    different"), where dlt's normaliser coerces the value or makes a variant column. Both paths load alike."""
    def scored(kind: type, shift: int):
        def transform(body: dict) -> dict:
            numbers = [int(str(r["id"]).removeprefix("cus_")) for r in body["data"]]
            return {**body, "data": [{"id": n + shift, "updated_at": r["updated_at"], "score": kind(n % 3)}
                                     for n, r in zip(numbers, body["data"])]}
        return transform

    api.inject("transform", path="/v1/events", times=None, fn=scored(types[0], 0))
    api.inject("transform", path="/v1/customers", times=None, fn=scored(types[1], 10**6))
    for resource in config["resources"]:
        resource["table_name"] = "activity"
        resource["columns"] = {"id": {"data_type": "bigint", "nullable": False},
                               "updated_at": {"data_type": "timestamp", "nullable": False}}
    for mode in ("incremental", "full_refresh"):
        fast = _load(monkeypatch, config, "fast/analytics.duckdb", fast_path=True, mode=mode)
        slow = _load(monkeypatch, config, "slow/analytics.duckdb", fast_path=False, mode=mode)
        assert fast.rows == slow.rows == {"activity": 270}
        assert describe("activity", "fast/analytics.duckdb").equals(describe("activity", "slow/analytics.duckdb"))
        assert _table("fast/analytics.duckdb", "activity") == _table("slow/analytics.duckdb", "activity")


def test_resources_sharing_a_table_keep_one_row_per_key(api, config, monkeypatch):
    """Both resources send ids 1-20 into one table: each proved its own keys distinct, and the kit let dlt skip
    its dedup (an incremental run) or replaced the table with both resources' rows (a first load, a full
    refresh): two rows per key. Only dlt's merge keeps one row per key across resources. The report counted
    each resource's keys (270 rows for 250)."""
    def numbered(body: dict) -> dict:
        return {**body, "data": [{"id": int(str(r["id"]).removeprefix("cus_")), "updated_at": r["updated_at"]}
                                 for r in body["data"]]}

    for path in ("/v1/events", "/v1/customers"):
        api.inject("transform", path=path, times=None, fn=numbered)
    for resource in config["resources"]:
        resource["table_name"] = "activity"
        resource["columns"] = {"id": {"data_type": "bigint", "nullable": False},
                               "updated_at": {"data_type": "timestamp", "nullable": False}}
    for run, mode in enumerate(("incremental", "incremental", "full_refresh")):
        for fast in (True, False):
            report = _load(monkeypatch, config, f"{fast}/analytics.duckdb", fast_path=fast, mode=mode)
            held = query("SELECT count(*) AS n, count(DISTINCT id) AS keys FROM analytics.activity",
                         f"{fast}/analytics.duckdb")
            assert held.n[0] == held["keys"][0] == len(api.records()), (mode, fast)
            if run != 1:  # an incremental run's count is left out: it may count a key each resource re-read
                assert report.rows == {"activity": len(api.records())}, (mode, fast, report.rows)
        api.advance(new=5, updated=5, deleted=0)


@pytest.mark.parametrize("kind, odd", [("text", {"a": 1, "b": "x"}), ("double", []), ("double", {"a": 1.5}),
                                       ("bigint", [1, 2])], ids=["a dict in text", "[] in a double",
                                                                  "a dict in a double", "a list in a bigint"])
def test_a_dict_or_list_in_a_declared_column_is_flattened_as_dlt_flattens_it(api, config, monkeypatch, kind, odd):
    """dlt's normaliser flattens a dict into columns (note__a) and a list into a nested table, and [] to nothing,
    before any type is checked. Arrow pages coerced a dict into a text column's JSON, and refused one elsewhere."""
    def served(body: dict) -> dict:
        return {**body, "data": [{**r, "note": odd if r["id"] % 50 == 7 else "plain"} for r in body["data"]]}

    api.inject("transform", path="/v1/events", times=None, fn=served)
    events = next(r for r in config["resources"] if r["name"] == "events")
    events["columns"]["note"] = {"data_type": kind}
    if kind != "text":
        api.inject("transform", path="/v1/events", times=None,
                   fn=lambda body: {**body, "data": [{**r, "note": r["note"] if r["note"] != "plain" else 1}
                                                     for r in body["data"]]})
    fast = _load(monkeypatch, config, "fast/analytics.duckdb", fast_path=True)
    slow = _load(monkeypatch, config, "slow/analytics.duckdb", fast_path=False)
    assert fast.rows == slow.rows
    tables = sorted(ak.tables("fast/analytics.duckdb").table)
    assert tables == sorted(ak.tables("slow/analytics.duckdb").table)
    for table in tables:
        shapes = [describe(table, f"{path}/analytics.duckdb").sort_values("column").reset_index(drop=True)
                  for path in ("fast", "slow")]
        assert shapes[0].equals(shapes[1]), table
        columns = ", ".join(f'"{c}"' for c in shapes[0].column if not c.startswith("_dlt"))
        rows = [query(f"SELECT {columns} FROM analytics.{table} ORDER BY ALL", f"{path}/analytics.duckdb")
                for path in ("fast", "slow")]
        assert rows[0].equals(rows[1]), table


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("declared", [{"Value": {"data_type": "double"}},
                                      {"Value": {"data_type": "double"}, "ID": {"data_type": "bigint"}}])
def test_a_column_declared_by_a_name_dlt_renames_types_the_field_dlt_names_so(api, config, monkeypatch, tmp_path,
                                                                             declared, fast_path):
    """A declared "Value" over the API's field "value" is one column, as dlt names both: the fast path made two,
    and dlt's extract refused them as colliding after every page was fetched (helper-137)."""
    events = next(r for r in config["resources"] if r["name"] == "events")
    events["columns"] = {**events.get("columns", {}), **declared}
    database = str(tmp_path / f"{fast_path}.duckdb")
    _load(monkeypatch, config, database, fast_path=fast_path)
    import duckdb

    with duckdb.connect(database, read_only=True) as con:
        columns = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                   "WHERE table_name = 'events'").fetchall())
    assert columns["value"] == "DOUBLE" and "Value" not in columns, columns
    assert len(query("SELECT * FROM events", database)) == len(api.records("events", include_deleted=False))
