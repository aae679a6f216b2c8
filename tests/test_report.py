"""What a load shows: the report's repr, progress lines, and read-back that lets go of the file."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

import analytics_kit as ak
from analytics_kit.run.progress import Progress
from analytics_kit.fetch.retry import RetryPolicy, retry_session
from analytics_kit.fetch.stats import LoadStats
from tests.helpers import served


def test_report_repr_is_short_and_stable(api, config):
    report = ak.load(config, progress=False)
    text = repr(report)
    # customers: 1 page; events: 3 pages, and its last and first again before them (fetch/newest.py)
    assert text.splitlines()[0] == "LoadReport(mode='incremental', rows=270, requests=6, retries=0)"
    assert len(text.splitlines()) == 3
    assert report.load_id and report.load_id not in text
    assert not re.search(r"\d+\.\d+ ?s\b", text)  # no duration
    assert report.duration > 0
    summary = report.summary()
    assert summary["rows_events"] == 250 and summary["requests"] == 6 and summary["mode"] == "incremental"


def test_the_report_says_where_the_time_went(api, config):
    api.set_latency(0.02)  # every page waits on the API: extract's page_wait shows it
    report = ak.load(config, "full_refresh", progress=False)
    steps = report.steps
    assert list(steps) == ["setup", "extract", "normalize", "load", "page_wait"]
    assert all(seconds >= 0 for seconds in steps.values())
    assert sum(v for k, v in steps.items() if k != "page_wait") <= report.duration
    assert sum(v for k, v in steps.items() if k != "page_wait") >= 0.8 * report.duration
    # three pages of events and one of customers, each at least 20 ms, the extractor waiting
    assert 0.06 <= steps["page_wait"] <= steps["extract"]
    assert re.fullmatch(r"\d+\.\d s: setup \d+\.\d, extract \d+\.\d \(\d+\.\d waiting for the API\), "
                        r"normalize \d+\.\d, load \d+\.\d", report.timing()), report.timing()
    assert report.steps not in (None, {}) and "steps" not in repr(report)

    api.set_latency(0)
    nothing = ak.load(config, progress=False)  # nothing changed: the steps are still there
    assert set(nothing.steps) == set(steps) and nothing.steps["load"] >= 0


def test_progress_off_a_terminal_is_a_few_plain_lines():
    stats = LoadStats()
    out = io.StringIO()
    progress = Progress(stats, stream=out)
    assert not progress.live
    for _ in range(500):
        stats.request("events", "GET /v1/events")
        stats.page("events", 100)
        progress.on_page("events")
    progress.close(ak.LoadReport(mode="full_refresh", rows={"events": 50_000}, requests={"events": 500}, retries=(),
                                 cursor_before={}, cursor_after={}, fetched={"events": 50_000}))
    assert out.getvalue() == "events: 50,000 rows, 500 requests\n"


def test_progress_of_a_failed_load_says_how_far_it_got():
    stats = LoadStats()
    out = io.StringIO()
    progress = Progress(stats, stream=out)
    stats.request("events", "GET /v1/events")
    stats.page("events", 100)
    progress.on_page("events")
    progress.close(None)
    assert out.getvalue().splitlines() == ["events: 100 rows fetched, 1 request",
                                           "the load failed: the error says what to do"]


def test_a_failed_load_counts_every_record_fetched_as_the_display_did(api, config, capsys):
    """The rows dlt's steps have seen lag the pages fetched by a group of 2,000 records: a failed load said "0 rows
    fetched" after its display had shown 900 (helper-129)."""
    api.inject("status", path="/v1/events", status=404, offset=100, times=None)
    with pytest.raises(ak.LoadError, match="HTTP 404"):
        ak.load(config, concurrency=1)
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("events: 100 rows fetched, ") for line in err), err


def test_progress_ends_with_the_reports_numbers(api, config, capsys):
    ak.load(config)
    assert capsys.readouterr().err.splitlines() == ["customers: 20 rows, 1 request", "events: 250 rows, 5 requests"]
    api.advance(new=5, updated=3, deleted=2)
    report = ak.load(config)
    # dlt leaves out the record at the stored cursor, fetched again: the numbers say so
    assert report.rows == {"events": 10, "customers": 0} and report.fetched == {"customers": 1, "events": 11}
    assert capsys.readouterr().err.splitlines() == [
        "customers: 0 rows of 1 fetched (1 already loaded), 1 request",
        "events: 10 rows of 11 fetched (1 already loaded), 1 request",
    ]


def test_query_lets_go_of_the_file(api, config):
    ak.load(config, progress=False)
    assert ak.query("SELECT count(*) AS n FROM analytics.events").n[0] == 250
    # Another process can take the write lock right away.
    writer = subprocess.run(
        [sys.executable, "-c", "import duckdb; duckdb.connect('analytics.duckdb').execute('CREATE TABLE main.probe (x INT)')"],
        capture_output=True, text=True,
    )
    assert writer.returncode == 0, writer.stderr


def test_tables_and_describe(api, config):
    ak.load(config, progress=False)
    assert ak.tables().to_dict("records") == [{"table": "customers", "rows": 20}, {"table": "events", "rows": 250}]
    with pytest.raises(ak.QueryError, match="There is no table 'nope' in .*analytics.duckdb"):
        ak.describe("nope")
    # as SQL reads a name: unquoted in any case, quoted as it is
    events = ak.describe("events")
    assert "updated_at" in set(events.column)
    for name in ("EVENTS", "Events", '"events"', "analytics.EVENTS", 'main."events"'):
        assert ak.describe(name).equals(events), name
    with pytest.raises(ak.QueryError, match=r"There is no table 'EVENTS'.*Did you mean 'events'\?"):
        ak.describe('"EVENTS"')
    with pytest.raises(ak.QueryError, match=r"Did you mean 'events'\?"):
        ak.describe("EVNTS")


def test_reading_before_any_load_says_what_to_do():
    with pytest.raises(ak.QueryError, match=r"no DuckDB file at .*Run a load into it: analytics_kit.load"):
        ak.query("SELECT 1")


def test_timeouts_are_retried(api):
    api.inject("latency", path="/v1/events", seconds=0.5, times=1)
    stats = LoadStats()
    session = retry_session(RetryPolicy(backoff_factor=0.001, timeout=0.2), resource="events", stats=stats)
    assert session.get(f"{api.base_url}/v1/events", params={"api_key": api.api_key}).status_code == 200
    assert [e.reason for e in stats.retries] == ["ResponseTimeout"]


KEYS = {"its own": {"primary_key": "id"},
        "with the parent's": {"primary_key": ["id", "_customers_id"], "include_from_parent": ["id"]},
        "declared with the parent's": {"primary_key": [], "include_from_parent": ["id"],
                                       "columns": {"id": {"primary_key": True}, "_customers_id": {"primary_key": True}}},
        "none": {"primary_key": []}}


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("disposition", ["merge", "append"])
@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
def test_rows_of_a_resource_asked_once_per_parent_record_are_those_its_table_got(api, config, disposition, mode, key):
    """Each customer's listing of events since its updated_at holds most events again: the report said
    cust_events 5,000 where the merge left 250 (each listing counted on its own). Counted once over the
    listings, a key holding the parent's field (each row of its own) or no key (dlt appends) counted 250 and 0."""
    config["resources"].append({
        "name": "cust_events", "write_disposition": disposition, **KEYS[key],
        "endpoint": {"path": "/v1/events", "data_selector": "data", "paginator": {"type": "offset", "limit": 100},
                     "params": {"updated_since": "{resources.customers.updated_at}"}}})
    for _ in range(2 if mode == "full_refresh" else 1):  # the second into tables that are there
        report = ak.load(config, mode, progress=False)
        table = ak.query("SELECT count(*) AS n FROM cust_events")
        fetched = report.fetched["cust_events"]
        assert report.rows["cust_events"] == table.n[0], (report.rows, table.n[0], fetched)
        assert report.rows["events"] == len(served(api))
        if table.n[0] < fetched:
            assert key == "its own" and disposition == "merge"
            assert "repeated across the parent records' listings" in str(report), str(report)


@pytest.mark.parametrize("names", [("a", "b"), ("Events", "events")])
def test_resources_of_one_table_are_reported_as_what_they_fetched_and_asked(api, config, capsys, names):
    """Two resources into table t: each said "0 rows of 250 fetched (250 filtered out)"; two whose names dlt makes one
    ("Events", "events") reported one's requests and one cursor (helper-142)."""
    events = next(r for r in config["resources"] if r["name"] == "events")

    def shifted(shift: int):  # a map step of one argument: dlt hands a second one its meta
        return lambda record: {**record, "id": record["id"] + shift}

    config["resources"] = [{**events, "name": name, **({"table_name": "t"} if names == ("a", "b") else {}),
                            "processing_steps": [{"map": shifted(shift)}]} for name, shift in zip(names, (0, 10_000))]
    report = ak.load(config)
    table = "t" if names == ("a", "b") else "events"
    assert report.rows == {table: 500} and ak.query(f"SELECT count(*) AS n FROM {table}").n[0] == 500
    assert report.total_requests == 10 and len(report.cursor_after) == 2, report
    lines = capsys.readouterr().err.splitlines()
    if names == ("a", "b"):
        assert lines == ["a: 250 rows fetched into t, 5 requests", "b: 250 rows fetched into t, 5 requests",
                         "t: 500 rows"], lines
        assert "into t" in repr(report) and "filtered out" not in repr(report) + report._repr_html_()
    else:
        assert report.requests == {"events": 10} and set(report.cursor_after) == {"Events", "events"}
        assert ak.history().requests.iloc[-1] == 10
        assert lines[0] == "Events: into events" and "Events     into events" in repr(report), (lines, report)
