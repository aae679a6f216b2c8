"""The kit against an adversary: an API that lies and stalls, a full disk, two loads at once.

Every test runs ``ak.load`` against ``adversary.Adversary`` (written apart from the demo API,
to break the contract) or the demo API, and checks four things: the final tables against the
API's records, the requests that were sent, the message, and a canary key, searched for in
the errors with their tracebacks and locals, the logs at DEBUG, stdout and stderr, every file
the run wrote (DuckDB columns, the pipeline folder, pickled traces) and any other host's
request log. One class of failure per section, each tried in more than the one example.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, quote_plus

import duckdb
import pytest
import requests

import analytics_kit as ak
from dlt.common.configuration import configspec
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from analytics_kit.fetch.records import select_records
from analytics_kit.redact import Redactor
from analytics_kit import demo
from analytics_kit.fetch import source as kit_source
from analytics_kit.fetch.cursors import FUTURE_SKEW
from analytics_kit.fetch.retry import RetryPolicy

from adversary import MISSING, START, Adversary, Catcher, default_records, iso, parse_instant
from helpers import NEWEST_READ, without_newest_read
from leaks import Search, needles, search_error, search_files

TINY = {"retry_on_status_codes": [429, 500, 502, 503, 504], "max_retries": 2, "backoff_factor": 0.001}
REPO = Path(__file__).resolve().parents[1]


# -- the harness ----------------------------------------------------------------------------------


class Watch:
    """What a test's loads produced, searched for the canary when the test ends."""

    def __init__(self, canary: str) -> None:
        self.canary = canary
        self.errors: list[BaseException] = []
        self.reports: list[ak.LoadReport] = []
        self.catchers: list[Catcher] = []
        self.log = io.StringIO()

    def load(self, config: dict, **kwargs: Any) -> ak.LoadReport | ak.KitError:
        """``ak.load``; a kit error is returned (and kept), anything else fails the test."""
        kwargs.setdefault("progress", False)
        try:
            report = ak.load(config, **kwargs)
        except ak.KitError as error:
            self.errors.append(error)
            return error
        self.reports.append(report)
        return report

    def fails(self, config: dict, **kwargs: Any) -> ak.LoadError:
        outcome = self.load(config, **kwargs)
        assert isinstance(outcome, ak.LoadError), f"expected a LoadError, got {outcome!r}"
        return outcome

    def succeeds(self, config: dict, **kwargs: Any) -> ak.LoadReport:
        outcome = self.load(config, **kwargs)
        assert isinstance(outcome, ak.LoadReport), f"expected success, got {outcome!r}"
        return outcome


@pytest.fixture
def canary() -> str:
    # '+', '/' and '=' make the URL-encoded form differ from the plain one
    return f"CANARY-{secrets.token_hex(6)}+k/y="


@pytest.fixture
def watch(canary: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]):
    box = Watch(canary)
    handler = logging.StreamHandler(box.log)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield box
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    captured = capfd.readouterr()
    search = Search(needles(box.canary))
    search.text("stdout", captured.out)
    search.text("stderr", captured.err)
    search.text("log at DEBUG", box.log.getvalue())
    for i, error in enumerate(box.errors):
        search_error(search, f"error #{i}", error)
    for i, report in enumerate(box.reports):
        search.text(f"report #{i}", repr(report) + str(report.warnings))
    for catcher in box.catchers:
        search.text("another host's request log", repr(catcher.requests))
    search_files(search, tmp_path)
    assert search.places > 5
    assert not search.hits, "\n".join(search.hits)


@pytest.fixture
def api(canary: str):
    with Adversary(n=500, key=canary) as server:
        yield server


def config_for(server: Adversary, *, limit: int = 100, concurrency: int | None = None, timeout: float = 2,
               columns: dict | None = None, incremental: bool = True, key_header: str | None = None,
               paginator: dict | None = None, path: str = "/v1/events") -> dict:
    """The guide's dict for the adversary's listing, with the key inline (the canary)."""
    auth = ({"type": "api_key", "name": key_header, "api_key": server.key, "location": "header"} if key_header
            else {"type": "api_key", "name": "api_key", "api_key": server.key, "location": "query"})
    endpoint: dict = {"path": path, "data_selector": "data",
                      "paginator": paginator or {"type": "offset", "limit": limit},
                      "error_handler": {**TINY, "timeout": timeout}}
    if incremental:
        endpoint["incremental"] = {"cursor_path": "updated_at", "start_param": "updated_since",
                                   "initial_value": "2026-01-01T00:00:00Z"}
    if concurrency is not None:
        endpoint["concurrency"] = concurrency
    default_columns = {"id": {"data_type": "bigint", "nullable": False},
                       "updated_at": {"data_type": "timestamp", "nullable": False}}
    return {"client": {"base_url": server.base_url, "auth": auth},
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [{"name": "events", "endpoint": endpoint,
                           "columns": default_columns if columns is None else columns}]}


def table(database: str = "analytics.duckdb") -> dict:
    """``{id: (updated_at as a UTC instant, value)}`` of the loaded events."""
    try:
        if "events" not in set(ak.tables(database).table):
            return {}
    except ak.QueryError:  # no file, or none a load completed into
        return {}
    frame = ak.query("SELECT id, updated_at, value FROM events ORDER BY id", database)
    return {row.id: (row.updated_at.to_pydatetime(), row.value) for row in frame.itertuples()}


def served(server: Adversary) -> dict:
    return {r["id"]: (parse_instant(r["updated_at"]), r["value"]) for r in server.records()}


def offsets(server: Adversary) -> list[int | None]:
    """The offsets the pass asked for, sorted (the reads of the listing's newest cursor left out)."""
    return sorted(without_newest_read([r.offset for r in server.requests if r.path == server.path]))


def with_value(change: dict[int, Any], field: str = "value"):
    """A transform that serves ``field`` of the records with these ids changed."""
    def transform(body: dict, offset: int) -> dict:
        for record in body["data"]:
            if record["id"] in change:
                record[field] = change[record["id"]]
        return body
    return transform


def emptied_at(offset: int, times: int | None = None, empty: Callable[[dict], Any] = lambda body: {**body, "data": []}):
    """A transform serving the page at ``offset`` as ``empty(body)`` (no records), ``times`` times or every time."""
    left = [times]

    def transform(body: dict, at: int) -> Any:
        if at != offset or left[0] == 0:
            return body
        if left[0] is not None:
            left[0] -= 1
        return empty(body)
    return transform


# -- 1. a total that disagrees with the pages -------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("lie, shown", [
    (150, "total=150"),                      # too low: paging goes on past it
    (-5, "total=-5"),                        # negative: not a count
    ("abc", "total='abc'"),                  # not a number
    (1.5, "total=1.5"),                      # not a whole number
    (lambda true, offset: max(1, true - offset), "total="),  # shrinks page by page
])
def test_total_too_low_or_not_a_count_loads_everything_and_says_so(api, watch, lie, shown, concurrency):
    api.total = lie
    report = watch.succeeds(config_for(api, concurrency=concurrency))
    assert table() == served(api)
    assert report.rows == {"events": 500}
    assert any(shown in w for w in report.warnings), report.warnings
    # five full pages, then pages until the first empty one: at most a window more
    assert offsets(api)[:6] == [0, 100, 200, 300, 400, 500]
    assert len(offsets(api)) <= 6 + 2 * concurrency


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("lie, said", [
    (10_000, "the API said total=10000 but returned no records after offset 500"),
    (10**12, "the API's total=1000000000000 on GET /v1/events?"),  # absurd: no total at all
])
def test_total_too_high_or_absurd_stops_at_the_first_empty_page(api, watch, lie, said, concurrency):
    api.total = lie
    started = time.monotonic()
    report = watch.succeeds(config_for(api, concurrency=concurrency))
    assert time.monotonic() - started < 20
    assert table() == served(api)
    assert said in "\n".join(report.warnings), report.warnings
    assert "kept changing" not in watch.log.getvalue()  # not blamed on the data, nor paged again
    # the window, and the read of the listing's last page where the total put it (empty)
    assert len(offsets(api)) <= 6 + NEWEST_READ + 2 * 8, "requests beyond the end are bounded by the window"


def test_total_honest_costs_one_request_past_a_full_last_page_and_none_past_a_short_one(api, watch):
    report = watch.succeeds(config_for(api))
    assert offsets(api) == [0, 100, 200, 300, 400, 500]  # 500 = 5 full pages: one more checks the end
    assert not report.warnings
    api.add_records([{"id": 501, "updated_at": iso(START + 86400 * 30, z=True), "value": 1.0, "kind": "x"}])
    api.clear_requests()
    watch.succeeds(config_for(api, incremental=False))
    assert offsets(api) == [0, 100, 200, 300, 400, 500]  # 501 records: the short last page ends it
    assert table() == served(api)


def test_total_missing_names_the_option_to_set(api, watch):
    api.total = MISSING
    error = watch.fails(config_for(api))
    assert "total_path" in str(error) and table() == {}


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("lie", [None, MISSING])
def test_total_missing_on_a_later_page_only_loads_everything_and_says_so(api, watch, lie, concurrency):
    """Null or missing on one page after the first: a glitch, as a total that is no count, where it failed the load
    while a text total warned (helper-102)."""
    api.total = lambda true, offset: lie if offset == 200 else true
    report = watch.succeeds(config_for(api, concurrency=concurrency))
    assert table() == served(api) and report.rows == {"events": 500}
    assert any("total was missing or null on GET /v1/events?" in w and "offset=200&" in w for w in report.warnings)


def test_total_pages_capped_below_the_limit_are_refused_not_skipped(api, watch):
    watch.succeeds(config_for(api, incremental=False))
    before = table()
    api.page_cap = 40
    api.update_record(7, value=-1.0)
    error = watch.fails(config_for(api, incremental=False, concurrency=1))
    assert "returned 40 record(s) for limit=100" in str(error) and "Set the paginator's limit to 40" in str(error)
    assert table() == before  # nothing from the failed run
    watch.succeeds(config_for(api, incremental=False, limit=40))
    assert table() == served(api)


@pytest.mark.parametrize(("cap", "limit"), [(40, 500), (None, 500), (40, 1000)])
def test_total_pages_capped_below_a_limit_past_the_total_are_refused_not_skipped(api, watch, cap, limit):
    """A limit at or past the total: the short first page was followed by a request past the total, the offsets
    between were never asked for, and the load kept the first page with a warning (helper-125). The server clamps
    limit to 100 by itself: (None, 500) is an API capped at its own maximum."""
    watch.succeeds(config_for(api, incremental=False))
    before = table()
    api.page_cap = cap
    error = watch.fails(config_for(api, incremental=False, limit=limit, concurrency=1))
    served_ = cap or 100
    assert f"returned {served_} record(s) for limit={limit}" in str(error), str(error)
    assert f"more records after it (GET /v1/events?offset={served_}&" in str(error)
    assert f"Set the paginator's limit to {served_}" in str(error)
    assert table() == before


@pytest.mark.parametrize("cap", [40, 60])
def test_total_pages_capped_below_the_limit_without_a_total_are_refused_not_skipped(watch, cap):
    """With no total, a short first page followed by an empty one ended the listing: 20 of 30 records loaded, and a
    full refresh replaced the table with them (helper-126). 90 records: the page at offset 100 is empty."""
    with Adversary(n=90, key=watch.canary) as api:
        watch.succeeds(config_for(api, incremental=False))
        before = table()
        api.page_cap, api.total = cap, MISSING
        config = config_for(api, incremental=False, concurrency=1)
        config["resources"][0]["endpoint"]["paginator"].update(total_path=None, stop_after_empty_page=True)
        error = watch.fails(config, mode="full_refresh")
        assert f"returned {cap} record(s) for limit=100" in str(error), str(error)
        assert f"more records after it (GET /v1/events?offset={cap}&" in str(error), str(error)
        assert table() == before
        api.page_cap = None  # a listing that simply ends: one request more, and it loads
        report = watch.succeeds(config, mode="full_refresh")
        assert report.rows["events"] == 90 and table() == served(api)


@pytest.mark.parametrize(("at", "added", "maximum"), [(100, 20, None), (90, 5, None), (90, 20, None),
                                                       (90, 5, 100), (100, 120, None)])
def test_total_a_listing_that_grows_at_its_end_while_paged_is_not_taken_for_a_capped_one(watch, at, added, maximum):
    """No total, 90 records: the short first page, then records added at the listing's end before the request at
    ``at`` is answered (the next page's, or the one that looks past the short page). It was refused as "the API
    serves at most 90 per page" (helper-139's busy feed): the short page asked again holds more now, so the listing
    grew, and the pass goes on from there."""
    with Adversary(n=90, key=watch.canary) as api:
        api.total = MISSING
        grown = threading.Event()

        def add_once(req: Any) -> None:
            if req.path == api.path and req.offset == at and not grown.is_set():
                grown.set()
                api.add_records([{"id": 90 + i, "updated_at": iso(START + 60 * (89 + i), z=True), "value": 1.0,
                                  "kind": "new"} for i in range(1, added + 1)])

        api.status_script = add_once
        config = config_for(api, incremental=False, concurrency=1)
        config["resources"][0]["endpoint"]["paginator"].update(total_path=None, stop_after_empty_page=True,
                                                               maximum_offset=maximum)
        report = watch.succeeds(config, mode="full_refresh")
        assert grown.is_set()
        expected = {k: v for k, v in served(api).items() if maximum is None or k <= maximum}
        assert table() == expected and report.rows["events"] == len(expected), report.warnings


@pytest.mark.parametrize("total", [MISSING, None])
def test_total_a_short_first_page_asks_one_page_ahead_not_a_window(watch, total):
    """A listing of 1 record from an API slow to answer (so paged by 8 workers): 16 pages were asked for ahead of
    the short first page, every one of them empty (helper-143). One request tells whether the listing ended."""
    with Adversary(n=1, key=watch.canary) as api:
        api.status_script = lambda req: time.sleep(0.05)  # slower than FAST_RESPONSE_SECONDS: all workers
        if total is MISSING:
            api.total = MISSING
        config = config_for(api, incremental=False)
        if total is MISSING:
            config["resources"][0]["endpoint"]["paginator"].update(total_path=None, stop_after_empty_page=True)
        assert watch.succeeds(config, mode="full_refresh").rows["events"] == 1
        assert len(offsets(api)) <= 3, offsets(api)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_total_a_last_page_cut_short_again_is_no_growth_if_it_holds_less_than_was_seen_after_it(watch, concurrency):
    """No total, 25 records, limit 10: the last page cut to 2 records, then asked again to 3, while the request where
    it ended (offset 22) showed 3 more. The first growth rule took the 3 for a grown listing and loaded 23 records
    as complete (helper-143): a page asked again must hold all the records seen after it."""
    with Adversary(n=25, key=watch.canary) as api:
        api.total, answers = MISSING, iter([2, 3])

        def cut(body: dict, offset: int) -> dict:
            return {**body, "data": body["data"][:next(answers, 10)]} if offset == 20 else body

        api.transform = cut
        config = config_for(api, incremental=False, concurrency=concurrency, limit=10)
        config["resources"][0]["endpoint"]["paginator"].update(total_path=None, stop_after_empty_page=True)
        error = watch.fails(config, mode="full_refresh")
        # not "it serves at most 2 per page", where it served 2, then 3 (helper-144)
        assert "returned 2 record(s) on GET /v1/events?offset=20&" in str(error), str(error)
        assert "then 3 asked again" in str(error) and "cuts its pages short" in str(error), str(error)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_total_a_busy_feed_without_a_total_loads_every_record_up_to_where_it_stopped(watch, concurrency):
    """Records added at the listing's end all the while: every load of it failed as "the API returned 21 record(s)
    for limit=100 ... it serves at most 21 per page" (helper-139). It loads, without a gap in the ids."""
    with Adversary(n=1000, key=watch.canary) as api:
        api.total, stop = MISSING, threading.Event()

        def feed() -> None:
            for i in range(1001, 1_000_000):
                if stop.wait(0.0005):
                    return
                api.add_records([{"id": i, "updated_at": iso(START + 60 * (i - 1), z=True), "value": 1.0,
                                  "kind": "new"}])

        adding = threading.Thread(target=feed)
        adding.start()
        config = config_for(api, incremental=False, concurrency=concurrency)
        config["resources"][0]["endpoint"]["paginator"].update(total_path=None, stop_after_empty_page=True)
        try:
            report = watch.succeeds(config, mode="full_refresh")
        finally:
            stop.set()
            adding.join()
        got = ak.query("SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM events")
        assert got.lo[0] == 1 and got.n[0] == got.hi[0] == report.rows["events"] and got.n[0] >= 1000, got


def test_total_a_capped_page_within_maximum_offset_is_refused(watch):
    """maximum_offset covering one page: the pass ended at it, and records 60-99 of the window were dropped without a
    word (helper-128)."""
    with Adversary(n=90, key=watch.canary) as api:
        api.page_cap, api.total = 60, MISSING
        config = config_for(api, incremental=False, concurrency=1)
        config["resources"][0]["endpoint"]["paginator"].update(total_path=None, stop_after_empty_page=True,
                                                               maximum_offset=100)
        error = watch.fails(config, mode="full_refresh")
        assert "returned 60 record(s) for limit=100" in str(error) and "offset=60&" in str(error), str(error)
        api.page_cap = None
        assert watch.succeeds(config, mode="full_refresh").rows["events"] == 90


@pytest.mark.parametrize("extra", ["", "s\u00e9cret"])
def test_a_key_in_the_path_is_masked_however_it_is_written(watch, extra):
    """A key with + / = written into the path showed in the errors and the retry log as written: "+" read as a
    space found no mask (helper-126); with a non-ASCII character too, requests escaped only that one (helper-128).
    The canary key holds + / =."""
    watch.canary += extra
    with Adversary(n=150, key=watch.canary) as api:
        api.fail(500, times=None)
        config = config_for(api)
        config["resources"][0]["endpoint"]["path"] = f"/v1/events?api_key={watch.canary}"
        config["client"].pop("auth")
        error = watch.fails(config)
    assert "api_key=***" in str(error) and watch.canary[:10] not in str(error), str(error)


def test_total_too_high_after_a_short_last_page_is_checked_once_and_said(api, watch):
    """The short last page ends before the total: the offsets up to the next page are asked once, and the warning
    names that request."""
    api.total = 520
    report = watch.succeeds(config_for(api, incremental=False, limit=80, concurrency=1))
    assert table() == served(api)
    assert any("said total=520 but returned no records after offset 500 (GET /v1/events?offset=500&" in w
               for w in report.warnings), report.warnings


def test_pages_that_skip_a_record_at_their_boundaries_are_paged_again_half_a_page_later(api, watch):
    """An API whose offsets past the first page are off by one (offset=100 answered from the 102nd record) serves
    every record but one, and its pages end one short of its total, as a total too high makes them end: the kit
    blamed the total, loaded 499 of 500, and a full refresh deleted the skipped record from a table that held it
    (helper-153). A second pass half a page later has its boundaries inside the first one's pages."""
    config = config_for(api, incremental=False, limit=100)
    watch.succeeds(config)
    assert table() == served(api)
    ordered = sorted(api.records(), key=lambda r: (parse_instant(r["updated_at"]), r["id"]))
    api.transform = lambda body, offset: {**body, "data": ordered[offset + 1:offset + 101]} if offset else body
    for mode in ("full_refresh", "incremental"):
        report = watch.succeeds(config, mode=mode)
        assert table() == served(api), mode  # all 500: the one the first pass skipped was not deleted
        assert any("said total=500 but returned no records after offset 499" in w and "found 1 more record(s) (its "
                   "pages skip records at their boundaries" in w and w.endswith("loaded 500") for w in report.warnings), \
            report.warnings
    # a table that does not keep one row per key (replace, append) cannot take the pass's pages: a replace table lost
    # the record (helper-157), and loading only keys not seen kept keys twice and stale versions (helper-158). The
    # pass looks, and what it finds stops the load, the table kept whole
    for disposition in ("replace", "append"):
        other = copy.deepcopy(config)
        other["resource_defaults"]["write_disposition"] = disposition
        api.transform = None
        watch.succeeds(other, mode="full_refresh", database=f"{disposition}.duckdb")
        kept = table(f"{disposition}.duckdb")
        api.transform = lambda body, offset: {**body, "data": ordered[offset + 1:offset + 101]} if offset else body
        error = watch.fails(other, mode="full_refresh", database=f"{disposition}.duckdb")
        assert "found 1 more record(s), so its pages skip records at their boundaries" in str(error), error
        assert "A merge write disposition" in error.guidance and table(f"{disposition}.duckdb") == kept
        # off by one at one boundary (a key twice, one skipped): the full refresh deleted the record, kept the key
        # twice, and said a later full refresh would load it (helper-158)
        api.transform = lambda body, offset: {**body, "data": ordered[201:301]} if offset == 200 else body
        error = watch.fails(other, mode="full_refresh", database=f"{disposition}.duckdb")
        assert "were missing from its pages, and a pass with its pages half a page later found 1" in str(error), error
        assert table(f"{disposition}.duckdb") == kept
    # off by one at one boundary only: a record twice there and one skipped, the same way in two passes (helper-153)
    api.transform = lambda body, offset: {**body, "data": ordered[201:301]} if offset == 200 else body
    report = watch.succeeds(config, mode="full_refresh")
    assert table() == served(api) and report.rows == {"events": 500}
    assert any("1 record(s) the API's total counts were missing the same way in two passes; a pass with its pages "
               "half a page later found them" in w for w in report.warnings), report.warnings
    # more skipped at a boundary than half a page: the second pass finds some, not all; a full refresh deleted the
    # rest from a table that held them, and the cursor moved past them (helper-156): refused, nothing committed
    before = table()
    api.transform = lambda body, offset: {**body, "data": ordered[offset + 60:offset + 160]} if offset else body
    for mode in ("full_refresh", "incremental"):
        error = watch.fails(config, mode=mode)
        assert "found 50 more record(s), so its pages skip records at their boundaries, and 10 of its total are still "\
               "not served. Nothing from this run was committed" in str(error), error
        assert table() == before
    # the same at one boundary (a record twice and more skipped than the pass half a page later reaches)
    api.transform = lambda body, offset: {**body, "data": ordered[offset + 60:offset + 160]} if 200 <= offset < 300 \
        else body
    error = watch.fails(config, mode="full_refresh")
    assert "60 record(s) the API's total counts were missing the same way in two passes, and a pass with its pages " \
           "half a page later found 50 of them" in str(error) and table() == before, error
    api.transform = None
    first = watch.succeeds(config, database="first.duckdb")  # a first load, into a new file
    assert first.rows == {"events": 500} and table("first.duckdb") == served(api)
    # a total too high is still said to be one, once the second pass found no more; the rows are not doubled
    api.transform, api.total = None, 501
    report = watch.succeeds(config, mode="full_refresh")
    assert table() == served(api) and report.rows == {"events": 500}
    assert any("said total=501 but returned no records after offset 500" in w and "found no more" in w
               for w in report.warnings), report.warnings
    assert ak.query("SELECT count(*) - count(DISTINCT id) AS n FROM events").n[0] == 0


_NOT_RECORDS = {
    "null data and an error": (lambda body: {"data": None, "error": "maintenance"}, "error inside an HTTP 200 (maintenance)"),
    "an error object only": (lambda body: {"error": {"code": "internal", "message": "try again"}},
                             'error inside an HTTP 200 ({"code":"internal","message":"try again"})'),
    "errors beside null data": (lambda body: {"data": None, "errors": [{"message": "quota"}]}, "error inside an HTTP 200"),
    "null records": (lambda body: {**body, "data": [None] * len(body["data"])}, "sent null where a record was due"),
    "one null among records": (lambda body: {**body, "data": body["data"][:3] + [None] + body["data"][4:]},
                               "sent null where a record was due (record 4 of 100)"),
    "a total and no records": (lambda body: {**body, "data": None}, "said total=500 but returned no records at all"),
    # spelled otherwise, or beside an empty list: taken for an empty listing (helper-126)
    "Error capitalised": (lambda body: {"Error": "internal failure", "data": None},
                          "error inside an HTTP 200 (internal failure)"),
    "ERRORS beside null": (lambda body: {"ERRORS": ["db down"], "data": None}, "error inside an HTTP 200"),
    "an error beside an empty list": (lambda body: {"error": "rate limited", "data": [], "total": 0},
                                      "error inside an HTTP 200 (rate limited)"),
    # the API's words reached a terminal with their escape codes (helper-127)
    "an error with escape codes": (lambda body: {"error": "boom \x9b\x1b[2J", "data": None},
                                   "error inside an HTTP 200 (boom \\x9b\\x1b[2J)"),
    # a failure said by a status field, a success flag or a meta block (helper-128)
    "status error": (lambda body: {"status": "error", "message": "db down", "data": []}, "HTTP 200 (db down)"),
    "success false": (lambda body: {"success": False, "message": "quota", "data": []}, "HTTP 200 (quota)"),
    "an error code": (lambda body: {"error_code": 500, "message": "x", "data": []}, "HTTP 200 (500)"),
    "an error in meta": (lambda body: {"data": [], "meta": {"error": "stale index"}}, "HTTP 200 (stale index)"),
    # read as "the API's records have no field ..." and "it serves at most 5 per page" (helper-138)
    "a number among records": (lambda body: {**body, "data": body["data"][:3] + [7] + body["data"][4:]},
                               "sent a number where a record was due (record 4 of 100, among objects)"),
    "a list among records": (lambda body: {**body, "data": body["data"][:3] + [[1, 2]] + body["data"][4:]},
                             "sent a list where a record was due (record 4 of 100, among objects)"),
    "part of the records and an error": (
        lambda body: {**body, "data": body["data"][:5], "error": {"code": "partial", "message": "shard 2 down"}},
        "with an error beside them ({\"code\":\"partial\",\"message\":\"shard 2 down\"}), and more records"),
}


# each answer on the first page and on a later one; "no records at all" is the first page's only
@pytest.mark.parametrize(("answer", "offset"), [(answer, offset) for answer in sorted(_NOT_RECORDS)
                                                for offset in (0, 200)
                                                if not (answer == "a total and no records" and offset)])
def test_total_an_answer_that_is_not_records_fails_and_the_table_stays(api, watch, answer, offset):
    """An error inside an HTTP 200, null where records were due, or no records at all under a total: a full refresh
    emptied the table and reported success (helper-123); a later page's error read as a data_selector mistake."""
    watch.succeeds(config_for(api, incremental=False))
    before = table()
    change, says = _NOT_RECORDS[answer]
    api.transform = lambda body, at: change(body) if at >= offset else body
    error = watch.fails(config_for(api, incremental=False, concurrency=1), mode="full_refresh")
    assert says in str(error) and f"offset={offset}&" in str(error), str(error)
    assert "Nothing from this run was committed" in str(error) and table() == before


@pytest.mark.parametrize("none", ["none", "null", "None", "OK", {"code": 0, "message": ""}, [{"code": 0}],
                                  {"code": 200, "message": "OK"}])
def test_total_an_error_field_that_says_none_on_every_page_is_no_error(watch, none):
    """``"error": "none"`` beside every page, the closing empty one too: a listing without a total failed there as
    "an error inside an HTTP 200 (none)", and an empty listing at once (helper-143)."""
    with Adversary(n=250, key=watch.canary) as api:
        api.total = MISSING
        api.transform = lambda body, at: {**body, "error": none}
        config = config_for(api, incremental=False)
        config["resources"][0]["endpoint"]["paginator"].update(total_path=None, stop_after_empty_page=True)
        assert watch.succeeds(config, mode="full_refresh").rows["events"] == 250 and table() == served(api)


def test_total_a_number_beyond_a_double_is_named_not_taken_for_a_page_that_is_not_json(api, watch):
    """``1e400`` is JSON by its grammar (Python's json reads inf; plain dlt stores null): the load stops, and said
    "not valid JSON" with "check client.base_url" (helper-142)."""
    watch.succeeds(config_for(api, incremental=False))
    before = table()
    api.transform = lambda body, at: json.dumps(body).replace('"value": ', '"value": 1e400, "v": ', 1) if at else body
    error = watch.fails(config_for(api, incremental=False), mode="full_refresh")
    assert "got a response with a number beyond a double's range on GET /v1/events?offset=100&" in str(error), error
    assert "send such values as strings" in error.guidance and "base_url" not in error.guidance
    assert table() == before


@pytest.mark.parametrize("selector", ["data", "result.items", "$.result.items"])
@pytest.mark.parametrize("at", [200, 400])
def test_total_part_of_a_page_beside_an_error_is_named_at_any_level_of_the_envelope(watch, selector, at):
    """No total, 450 records: a page cut to 5 records beside an error. Before the listing's end it fails the load;
    as its last page, nothing tells the records are missing, and the run says where. Inside an envelope
    (``{"result": {"items": [...], "error": ...}}``) neither was looked at, and the cut page loaded as complete."""
    with Adversary(n=450, key=watch.canary) as api:
        watch.succeeds(config_for(api, incremental=False))
        before = table()
        api.total = MISSING
        error_ = {"code": "partial", "message": "shard 2 down"}

        def enveloped(body: dict, offset: int) -> dict:
            records, beside = (body["data"][:5], {"error": error_}) if offset == at else (body["data"], {})
            records = [] if at == 400 and offset > at else records  # the shard's records are not served at all
            if selector == "data":
                return {"data": records, **beside}
            return {"result": {"items": records, **beside}}

        api.transform = enveloped
        config = config_for(api, incremental=False, concurrency=1)
        config["resources"][0]["endpoint"].update(data_selector=selector)
        config["resources"][0]["endpoint"]["paginator"].update(total_path=None, stop_after_empty_page=True)
        says = '{"code":"partial","message":"shard 2 down"}'
        if at == 200:
            error = watch.fails(config, mode="full_refresh")
            assert f"with an error beside them ({says}), and more records" in str(error), str(error)
            assert table() == before
        else:
            report = watch.succeeds(config, mode="full_refresh")
            assert report.rows["events"] == 405
            assert [w for w in report.warnings if f"held 5 record(s) beside an error ({says})" in w
                    and "offset=400&" in w and "records are missing from this run" in w], report.warnings


@pytest.mark.parametrize(("answer", "says", "advice"), [
    (lambda body: {**body, "data": "service unavailable"}, "selects one str ('service unavailable')",
     "run the load again later"),
    (lambda body: json.dumps({**body, "data": [{**body["data"][0], "properties": "MARK"}]}).replace(
        '"MARK"', '{"a":' * 1500 + "{}" + "}" * 1500), "depth limit exceeded", "nests deeper than 1,024 levels"),
])
def test_total_an_answer_read_as_another_fault_says_its_own(api, watch, answer, says, advice):
    """A message where the records were due read as a page without a total; JSON nested 1,500 deep as a wrong
    base_url (helper-123)."""
    api.transform = lambda body, at: answer(body)
    error = watch.fails(config_for(api, incremental=False))
    assert says in str(error) and advice in str(error), str(error)
    assert "total_path" not in str(error) and "Check client.base_url" not in str(error)


def test_total_one_key_written_two_ways_is_one_row_in_the_report_too(watch):
    """2 and "2" are one row once dlt coerces the key column: the table held 3 rows where the report and the history
    said 4 (helper-123)."""
    with Adversary(n=150, key=watch.canary) as api:
        def twice(body: dict, offset: int) -> dict:
            if offset == 100:
                body["data"].append({**body["data"][20], "id": str(body["data"][20]["id"])})
            return body
        api.transform = twice
        report = watch.succeeds(config_for(api, incremental=False), mode="full_refresh")
        rows = ak.query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events")
        assert rows.n[0] == rows.ids[0] == 150
        assert report.rows["events"] == 150 and ak.history().rows.iloc[-1] == 150


@pytest.mark.parametrize("status", [202, 206])
def test_total_a_2xx_that_is_not_the_listing_fails_and_the_table_stays(api, watch, status):
    watch.succeeds(config_for(api, incremental=False))
    before = table()
    api.fail(status, times=None, offset=100)
    error = watch.fails(config_for(api, incremental=False, concurrency=1), mode="full_refresh")
    assert f"with HTTP {status} (" in str(error) and "offset=100&" in str(error), str(error)
    assert table() == before


def test_total_an_empty_listing_that_says_so_still_loads_empty(api, watch):
    """No records and a total of 0 (or none): the listing is empty, and a full refresh empties the table."""
    watch.succeeds(config_for(api, incremental=False))
    api.transform = lambda body, at: {**body, "data": [], "total": 0}
    watch.succeeds(config_for(api, incremental=False), mode="full_refresh")
    assert ak.query("SELECT count(*) AS n FROM events").n[0] == 0


@pytest.mark.parametrize("concurrency", [1, 8])
def test_total_ignored_offset_is_stopped(api, watch, concurrency):
    api.ignore_offset = True
    error = watch.fails(config_for(api, concurrency=concurrency))
    assert "the same records again" in str(error) and "offset_param" in str(error)
    assert len(api.requests) <= 3 + NEWEST_READ + 2 * concurrency
    assert table() == {}


def endless(body: dict, offset: int) -> dict:
    """A listing that never ends: every offset holds 100 new records."""
    return {**body, "data": [{"id": offset + i + 1, "updated_at": iso(START + offset + i, z=True), "value": 1.0,
                              "kind": "x"} for i in range(100)]}


@pytest.mark.parametrize("total", [100, "abc", -1, 10**12, MISSING])
def test_total_paging_past_it_or_without_one_is_bounded(api, watch, monkeypatch, total):
    from analytics_kit.fetch import offsets as kit_offsets

    monkeypatch.setattr(kit_offsets, "MAX_PAGES_PAST_TOTAL", 3)
    api.total, api.transform = total, endless
    error = watch.fails(config_for(api))
    assert ("kept returning records for 3 pages" in str(error)
            or total is MISSING and "total_path" in str(error)), str(error)
    assert len(api.requests) <= 5 + 2 * 8
    assert table() == {}


def test_total_none_configured_pages_until_an_empty_page_and_is_bounded(api, watch, monkeypatch):
    from analytics_kit.fetch import offsets as kit_offsets

    no_total = {"type": "offset", "limit": 100, "total_path": None, "stop_after_empty_page": True}
    api.total = MISSING
    watch.succeeds(config_for(api, paginator=no_total))
    # without a total the pages after the first are requested a window ahead: a few past the end
    assert table() == served(api) and offsets(api)[:6] == [0, 100, 200, 300, 400, 500]
    assert len(offsets(api)) <= 6 + 2 * 8
    monkeypatch.setattr(kit_offsets, "MAX_PAGES_PAST_TOTAL", 3)
    api.transform = endless
    error = watch.fails(config_for(api, paginator=no_total))
    assert "kept returning records for 3 pages with no usable total" in str(error)
    assert len(api.requests) <= 6 + 5 + 2 * 8


def test_total_none_configured_an_empty_page_is_asked_again(api, watch):
    """Without a total an empty page is the only end there is: a one-off one ended the listing, loading 200 of
    500 records as a success, and so did one with records after it every time (helper-107)."""
    no_total = {"type": "offset", "limit": 100, "total_path": None, "stop_after_empty_page": True}
    api.total = MISSING
    api.transform = emptied_at(200, times=1)
    report = watch.succeeds(config_for(api, paginator=no_total, incremental=False))
    assert table() == served(api) and not report.warnings
    api.transform = emptied_at(200)
    api.update_record(450, value=-4.5)
    error = watch.fails(config_for(api, paginator=no_total, incremental=False))
    assert "returned no records on GET" in str(error) and "offset=200&" in str(error), str(error)
    assert table()[450][1] != -4.5


def test_a_listing_answering_one_object_per_page_says_so_not_to_set_limit_1(api, watch):
    """{"data": {...}} on an offset listing is read as one record, as dlt reads it; with records after it the
    message said "set the paginator's limit to 1" (helper-102)."""
    api.transform = lambda body, offset: {**body, "data": body["data"][0]} if body["data"] else body
    error = watch.fails(config_for(api))
    assert "with one object where the data_selector points, not a list of records" in str(error), str(error)
    assert "single_page" in error.guidance and "limit to 1" not in error.guidance
    api.transform = lambda body, offset: {**body, "data": body["data"][:1]}  # a list of one: the API's page cap
    assert "Set the paginator's limit to 1" in watch.fails(config_for(api)).guidance
    assert table() == {}


def stale_at(offset: int, copy_of: int, times: int | None = None):
    """A transform serving the page at ``offset`` as the one sent for ``copy_of`` (asked first), as a cache might."""
    sent: dict = {}
    left = [times]

    def transform(body: dict, at: int) -> Any:
        if at == copy_of:
            sent["page"] = body
        if at != offset or "page" not in sent or left[0] == 0:
            return body
        if left[0] is not None:
            left[0] -= 1
        return {**sent["page"], "offset": at}
    return transform


def test_a_page_served_again_at_another_offset_fails_the_load_not_the_table(api, watch):
    """A page served stale at another offset (the records of offset 100 again at 200) read as a change feed's
    repeated keys: a full refresh committed 400 of 500 rows with a warning, deleting the table's others
    (helper-102). Now it fails with nothing committed; served stale once, the second pass loads everything."""
    watch.succeeds(config_for(api, concurrency=1))
    before = table()
    api.transform = stale_at(200, copy_of=100)
    error = watch.fails(config_for(api, concurrency=1), mode="full_refresh")
    assert "with the page it sent for" in str(error) and "offset=200&" in str(error) and "offset=100&" in str(error)
    assert table() == before == served(api)
    api.transform = stale_at(200, copy_of=100, times=1)
    report = watch.succeeds(config_for(api, concurrency=1), mode="full_refresh")
    assert table() == served(api) and report.passes == {"events": 2}


@pytest.mark.parametrize("where", ["no total", "short last page"])
def test_a_page_served_again_is_told_without_a_total_and_at_the_listings_end(canary, watch, where):
    """Without a total no count is short, and a short last page served as a full earlier one read as a total too
    low: both passed in one pass, committing less than the listing held (helper-111)."""
    no_total = {"type": "offset", "limit": 100, "total_path": None, "stop_after_empty_page": True}
    with Adversary(n=450, key=canary) as api:
        config = config_for(api, concurrency=1, **({"paginator": no_total} if where == "no total" else {}))
        if where == "no total":
            api.total = MISSING
        watch.succeeds(config)
        at, copy_of = (400, 300) if where == "short last page" else (200, 100)
        api.transform = stale_at(at, copy_of=copy_of)
        error = watch.fails(config, mode="full_refresh")
        assert "with the page it sent for" in str(error) and table() == served(api)
        api.transform = stale_at(at, copy_of=copy_of, times=1)
        watch.succeeds(config, mode="full_refresh")
        assert table() == served(api)


def test_a_page_served_again_is_told_under_dlts_own_paginators_too(api, watch):
    """A listing paged by dlt's json_link paginator, page 200 served as page 100 every time: committed a fifth less
    with no word (helper-112). Its keys again with their records in another order: a warning (no total to count)."""
    def linked(transform):
        def serve(body: dict, offset: int) -> dict:
            body = transform(body, offset)
            following = f"{api.base_url}/v1/events?offset={offset + 100}&limit=100"
            return {**body, "next": following if body["data"] else None}
        return serve

    config = config_for(api, incremental=False, paginator={"type": "json_link", "next_url_path": "next"})
    api.transform = linked(lambda body, offset: body)
    watch.succeeds(config)
    assert table() == served(api)
    api.transform = linked(stale_at(200, copy_of=100))
    error = watch.fails(config, mode="full_refresh")
    assert "with the page it sent for" in str(error) and "offset=200" in str(error)
    assert table() == served(api)
    reversed_ = stale_at(200, copy_of=100)
    api.transform = linked(lambda body, offset: {**(page := reversed_(body, offset)), "data": page["data"][::-1]}
                           if offset == 200 else reversed_(body, offset))
    report = watch.succeeds(config, mode="full_refresh")
    assert any("with the keys of GET" in w for w in report.warnings), report.warnings
    # paged once more (a key seen twice is a listing's one sign of a shift without a total: helper-138), not until it
    # settles (helper-113: a busy feed failed)
    assert report.passes == {"events": 2}, report.passes


def test_a_record_or_two_sent_twice_at_a_small_limit_is_no_page_served_again(api, watch):
    """At limit 1 a record listed twice, unchanged, failed as a stale page, where dlt loads it (helper-112)."""
    sent: dict = {}

    def twice(body: dict, offset: int) -> dict:
        if offset == 3:
            sent["page"] = body["data"]
        return {**body, "data": sent["page"]} if offset == 4 and "page" in sent else body

    api.transform = twice
    report = watch.succeeds(config_for(api, limit=1, concurrency=1, incremental=False), mode="full_refresh")
    assert report.rows["events"] == 499 and any("more than once" in w for w in report.warnings), report.warnings


def test_two_repeated_records_around_other_ones_are_no_page_served_again(api, watch):
    """A page is the same page only by all its keys, not its first and last record and length (helper-111)."""
    sent: dict = {}

    def transform(body: dict, offset: int) -> dict:
        if offset == 100:
            sent["page"] = body["data"]
        if offset == 200 and "page" in sent:
            return {**body, "data": [sent["page"][0], *body["data"][1:-1], sent["page"][-1]]}
        return body

    api.transform = transform
    report = watch.succeeds(config_for(api, concurrency=1), mode="full_refresh")
    # the two records the repeats stood in for are found by the pass half a page later (realigned.py, helper-153)
    assert any("2 record(s) the API's total counts were missing the same way in two passes; a pass with its pages "
               "half a page later found them" in w for w in report.warnings), report.warnings
    assert table() == served(api)


def test_a_total_missing_on_the_first_page_asked_again_is_a_glitch(api, watch):
    """The first page gave a total, then lacked it when asked again (after the newest cursor's read, or in a second
    pass): dlt's error said total_path was wrong (helper-111)."""
    asked = {0: 0}

    def total(true: int, offset: int) -> Any:
        if offset == 0:
            asked[0] += 1
            return true if asked[0] == 1 else None
        return true

    api.total = total
    report = watch.succeeds(config_for(api))
    assert table() == served(api) and asked[0] >= 2
    assert any("total was missing or null on GET /v1/events?" in w for w in report.warnings), report.warnings


def test_one_object_where_the_total_says_more_records_are_due_fails_the_load(api, watch):
    """Only the last page answered an object: read as one record, the total counted too high, and a full refresh
    replaced 500 rows with 401 (helper-111). A listing's last record alone as an object is one record, as dlt reads
    it."""
    watch.succeeds(config_for(api))
    api.transform = lambda body, offset: {**body, "data": body["data"][0]} if offset == 400 else body
    error = watch.fails(config_for(api), mode="full_refresh")
    assert "with one object where the data_selector points" in str(error) and "total says 500" in str(error)
    assert table() == served(api)
    api.add_records([{"id": 501, "updated_at": iso(START + 86400 * 30, z=True), "value": 1.0, "kind": "x"}])
    api.transform = lambda body, offset: {**body, "data": body["data"][0]} if offset == 500 else body
    watch.succeeds(config_for(api), mode="full_refresh")
    assert table() == served(api)


def test_total_a_listing_paged_by_dlt_that_never_ends_is_bounded(api, watch, monkeypatch):
    from analytics_kit.fetch import paging as kit_pages

    monkeypatch.setattr(kit_pages, "MAX_PAGES", 5)
    api.transform = lambda body, offset: {**endless(body, offset),
                                          "next": f"{api.base_url}/v1/events?offset={offset + 100}&limit=100"}
    error = watch.fails(config_for(api, incremental=False, paginator={"type": "json_link", "next_url_path": "next"}))
    assert "kept returning pages, 5 of them" in str(error)
    assert len(api.requests) <= 6


def test_total_an_empty_page_before_the_total_is_asked_again(api, watch):
    api.transform = emptied_at(200, times=1)
    report = watch.succeeds(config_for(api, incremental=False))
    assert table() == served(api) and not report.warnings
    api.transform = emptied_at(200)  # a hole, every time
    api.update_record(450, value=-4.5)
    error = watch.fails(config_for(api, incremental=False))
    assert "returned no records on GET" in str(error) and "offset=200&" in str(error) and "twice" in str(error)
    assert table()[450][1] != -4.5  # nothing from the failed run


@pytest.mark.parametrize("said", [0, 200, 150, None, MISSING])  # none, its own offset, below it; null; no key
def test_total_an_empty_page_whose_own_total_fell_is_asked_again_too(api, watch, said):
    """An API failing with an empty 200 whose total says the listing ends there: the pages before said 500.
    A full refresh committed the 200 records before it, and the stored cursor went back (helper-102)."""
    watch.succeeds(config_for(api))
    before = table()
    for id_ in range(1, 301):  # the incremental listing's too has a page at offset 200
        api.update_record(id_, value=-4.5)

    def hole(body: dict) -> dict:
        return {**{k: v for k, v in body.items() if k != "total"}, "data": [],
                **({} if said is MISSING else {"total": said})}

    api.transform = emptied_at(200, empty=hole)
    for mode in ("full_refresh", "incremental"):
        error = watch.fails(config_for(api), mode=mode)
        assert "returned no records on GET" in str(error) and "offset=200&" in str(error), str(error)
        assert table() == before  # nothing lost, nothing from the failed run
    api.transform = emptied_at(200, times=1, empty=hole)  # once only: asked again, the page has its records
    api.clear_requests()
    report = watch.succeeds(config_for(api), mode="full_refresh")
    assert table() == served(api)
    # the glitch's total is not the listing's: it was paged once, and no total fell (helper-105: paged again,
    # with the records at the stored cursor counted as loaded)
    assert not report.passes and not report.warnings, (report.passes, report.warnings)
    assert offsets(api).count(200) == 2 and offsets(api).count(100) == 1


def test_total_that_fell_the_same_way_in_two_passes_is_not_called_repeated_keys(api, watch):
    """Every page from 200 on empty, saying total=0: the listing ends there in both passes, and no key came
    twice; the warning said "returned 0 key(s) more than once" (helper-102)."""
    api.transform = lambda body, offset: {**body, "data": [], "total": 0} if offset >= 200 else body
    # the pass half a page later asked offset 150, whose page the API still served whole: records past where the
    # pages ended, which the first pass could not see, are loaded and said (see realigned.py; helper-156, -158)
    report = watch.succeeds(config_for(api, incremental=False))
    assert any("found no more but 50 record(s) past where its pages ended" in w for w in report.warnings), report
    assert table() == {id_: row for id_, row in served(api).items() if id_ <= 250}
    api.transform = lambda body, offset: {**body, "data": [], "total": 0} if offset >= 150 else body
    report = watch.succeeds(config_for(api, incremental=False), mode="full_refresh")  # no second sign
    said = "\n".join(report.warnings)
    assert "more than once" not in said, said
    assert "fell from 500 to 0 the same way in two passes" in said, said
    assert "the API said total=500 but returned no records after offset 200" in said and "found no more" in said, said
    assert said.count("returned no records after offset") == 1, said  # not again for the pass the fall made
    assert table() == {id_: row for id_, row in served(api).items() if id_ <= 200}


def test_total_an_api_answering_past_its_end_with_its_last_page_ends_there(api, watch):
    last_page = [r for r in api.records() if r["id"] > 400]
    api.transform = lambda body, offset: {**body, "data": copy.deepcopy(last_page)} if offset >= 500 else body
    report = watch.succeeds(config_for(api))
    assert table() == served(api) and not report.warnings
    assert offsets(api) == [0, 100, 200, 300, 400, 500]


# -- 2. deadlines -------------------------------------------------------------------------------------

SLOW = [
    ("endless trickle", lambda s: s.set_trickle(1, 0.05, True)),
    ("slow trickle", lambda s: s.set_trickle(1, 0.2)),
    ("stalled body", lambda s: s.set_stall_body()),
    ("stalled headers", lambda s: s.set_stall_headers()),
    ("trickled headers", lambda s: s.set_trickle_headers(0.1)),
]


@pytest.mark.parametrize("name, breaks", SLOW, ids=[s[0] for s in SLOW])
def test_deadline_a_response_that_never_completes_times_out_within_the_bound(api, watch, name, breaks):
    breaks(api)
    config = config_for(api, timeout=1)
    policy = RetryPolicy(max_retries=TINY["max_retries"], backoff_factor=TINY["backoff_factor"], timeout=1)
    started = time.monotonic()
    error = watch.fails(config)
    took = time.monotonic() - started
    assert took <= policy.worst_case() + 2.5, f"{took:.1f} s against a bound of {policy.worst_case():.1f} s"
    text = str(error)
    assert f"The API at 127.0.0.1:{api.port} timed out" in text and "no complete response within 1 s" in text, text
    assert "GET /v1/events?" in text and "api_key=***" in text and "3 attempt(s)" in text
    assert "could not be reached" not in text
    assert api.count(api.path) == 3  # the first page, tried three times
    assert table() == {}


def test_retries_a_page_asked_for_again_counts_the_attempts_of_its_last_request(api, watch):
    """The first page is read twice in a run (the listing's newest cursor, then its pass): the message said
    "after 4 attempt(s)" of the 3 the policy allows, counting the earlier read that succeeded (helper-85)."""
    firsts = []

    def script(req):  # the first page answers once, then fails for good
        if req.path == api.path and req.offset == 0:
            firsts.append(req)
            return 503 if len(firsts) > 1 else None
        return None

    api.status_script = script
    text = str(watch.fails(config_for(api)))
    assert len(firsts) == 1 + TINY["max_retries"] + 1, len(firsts)
    assert "HTTP 503" in text and f"after {TINY['max_retries'] + 1} attempt(s)" in text, text


@pytest.mark.parametrize("retry_after, pause", [("0.5", 0.5), ("soon", 1.0), ("1", 1.0)])
def test_retries_a_429s_reported_wait_is_the_pause_the_kit_makes(api, watch, retry_after, pause):
    """A Retry-After dlt's wait does not read ("0.5", text) was reported as the backoff (0.001 s), though the
    kit paused 0.5 or 1 s for it (helper-85)."""
    api.fail(429, times=1, offset=0, headers={"Retry-After": retry_after})
    report = watch.succeeds(config_for(api))
    (event,) = report.retries
    assert event.reason == "HTTP 429" and pause - 0.1 <= event.wait <= pause, event
    sent = [r.time for r in api.requests if r.path == api.path and r.offset == 0]
    assert sent[1] - sent[0] >= pause - 0.05, sent


def test_deadline_a_response_that_stalls_once_is_retried(api, watch):
    api.set_stall_body(times=1, offset=200)
    report = watch.succeeds(config_for(api, timeout=1))
    assert [r.reason for r in report.retries] == ["ResponseTimeout"]
    assert table() == served(api)


def test_deadline_of_the_real_schedule_is_attempts_times_timeout_plus_backoff():
    policy = RetryPolicy()  # the guide's: 3 retries, factor 2, and the kit's default timeout
    assert policy.waits() == [2, 4, 8]
    assert policy.worst_case() == 4 * policy.timeout + 14
    assert policy.timeout < 60  # dlt's own default per wait


def test_deadline_waiting_out_a_429_is_not_counted_as_the_api_being_slow(api, watch):
    """Each page is refused once with 429 and Retry-After 2: the pause shared by all workers
    is longer than the 1 s timeout, and must not make the waiting attempts time out."""
    seen: set = set()

    def once_each(req):
        if req.path == api.path and req.offset and req.offset not in seen:
            seen.add(req.offset)
            return 429, {"Retry-After": "2"}
        return None

    api.status_script = once_each
    report = watch.succeeds(config_for(api, timeout=1, concurrency=4))
    assert table() == served(api)
    assert {r.reason for r in report.retries} == {"HTTP 429"}


def test_deadline_covers_a_chain_of_redirects_as_one_response(api, watch):
    api.redirect = lambda path, query: f"{path}?{query}"  # a loop on the same origin
    api.set_trickle_headers(0.05)  # each hop takes a while
    started = time.monotonic()
    error = watch.fails(config_for(api, timeout=1))
    took = time.monotonic() - started
    policy = RetryPolicy(max_retries=TINY["max_retries"], backoff_factor=TINY["backoff_factor"], timeout=1)
    assert took <= policy.worst_case() + 2.5, took
    assert "timed out" in str(error) or "redirect loop" in str(error), str(error)


def test_deadline_a_connection_closed_mid_body_is_named_as_such(canary, watch, monkeypatch):
    """The demo API's short_body fault promises a whole body, sends half and hangs up."""
    with demo.serve(events=300, customers=5, seed=3, api_key=canary) as api:
        monkeypatch.setenv("API_KEY", canary)
        config = ak.guide_config(api.base_url)
        for resource in config["resources"]:
            resource["endpoint"]["error_handler"] = dict(TINY)
        api.inject("short_body", path="/v1/events", offset=100, times=None)
        error = watch.fails(config)
        text = str(error)
        assert f"The API at 127.0.0.1:{api.port} broke off its response" in text and "offset=100&" in text, text
        assert "3 attempt(s)" in text


@pytest.mark.parametrize("value", [0, -1, "20", True, float("inf")])
def test_deadline_a_bad_timeout_is_a_config_error(api, value):
    config = config_for(api)
    config["resources"][0]["endpoint"]["error_handler"]["timeout"] = value
    with pytest.raises(ak.ConfigError, match=r"error_handler\.timeout"):
        ak.build_source(config)


# -- 3. redirects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key_in", ["query", "header"])
@pytest.mark.parametrize("at_offset", [None, 200])
def test_redirect_to_another_host_is_refused_and_carries_no_key(canary, watch, key_in, at_offset):
    header = "X-API-Key" if key_in == "header" else None
    with Adversary(n=500, key=canary, key_header=header) as api, Catcher() as other:
        watch.catchers.append(other)
        api.redirect_to(other.base_url, offset=at_offset)
        error = watch.fails(config_for(api, key_header=header))
        text = str(error)
        assert f"The API at 127.0.0.1:{api.port} redirected GET /v1/events" in text
        assert f"to another origin, http://127.0.0.1:{other.port}" in text
        assert other.requests == [] and not other.leaked(canary)
        assert table() == {}


def test_redirect_by_a_paginator_link_to_another_host_is_not_followed(canary, watch):
    with Adversary(n=120, key=canary) as api, Catcher() as other:
        watch.catchers.append(other)
        api.transform = lambda body, offset: {**body, "next": f"{other.base_url}/v1/events?page=2"}
        error = watch.fails(config_for(api, incremental=False,
                                       paginator={"type": "json_link", "next_url_path": "next"}))
        assert f"Refused to send a request to http://127.0.0.1:{other.port}" in str(error)
        assert other.requests == []


@pytest.mark.parametrize("link", ["http://\u2603\u2028.example/v1/events?page=2", "http://a\u200db.example/x",
                                  "http://127.0.0.1:99999/v1/events", "http://[::1/v1/events"])
def test_a_paginator_link_no_url_can_hold_is_named_as_the_apis(canary, watch, link):
    """A malformed next link failed as requests' or urllib's error ("InvalidCodepoint", "Invalid IPv6 URL")."""
    with Adversary(n=120, key=canary) as api:
        api.transform = lambda body, offset: {**body, "next": f"{link}&api_key={canary}"}
        error = watch.fails(config_for(api, incremental=False,
                                       paginator={"type": "json_link", "next_url_path": "next"}))
        text = str(error)
        assert "Resource 'events': the API sent a link to its next page that cannot be requested" in text, text
        assert ascii(link)[1:-1][:20] in text and "report it to its provider" in text
        assert "Nothing from this run was committed" in text
        assert table() == {}


def test_redirect_within_the_origin_is_followed(api, watch):
    api.redirect_same_origin("/v2/events")
    watch.succeeds(config_for(api))
    assert table() == served(api)
    assert {r.path for r in api.requests} == {"/v1/events", "/v2/events"}


# -- 4. two loads of one database at once ----------------------------------------------------------

CHILD = """
import json, os, sys
import analytics_kit as ak
config = json.loads(os.environ["KIT_CONFIG"])
try:
    report = ak.load(config, database=sys.argv[1], progress=False, lock_timeout=float(sys.argv[2]))
except ak.KitError as error:
    print("KitError:", str(error).replace(chr(10), " "))
    sys.exit(3)
print("loaded", report.rows.get("events", 0))
"""


def child(config: dict, database: str, lock_timeout: float) -> subprocess.Popen:
    env = {**os.environ, "KIT_CONFIG": json.dumps(config)}
    return subprocess.Popen([sys.executable, "-c", CHILD, database, str(lock_timeout)], env=env, cwd=os.getcwd(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def holder_pid(database: str) -> str:
    lock = Path(database + ".state") / "load.lock"
    return lock.read_text().strip() if lock.exists() else ""


def wait_for_holder(process: subprocess.Popen, database: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while holder_pid(database) != str(process.pid):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first load never took the lock"
        time.sleep(0.02)


def finish(process: subprocess.Popen, watch: Watch) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    watch.log.write(out + err)  # searched for the canary
    assert "Traceback" not in err, err  # no raw exception escapes load()
    return process.returncode, out, err


def test_two_loads_the_second_waits_for_the_first_and_both_succeed(api, watch):
    api.set_trickle(300, 0.04)  # about 1 s a page, one page at a time: the first load holds the lock ~6 s
    config = config_for(api, concurrency=1, timeout=10)
    first = child(config, "analytics.duckdb", 60)
    wait_for_holder(first, "analytics.duckdb")
    second = child(config, "analytics.duckdb", 60)
    assert finish(first, watch)[0] == 0
    code, out, err = finish(second, watch)
    assert code == 0 and f"is running (PID {first.pid})" in err, (out, err)
    assert table() == served(api)


def test_two_loads_the_one_that_waits_too_long_names_the_holder(api, watch):
    api.set_trickle(300, 0.04)
    config = config_for(api, concurrency=1, timeout=10)
    first = child(config, "analytics.duckdb", 60)
    wait_for_holder(first, "analytics.duckdb")
    code, out, _ = finish(child(config, "analytics.duckdb", 0.5), watch)
    assert code == 3 and "Another load of" in out and f"(PID {first.pid})" in out and "lock_timeout" in out
    assert finish(first, watch)[0] == 0
    assert table() == served(api)


def test_two_loads_through_two_names_of_one_file_take_turns(api, watch):
    """A hard link has a pipeline folder, and so a lock by name, of its own: both loads ran at once (helper-116)."""
    duckdb.connect("analytics.duckdb").close()  # a file to link to; the first load is then a first load's length
    os.link("analytics.duckdb", "other_name.duckdb")
    api.set_trickle(300, 0.04)
    config = config_for(api, concurrency=1, timeout=10)
    first = child(config, "analytics.duckdb", 60)
    wait_for_holder(first, "analytics.duckdb")
    code, out, _ = finish(child(config, "other_name.duckdb", 0.5), watch)
    assert code == 3, out
    assert "Another load of" in out and "under another name (a hard link to it)" in out and f"(PID {first.pid})" in out
    assert finish(first, watch)[0] == 0
    second = child(config, "other_name.duckdb", 60)  # once the first is over, the other name loads
    assert finish(second, watch)[0] == 0
    assert table() == served(api) == table("other_name.duckdb")


def test_a_link_planted_at_the_lock_by_file_is_not_followed(api, watch, tmp_path):
    """The lock by file lives in the shared temporary folder: a link planted under its name must not make a load
    write (truncate) the file it points at."""
    from analytics_kit.store import lock

    duckdb.connect("analytics.duckdb").close()
    planted = lock._file_lock(Path("analytics.duckdb"))
    victim = tmp_path / "precious.txt"
    victim.write_text("precious")
    planted.unlink(missing_ok=True)
    planted.symlink_to(victim)
    try:
        watch.succeeds(config_for(api))
    finally:
        planted.unlink()
    assert victim.read_text() == "precious"
    assert table() == served(api)
    assert "through another name (a hard link) are not kept apart from this one" in watch.log.getvalue()


def test_the_lock_by_file_is_removed_when_the_load_ends_and_loads_by_two_names_still_take_turns(api, watch):
    """One lock file a database stayed in the shared folder for good (helper-117). Removed on release, a load waiting
    on the removed file must lock the name's new one, not hold a lock no later load sees."""
    from analytics_kit.store import lock

    duckdb.connect("analytics.duckdb").close()
    os.link("analytics.duckdb", "other_name.duckdb")
    lock_file = lock._file_lock(Path("analytics.duckdb"))
    config = config_for(api)
    for round_ in range(4):
        api.update_record(round_ + 1, value=float(-round_))
        names = ["analytics.duckdb", "other_name.duckdb"][:: 1 if round_ % 2 else -1]
        pair = [child(config, name, 60) for name in names]
        outcomes = [finish(p, watch) for p in pair]
        assert [code for code, _, _ in outcomes] == [0, 0], outcomes
        assert table() == served(api), f"round {round_}"
        assert not lock_file.exists()


def test_two_loads_started_together_take_turns_and_end_equal_to_the_api(api, watch):
    config = config_for(api)
    for round_ in range(6):
        for i in range(1, 4):
            api.update_record(round_ * 10 + i, value=float(round_))
        pair = [child(config, "analytics.duckdb", 60) for _ in range(2)]
        assert [finish(p, watch)[0] for p in pair] == [0, 0]
        assert table() == served(api), f"round {round_}"


def test_two_loads_in_threads_of_one_kernel_take_turns(api, watch):
    config = config_for(api)
    outcomes: list[Any] = []
    threads = [threading.Thread(target=lambda: outcomes.append(watch.load(config, lock_timeout=60))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == 2 and all(isinstance(o, ak.LoadReport) for o in outcomes), outcomes
    assert table() == served(api)


# -- 5. a full disk --------------------------------------------------------------------------------


def checksum(database: str = "analytics.duckdb") -> tuple:
    return tuple(ak.query("SELECT count(*) AS n, sum(hash(id, updated_at, value)) AS h FROM events", database).iloc[0])


def test_disk_a_merge_that_fails_after_its_delete_changes_nothing(api, watch):
    """A stand-in for a commit that fails (disk full at the WAL, out of memory, a kill): the
    INSERT half of the merge fails on a CHECK constraint after its DELETE has run."""
    watch.succeeds(config_for(api))
    before, cursor = checksum(), ak.state()["cursors"]
    con = duckdb.connect("analytics.duckdb")
    ddl = con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = 'events'").fetchone()[0]
    con.execute("ALTER TABLE events RENAME TO events_old")
    con.execute(ddl.rstrip().rstrip(";").rstrip()[:-1] + ", CHECK (id <= 500));")
    con.execute("INSERT INTO events SELECT * FROM events_old; DROP TABLE events_old")
    con.close()
    for i in range(1, 300):
        api.update_record(i, value=-1.0, updated_at=iso(START + 86400 * 90 + i, z=True))
    api.add_records([{"id": 501, "updated_at": iso(START + 86400 * 100, z=True), "value": 0.5, "kind": "new"}])
    error = watch.fails(config_for(api))
    assert "CHECK constraint" in str(error) and "Nothing is lost" in str(error)
    assert checksum() == before and ak.state()["cursors"] == cursor  # not 200 rows, as before the fix


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 64 MB tmpfs as the working folder; skipped where it cannot be mounted (not root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); run as root to test a full disk")
    monkeypatch.chdir(mount)
    try:
        yield mount
    finally:
        monkeypatch.chdir(tmp_path)
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path, leave_kb: int) -> Path:
    """A ballast file that leaves ``leave_kb`` free on ``folder``'s disk."""
    ballast = folder / "ballast"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(ballast, "wb") as handle:
        os.posix_fallocate(handle.fileno(), 0, max(0, free - leave_kb * 1024))
    return ballast


def test_dlts_trace_dump_failing_on_a_full_disk_is_one_line(small_disk, monkeypatch):
    """dlt shrugs off its trace dump failing on a full disk (``suppress_and_warn``), and the command
    printed its ~70-line traceback before the kit's error saying the disk is full (helper-50)."""
    from dlt.common import logger as dlt_logger
    from dlt.pipeline.trace import save_trace

    from analytics_kit import seam

    dlt_log = logging.getLogger("dlt")
    monkeypatch.setattr(dlt_logger, "LOGGER", dlt_log)  # as a load sets it
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    dlt_log.addHandler(handler)
    ballast = fill(small_disk, 64)
    try:
        with seam.mute_dedup_notice():  # as every load does: installs the kit's filter on dlt's log
            # dlt's own, which a load of the kit's replaces by keeping traces in memory (seam.keep_traces_in_memory)
            getattr(save_trace, "__wrapped__", save_trace)(str(small_disk), b"x" * 2_000_000)
    finally:
        dlt_log.removeHandler(handler)
        ballast.unlink()
    assert [(r.getMessage(), r.exc_info) for r in records] == [
        ("Failed to create trace dump via pickle: No space left on device", None)]


@pytest.mark.parametrize("debugging", [False, True])
def test_tracebacks_dlt_logs_are_one_line_unless_the_log_is_at_debug(monkeypatch, debugging):
    """dlt logs each failed load job with its traceback ("Transient exception in job", "worker ... died in
    uncontrollable manner"): on a disk filling up in the load step, 26 to 373 lines came before the kit's
    own error (helper-51). ``--debug`` (the log at DEBUG) keeps them."""
    import duckdb

    from dlt.common import logger as dlt_logger

    from analytics_kit import seam

    dlt_log = logging.getLogger("dlt")
    monkeypatch.setattr(dlt_logger, "LOGGER", dlt_log)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.DEBUG if debugging else logging.WARNING)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    dlt_log.addHandler(handler)
    try:
        with seam.mute_dedup_notice():  # as every load does: installs the kit's filter on dlt's log
            try:
                duckdb.connect(":memory:").execute("SELECT * FROM no_such_table")
            except duckdb.Error:
                dlt_logger.error("Transient exception in job events.1.parquet", exc_info=True)
    finally:
        dlt_log.removeHandler(handler)
        root.setLevel(level)
    [record] = records
    if debugging:
        assert record.exc_info is not None
    else:
        assert record.exc_info is None and record.getMessage().startswith(
            "Transient exception in job events.1.parquet: Catalog Error: Table with name no_such_table"), \
            record.getMessage()


def test_a_job_failure_dlt_logs_with_its_traceback_as_text_is_the_errors_first_line(monkeypatch):
    """dlt logs "Job for ... failed terminally ... with message <traceback>"; the line kept is the error's first
    one, not its last (DuckDB's "Did you mean" hint; helper-70)."""
    from dlt.common import logger as dlt_logger

    from analytics_kit import seam

    dlt_log = logging.getLogger("dlt")
    monkeypatch.setattr(dlt_logger, "LOGGER", dlt_log)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.WARNING)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    dlt_log.addHandler(handler)
    trace = ('Traceback (most recent call last):\n  File "a.py", line 1, in run\n    self.run()\n'
             'duckdb.BinderException: Binder Error: Table "customers" does not have a column with name "a"\n\n'
             'Did you mean: "id"\n')
    try:
        with seam.mute_dedup_notice():  # as every load does: installs the kit's filter on dlt's log
            dlt_logger.warning("Job for %s failed terminally in load %s with message %s", "events.1.parquet", "7",
                               trace)
    finally:
        dlt_log.removeHandler(handler)
        root.setLevel(level)
    [record] = records
    assert record.getMessage() == ('Job for events.1.parquet failed terminally in load 7 with message '
                                   'duckdb.BinderException: Binder Error: Table "customers" does not have a column '
                                   'with name "a"')


@pytest.mark.parametrize("checked", [True, False], ids=["with the free-space check", "without it"])
def test_disk_that_fills_up_during_a_load_loses_nothing(api, watch, small_disk, monkeypatch, checked):
    from analytics_kit.store import database as kit_database

    if not checked:  # let the load run into the full disk, to see that what fails there is atomic
        monkeypatch.setattr(kit_database, "LOAD_SPACE_FACTOR", 0)
        monkeypatch.setattr(kit_database, "LOAD_SPACE_MARGIN", 0)
    failed_at: list[str] = []
    window = []
    # 88 and 90 KB: the disk fills after the merge commits, as dlt writes its package state
    for round_, leave_kb in enumerate((8, 24, 48, 64, 80, 88, 90, 96, 128, 192, 256, 512)):
        watch.succeeds(config_for(api))
        assert table() == served(api)
        before, cursor = checksum(), ak.state()["cursors"]
        changed = START + 86400 * 120 + round_ * 1000  # in the past, later than the last round
        for i in range(1, 451):
            api.update_record(i, value=float(round_), updated_at=iso(changed + i, z=True))
        api.add_records([{"id": 1000 + round_ * 10 + i, "updated_at": iso(changed + 500 + i, z=True),
                          "value": 1.0, "kind": "new"} for i in range(10)])
        ballast = fill(small_disk, leave_kb)
        outcome = watch.load(config_for(api))
        if isinstance(outcome, ak.LoadError):
            text = str(outcome)
            assert "space" in text, text
            failed_at.append(text)
            ballast.unlink()
            assert ak.state()["cursors"] == cursor, f"{leave_kb} KB free: {text}"
            if checksum() != before:
                # the one moment the README names: the table's merge committed, then dlt could not
                # write its package state. The table holds all of this run's changes, none halfway,
                # and the cursor did not move, so the next run merges them again (below)
                assert table() == served(api), f"{leave_kb} KB free: a table changed halfway: {text}"
                window.append(leave_kb)
        else:
            ballast.unlink()
            assert isinstance(outcome, ak.LoadReport), outcome
        watch.succeeds(config_for(api))
        assert table() == served(api), f"{leave_kb} KB free"
    assert failed_at, "the disk never filled up: the test did not test anything"
    written = [f for f in failed_at if "while writing to" in f]
    if checked:  # the check refuses before the file is touched
        assert not written and any(f.startswith("The disk holding") for f in failed_at), failed_at
    else:  # the disk filled up while DuckDB wrote, and the tables stayed as they were (above)
        assert written, failed_at
        assert len(window) < len(written), (window, failed_at)  # most failures change nothing


@pytest.mark.parametrize("moved", [False, True], ids=["rerun in place", "rerun on a copy of the file"])
def test_disk_full_during_a_full_refresh_leaves_the_old_table_whole(api, watch, small_disk, monkeypatch, moved,
                                                                    caplog):
    """A full refresh is staged, then each table is swapped in one transaction: wherever the disk
    fills up, the old table stays whole behind the old cursor, and the next load, an incremental
    one as asked, is right, also from a copy of the file without its pipeline folder."""
    from analytics_kit.store import database as kit_database

    monkeypatch.setattr(kit_database, "LOAD_SPACE_FACTOR", 0)  # let it run into the full disk
    monkeypatch.setattr(kit_database, "LOAD_SPACE_MARGIN", 0)
    monkeypatch.setattr(logging.getLogger("dlt"), "handlers", [*logging.getLogger("dlt").handlers, caplog.handler])
    caplog.set_level(logging.WARNING)  # not DEBUG, where the kit leaves dlt's tracebacks whole
    watch.succeeds(config_for(api))
    failed: list[str] = []
    # from nothing free (the extract fails) to room for all (the swap commits): a few fail in the swap itself,
    # which since the swap reads the package's files (seam.replace_from_files) writes each row once
    for leave_kb in (0, 8, 16, 32, 48, 64, 96, 128, 160, 192, 256):
        before = table()
        ballast = fill(small_disk, leave_kb)
        outcome = watch.load(config_for(api), mode="full_refresh")
        ballast.unlink()
        if isinstance(outcome, ak.LoadError):
            failed.append(str(outcome))
            assert table() == before, leave_kb
            database = "analytics.duckdb"
            if moved:  # the file and its write-ahead log, without the pipeline folder
                shutil.copy(database, small_disk / "copy.duckdb")
                if Path(database + ".wal").exists():
                    shutil.copy(database + ".wal", small_disk / "copy.duckdb.wal")
                database = str(small_disk / "copy.duckdb")
            report = watch.succeeds(config_for(api), database=database)
            assert report.mode == "incremental" and table(database) == served(api), leave_kb
            if moved:
                os.remove(database)
                Path(database + ".wal").unlink(missing_ok=True)
        watch.succeeds(config_for(api))
        assert table() == served(api)
    assert any("while writing to" in f for f in failed), f"no swap met the full disk: {failed}"
    # dlt logs a job's retries and failure with its traceback as text: one line each (helper-69)
    retried = [r.getMessage() for r in caplog.records if r.name == "dlt" and "Job for" in r.getMessage()]
    assert retried and not [m for m in retried if "\n" in m or "Traceback" in m], retried[:2]


def test_two_loads_a_reader_in_another_thread_waits_for_the_file(api, watch):
    """ak.query in a thread of the loading kernel: DuckDB refuses a read-only and a read-write
    connection side by side in one process; each waits for the other's short one."""
    watch.succeeds(config_for(api))
    api.set_trickle(2000, 0.002)
    failures: list = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                ak.query("SELECT count(*) FROM events")
            except Exception as error:  # noqa: BLE001 - collected for the assertion
                failures.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):
            for i in range(1, 60):
                api.update_record(i, value=float(i))
            watch.succeeds(config_for(api), mode="full_refresh")
    finally:
        done.set()
        reader.join(30)
    assert not failures, failures[:3]
    assert table() == served(api)


# -- 6. cursors compared as instants; cursors in the future -----------------------------------------


def zoned(records: list[dict]) -> list[dict]:
    """The same instants written in other zones, with and without fractions, so that text order
    and time order differ."""
    zones = [300, 60, 0, -90, 0]
    out = []
    for i, record in enumerate(records):
        instant = parse_instant(record["updated_at"]).timestamp()
        offset = zones[i % len(zones)]
        text = iso(instant + (0.5 if i % 7 == 3 else 0), offset, frac=3 if i % 7 == 3 else None)
        out.append({**record, "updated_at": text})
    return out


def test_cursor_mixed_zone_offsets_compare_as_instants(api, watch):
    api.set_records(zoned(api.records()))
    first = watch.succeeds(config_for(api))
    newest = max(parse_instant(r["updated_at"]) for r in api.records())
    assert first.cursor_after["events"] == newest.isoformat()
    # changes whose text sorts below the stored cursor, though they are later instants
    later = newest.timestamp() + 3600
    for i, offset in zip((11, 12, 13), (-600, 540, 0)):
        api.update_record(i, updated_at=iso(later + i, offset), value=-float(i))
    second = watch.succeeds(config_for(api))
    assert second.rows["events"] >= 3
    assert table() == served(api)
    assert parse_instant(second.cursor_after["events"]).timestamp() == later + 13


@pytest.mark.parametrize("initial, layout", [
    ("2026-01-01T00:00:00Z", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),
    ("2026-01-01T05:30:00.000+05:30", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:30"),
    ("2026-01-01 00:00:00", r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"),
])
def test_the_start_parameter_is_sent_as_the_config_wrote_its_initial_value(api, watch, initial, layout):
    """The kit stores cursors in one canonical form (``...+00:00``) and sent that: an API that reads only the
    form of its guide's ``...Z`` refused every run but the first (helper-52)."""
    def strict(req):
        since = req.params.get("updated_since")
        return None if since is None or re.fullmatch(layout, since) else 400

    api.set_records(zoned(api.records()))
    api.status_script = strict
    config = config_for(api)
    config["resources"][0]["endpoint"]["incremental"]["initial_value"] = initial
    first = watch.succeeds(config)
    newest = max(parse_instant(r["updated_at"]) for r in api.records())
    later = newest.timestamp() + 3600
    for i, offset in zip((11, 12, 13), (-600, 540, 0)):
        api.update_record(i, updated_at=iso(later + i + 0.25, offset, frac=3), value=-float(i))
    api.clear_requests()
    second = watch.succeeds(config)
    assert second.rows["events"] >= 3 and table() == served(api)
    asked = {r.params["updated_since"] for r in api.requests}
    assert len(asked) == 1 and all(re.fullmatch(layout, text) for text in asked), asked
    # the stored cursor itself, cut to the layout's precision: never later, at most a second earlier
    stored = parse_instant(first.cursor_after["events"])
    assert stored - timedelta(seconds=1) < parse_instant(asked.pop()) <= stored
    api.clear_requests()
    watch.succeeds(config)
    assert {r.status for r in api.requests} == {200}


@pytest.mark.parametrize("incremental, layout", [
    ({"lag": 3600}, r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),
    ({"initial_value": "2026-01-01"}, r"\d{4}-\d\d-\d\d"),
], ids=["a placeholder, with lag", "a date alone"])
def test_the_start_value_keeps_the_written_layout_in_placeholders_with_lag_and_for_a_date(api, watch, incremental,
                                                                                          layout):
    """A placeholder, a lagged start value and a date-only initial_value were sent in the canonical form from the
    second run on, and a strict API refused them (helper-54)."""
    api.status_script = lambda req: (None if "updated_since" not in req.params
                                     or re.fullmatch(layout, req.params["updated_since"]) else 400)
    config = config_for(api)
    endpoint = config["resources"][0]["endpoint"]
    del endpoint["incremental"]["start_param"]
    endpoint["incremental"].update(incremental)
    endpoint["params"] = {"updated_since": "{incremental.start_value}"}
    watch.succeeds(config)
    for i in (11, 12, 13):
        api.update_record(i, value=-float(i))
    api.clear_requests()
    watch.succeeds(config)
    assert {r.status for r in api.requests} == {200} and table() == served(api)


def test_an_initial_value_written_as_an_hour_is_an_instant(api, watch):
    """``2026-03-01T00Z`` was no instant to the kit, so dlt compared it as text with the records' canonical
    cursors (``2026-03-01T00:05:00+00:00`` < ``2026-03-01T00Z``) and the hour's records were dropped (helper-55)."""
    config = config_for(api)
    config["resources"][0]["endpoint"]["incremental"]["initial_value"] = iso(START, z=True)[:13] + "Z"
    report = watch.succeeds(config)
    assert report.rows["events"] == 500 and table() == served(api)


def test_every_placeholder_of_the_incremental_goes_out_as_written(api, watch):
    """Two placeholders joined by ':' were refilled wrongly ("...00Z:00:00+00:00:..."), and placeholders in a
    header, or with a format spec, kept the canonical form (helper-56): rest_api fills them all through the
    incremental's convert, which the kit now sets."""
    config = config_for(api)
    endpoint = config["resources"][0]["endpoint"]
    endpoint["incremental"].update(initial_value="2026-01-01T00:00Z", end_value="2026-12-31T00:00:00.5Z",
                                   end_param="until")
    endpoint["params"] = {"q": "{incremental.start_value}:{incremental.end_value}",
                          "from": "{incremental.initial_value}"}
    endpoint["headers"] = {"X-Since": "{incremental.start_value!s}"}
    watch.succeeds(config)
    first = api.requests[0]
    assert first.params["q"] == "2026-01-01T00:00Z:2026-12-31T00:00:00.5Z"
    assert first.headers["X-Since"] == "2026-01-01T00:00Z"
    assert first.params["until"] == "2026-12-31T00:00:00.5Z" and first.params["from"] == "2026-01-01T00:00Z"
    api.update_record(11, value=-11.0)
    api.clear_requests()
    watch.succeeds(config)
    again = api.requests[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ:2026-12-31T00:00:00\.5Z", again.params["q"]), again.params
    assert again.headers["X-Since"] == again.params["updated_since"] == again.params["q"].split("Z:")[0] + "Z"
    assert table() == served(api)


def test_cursor_from_the_future_is_reported_and_does_not_stop_later_loads(api, watch):
    api.update_record(5, updated_at="2030-01-01T00:00:00Z")
    first = watch.succeeds(config_for(api))
    assert first.cursor_after["events"] == "2030-01-01T00:00:00+00:00"
    assert any("lies in the future" in w for w in first.warnings), first.warnings
    now = time.time()
    api.update_record(9, updated_at=iso(now - 60, z=True), value=-9.0)
    api.update_record(10, updated_at=iso(now + 120, z=True), value=-10.0)  # within the allowed skew
    api.clear_requests()
    second = watch.succeeds(config_for(api))
    assert table() == served(api)
    assert any("starts from" in w for w in second.warnings), second.warnings
    asked = parse_instant(api.requests[0].params["updated_since"])
    assert asked <= datetime.fromtimestamp(now, timezone.utc) - FUTURE_SKEW
    # the record from 2030 is loaded as it is, and still reported
    assert table()[5][0].year == 2030
    assert any("lies in the future" in w for w in second.warnings)


def test_cursor_that_is_not_a_timestamp_is_named_with_its_record(api, watch):
    api.transform = with_value({42: "yesterday"}, "updated_at")  # served, though the listing sorts it as before
    error = watch.fails(config_for(api))
    text = str(error)
    assert "id=42" in text and "'updated_at'" in text and "GET /v1/events?" in text and "'yesterday'" in text


@pytest.mark.parametrize("shown", ["2026-02-30T10:15:07Z", "2026-13-01T00:00:00Z", "2026-01-03T25:00:00Z"])
def test_cursor_of_a_day_or_hour_that_does_not_exist_is_named_with_its_record(api, watch, shown):
    """The common form's shortcut (…T…Z, 20 characters) took any such text as a timestamp: the
    stored cursor became '2026-02-30T10:15:07+00:00', and the next run's request failed (helper-25)."""
    api.transform = with_value({42: shown}, "updated_at")
    error = watch.fails(config_for(api))
    assert "id=42" in str(error) and repr(shown) in str(error), str(error)


def test_cursor_as_an_iso_week_date_is_stored_as_its_instant(api, watch):
    """2026-W01-6T10:15:07Z is 2026-01-03T10:15:07Z: the shortcut stored it as text, which sorts
    after every later instant of that year, so later changes would have been skipped."""
    newest = max(parse_instant(r["updated_at"]) for r in api.records()) + timedelta(hours=1)
    year, week, day = newest.isocalendar()
    api.update_record(42, updated_at=f"{year}-W{week:02d}-{day}T{newest:%H:%M:%S}Z")
    report = watch.succeeds(config_for(api))
    assert report.cursor_after["events"] == newest.replace(microsecond=0).isoformat()


def test_cursor_in_rfc3339_variants_loads_as_one_instant_form(api, watch, monkeypatch):
    """Lowercase z and t, a space, no zone, nanoseconds: one instant each, on both paths."""
    forms = {1: "2026-03-01T00:00:00z", 2: "2026-03-01t00:01:00Z", 3: "2026-03-01 00:02:00",
             4: "2026-03-01T00:03:00.123456789Z", 5: "2026-03-01T05:34:00+0530"}
    api.transform = lambda body, offset: {**body, "data": [
        {**r, "updated_at": forms.get(r["id"], r["updated_at"])} for r in body["data"]]}
    for fast, database in ((True, "fast.duckdb"), (False, "slow.duckdb")):
        monkeypatch.setattr(kit_source, "FAST_PATH", fast)
        watch.succeeds(config_for(api), database=database)
        got = table(database)
        assert [got[i][0].isoformat() for i in range(1, 6)] == [
            "2026-03-01T00:00:00+00:00", "2026-03-01T00:01:00+00:00", "2026-03-01T00:02:00+00:00",
            "2026-03-01T00:03:00.123456+00:00", "2026-03-01T00:04:00+00:00"]
        assert len(got) == 500


def test_cursor_of_unix_seconds_from_the_future_is_reported_too(canary, watch):
    """A cursor declared a timestamp that the API sends as Unix seconds."""
    now = int(time.time())
    records = [{"id": 1, "updated_at": iso(now - 86400, z=True), "value": 1.0, "kind": "a"},
               {"id": 2, "updated_at": "2030-03-01T00:00:00Z", "value": 2.0, "kind": "b"}]
    as_seconds = lambda body, offset: {**body, "data": [
        {**r, "updated_at": int(parse_instant(r["updated_at"]).timestamp())} for r in body["data"]]}
    with Adversary(records, key=canary) as api:
        api.transform = as_seconds
        config = config_for(api)
        config["resources"][0]["endpoint"]["incremental"]["initial_value"] = 0
        # the adversary reads updated_since as ISO: send it the seconds as such
        config["resources"][0]["endpoint"]["incremental"]["convert"] = (
            lambda seconds: datetime.fromtimestamp(seconds, timezone.utc).isoformat())
        first = watch.succeeds(config)
        assert first.cursor_after["events"] == int(parse_instant("2030-03-01T00:00:00Z").timestamp())
        assert any("lies in the future" in w for w in first.warnings), first.warnings
        api.update_record(1, updated_at=iso(time.time() - 30, z=True), value=-1.0)
        second = watch.succeeds(config)
        assert table()[1][1] == -1.0 and any("starts from" in w for w in second.warnings)



def test_cursor_of_unix_milliseconds_is_named_and_its_advice_loads(api, watch):
    """Milliseconds against an ISO start: the advice was to write initial_value as numbers "e.g. 0 for Unix seconds, or
    '2025-01-01T00:00:00Z' for timestamps", which the config already did (helper-116)."""
    api.transform = lambda body, offset: {**body, "data": [
        {**r, "updated_at": int(parse_instant(r["updated_at"]).timestamp() * 1000)} for r in body["data"]]}
    error = watch.fails(config_for(api))
    assert "the API's 'updated_at' values are numbers too large for Unix seconds" in error.message, error.message
    assert "declare the column 'updated_at' as bigint" in error.guidance
    assert table() == {}
    config = config_for(api)  # the advice followed
    config["resources"][0]["columns"]["updated_at"] = {"data_type": "bigint", "nullable": False}
    incremental = config["resources"][0]["endpoint"]["incremental"]
    incremental["initial_value"] = 0
    incremental["convert"] = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()  # the API's form
    assert watch.succeeds(config).rows["events"] == len(served(api))
    api.update_record(3, updated_at=iso(time.time() - 60, z=True), value=-3.0)
    assert watch.succeeds(config).rows["events"] == 1
    assert ak.query("SELECT value FROM events WHERE id = 3").value[0] == -3.0


def test_a_start_of_numbers_beside_the_apis_text_is_told_to_be_text_in_the_apis_form(api, watch):
    """The advice read "write it as text, like the API's values (e.g. 0 for Unix seconds, ...)" (helper-117)."""
    config = config_for(api)
    config["resources"][0]["endpoint"]["incremental"].update(
        initial_value=1735689600, convert=lambda seconds: datetime.fromtimestamp(seconds, timezone.utc).isoformat())
    error = watch.fails(config)
    assert "the API's 'updated_at' values are text" in error.message, error.message
    assert re.search(r"Write incremental.initial_value as text, like the API's values \(in their form: '20\d\d-",
                     error.guidance) and "Unix seconds" not in error.guidance, error.guidance
    assert table() == {}


def test_a_cursor_that_changes_kind_after_earlier_loads_says_to_refresh_once(api, watch):
    """Earlier loads stored a timestamp cursor; the API then sends milliseconds, and the config follows the advice
    (bigint, a start in milliseconds): dlt's IncrementalCursorInvalidCoercion came with "Fix the cause" (helper-117)."""
    watch.succeeds(config_for(api))
    api.transform = lambda body, offset: {**body, "data": [
        {**r, "updated_at": int(parse_instant(r["updated_at"]).timestamp() * 1000)} for r in body["data"]]}
    config = config_for(api)
    config["resources"][0]["columns"]["updated_at"] = {"data_type": "bigint", "nullable": False}
    incremental = config["resources"][0]["endpoint"]["incremental"]
    incremental["initial_value"] = 0
    incremental["convert"] = lambda ms: ms if isinstance(ms, str) else datetime.fromtimestamp(
        ms / 1000, timezone.utc).isoformat()
    error = watch.load(config)  # the declared type is refused before the cursor is compared (helper-134)
    assert isinstance(error, ak.ConfigError), error
    assert "declares column 'updated_at' as 'bigint', and the table 'events' holds that column as 'timestamp'" in (
        error.message), error.message
    assert 'Run a full refresh once (mode="full_refresh"' in error.guidance
    assert watch.succeeds(config, mode="full_refresh").rows["events"] == len(served(api))
    api.update_record(4, updated_at=iso(time.time() - 60, z=True), value=-4.0)
    assert watch.succeeds(config).rows["events"] == 1
    assert ak.query("SELECT value FROM events WHERE id = 4").value[0] == -4.0


@pytest.mark.parametrize("switched", ["some", "all"])
def test_cursor_that_switches_to_unix_seconds_compares_as_instants(api, watch, switched):
    """A timestamp cursor the API starts sending as Unix seconds, after loads that stored ISO text: the README
    says the numbers are instants there, and dlt failed "'>' not supported between ... 'str' and 'int'" (a
    raw IncrementalCursorInvalidCoercion), or a first load asked for initial_value as numbers (helper-102)."""
    def as_seconds(ids):
        return lambda body, offset: {**body, "data": [
            {**r, "updated_at": int(parse_instant(r["updated_at"]).timestamp())} if r["id"] in ids else r
            for r in body["data"]]}

    if switched == "all":  # from the first load on; initial_value stays ISO text
        api.transform = as_seconds({r["id"] for r in api.records()})
        first = watch.succeeds(config_for(api))
        assert table() == served(api)
        assert first.cursor_after["events"] == max(parse_instant(r["updated_at"]) for r in api.records()).isoformat()
    else:
        watch.succeeds(config_for(api))
    later = time.time() - 3600
    for i in (7, 8, 9):
        api.update_record(i, updated_at=iso(later + i, z=True), value=-float(i))
    api.transform = as_seconds({7, 8} if switched == "some" else {r["id"] for r in api.records()})
    second = watch.succeeds(config_for(api))
    assert second.rows["events"] == 3
    assert table() == served(api)  # loaded as the instants they stand for
    assert second.cursor_after["events"] == datetime.fromtimestamp(int(later + 9), timezone.utc).isoformat()

# -- 7. a value whose type changes between pages -----------------------------------------------------


@pytest.mark.parametrize("odd", ["abc", True, "2026-01-01T00:00:00Z", {"nested": 1}])
def test_types_an_undeclared_column_changing_type_loads_as_dlts_normaliser_loads_it(api, watch, monkeypatch, odd):
    api.transform = with_value({350: odd, 420: odd})
    config = config_for(api)
    fast = watch.succeeds(config, database="fast.duckdb")
    monkeypatch.setattr(kit_source, "FAST_PATH", False)
    slow = watch.succeeds(config, database="slow.duckdb")
    assert fast.rows == slow.rows == {"events": 500}
    assert ak.describe("events", "fast.duckdb").equals(ak.describe("events", "slow.duckdb"))
    rows = "SELECT * EXCLUDE (_dlt_id, _dlt_load_id) FROM events ORDER BY id"
    assert ak.query(rows, "fast.duckdb").equals(ak.query(rows, "slow.duckdb"))


@pytest.mark.parametrize("number", [2**70, 2**63], ids=["2**70", "2**63"])
@pytest.mark.parametrize("field", ["id", "count"], ids=["a declared bigint key", "an undeclared integer"])
def test_types_integers_beyond_64_bits_are_refused_not_rounded(api, watch, monkeypatch, field, number):
    """orjson reads 2**70 as a float: 1180591620717412303424 became 1.1805916207174124e+21; 2**63
    reaches dlt's normaliser, whose "int too large to convert to C long" named no fix."""
    def big(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r["count"] = r["id"]
            if r["id"] == 250:
                r[field] = number
        return body

    api.transform = big
    for fast in (True, False):
        monkeypatch.setattr(kit_source, "FAST_PATH", fast)
        error = watch.fails(config_for(api), database=f"{fast}.duckdb")
        assert "beyond 64" in str(error) and "as text" in str(error), str(error)  # dlt refuses them too
        assert table(f"{fast}.duckdb") == {}


@pytest.mark.parametrize("kind, stored", [("double", float(2**70)), ("text", str(2**70))])
def test_types_an_integer_beyond_64_bits_in_a_declared_double_or_text_loads_alike_on_both_paths(
        api, watch, monkeypatch, kind, stored):
    """Arrow pages loaded 2**70 into a declared double as 1.18e21; records that stay dicts failed, as
    orjson (which writes dlt's extract files) refuses it, with "beyond 64 bits", for a column that holds it."""
    def big(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r["score"] = 2**70 if r["id"] == 250 else r["id"] if kind == "double" else str(r["id"])
        return body

    api.transform = big
    config = config_for(api, columns={"score": {"data_type": kind}})
    for fast in (True, False):
        monkeypatch.setattr(kit_source, "FAST_PATH", fast)
        watch.succeeds(config, database=f"{fast}.duckdb")
        got = ak.query("SELECT score FROM events WHERE id = 250", f"{fast}.duckdb").iloc[0, 0]
        assert (float(got) if kind == "double" else got) == stored, (fast, got)
        assert ak.query("SELECT count(*) AS n FROM events", f"{fast}.duckdb").n[0] == 500


@pytest.mark.parametrize("record", [1, 250, 300], ids=["first on its page", "mid-page", "last on its page"])
def test_types_an_integer_beyond_64_bits_in_a_text_column_is_kept_wherever_its_record_sits(api, watch, record):
    """The page's first and last records are kept as JSON to tell a repeated page; orjson cannot
    write 2**70, and a record at either end failed where one mid-page was kept."""
    def big(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r["order_no"] = 2**70 if r["id"] == record else r["id"]
        return body

    api.transform = big
    config = config_for(api, columns={"id": {"data_type": "bigint"}, "order_no": {"data_type": "text"},
                                      "updated_at": {"data_type": "timestamp"}})
    watch.succeeds(config)
    assert ak.query(f"SELECT order_no FROM events WHERE id = {record}").iloc[0, 0] == str(2**70)


@pytest.mark.parametrize("bad", [b"NaN", b"Infinity", b'"\xff"'], ids=["NaN", "Infinity", "invalid UTF-8"])
def test_a_19_digit_number_elsewhere_on_a_page_does_not_let_invalid_json_through(bad):
    """A page with a long digit run is read again by the json module, which takes NaN and
    Infinity and reads bytes orjson refuses: the page must be refused all the same."""
    from analytics_kit.fetch.records import parse_body

    body = b'{"data": [{"id": 1, "phone": "1234567890123456789", "value": ' + bad + b"}]}"
    with pytest.raises(ValueError):
        parse_body(body)
    kept = parse_body(b'{"data": [{"id": 1180591620717411303424, "value": 1.5}]}')
    assert kept["data"][0]["id"] == 2**70 and type(kept["data"][0]["id"]) is int


@pytest.mark.parametrize("bad", [b'"\xff\xfe"', b"NaN", b"<html>"], ids=["invalid UTF-8", "NaN", "an HTML page"])
def test_pages_dlts_own_paginator_fetches_are_read_as_strictly_as_offset_pages(api, watch, bad):
    """requests' json() read invalid UTF-8 as replacement characters, and its decode error
    (simplejson's) was not recognised: "fix the cause" instead of "not valid JSON"."""
    def spoil(body: dict, offset: int) -> bytes:
        body["data"][0]["x"] = "SPOIL"
        return bad if bad == b"<html>" else json.dumps(body).encode().replace(b'"SPOIL"', bad)

    api.transform = spoil
    error = watch.fails(config_for(api, paginator={"type": "single_page"}, incremental=False))
    assert "not valid JSON" in str(error), str(error)
    assert table() == {}


@pytest.mark.parametrize("encode, says", [
    (lambda text: __import__("gzip").compress(text.encode()), "the body is gzip-compressed data, not JSON text"),
    (lambda text: text.replace("SPOIL", "caf\u00e9").encode("latin-1"), "the body is not UTF-8 text (byte 0xe9 at"),
    (lambda text: text.encode("utf-16"), "the body is UTF-16 or UTF-32 text"),
    (lambda text: text.encode("utf-16-le"), "the body is UTF-16 or UTF-32 text"),  # ASCII in it: valid UTF-8
], ids=["gzip without Content-Encoding", "Latin-1", "UTF-16", "UTF-16 without a byte-order mark"])
def test_a_body_that_is_no_utf8_text_is_named_for_what_it_is(api, watch, encode, says):
    """Each failed as "str is not valid UTF-8: surrogates not allowed ... (char 0)", with no start of the body shown:
    nothing told a compressed body from a legacy encoding (helper-116)."""
    def spoil(body: dict, offset: int) -> bytes:
        body["data"][0]["kind"] = "SPOIL"
        return encode(json.dumps(body))

    api.transform = spoil
    error = watch.fails(config_for(api))
    assert "not valid JSON" in str(error) and says in str(error) and "the body begins" in str(error), str(error)
    assert "Report it to its provider" in error.guidance and "run the load again." not in error.guidance
    assert table() == {}


def test_types_a_fraction_in_an_integer_column_is_not_truncated(api, watch, monkeypatch):
    """Arrow truncates 19.99 to 19 in an int64 column without a word; dlt's normaliser keeps it."""
    def counts(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r["count"] = 19.99 if r["id"] == 350 else -0.75 if r["id"] == 351 else r["id"]
        return body

    api.transform = counts
    config = config_for(api)
    watch.succeeds(config, database="fast.duckdb")
    monkeypatch.setattr(kit_source, "FAST_PATH", False)
    watch.succeeds(config, database="slow.duckdb")
    rows = "SELECT * EXCLUDE (_dlt_id, _dlt_load_id) FROM events ORDER BY id"
    assert ak.query(rows, "fast.duckdb").equals(ak.query(rows, "slow.duckdb"))
    assert ak.query("SELECT count__v_double FROM events WHERE id = 350", "fast.duckdb").iloc[0, 0] == 19.99
    monkeypatch.setattr(kit_source, "FAST_PATH", True)
    declared = config_for(api, columns={"id": {"data_type": "bigint"}, "count": {"data_type": "bigint"},
                                        "updated_at": {"data_type": "timestamp"}})
    error = watch.fails(declared, database="declared.duckdb")
    assert "id=350" in str(error) and "'count'" in str(error) and "19.99" in str(error)


def test_types_a_key_hint_in_dlts_name_for_the_apis_field_loads_incrementally(api, watch):
    """primary_key 'id' for the API's 'Id' (dlt names both id), as the README allows: dlt's
    incremental step looked 'id' up in each raw record, and every incremental load of such a
    resource failed with KeyError: 'id' (helper-25)."""
    api.transform = lambda body, offset: {**body, "data": [
        {("Id" if k == "id" else k): v for k, v in r.items()} for r in body["data"]]}
    config = config_for(api, columns={"updated_at": {"data_type": "timestamp"}})
    watch.succeeds(config)
    assert table() == served(api)
    later = max(parse_instant(r["updated_at"]) for r in api.records()).timestamp() + 60
    for i in (7, 8):
        api.update_record(i, updated_at=iso(later, 0), value=-float(i))  # one cursor value: the boundary
    second = watch.succeeds(config)
    assert second.rows["events"] == 2 and table() == served(api)
    assert watch.succeeds(config).rows.get("events", 0) == 0  # the boundary's records are not loaded again


@pytest.mark.parametrize("twin", [2.0, "2"], ids=["a float", "a string"])
def test_types_one_key_written_two_ways_is_one_row(api, watch, monkeypatch, twin):
    """2 and 2.0 (or "2") are two keys to Python and one in the table: the kit must not tell
    dlt the keys are distinct, or both rows stay."""
    def twice(body: dict, offset: int) -> dict:
        if offset == 0:
            body["data"].append({**body["data"][1], "id": twin, "value": -2.0})
        return body

    api.transform = twice
    watch.succeeds(config_for(api, columns={"id": {"data_type": "bigint", "nullable": False},
                                            "updated_at": {"data_type": "timestamp"}}))
    counts = ak.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM events")
    assert counts.n[0] == counts.d[0] == 500


def test_types_a_record_without_its_primary_key_is_named(api, watch):
    api.transform = lambda body, offset: {**body, "data": [
        {k: v for k, v in r.items() if k != "id" or r["id"] != 333} for r in body["data"]]}
    error = watch.fails(config_for(api, columns={"updated_at": {"data_type": "timestamp"}}))
    text = str(error)
    assert "primary key 'id' is missing or null in record 33 on GET" in text and "offset=300&" in text, text


@pytest.mark.parametrize("fast", [True, False], ids=["arrow pages", "dicts"])
@pytest.mark.parametrize("odd", [{"v": 333}, [333]], ids=["an object", "a list"])
def test_types_a_primary_key_sent_as_an_object_is_named(api, watch, monkeypatch, fast, odd):
    """It failed with "TypeError: unhashable type: 'dict'", naming no record, key or request."""
    monkeypatch.setattr(kit_source, "FAST_PATH", fast)
    api.transform = with_value({333: odd}, field="id")
    error = watch.fails(config_for(api))
    assert f"primary key 'id' is {odd!r} in record 33 on GET" in str(error) and "offset=300&" in str(error), error
    assert table() == {}


def test_types_a_declared_column_refuses_another_type_naming_record_column_and_request(api, watch):
    api.transform = with_value({350: "abc"})
    columns = {"id": {"data_type": "bigint", "nullable": False},
               "updated_at": {"data_type": "timestamp", "nullable": False},
               "value": {"data_type": "double"}}
    error = watch.fails(config_for(api, columns=columns))
    text = str(error)
    assert "id=350" in text and "'value'" in text and "offset=300" in text and "'abc'" in text, text
    assert table() == {}


# What keeps a resource's records dicts, for dlt's normaliser: a nested list, a map step.
AS_DICTS = {"a nested list": lambda config: None, "a map step": lambda config: config["resources"][0].update(
    processing_steps=[{"map": lambda record: record}])}


@pytest.mark.parametrize("dicts", list(AS_DICTS))
@pytest.mark.parametrize("column, kind, odd", [
    ("value", "double", "abc"), ("flag", "bool", ""), ("count", "bigint", "many"), ("seen_at", "timestamp", "soon"),
    ("isFlagged", "bool", "maybe"),
], ids=["text in a double", "blank in a bool", "text in a bigint", "text in a timestamp", "a field dlt renames"])
def test_types_a_declared_column_refuses_another_type_where_records_stay_dicts(api, watch, monkeypatch, dicts,
                                                                                column, kind, odd):
    """dlt's normaliser put such a value in a variant column without a word (value__v_text); the Arrow
    pages refuse it. Records that stay dicts are refused alike, after the config's own steps."""
    def served_as(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r.update(tags=[{"t": 1}] if dicts == "a nested list" else [], flag=True, count=3, seen_at=r["updated_at"],
                     isFlagged=False)
            r[column] = odd if r["id"] == 350 else r[column]
        return body

    api.transform = served_as
    config = config_for(api, columns={"id": {"data_type": "bigint", "nullable": False},
                                      "updated_at": {"data_type": "timestamp", "nullable": False},
                                      "is_flagged" if column == "isFlagged" else column: {"data_type": kind}})
    AS_DICTS[dicts](config)
    for fast in (True, False):
        monkeypatch.setattr(kit_source, "FAST_PATH", fast)
        error = watch.fails(config)
        assert "id=350" in str(error) and repr(column) in str(error) and f"of type {kind}" in str(error), error
        assert "GET /v1/events?" in str(error) and "offset=300&" in str(error), error  # the record's request
        assert table() == {}


@pytest.mark.parametrize("dicts", [*AS_DICTS, "no step"])
@pytest.mark.parametrize("nested, column, kind, odd", [
    ({"meta": {"score": "high"}}, "meta__score", "bigint", "high"),
    ({"meta": {"inner": {"seenAt": "soon"}}}, "meta__inner__seen_at", "timestamp", "soon"),
], ids=["meta.score", "meta.inner.seenAt"])
def test_types_a_declared_flattened_column_refuses_another_type(api, watch, monkeypatch, dicts, nested, column, kind,
                                                                odd):
    """dlt flattens ``meta: {"score": ...}`` into the column ``meta__score``: a value that column cannot hold went
    to a variant column (``meta__score__v_text``) without a word, as a top-level field's did."""
    def served_as(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r.update(tags=[{"t": 1}] if dicts == "a nested list" else [],
                     meta={"score": r["id"], "inner": {"seenAt": r["updated_at"]}})
            if r["id"] == 350:
                r.update(nested)
        return body

    api.transform = served_as
    config = config_for(api, columns={"id": {"data_type": "bigint", "nullable": False},
                                      "updated_at": {"data_type": "timestamp", "nullable": False},
                                      column: {"data_type": kind}})
    AS_DICTS.get(dicts, lambda config: None)(config)
    for fast in (True, False):
        monkeypatch.setattr(kit_source, "FAST_PATH", fast)
        error = watch.fails(config)
        assert "id=350" in str(error) and repr(column) in str(error) and repr(odd) in str(error), error
        assert f"of type {kind}" in str(error) and "offset=300&" in str(error), error
        assert table() == {}


@pytest.mark.parametrize("dicts", [*AS_DICTS, "no step"])
@pytest.mark.parametrize("odd, problem", [
    (1772323200, "more digits than decimal(10,2) holds"), ("123456789.9", "more digits than decimal(10,2) holds"),
    ("NaN", "which no decimal holds"), ("inf", "which no decimal holds"), ("-Infinity", "which no decimal holds"),
], ids=["Unix seconds", "a numeric string", "NaN", "inf", "-Infinity"])
def test_types_a_declared_decimal_refuses_a_value_it_cannot_hold(api, watch, monkeypatch, dicts, odd, problem):
    """dlt coerces these into a decimal(10,2), then its parquet writer failed with Arrow's own words ("Decimal
    type with precision 11 does not fit into precision inferred..."), naming no record and no column."""
    api.transform = with_value({350: odd})
    config = config_for(api, columns={"id": {"data_type": "bigint", "nullable": False},
                                      "updated_at": {"data_type": "timestamp", "nullable": False},
                                      "value": {"data_type": "decimal", "precision": 10, "scale": 2}})
    AS_DICTS.get(dicts, lambda config: None)(config)
    for fast in (True, False):
        monkeypatch.setattr(kit_source, "FAST_PATH", fast)
        error = watch.fails(config)
        assert "id=350" in str(error) and "'value'" in str(error) and problem in str(error), error
        assert "offset=300&" in str(error), error
        assert table() == {}


def test_types_a_declared_decimal_loads_the_largest_values_it_holds(api, watch):
    api.transform = with_value({350: 99999999.994, 351: "-99999999.99", 352: 1e-9})
    watch.succeeds(config_for(api, columns={"id": {"data_type": "bigint", "nullable": False},
                                            "updated_at": {"data_type": "timestamp", "nullable": False},
                                            "value": {"data_type": "decimal", "precision": 10, "scale": 2}}))
    got = ak.query("SELECT id, value::VARCHAR AS v FROM events WHERE id BETWEEN 350 AND 352 ORDER BY id")
    assert got.v.tolist() == ["99999999.99", "-99999999.99", "0.00"], got


def _served_at(where: str, sent: Any, record: int = 350):
    """A transform serving ``sent`` in the field ``where`` (``meta.price``: inside a dict) of one record, 1 elsewhere."""
    def served_as(body: dict, offset: int) -> dict:
        for r in body["data"]:
            value = sent if r["id"] == record else 1
            if "." in where:
                outer, inner = where.split(".")
                r[outer] = {inner: value}
            else:
                r[where] = value
        return body
    return served_as


KEYED = {"id": {"data_type": "bigint", "nullable": False}, "updated_at": {"data_type": "timestamp", "nullable": False}}


@pytest.mark.parametrize("where, column", [("meta.price", "meta__price"), ("unitPrice", "unit_price"),
                                           ("price", "price")])
@pytest.mark.parametrize("hint, sent, stored", [
    ({"precision": 10, "scale": 2}, 0.125, "0.13"), ({"precision": 10}, 0.125, "0.125000000"),
    ({}, 0.1234567891, "0.123456789"), ({"precision": 10, "scale": 2}, "-99999999.994", "-99999999.99"),
], ids=["decimal(10,2)", "a precision alone", "neither", "the widest"])
def test_types_a_declared_decimal_is_rounded_in_the_column_dlt_names(api, watch, where, column, hint, sent, stored):
    """dlt's parquet writer refused a value with more places than the scale (dlt's default scale, 9, where the
    hint gives none); the kit rounds it as an INSERT would, in a field dlt renames or flattens too."""
    api.transform = _served_at(where, sent)
    watch.succeeds(config_for(api, columns={**KEYED, column: {"data_type": "decimal", **hint}}))
    assert ak.query(f"SELECT {column}::VARCHAR AS v FROM events WHERE id = 350").v[0] == stored


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "dicts"])
def test_types_an_integer_a_timestamp_cannot_hold_is_not_called_beyond_64_bits(api, watch, monkeypatch, fast):
    api.transform = lambda body, offset: {**body, "data": [
        {**r, "seen_at": 10**15 if r["id"] == 350 else r["updated_at"], **({} if fast else {"tags": [1]})}
        for r in body["data"]]}
    monkeypatch.setattr(kit_source, "FAST_PATH", fast)
    error = watch.fails(config_for(api, columns={**KEYED, "seen_at": {"data_type": "timestamp"}}))
    assert "has 1000000000000000 in column 'seen_at'" in str(error) and "64-bit" not in str(error), error


@pytest.mark.parametrize("where, column", [("meta.amount", "meta__amount"), ("amount", "amount")])
@pytest.mark.parametrize("sent, stored", [(2.5, "3"), ("-2.5", "-3"), ("7.49", "7"), (2**70, str(2**70))],
                         ids=["2.5", "-2.5 as text", "7.49 as text", "2**70"])
def test_types_a_declared_wei_is_rounded_to_the_destinations_scale_as_dlt_loads_it(api, watch, where, column, sent,
                                                                                   stored):
    """dlt makes a wei column DECIMAL(38,0) in DuckDB, and its own load (an INSERT) rounds 2.5 to 3; the kit's
    parquet failed with Arrow's "Rescaling Decimal value would cause data loss", naming nothing."""
    api.transform = _served_at(where, sent)
    watch.succeeds(config_for(api, columns={**KEYED, column: {"data_type": "wei"}}))
    got = ak.query(f"SELECT {column}::VARCHAR AS v, typeof({column}) AS t FROM events WHERE id = 350")
    assert (got.v[0], got.t[0]) == (stored, "DECIMAL(38,0)")


@pytest.mark.parametrize("hint, stored, shape", [({"precision": 10, "scale": 2}, "2.56", "DECIMAL(10,2)"),
                                                 ({"scale": 3}, "2.555", "DECIMAL(38,3)"),
                                                 ({"precision": 12}, "3", "DECIMAL(12,0)")])
def test_types_a_wei_given_its_own_shape_loads_as_dlts_table_has_it(api, watch, hint, stored, shape):
    """dlt's table takes a wei hint's precision and scale, its parquet writer the destination's (38,0): 2.555 in a
    wei of scale 2 was rounded to 3.00, where plain dlt's INSERT stores 2.56 (helper-86)."""
    api.transform = _served_at("amount", 2.555)
    watch.succeeds(config_for(api, columns={**KEYED, "amount": {"data_type": "wei", **hint}}))
    got = ak.query("SELECT amount::VARCHAR AS v, typeof(amount) AS t FROM events WHERE id = 350")
    assert (got.v[0], got.t[0]) == (stored, shape)


@pytest.mark.parametrize("kind", ["wei", "decimal"])
@pytest.mark.parametrize("sent", ["1e2000", "9" * 1001], ids=["1e2000", "1001 digits"])
def test_types_a_number_too_long_to_round_is_refused_naming_its_record(api, watch, kind, sent):
    """Rounding it raised decimal's InvalidOperation: "The load failed in extract", naming nothing (helper-86)."""
    api.transform = _served_at("amount", sent)
    error = watch.fails(config_for(api, columns={**KEYED, "amount": {"data_type": kind}}))
    assert "id=350" in str(error) and "more digits than decimal(38," in str(error), error
    assert len(str(error)) < 800, error  # the value quoted in part
    assert table() == {}


@pytest.mark.parametrize("hint", [{"data_type": "wei"}, {"data_type": "decimal", "precision": 10, "scale": 0}],
                         ids=["wei", "decimal(10,0)"])
def test_types_a_decimal_declared_on_a_column_stored_as_double_refuses_to_round_it(api, watch, hint):
    """dlt keeps the database's DOUBLE column whatever the new hint says, and stores 7.5 there; the kit's files
    carry the declared decimal, and 7.5 was stored as 8.0 (helper-86). It stops, naming the stored type."""
    api.set_records([{**r, "amount": r["id"] + 0.5} for r in default_records(10)])
    watch.succeeds(config_for(api, columns=dict(KEYED)))
    api.update_record(2, amount=7.5)
    error = watch.fails(config_for(api, columns={**KEYED, "amount": hint}))
    assert "id=2" in str(error) and "has 7.5" in str(error) and "where the table stores double" in str(error), error
    assert "Declare 'amount' as double" in str(error), error
    assert ak.query("SELECT amount FROM events WHERE id = 2").amount[0] == 2.5  # the last load's, whole


def _named(config: dict, name: str) -> dict:
    config["resources"][0]["name"] = name
    return config


@pytest.mark.parametrize("name, table", [("events", "events"), ("myEvents", "my_events")])
@pytest.mark.parametrize("hint", [{"data_type": "wei"}, {"data_type": "decimal", "precision": 10, "scale": 0}],
                         ids=["wei", "decimal(10,0)"])
def test_types_a_column_stays_judged_as_stored_after_a_run_with_the_new_type_succeeded(api, watch, hint, name, table):
    """dlt's schema takes the declared type after one run whose values were all whole, and the table keeps DOUBLE:
    the next run rounded 7.5 to 8.0 into it without a word, and a full refresh kept the DOUBLE column, as the
    schema showed no type to rebuild (helper-86's left item). The kit reads the table's types at the load's start.
    A resource whose table dlt renames (myEvents: my_events) was looked up by its own name, and never judged."""
    api.set_records([{**r, "amount": r["id"] + 0.5} for r in default_records(10)])
    watch.succeeds(_named(config_for(api, columns=dict(KEYED)), name))
    api.update_record(3, amount=9)
    report = watch.succeeds(_named(config_for(api, columns={**KEYED, "amount": hint}), name))  # nothing to round
    assert report.rows == {table: 1}, report.rows
    api.update_record(2, amount=7.5)
    for _ in range(2):  # and again: the schema dlt saved after the refusal says the declared type too
        error = watch.fails(_named(config_for(api, columns={**KEYED, "amount": hint}), name))
        assert "has 7.5" in str(error) and "where the table stores double" in str(error), error
    watch.succeeds(_named(config_for(api, columns={**KEYED, "amount": hint}), name), mode="full_refresh")
    got = ak.query(f"SELECT amount::VARCHAR AS v, typeof(amount) AS t FROM {table} WHERE id = 2")
    assert (got.v[0], got.t[0]) == ("8", "DECIMAL(38,0)" if hint["data_type"] == "wei" else "DECIMAL(10,0)")


@pytest.mark.parametrize("first, then, sent, stored", [
    (1.5, {"data_type": "decimal"}, 2.125, "2.125"),
    (1, {"data_type": "decimal"}, 7.5, "8"),
    (1, {"data_type": "wei"}, 7.5, "8"),
], ids=["double declared decimal", "bigint declared decimal", "bigint declared wei"])
def test_types_a_decimal_without_a_shape_over_a_retyped_column_loads_as_the_table_rounds(
        api, watch, first, then, sent, stored):
    """The stored column's type was read back with dlt's widths (a DOUBLE's 53, a BIGINT's 64), and a later decimal
    hint without its own shape merged into decimal(53,0): DuckDB's "DECIMAL type width must be between 1 and 38",
    or Arrow's "Rescaling Decimal value" (helper-91)."""
    api.set_records([{**r, "amount": first} for r in default_records(10)])
    watch.succeeds(config_for(api, columns=dict(KEYED)))
    api.update_record(3, amount=9)
    watch.succeeds(config_for(api, columns={**KEYED, "amount": {"data_type": "decimal", "precision": 12, "scale": 3}}))
    api.update_record(2, amount=sent)
    watch.succeeds(config_for(api, columns={**KEYED, "amount": then}))
    assert ak.query("SELECT amount::VARCHAR AS v FROM events WHERE id = 2").v[0] == stored


@pytest.mark.parametrize("first, declared, shape", [
    ("7", {"data_type": "bigint"}, "BIGINT"),
    (7.5, {"data_type": "text"}, "VARCHAR"),
    (7, {"data_type": "double"}, "DOUBLE"),
], ids=["text declared bigint", "double declared text", "bigint declared double"])
def test_types_a_full_refresh_rebuilds_a_column_whose_declared_type_an_incremental_run_took(
        api, watch, monkeypatch, first, declared, shape):
    """After an incremental run with a new declared type, dlt's schema says it and the table does not: the full
    refresh the README prescribes to retype a table replaced its rows into the old column. Such runs are refused now
    (helper-134); a file an earlier version loaded so is rebuilt all the same."""
    from analytics_kit.run import load as load_module

    api.set_records([{**r, "code": first} for r in default_records(10)])
    watch.succeeds(config_for(api, columns=dict(KEYED)))
    api.update_record(3, code=first)
    assert isinstance(watch.load(config_for(api, columns={**KEYED, "code": declared})), ak.ConfigError)
    with monkeypatch.context() as earlier:  # as the version before the refusal ran it
        earlier.setattr(load_module, "refuse_retyped_columns", lambda *args: None)
        assert watch.succeeds(config_for(api, columns={**KEYED, "code": declared})).rows == {"events": 1}
    watch.succeeds(config_for(api, columns={**KEYED, "code": declared}), mode="full_refresh")
    assert ak.query("SELECT typeof(code) AS t FROM events WHERE id = 2").t[0] == shape
    assert ak.query("SELECT count(*) AS n FROM events").n[0] == 10


@pytest.mark.parametrize("first, then, sent, expected", [
    ({"data_type": "decimal", "precision": 10, "scale": 2}, {"data_type": "decimal"}, 5.125,
     ("5.125000000", "DECIMAL(38,9)")),
    ({"data_type": "timestamp", "timezone": False}, {"data_type": "timestamp"}, "2025-01-01T10:00:00+02:00",
     ("2025-01-01 08:00:00+00", "TIMESTAMP WITH TIME ZONE")),
    ({"data_type": "double", "nullable": False}, {"data_type": "double", "nullable": True}, None, (None, "DOUBLE")),
], ids=["decimal(10,2) to dlt's default shape", "timestamp without a zone to dlt's default", "NOT NULL to nullable"])
def test_types_a_full_refresh_rebuilds_a_column_whose_hint_drops_or_changes_a_property(
        api, watch, first, then, sent, expected):
    """A fresh load gives a property the new hint leaves out dlt's default, but dlt's schema kept the old one (and
    the table its column): the full refresh kept DECIMAL(10,2) and rounded 5.125 to 5.13, kept TIMESTAMP, or kept
    NOT NULL and failed on a null (helper-91)."""
    api.set_records([{**r, "amount": 1 if sent is None else sent} for r in default_records(10)])
    watch.succeeds(config_for(api, columns={**KEYED, "amount": first}))
    api.update_record(3, amount=1 if sent is None else sent)
    assert watch.succeeds(config_for(api, columns={**KEYED, "amount": then})).rows == {"events": 1}
    api.update_record(2, amount=sent)
    watch.succeeds(config_for(api, columns={**KEYED, "amount": then}), mode="full_refresh")
    got = ak.query("SELECT amount::VARCHAR AS v, typeof(amount) AS t FROM events WHERE id = 2")
    assert (None if got.v.isna()[0] else got.v[0], got.t[0]) == expected


@pytest.mark.parametrize("kind", ["decimal", "wei"])
def test_types_a_full_refresh_rebuilds_a_decimal_column_the_config_no_longer_declares(api, watch, kind):
    """No data makes a decimal: a full refresh without the declaration kept DECIMAL(10,2), rounding 7.125 to 7.13,
    where a fresh load makes DOUBLE (helper-91)."""
    api.set_records([{**r, "amount": 5.0} for r in default_records(10)])
    watch.succeeds(config_for(api, columns={**KEYED, "amount": {"data_type": kind, "precision": 10, "scale": 2}}))
    api.update_record(2, amount=7.125)
    watch.succeeds(config_for(api, columns=dict(KEYED)), mode="full_refresh")
    got = ak.query("SELECT amount::VARCHAR AS v, typeof(amount) AS t FROM events WHERE id = 2")
    assert (got.v[0], got.t[0]) == ("7.125", "DOUBLE")


@pytest.mark.parametrize("name, table", [("events", "events"), ("myEvents", "my_events")])
def test_types_an_incremental_run_rounds_a_decimal_the_table_keeps_that_the_config_no_longer_declares(
        api, watch, name, table):
    """dlt's parquet writer refused 1.125 for the DECIMAL(10,2) an earlier config declared ("Rescaling Decimal value
    would cause data loss"), where dlt's INSERT rounds it to 1.13 (helper-91): the kit rounds it as the table does."""
    api.set_records([{**r, "amount": 5} for r in default_records(10)])
    watch.succeeds(_named(config_for(api, columns={**KEYED, "amount": {"data_type": "decimal", "precision": 10,
                                                                       "scale": 2}}), name))
    api.update_record(2, amount=1.125)
    api.update_record(3, amount=1.005)
    assert watch.succeeds(_named(config_for(api, columns=dict(KEYED)), name)).rows == {table: 2}
    got = ak.query(f"SELECT id, amount::VARCHAR AS v, typeof(amount) AS t FROM {table} WHERE id IN (2, 3) ORDER BY id")
    assert list(zip(got.v, got.t)) == [("1.13", "DECIMAL(10,2)"), ("1.01", "DECIMAL(10,2)")]


@pytest.mark.parametrize("sent, column, value", [("abc", "amount__v_text", "abc"), (True, "amount__v_bool", "true")],
                         ids=["text", "bool"])
def test_types_another_value_in_a_decimal_the_config_no_longer_declares_goes_to_a_variant_column_as_in_dlt(
        api, watch, sent, column, value):
    """Declared as the table holds it, such a column refused 'abc' as "which the config declares of type decimal"
    (helper-92); undeclared, dlt puts it in a variant column, and so does the kit."""
    api.set_records([{**r, "amount": 5} for r in default_records(10)])
    watch.succeeds(config_for(api, columns={**KEYED, "amount": {"data_type": "decimal", "precision": 10, "scale": 2}}))
    api.update_record(2, amount=sent)
    watch.succeeds(config_for(api, columns=dict(KEYED)))
    got = ak.query(f"SELECT amount, {column}::VARCHAR AS v FROM events WHERE id = 2")
    assert got.amount.isna()[0] and got.v[0] == value


@pytest.mark.parametrize("first, sent, shape", [
    ({"data_type": "text", "nullable": False}, None, None),
    ({"data_type": "timestamp", "timezone": False}, "2025-01-01T10:00:00+02:00", "TIMESTAMP WITH TIME ZONE"),
], ids=["NOT NULL", "without a time zone"])
def test_types_a_full_refresh_rebuilds_a_column_whose_declaration_went_with_what_no_data_makes(
        api, watch, first, sent, shape):
    """A fresh load types an undeclared column from the data, nullable and with a time zone: the full refresh kept
    the NOT NULL of a declaration since removed, and failed on a null (helper-92)."""
    api.set_records([{**r, "amount": sent or "x"} for r in default_records(10)])
    watch.succeeds(config_for(api, columns={**KEYED, "amount": first}))
    api.update_record(2, amount=sent)
    watch.succeeds(config_for(api, columns=dict(KEYED)), mode="full_refresh")
    got = ak.query("SELECT amount::VARCHAR AS v, typeof(amount) AS t FROM events WHERE id = 2")
    assert (None if got.v.isna()[0] else got.t[0]) == shape


@pytest.mark.parametrize("hint", [{"data_type": "decimal", "precision": 10, "scale": 2},
                                  {"data_type": "double", "nullable": False}], ids=["decimal", "NOT NULL"])
def test_types_a_full_refresh_of_an_unchanged_config_declaring_a_nested_field_does_not_rebuild(api, watch, hint):
    """meta__price was matched to its hint by dlt's name of a single identifier (meta_price), so a full refresh
    thought the declaration removed and rebuilt the tables every time (helper-93)."""
    api.transform = _served_at("meta.price", 2.5)
    config = config_for(api, columns={**KEYED, "meta__price": hint})
    watch.succeeds(config)
    watch.succeeds(config, mode="full_refresh")
    api.update_record(350)
    watch.succeeds(config)  # nor does an incremental run take the declared column for one the config left out
    assert "rebuilds the tables" not in watch.log.getvalue()
    assert "declared as stored" not in watch.log.getvalue()
    assert ak.query("SELECT meta__price AS p FROM events WHERE id = 350").p[0] == 2.5


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("first, sent, variant, value", [
    (1.5, "abc", "amount__v_text", "abc"),
    (1, 7.5, "amount__v_double", "7.5"),
], ids=["text into a stored double", "a fraction into a stored bigint"])
def test_types_a_later_runs_value_of_another_type_in_an_undeclared_column_goes_to_a_variant_column(
        api, watch, first, sent, variant, value, concurrency):
    """The fast path typed a run's new columns by that run's first value, not the table's: "abc" into a DOUBLE
    column failed in the load step with DuckDB's "Could not convert string", and 7.5 into a BIGINT one was stored
    as 8. dlt coerces into the column the table has, and puts what it cannot in a variant column (helper-93)."""
    api.set_records([{**r, "amount": first} for r in default_records(300)])
    watch.succeeds(config_for(api, columns=dict(KEYED), concurrency=concurrency))
    api.update_record(250, amount=sent)
    # every record served so: the run's first value, the record at the stored cursor's, is of the other type too
    api.transform = lambda body, offset: {**body, "data": [{**r, "amount": sent} for r in body["data"]]}
    watch.succeeds(config_for(api, columns=dict(KEYED), concurrency=concurrency))
    got = ak.query(f"SELECT amount, {variant}::VARCHAR AS v FROM events WHERE id = 250")
    assert got.amount.isna()[0] and got.v[0] == value
    assert ak.query("SELECT count(*) AS n FROM events WHERE amount IS NOT NULL").n[0] == 299


@pytest.mark.parametrize("later", [True, False], ids=["a later run", "one page"])
def test_types_an_integer_beyond_64_bits_in_a_column_the_table_has_as_double_is_refused_as_in_dlt(api, watch, later):
    """Typed as the table has it (double), 2**70 loaded as 1.18e21 without a word, where dlt's extract refuses it,
    as an undeclared column's always was (helper-94); a declared double takes it (see the README)."""
    api.set_records([{**r, "amount": 1.5 if r["id"] == 1 or later else 2**70} for r in default_records(10)])
    if later:
        watch.succeeds(config_for(api, columns=dict(KEYED)))
        api.update_record(2, amount=2**70)
        api.transform = lambda body, offset: {**body, "data": [{**r, "amount": 2**70} for r in body["data"]]}
    error = watch.fails(config_for(api, columns=dict(KEYED)))
    assert "beyond 64 bits" in str(error), error


@pytest.mark.parametrize("amounts, columns", [((5, 1.7976931348623157e308), {}),
                                               (("1", "9223372036854775808"), {"amount": {"data_type": "bigint"}})])
def test_types_a_number_too_large_for_a_bigint_column_is_named_for_what_it_is(watch, amounts, columns):
    """A float such as 1e308 in a column its first value typed bigint, or text past 2**63 in a declared bigint: the
    message said "the API got an integer beyond 64 bits" where it sent neither (helper-142)."""
    with Adversary(default_records(2), key=watch.canary) as api:
        api.set_records([{**r, "amount": amount} for r, amount in zip(default_records(2), amounts)])
        error = watch.fails(config_for(api, columns={**KEYED, **columns}))
        assert "a value such as 1e308 in a column declared bigint or typed so by its first values" in str(error)
        assert "not bigint" in error.guidance


@pytest.mark.parametrize("values", [(5, "2024-01-01T00:00:00Z", "NULL"), ("2024-01-01T00:00:00Z", 2**63 - 1)])
def test_types_a_value_dlts_normaliser_cannot_convert_names_the_column_that_changed_type(watch, values):
    """dlt's normaliser fails on some runs of types in one undeclared column (a variant column each): the load said
    "failed in normalize: ValueError: could not convert string to float: 'NULL'" (or "OSError: [Errno 75]") and "fix
    the cause", naming nothing (helper-142). Declared text, the column loads."""
    records = [{**r, "mixed": value} for r, value in zip(default_records(len(values)), values)]
    with Adversary(records, key=watch.canary) as api:
        error = watch.fails(config_for(api, columns=dict(KEYED)))
        assert "dlt's normaliser could not convert a value" in str(error), error
        assert "Columns whose values changed type: mixed (resource events)" in str(error) and "data_type" in error.guidance
        watch.succeeds(config_for(api, columns={**KEYED, "mixed": {"data_type": "text"}}))
        got = ak.query("SELECT mixed FROM events ORDER BY id").mixed.tolist()
        assert got == [str(value) for value in values], got


@pytest.mark.parametrize("first, then, sent, stored, shape", [
    ({"data_type": "decimal", "precision": 10, "scale": 2}, {"data_type": "decimal", "precision": 10, "scale": 4},
     2.54499, "2.54", "DECIMAL(10,2)"),
    (None, {"data_type": "wei"}, 7.5, "8", "BIGINT"),
    (None, {"data_type": "decimal", "precision": 10, "scale": 4}, 2.5549, "3", "BIGINT"),
], ids=["decimal(10,2) declared (10,4)", "bigint declared wei", "bigint declared decimal(10,4)"])
def test_types_a_decimal_declared_over_a_stored_exact_number_is_rounded_once_as_dlt_stores_it(
        api, watch, first, then, sent, stored, shape):
    """The kit rounded to the declared scale, and the database again to its column's: 2.54499 became 2.545, then
    2.55, where dlt's INSERT stores 2.54 (helper-87)."""
    api.set_records([{**r, "amount": r["id"]} for r in default_records(10)])
    watch.succeeds(config_for(api, columns={**KEYED, **({"amount": first} if first else {})}))
    api.update_record(2, amount=sent)
    watch.succeeds(config_for(api, columns={**KEYED, "amount": then}))
    got = ak.query("SELECT amount::VARCHAR AS v, typeof(amount) AS t FROM events WHERE id = 2")
    assert (got.v[0], got.t[0]) == (stored, shape)


def _as_list(columns: dict) -> list:
    return [{"name": name, **hint} for name, hint in columns.items()]


@pytest.mark.parametrize("listed", ["", "defaults", "resource", "both"])
@pytest.mark.parametrize("defaults, own", [
    ({"data_type": "wei", "precision": 10, "scale": 2}, {"data_type": "wei"}),
    ({"data_type": "wei"}, {"precision": 10, "scale": 2}),
    ({"data_type": "decimal", "precision": 10}, {"data_type": "decimal", "scale": 2}),
], ids=["the shape in the defaults", "the type in the defaults", "a decimal split"])
def test_types_a_decimal_split_between_resource_defaults_and_the_resource_is_shaped_as_dlt_merges_it(
        api, watch, defaults, own, listed):
    """Shaped hint by hint, a wei(10,2) split so was rounded as (38,0), 2.555 to 3.00; dlt merges the two, in
    dict or list form, into one column first (helper-87, helper-88)."""
    api.transform = _served_at("amount", 2.555)
    config = config_for(api, columns={**KEYED, "amount": own})
    config["resource_defaults"]["columns"] = {"amount": defaults}
    for place in (["defaults", "resource"] if listed == "both" else [listed] if listed else []):
        holder = config["resource_defaults"] if place == "defaults" else config["resources"][0]
        holder["columns"] = _as_list(holder["columns"])
    watch.succeeds(config)
    got = ak.query("SELECT amount::VARCHAR AS v, typeof(amount) AS t FROM events WHERE id = 350")
    assert (got.v[0], got.t[0]) == ("2.56", "DECIMAL(10,2)")
    config["resource_defaults"]["columns"] = {"amount": {"precision": 39}}
    config["resources"][0]["columns"] = {**KEYED, "amount": {"data_type": own.get("data_type", defaults["data_type"])}}
    with pytest.raises(ak.ConfigError, match="from 1 to 38"):  # before any request, as a precision in one place is
        ak.load(config, progress=False)


def test_types_hints_one_resource_adds_to_shared_defaults_reach_the_next_resource_as_in_dlt(api, watch):
    """rest_api merges a resource's columns into a shallow copy of resource_defaults', so its hints reach the
    resources after it: dlt stored both tables' 2.555 as 2.56; the kit, merging each on its own, 3.00 (helper-88)."""
    api.transform = _served_at("amount", 2.555)
    config = config_for(api, columns={**KEYED, "amount": {"precision": 10, "scale": 2}})
    config["resource_defaults"]["columns"] = {"amount": {"data_type": "wei"}}
    second = copy.deepcopy(config["resources"][0])
    second.update(name="events_again", table_name="events_again", columns={**KEYED, "amount": {"nullable": True}})
    config["resources"].append(second)
    watch.succeeds(config)
    for table in ("events", "events_again"):
        got = ak.query(f"SELECT amount::VARCHAR AS v, typeof(amount) AS t FROM {table} WHERE id = 350")
        assert (got.v[0], got.t[0]) == ("2.56", "DECIMAL(10,2)"), table


def test_types_a_value_too_wide_for_a_decimal_over_a_stored_column_says_to_declare_the_stored_type(api, watch):
    api.set_records([{**r, "amount": r["id"]} for r in default_records(10)])
    watch.succeeds(config_for(api, columns=dict(KEYED)))
    api.update_record(2, amount=12345)
    error = watch.fails(config_for(api, columns={**KEYED, "amount": {"data_type": "decimal", "precision": 4,
                                                                       "scale": 2}}))
    assert "more digits than decimal(4,2) holds" in str(error), error
    assert "Declare 'amount' as bigint, as the table holds it" in str(error), error


@pytest.mark.parametrize("stored, sent", [({"data_type": "decimal", "precision": 6, "scale": 1}, 99.96),
                                          ({"data_type": "bigint"}, 123.4)], ids=["decimal(6,1)", "bigint"])
def test_types_a_value_rounded_as_stored_yet_too_wide_for_the_declared_decimal_is_refused_naming_it(
        api, watch, stored, sent):
    """99.96 rounds to 100.0 in the table's decimal(6,1), and the kit's file carries decimal(4,2), where 100.00 has
    five digits: Arrow's "Decimal type with precision 4 does not fit" stopped the load, naming nothing (helper-92)."""
    api.set_records([{**r, "amount": 7} for r in default_records(10)])
    watch.succeeds(config_for(api, columns={**KEYED, "amount": stored}))
    api.update_record(2, amount=sent)
    error = watch.fails(config_for(api, columns={**KEYED, "amount": {"data_type": "decimal", "precision": 4,
                                                                       "scale": 2}}))
    assert "id=2" in str(error) and "more digits than decimal(4,2) holds" in str(error), error
    assert "as the table holds it" in str(error), error


def test_types_a_declared_wei_refuses_more_digits_than_its_column_holds(api, watch):
    api.transform = _served_at("amount", 10**39)
    error = watch.fails(config_for(api, columns={**KEYED, "amount": {"data_type": "wei"}}))
    assert "id=350" in str(error) and "more digits than decimal(38,0) holds" in str(error), error
    assert "of type wei" in str(error) and "as double or text" in str(error), error
    assert table() == {}


def test_types_a_decimal_in_dlts_list_of_columns_gets_dlts_default_scale(api, watch):
    api.transform = _served_at("price", 0.125)
    config = config_for(api, columns=[{"name": name, **hint} for name, hint in KEYED.items()]
                        + [{"name": "price", "data_type": "decimal", "precision": 10}])
    watch.succeeds(config)
    assert ak.query("SELECT price::VARCHAR AS v FROM events WHERE id = 350").v[0] == "0.125000000"


@pytest.mark.parametrize("where, column", [("meta.price", "meta__price"), ("unitPrice", "unit_price")])
@pytest.mark.parametrize("hint, sent, problem", [
    ({"precision": 10, "scale": 2}, 1772323200, "more digits than decimal(10,2) holds"),
    ({"precision": 10}, 123456789012, "more digits than decimal(10,9) holds"),
    ({"precision": 10, "scale": 2}, "NaN", "which no decimal holds"),
], ids=["Unix seconds", "dlt's default scale", "NaN"])
def test_types_a_declared_decimal_in_the_column_dlt_names_refuses_what_it_cannot_hold(api, watch, where, column,
                                                                                         hint, sent, problem):
    api.transform = _served_at(where, sent)
    error = watch.fails(config_for(api, columns={**KEYED, column: {"data_type": "decimal", **hint}}))
    assert "id=350" in str(error) and repr(column) in str(error) and problem in str(error), error
    assert "offset=300&" in str(error), error
    assert table() == {}


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "dicts"])
@pytest.mark.parametrize("column, hint, odd", [("value", {"data_type": "double"}, "abc"),
                                               ("price", {"data_type": "decimal", "precision": 10, "scale": 2}, "NaN")])
def test_types_a_record_the_incremental_drops_is_not_judged_by_the_declared_types(api, watch, monkeypatch, fast,
                                                                                  column, hint, odd):
    """A record older than the cursor's start (an API that ignores the start parameter) is dropped by dlt's
    incremental step: plain dlt loads without it, so the kit may not stop on its values."""
    def served_as(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r.setdefault("price", 1)
            if r["id"] == 350:
                r.update({column: odd, "updated_at": "2025-06-01T00:00:00Z"})
        return body

    api.transform = served_as
    monkeypatch.setattr(kit_source, "FAST_PATH", fast)
    report = watch.succeeds(config_for(api, columns={**KEYED, column: hint}))
    assert report.rows["events"] == 499 and 350 not in table() and len(table()) == 499, report


def test_types_a_dict_below_max_table_nesting_is_kept_whole_and_not_judged(api, watch):
    """With max_table_nesting 1, dlt keeps ``a.b`` whole (JSON in a__b): a declared a__b__c is no column of it."""
    api.transform = lambda body, offset: {**body, "data": [
        {**r, "a": {"b": {"c": "deep" if r["id"] == 350 else r["id"]}}} for r in body["data"]]}
    config = config_for(api, columns={**KEYED, "a__b__c": {"data_type": "bigint"}})
    config["resources"][0]["max_table_nesting"] = 1
    watch.succeeds(config)
    assert ak.query("SELECT a__b FROM events WHERE id = 350").a__b[0] is not None
    assert not [c for c in ak.describe("events").column if "__v_" in c]


def test_types_an_inner_field_named_with_dlts_separator_is_judged_by_its_column(api, watch):
    """dlt names ``meta: {"a__b": ...}`` meta__a__b, keeping the inner field's separator."""
    api.transform = _served_at("meta.a__b", "high")
    error = watch.fails(config_for(api, columns={**KEYED, "meta__a__b": {"data_type": "bigint"}}))
    assert "id=350" in str(error) and "'meta__a__b'" in str(error), error


@pytest.mark.parametrize("key, named", [(["id", "updated_at"], "id=350, updated_at="), ("record_id", "recordId=350")],
                         ids=["a key of several fields", "a key in dlt's naming"])
def test_types_a_refused_value_names_its_record_by_its_key_as_the_api_sends_it(api, watch, key, named):
    """The error said "record 51 of the page" where the key had several fields, or was declared in dlt's
    naming (record_id) for the API's recordId."""
    def served_as(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r.update(recordId=r["id"], tags=[{"t": 1}], value="abc" if r["id"] == 350 else r["value"])
        return body

    api.transform = served_as
    config = config_for(api, columns={**KEYED, "value": {"data_type": "double"}})
    config["resource_defaults"]["primary_key"] = key
    error = watch.fails(config)
    assert f"the record with {named}" in str(error) and "offset=300&" in str(error), error


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "dicts"])
def test_types_a_declared_json_column_parses_text_and_refuses_what_dlt_would_not_store(api, watch, monkeypatch, fast):
    """dlt's coercion parses text into a json column ("{\\"device\\": \\"ios\\"}" is that object): the Arrow
    pages stored it as a JSON string, which ->> could not read; a number or "abc" there went to a variant
    column on dicts and into the column on Arrow pages, refused on neither."""
    def served_as(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r["props"] = '{"device": "ios"}' if r["id"] % 2 else {"device": "web"}
        return body

    api.transform = served_as
    monkeypatch.setattr(kit_source, "FAST_PATH", fast)
    config = config_for(api, columns={**KEYED, "props": {"data_type": "json"}})
    watch.succeeds(config)
    assert ak.query("SELECT props->>'device' AS d FROM events WHERE id IN (7, 8) ORDER BY id").d.tolist() == [
        "ios", "web"]
    for odd in (5, "abc", True, '"x"', '"123"'):  # JSON text of a string: dlt stored 123, or failed on x
        api.transform = lambda body, offset, odd=odd: {**body, "data": [
            {**r, "props": odd if r["id"] == 480 else {"device": "web"}} for r in body["data"]]}
        error = watch.fails(config_for(api, columns={**KEYED, "props": {"data_type": "json"}}),
                            database=f"{odd}.duckdb")
        assert "id=480" in str(error) and "'props'" in str(error) and "of type json" in str(error), error


def test_types_a_declared_flattened_column_loads_what_dlt_coerces(api, watch):
    """The check reads the flattened columns as dlt does: a declared ``meta__score`` takes "5", and a ``meta``
    declared json is kept whole, not flattened, so its fields are no column's."""
    def served_as(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r.update(meta={"score": str(r["id"])}, blob={"score": "any text"})
        return body

    api.transform = served_as
    report = watch.succeeds(config_for(api, columns={"id": {"data_type": "bigint", "nullable": False},
                                                     "updated_at": {"data_type": "timestamp", "nullable": False},
                                                     "meta__score": {"data_type": "bigint"},
                                                     "blob": {"data_type": "json"}}))
    assert report.rows["events"] == 500
    assert ak.query("SELECT meta__score FROM events WHERE id = 7").iloc[0, 0] == 7
    assert not [c for c in ak.describe("events").column if "__v_" in c or c.startswith("blob__")]


def test_types_values_dlt_coerces_into_a_declared_column_load_where_records_stay_dicts(api, watch, monkeypatch):
    """What dlt's normaliser coerces ("5" into a bigint, "true" into a bool, Unix seconds into a timestamp)
    is no other type, and an empty list or dict it flattens to nothing: the check refuses only what dlt would
    put in a variant column."""
    def served_as(body: dict, offset: int) -> dict:
        for r in body["data"]:
            r.update(tags=[{"t": 1}], count=str(r["id"]), flag=("true", "false", 1, 0)[r["id"] % 4],
                     seen_at=1767225600 + r["id"], value=r["id"] if r["id"] % 2 else r["value"])
            if r["id"] == 9:  # dlt flattens these rather than coerce them: no value, or a column value__a
                r.update(value=[], count={})
        return body

    api.transform = served_as
    config = config_for(api, columns={"id": {"data_type": "bigint", "nullable": False},
                                      "updated_at": {"data_type": "timestamp", "nullable": False},
                                      "count": {"data_type": "bigint"}, "flag": {"data_type": "bool"},
                                      "seen_at": {"data_type": "timestamp"}, "value": {"data_type": "double"}})
    report = watch.succeeds(config)
    assert report.rows["events"] == 500
    got = ak.query("SELECT count, flag, seen_at FROM events WHERE id = 7").iloc[0].tolist()  # "7", 0, 1767225607
    assert got[:2] == [7, False] and got[2].isoformat() == "2026-01-01T00:00:07+00:00", got
    assert not [c for c in ak.describe("events").column if "__v_" in c]


# -- 7b. fields that dlt would put into one column --------------------------------------------------


@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
@pytest.mark.parametrize("fields, column", [
    ({"Deleted": True}, "deleted"),     # after the record's own deleted=False: would flip the soft delete
    ({"ID": 9999}, "id"),               # would replace the primary key
    ({"Value": -1.0}, "value"),         # would overwrite a declared value
    ({"_dlt_id": "same"}, "_dlt_id"),   # would replace dlt's row ids
    ({"__": 4}, "__"),                  # dlt names it no column: its value was lost without a word (helper-152)
], ids=["deleted and Deleted", "id and ID", "value and Value", "_dlt_id", "__"])
def test_fields_dlt_names_alike_in_one_record_are_refused(watch, mode, fields, column):
    with Adversary(n=150) as api:
        watch.succeeds(config_for(api))
        before, cursor = table(), ak.state()["cursors"]
        api.reset()
        api.transform = lambda body, offset: {**body, "data": [
            {**r, "deleted": False, **fields} for r in body["data"]]}  # the incremental run's one record too
        error = watch.fails(config_for(api), mode=mode)
        assert "a record on GET /v1/events" in str(error) and repr(column) in str(error), error
        assert ("Rename or drop the field" if column in fields else "Rename or drop one of the fields") in error.guidance
        assert table() == before and ak.state()["cursors"] == cursor  # nothing committed


def test_fields_dlt_keeps_apart_load_as_dlt_loads_them(watch):
    """dlt's normaliser keeps a path separator: "a__b" and "a_b" are two columns, not a clash; a
    blank field name is its "_empty" column."""
    with Adversary(n=150) as api:
        api.transform = lambda body, offset: {**body, "data": [
            {**r, "a__b": 1, "a_b": 2, " ": "blank"} for r in body["data"]]}
        watch.succeeds(config_for(api))
        row = ak.query("SELECT a__b, a_b, _empty FROM events LIMIT 1").iloc[0].tolist()
        assert row == [1, 2, "blank"], row


def test_a_clash_renamed_by_a_processing_step_loads(watch):
    """What the clash's error suggests works: a map step that renames one of the fields."""
    def rename(record: dict) -> dict:
        record["deleted_upstream"] = record.pop("Deleted")
        return record

    with Adversary(n=150) as api:
        api.transform = lambda body, offset: {**body, "data": [
            {**r, "deleted": False, "Deleted": r["id"] == 7} for r in body["data"]]}
        config = config_for(api)
        with pytest.raises(ak.LoadError, match="'Deleted' and 'deleted'") as raised:
            ak.load(config, progress=False)
        assert "processing_steps" in raised.value.guidance
        config["resources"][0]["processing_steps"] = [{"map": rename}]
        watch.succeeds(config)
        flags = ak.query("SELECT id FROM events WHERE deleted_upstream")
        assert flags.id.tolist() == [7] and len(ak.query("SELECT id FROM events")) == 150


def test_a_field_renamed_between_records_loads_into_one_column(watch):
    """Not two fields of one record: an API that renamed a field (userId, later user_id) is merged
    as dlt merges it, into one column."""
    with Adversary(n=150) as api:
        api.transform = lambda body, offset: {**body, "data": [
            {**r, ("userId" if r["id"] % 2 else "user_id"): r["id"] * 10} for r in body["data"]]}
        watch.succeeds(config_for(api))
        users = ak.query("SELECT id, user_id FROM events ORDER BY id")
        assert (users.user_id == users.id * 10).all() and len(users) == 150


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "dlt's path"])
def test_a_primary_key_renamed_between_records_is_found_in_each(watch, monkeypatch, fast):
    """The key's field was worked out from the first record and looked up under that name in all:
    a listing that renamed it (userId, later user_id) failed as 'the primary key is missing' (helper-26)."""
    monkeypatch.setattr(kit_source, "FAST_PATH", fast)
    with Adversary(n=150) as api:
        api.transform = lambda body, offset: {**body, "data": [
            {(("userId" if r["id"] < 70 else "user_id") if k == "id" else k): v for k, v in r.items()}
            for r in body["data"]]}
        watch.succeeds(config_for(api, columns={"updated_at": {"data_type": "timestamp"}}) | {
            "resource_defaults": {"primary_key": "user_id", "write_disposition": "merge"}})
        assert ak.query("SELECT count(DISTINCT user_id) AS n FROM events").n[0] == 150


# -- 8. the failing request is named ---------------------------------------------------------------


@pytest.mark.parametrize("at", [100, 300])
@pytest.mark.parametrize("fault, said", [
    (lambda api, at: setattr(api, "transform", lambda body, offset: b"{not json" if offset == at else body),
     "not valid JSON"),
    (lambda api, at: setattr(api, "transform", lambda body, offset: {"items": []} if offset == at else body),
     "no 'data' in the response"),
    (lambda api, at: api.fail(500, times=None, offset=at), "HTTP 500"),
], ids=["broken JSON", "no data", "HTTP 500"])
def test_request_named_is_the_failing_page(api, watch, fault, said, at):
    fault(api, at)
    error = watch.fails(config_for(api, concurrency=8))
    text = str(error)
    assert said in text and f"offset={at}&" in text, text
    assert sum(f"offset={o}&" in text for o in range(0, 600, 100)) == 1


# -- 9. secrets of any length, and keys written into the config --------------------------------------


@pytest.mark.parametrize("key", ["Zq~", "§"])
def test_secret_a_short_key_is_masked_too(watch, key):
    watch.canary = key
    with Adversary(n=150, key=key) as api:
        api.fail(500, times=None, offset=100)
        error = watch.fails(config_for(api))
        assert "api_key=***" in str(error)
        broken = config_for(api)
        broken["client"]["auth"]["locaton"] = "query"  # a misspelled key next to the secret
        with pytest.raises(ak.ConfigError) as config_error:
            ak.load(broken)
        watch.errors.append(config_error.value)


@pytest.mark.parametrize("where", ["total", "a declared value", "a cursor value", "a field name"])
def test_secret_echoed_by_the_api_is_masked(api, watch, where):
    key = api.key
    if where == "total":
        api.total = key
        watch.succeeds(config_for(api))
    elif where == "a declared value":
        api.transform = with_value({7: key})
        watch.fails(config_for(api, columns={"id": {"data_type": "bigint"}, "value": {"data_type": "double"},
                                              "updated_at": {"data_type": "timestamp"}}))
    elif where == "a cursor value":
        api.transform = with_value({7: key}, "updated_at")
        watch.fails(config_for(api))
    else:
        api.transform = lambda body, offset: {key: body["data"], "total": body["total"]}
        watch.fails(config_for(api))
    # the watch fixture searches the report, the errors, the logs and the files for the key


@pytest.mark.parametrize("where", ["records", "an error page", "the total, an auth with no secret of its own"])
def test_secret_an_oauth2_token_obtained_during_the_load_is_a_secret_too(watch, where):
    """A token the load obtains is known to no config: echoed into the records it was stored in the table and the
    package's files (helper-111), and an error page quoting it would have shown it. Sent by an auth whose config
    held no secret, it was learned into a throwaway redactor and showed in a warning and the log (helper-113)."""
    token = watch.canary  # what the token endpoint hands out; the client secret is another
    requests_seen: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._json(200, {"access_token": token, "token_type": "bearer", "expires_in": 3600})

        def do_GET(self) -> None:  # noqa: N802
            requests_seen.append(self.path)
            sent = self.headers.get("Authorization", "")
            if where == "an error page":
                body = f"<html>token {sent.split()[-1]} is not allowed here</html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if where.endswith("of its own"):
                self._json(200, {"data": [{"id": 1, "note": "ok"}], "total": f"x {sent.split()[-1]} x"})
                return
            self._json(200, {"data": [{"id": 1, "note": f"called with {sent}"}], "total": 1})

        def _json(self, status: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        @configspec
        class SessionAuth(AuthConfigBase):  # fetches its token as the load runs; nothing secret in the config
            def __call__(self, request: Any) -> Any:
                request.headers["Authorization"] = f"Token {token}"
                return request

        config = {"client": {"base_url": base, "auth": SessionAuth() if where.endswith("of its own") else {
            "type": "oauth2_client_credentials", "access_token_url": f"{base}/token", "client_id": "kit",
            "client_secret": "a-client-secret-1"}},
            "resources": [{"name": "items", "endpoint": {"path": "/items", "data_selector": "data", "paginator": {
                "type": "offset", "limit": 10, "total_path": "total"} if where.endswith("of its own") else
                "single_page"}}]}
        outcome = watch.load(config)
        assert requests_seen and ("sent your credentials back" in str(outcome) if where == "records" else True)
    finally:
        server.shutdown()
        server.server_close()
    # the watch fixture searches the errors, the logs and the files for the token


def test_an_authorization_header_as_bytes_or_a_bare_scheme_word_loads(watch):
    """requests takes a header's value as bytes: learning the credential failed every load with a TypeError; a
    value of one word ("Anonymous") was learned, and records saying "Anonymous visitor" refused (helper-114)."""
    @configspec
    class Headered(AuthConfigBase):
        value: Any = None

        def __call__(self, request: Any) -> Any:
            request.headers["Authorization"] = self.value
            return request

    with Adversary(n=120, key=watch.canary) as api:
        api.transform = lambda body, offset: {**body, "data": [{**record, "kind": "Anonymous visitor"}
                                                               for record in body["data"]]}
        for value in (f"Bearer {watch.canary}".encode(), "Anonymous"):
            config = config_for(api)
            config["client"]["auth"] = Headered(value=value)
            config["resources"][0]["endpoint"]["params"] = {"api_key": api.key}  # the adversary's key, in the query
            report = watch.succeeds(config, mode="full_refresh")
            assert report.rows["events"] == 120


# (a tab is refused before any request now, helper-125: a no-break space is what repr() escapes instead)
@pytest.mark.parametrize("key", ["Zq7\\Tk9-wLp4", "Zq7'Tk9\"wLp4", "Zq7\u00e9Tk9\u00a0wLp4"],
                         ids=["a backslash", "quotes", "non-ASCII and a no-break space"])
def test_secret_with_characters_that_messages_escape_is_masked(watch, key):
    watch.canary = key
    with Adversary(n=150, key=key) as api:
        api.total = key  # echoed into a warning, which quotes it with repr()
        watch.succeeds(config_for(api))
        api.reset()
        api.transform = with_value({7: key})  # echoed into the records
        watch.fails(config_for(api, incremental=False, columns={"value": {"data_type": "double"}}))
    # the fixture searches everything, for the escaped forms too
    for escaped in (repr(key)[1:-1], json.dumps(key)[1:-1]):
        assert escaped not in watch.log.getvalue()


def test_a_short_secret_of_letters_is_masked_as_a_word_not_inside_the_kits_own_words():
    """A basic-auth username "user" turned the advice into "its ***name and its password" (helper-155); it is still
    masked wherever it stands as a value, and a short secret with a digit wherever it stands."""
    redact = Redactor(["user", "pass", "ab1cd"])
    assert redact("its username and its password") == "its username and its password"
    assert redact("GET /x?u=user&p=pass 'user' Basic user:pass") == "GET /x?u=***&p=*** '***' Basic ***:***"
    assert redact("xab1cdx") == "x***x"


def test_secret_percent_encoded_in_any_common_way_is_masked():
    """A key pasted into a URL by hand: "+" and "=" encoded, "/" kept, as most tools encode a URL."""
    key = "s3cr3t+k/ey=XYZ"
    redact = Redactor([key])
    for form in ("s3cr3t%2Bk/ey%3DXYZ", "s3cr3t%2Bk%2Fey%3DXYZ", "s3cr3t+k/ey=XYZ", "s3cr3t%2bk%2fey%3dXYZ",
                 "s3cr3t%2bk%2Fey%3DXYZ", "s3cr3t%2Bk%2fey%3dXYZ"):  # escapes in either case, mixed in one URL
        assert redact(f"GET /x?api_key={form}&offset=0") == "GET /x?api_key=***&offset=0", form
        assert redact.echoed(f'{{"next": "/x?api_key={form}"}}'.encode()), form
    assert not redact.echoed(b'{"next": "/x?api_key=s3cr3t%2Bk%2Fey%3DXYy"}')


@pytest.mark.parametrize("where", ["path", "base_url"])
def test_secret_written_into_a_url_is_masked_as_one_in_params_is(watch, where):
    """A key pasted into ``endpoint.path`` or ``client.base_url`` rather than ``auth`` is sent all
    the same; the request lines of retries and errors quote it masked."""
    with Adversary(n=150) as api:
        api.fail(500, times=None, offset=100)
        config = config_for(api)
        del config["client"]["auth"]
        if where == "path":
            config["resources"][0]["endpoint"]["path"] = f"/v1/events?api_key={api.key}"
        else:
            config["client"]["base_url"] = f"{api.base_url}/?api_key={api.key}&x=1"
            config["resources"][0]["endpoint"]["path"] = "v1/events"
            # refused now, before any request (dlt put the path after the query: helper-125), the key masked
            with pytest.raises(ak.ConfigError) as refused:
                ak.load(config, progress=False)
            assert "query or fragment" in str(refused.value) and "api_key=***" in str(refused.value)
            assert api.key not in str(refused.value) + repr(refused.value) and api.requests == []
            watch.errors.append(refused.value)  # its frames' locals are searched for the key too
            return
        error = watch.fails(config)
        assert "api_key=***" in str(error) and api.key not in str(error), error
        assert "api_key=***" in watch.log.getvalue(), watch.log.getvalue()  # retries, or the 404


@pytest.mark.parametrize("query", ["sig=S3cr3tSig", "jwt=S3cr3tSig", "X-Amz-Signature=S3cr3tSig",
                                   "access_token=S3cr3tSig"])
def test_secret_under_a_credential_name_in_the_path_is_treated_as_a_secret(api, query):
    from analytics_kit.config.prepared import prepare

    config = config_for(api)
    config["resources"][0]["endpoint"]["path"] = f"/v1/events?{query}&page=1"
    assert "S3cr3tSig" in prepare(config).secrets


def test_a_key_written_into_the_endpoint_path_too_is_in_no_file(api, watch, tmp_path):
    """The auth block carries the key and the path repeats it (copied from the API's example URL): dlt pickled the
    path, key and all, into trace.pickle in the pipeline folder (helper-125)."""
    config = config_for(api)
    config["resources"][0]["endpoint"]["path"] = f"/v1/events?api_key={api.key}"
    watch.succeeds(config)
    files = [p for p in Path.cwd().rglob("*") if p.is_file()]
    assert files and not [p for p in files if api.key.encode() in p.read_bytes()]
    assert not [p for p in files if p.name == "trace.pickle"]


@pytest.mark.parametrize("form", ["lower-case escapes", "JSON-escaped slashes"])
def test_secret_echoed_in_other_escapes_is_caught_and_masked(watch, form):
    """RFC 3986 lets a server write "%2f" for "%2F", and JSON lets it write "\\/" for "/" (PHP's
    default): an API echoing the key so is caught."""
    key = "pass/word+\u043a\u043b\u044e\u0447"
    if form == "lower-case escapes":
        echoed = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(key, safe=""))
        assert echoed != quote(key, safe="")
        value = f"/v1/events?api_key={echoed}&offset=0"  # a record's link echoes the request
    else:
        echoed = json.dumps(key).strip('"').replace("/", "\\/")
    assert Redactor([key])(f"GET /x?api_key={echoed}") == "GET /x?api_key=***"
    watch.canary = key
    with Adversary(n=150, key=key) as api:
        if form == "lower-case escapes":
            api.transform = with_value({7: value})
        else:  # the body's text, with the key in a value as PHP writes it
            api.transform = lambda body, offset: json.dumps(with_value({7: "MARK"})(body, offset)).replace(
                "MARK", echoed)
        error = watch.fails(config_for(api, incremental=False))
        assert "sent your credentials back" in str(error), error
        assert echoed not in str(error) and echoed not in watch.log.getvalue()


def _escape_every_other(text: str) -> str:
    """As a JSON writer escaping some characters as \\uXXXX (.NET escapes "+" so)."""
    return "".join(f"\\u{ord(c):04x}" if i % 2 else c for i, c in enumerate(text))


@pytest.mark.parametrize("form", ["one character as \\u", "every other character as \\u", "only = encoded",
                                  "only / encoded", "every character encoded", "encoded twice",
                                  "form-encoded, then encoded", "JSON text in a value",
                                  "every character as \\u in a value's text", "HTML entities"])
def test_secret_echoed_in_any_escape_is_caught_and_masked(watch, form):
    """A JSON \\u escape of any of the key's characters, or percent escapes of some of them only, or twice, got past the
    fixed forms looked for in the body: the key was stored in the table (helper-123)."""
    key = "sk/live+SECRET=123"
    echoed = {"one character as \\u": key.replace("1", "\\u0031", 1),
              "every other character as \\u": _escape_every_other(key),
              "only = encoded": key.replace("=", "%3D"), "only / encoded": key.replace("/", "%2F"),
              "every character encoded": "".join(f"%{b:02X}" for b in key.encode()),
              "encoded twice": quote(quote(key, safe=""), safe=""),
              "form-encoded, then encoded": quote(quote_plus(key), safe=""),
              # JSON text kept in a value, and HTML entities (helper-126)
              "JSON text in a value": json.dumps(json.dumps({"api_key": key.replace("/", "\\/")}))[1:-1],
              "every character as \\u in a value's text": json.dumps("".join(f"\\u{ord(c):04x}" for c in key))[1:-1],
              "HTML entities": "".join(f"&#{ord(c)};" for c in key)}[form]
    watch.canary = key
    with Adversary(n=150, key=key) as api:
        # the body's text, with the key in a value as the API writes it
        api.transform = lambda body, offset: json.dumps(with_value({7: "MARK"})(body, offset)).replace(
            "MARK", echoed)
        error = watch.fails(config_for(api, incremental=False))
        assert "sent your credentials back" in str(error), error
    assert table() == {}


def test_escapes_and_percent_signs_in_records_without_a_secret_load(api, watch):
    """The closer look those bodies get finds nothing where there is nothing: the records load as sent."""
    text = "50% off \u00e9 \\/ 100%25"
    api.transform = lambda body, offset: json.dumps(with_value({7: text}, "kind")(body, offset))
    watch.succeeds(config_for(api, incremental=False))
    assert table() == served(api)
    assert ak.query("SELECT kind FROM events WHERE id = 7").kind[0] == text


def test_secret_in_the_config_is_in_no_frame_of_a_config_error(api, watch):
    config = config_for(api)
    config["resources"][0]["endpoint"]["paginator"]["limt"] = 5
    for call in (lambda: ak.load(config), lambda: ak.build_source(config)):
        with pytest.raises(ak.ConfigError) as raised:
            call()
        watch.errors.append(raised.value)  # its frames' locals are searched for the key


# -- no raw exception: what dlt refuses is a ConfigError, before any request -----------------------


@pytest.mark.parametrize("change", [
    ("params", {"x": {"y": 1}}),
    ("paginator", "offset"),
    ("paginator", {"type": "offset", "limit": 100, "total_path": "$[bad"}),
    ("incremental", {"cursor_path": "$[bad", "initial_value": "2026-01-01T00:00:00Z"}),
    ("data_selector", "$[bad"),
    ("paginator", {"type": "offset", "limit": 0}),
    ("paginator", {"type": "offset", "limit": -5}),
    ("paginator", {"type": "offset", "limit": 100, "offset": -10}),
    ("paginator", {"type": "offset", "limit": 100, "maximum_offset": -1}),
], ids=lambda c: f"{c[0]}={c[1]!r}" if isinstance(c, tuple) else repr(c))
def test_no_raw_exception_from_a_config_dlt_refuses(api, watch, change):
    config = config_for(api)
    config["resources"][0]["endpoint"][change[0]] = change[1]
    with pytest.raises(ak.KitError) as raised:
        ak.load(config, progress=False)
    watch.errors.append(raised.value)
    assert isinstance(raised.value, ak.ConfigError), raised.value
    assert api.requests == []


@pytest.mark.parametrize("argument", [{"database": None}, {"database": 5}, {"dataset": 5}, {"destination": 5},
                                      {"mode": ["incremental"]}])
def test_no_raw_exception_from_arguments_of_the_wrong_type(api, argument):
    with pytest.raises(ak.ConfigError):
        ak.load(config_for(api), progress=False, **argument)


def test_no_raw_exception_when_the_cursor_kind_differs_from_its_start(api, watch):
    api.transform = lambda body, offset: {**body, "data": [
        {**r, "updated_at": int(parse_instant(r["updated_at"]).timestamp())} for r in body["data"]]}
    error = watch.fails(config_for(api, columns={}))
    assert "values are numbers" in str(error) and "starts from text" in str(error), str(error)


@pytest.mark.parametrize("value", [float("nan"), -1, "5", None, float("inf")])
def test_no_raw_exception_from_a_bad_lock_timeout(api, value):
    with pytest.raises(ak.ConfigError, match="lock_timeout"):
        ak.load(config_for(api), lock_timeout=value, progress=False)


# -- 10. identifiers in SQL ---------------------------------------------------------------------------


def test_identifier_a_crafted_table_name_is_quoted_everywhere(api, watch, tmp_path):
    watch.succeeds(config_for(api))
    evil = "x\"; COPY (SELECT 42) TO 'PWNED.csv'; --"
    con = duckdb.connect("analytics.duckdb")
    con.execute('CREATE TABLE "x""; COPY (SELECT 42) TO \'PWNED.csv\'; --" (a INT)')
    con.execute('INSERT INTO "x""; COPY (SELECT 42) TO \'PWNED.csv\'; --" VALUES (1), (2)')
    con.close()
    listed = ak.tables().set_index("table")["rows"].to_dict()
    assert listed[evil] == 2 and listed["events"] == 500
    assert ak.describe(evil)["column"].tolist() == ["a"]
    watch.succeeds(config_for(api))  # recovery and merge steps with the table present
    assert not list(tmp_path.rglob("PWNED*"))


@pytest.mark.parametrize(("selector", "body", "rows"), [
    ("result.items", {"result": {}}, None),          # a plain dotted path that is missing: an error
    ("data", {"meta": {}}, None),                    # a plain key that is missing: an error
    ("data[*]", {"data": []}, []),                   # a wildcard over an empty list: an empty page
    ("data[?(@.id < 3)]", {"data": [{"id": 5}]}, []),  # a filter matching nothing: an empty page
    ("data[*]", {"meta": {}}, None),                 # a wildcard whose field is missing: an error
])
def test_request_a_missing_selector_fails_and_an_empty_match_is_an_empty_page(selector, body, rows):
    response = requests.Response()
    response.request = requests.Request("GET", "http://127.0.0.1/v1/events?offset=0").prepare()
    response._content = json.dumps(body).encode()
    if rows is None:
        with pytest.raises(ak.LoadError, match="got no"):
            select_records(body, selector, response, "events", Redactor())
    else:
        assert select_records(body, selector, response, "events", Redactor()) == rows


def purge_when_asked_for(api: Adversary, offset: int, *, record: int) -> list:
    """Deletes ``record`` for good the first time a page at ``offset`` is asked for; the list
    returned holds its id once that happened."""
    purged: list = []

    def purge(request):
        if request.offset == offset and not purged:
            api.delete_records(record)
            purged.append(record)

    api.status_script = purge
    return purged


@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_record_purged_while_the_listing_is_paged_hides_no_other(api, watch, mode, concurrency):
    """Record 50 is deleted for good (no soft-delete flag) as offset 200 is asked for: the records
    after it slide back by one, so record 201 moves into a page already fetched. No key comes
    twice, and the total then counts 499, as many as the keys seen: only the total falling
    during the pass tells. The kit pages again and merges; record 201 is loaded."""
    purged = purge_when_asked_for(api, 200, record=50)
    report = watch.succeeds(config_for(api, concurrency=concurrency), mode=mode)
    # at concurrency 8 the purge may come before any page is served: one pass, nothing shifted
    assert purged and (report.passes == {"events": 2} or concurrency > 1 and not report.passes), report
    loaded_ids = set(table())
    assert set(served(api)) <= loaded_ids, sorted(set(served(api)) - loaded_ids)
    if concurrency == 1:  # pages fetched at once may also see a record twice, which tells too
        assert "total fell from 500 to 499" in watch.log.getvalue()
    assert "kept changing" not in watch.log.getvalue()


@pytest.mark.xfail(strict=True, reason="a known hole, stated in the README: a purge and an insert between two "
                   "samples of the total leave it flat, and the purged key seen makes up for the record skipped")
def test_a_purge_and_an_insert_between_two_totals_hide_no_record(api, watch):
    """As above, with a new record inserted at the moment record 50 is purged: the total stays 500,
    record 201 slides into a page already fetched, and the pass sees 500 distinct keys (record 50,
    then the new one at the end) for a total of 500. The count is right and one record is missing;
    record 201 is behind the stored cursor, so no later run fetches it either."""
    newest = max(parse_instant(r["updated_at"]) for r in api.records())
    inserted = {**api.records()[-1], "id": 10_001, "updated_at": iso((newest + timedelta(minutes=1)).timestamp(), z=True)}
    done: list = []

    def purge_and_insert(request):
        if request.offset == 200 and not done:
            api.delete_records(50)
            api.add_records([inserted])
            done.append(True)

    api.status_script = purge_and_insert
    watch.succeeds(config_for(api, concurrency=1))
    api.status_script = None
    watch.succeeds(config_for(api, concurrency=1))  # a quiet run after it
    assert done
    loaded_ids = set(table())
    assert set(served(api)) <= loaded_ids, sorted(set(served(api)) - loaded_ids)


@pytest.mark.parametrize("defaults", [{"write_disposition": "append"},
                                      {"primary_key": "id", "write_disposition": "append"},
                                      {"primary_key": "id", "write_disposition": {"disposition": "merge",
                                                                                  "strategy": "scd2"}}],
                         ids=["append", "append with a key", "scd2"])
def test_a_record_purged_while_a_listing_not_merged_by_key_is_paged_is_reported(api, watch, defaults):
    """Paged again, an append or an scd2 table would hold every record twice: the run says
    what may be missing instead, and stores each record once."""
    purge_when_asked_for(api, 200, record=50)
    config = config_for(api, concurrency=1)
    config["resource_defaults"] = defaults
    report = watch.succeeds(config)
    assert any("total fell from 500 to 499" in w and "skipped" in w for w in report.warnings), report
    assert not report.passes
    n, distinct = ak.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM events").iloc[0].tolist()
    assert n == distinct >= 499, (n, distinct)  # record 201 may be missing, as the warning says


def test_a_purge_after_later_pages_were_served_is_seen(api, watch):
    """Pages fetched at once come back out of order: offsets 300 and 400 are served with
    total=500, then record 50 is purged and offset 200 answers total=499. The listing already
    went past 499, but before the total fell: that is a purge, not a total too low to count
    (a CI run lost record 201 this way)."""
    asked: set = set()
    purged: list = []

    def purge_once_later_pages_are_out(request):
        asked.add(request.offset)
        if request.offset == 200 and not purged:
            deadline = time.monotonic() + 5
            while not {300, 400} <= asked and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # their answers are on their way before the purge
            api.delete_records(50)
            purged.append(50)

    api.status_script = purge_once_later_pages_are_out
    report = watch.succeeds(config_for(api, concurrency=8))
    assert purged and {300, 400} <= asked and report.passes == {"events": 2}, report
    assert set(served(api)) <= set(table()), sorted(set(served(api)) - set(table()))
    assert "total fell from 500 to 499" in watch.log.getvalue()


def test_an_update_hiding_a_record_is_seen_though_a_purge_on_the_closing_page_evens_the_count(api, watch):
    """Record 150 is updated as offset 200 is asked for (it moves to the end, and record 201
    slides into a page already fetched); record 16, already seen, is purged as the empty page at
    500 is asked for, so the final total, 499, equals the keys seen. The pages ended where the
    total before it said, 500: that count shows the hidden record (helper-24)."""
    done: set = set()

    def update_then_purge(request):
        if request.offset == 200 and "update" not in done:
            api.update_record(150, value=5.5)
            done.add("update")
        if request.offset == 500 and "purge" not in done:
            api.delete_records(16)
            done.add("purge")

    api.status_script = update_then_purge
    report = watch.succeeds(config_for(api, concurrency=1))
    assert done == {"update", "purge"} and report.passes == {"events": 2}, report
    assert set(served(api)) <= set(table()) and table()[150][1] == 5.5  # record 16 stays, as any purged one


def test_a_record_whose_newer_version_every_later_pass_missed_is_not_committed_stale(api, watch):
    """Record 60 changes after pass 1 read it; in pass 2, 100 updates slide its new version into a page already
    fetched. Counting the keys the passes saw together (any version) accepted the old one, stored a cursor past
    the new one, and no later run fetched it (helper-54): the union of passes is no proof, only one pass is."""
    passes, done = [0], set()

    def script(req):
        if req.offset == 0:
            passes[0] += 1
        if (passes[0], req.offset) in done:
            return None
        done.add((passes[0], req.offset))
        if passes[0] == 1 and req.offset == 200:
            api.update_record(10, value=-10.0)  # pass 1 is one key short
        if passes[0] == 1 and req.offset == 500:
            api.update_record(60, value=-60.0)  # after pass 1 read its old version
        if passes[0] == 2 and req.offset == 300:
            for i in range(100, 199):
                api.update_record(i, value=-float(i))
        if passes[0] == 2 and req.offset == 400:
            api.update_record(2, value=-2.0)  # record 60 slides into page 300, already fetched
        return None

    api.status_script = script
    watch.load(config_for(api, concurrency=1))  # a third pass sees it, or the load fails: either is sound
    api.status_script = None
    watch.succeeds(config_for(api, concurrency=1))  # a quiet incremental run
    assert table()[60] == served(api)[60] and table() == served(api)


def test_three_updates_before_the_last_page_leave_no_row_stale():
    """X, Z and then L change just before the last page is asked for: L slides into a fetched page, then X's new
    version, then Z's; the last page serves L's. Every key was seen once, as many as the total, so the pass
    passes; X's and Z's new versions lie below the newest cursor seen (L's). The run stores the listing's newest
    cursor from before the pages instead, and the next run fetches both."""
    with Adversary(n=501) as api:
        order = [r["id"] for r in sorted(api.records(), key=lambda r: (parse_instant(r["updated_at"]), r["id"]))]
        asked: list = []

        def script(req):
            asked.append(req.offset)
            if req.offset == 500 and 400 in asked and asked.count(500) == 2:  # the pass's last page, not the probe
                for rank, value in ((10, -1.0), (20, -2.0), (500, -3.0)):
                    api.update_record(order[rank], value=value)

        api.status_script = script
        ak.load(config_for(api, concurrency=1), progress=False)
        api.status_script = None
        assert asked[:3] == [0, 500, 0] and asked.count(500) == 2, asked
        ak.load(config_for(api, concurrency=1), progress=False)  # a quiet incremental run
        loaded, expected = table(), served(api)
        # the differing ids only: pytest's full diff of two 501-row dicts (CI=true turns truncation off) ran for
        # many minutes when this failed
        assert not [key for key in expected if loaded.get(key) != expected[key]]


def test_a_purge_is_seen_when_a_page_answered_before_it_arrives_after_the_pages_answered_after(api, watch):
    """Pages 100 and 400 are answered, then record 150 is purged, then pages 200 and 300; the
    answer for 400 arrives last. Record 201 slides into page 100 and is never served. Page 400
    went past the lower total, but it may have been answered before the pages that report it
    (it was asked for before they came back), so it does not contradict that total (helper-23)."""
    answered = {100: threading.Event(), 400: threading.Event()}
    purged = threading.Event()
    lock = threading.Lock()

    def purge_between(request):
        if request.offset == 0 and not purged.is_set():
            time.sleep(0.05)  # slower than 20 ms: the kit asks with all 8 workers
        if request.offset in (200, 300) and not purged.is_set():
            answered[100].wait(5)
            answered[400].wait(5)
            with lock:
                if not purged.is_set():
                    api.delete_records(150)
                    purged.set()

    def deliver_400_last(body, offset):
        if offset in answered and not purged.is_set():
            answered[offset].set()
            if offset == 400:
                time.sleep(0.3)
        return body

    api.status_script, api.transform = purge_between, deliver_400_last
    report = watch.succeeds(config_for(api, concurrency=8))
    assert purged.is_set() and report.passes == {"events": 2}, report
    assert set(served(api)) <= set(table()), sorted(set(served(api)) - set(table()))


@pytest.mark.parametrize("records", [(50,), (10, 20)], ids=["one purged", "two purged"])
def test_a_purge_that_empties_the_last_page_is_seen(api, watch, records):
    """401 records, the last alone on page 400. Records are purged as that page is asked for:
    record 401 slides into page 300, already fetched, and page 400 comes back empty with
    total=400 or 399. The empty page ends the listing, but records were expected there; the
    pages before it went past 399 only because the purge moved records back (a helper's
    check found two purged records hid one)."""
    api.set_records(default_records(401))
    purged: list = []

    def purge(request):
        if request.offset == 400 and not purged:
            api.delete_records(*records)
            purged.append(records)

    api.status_script = purge
    report = watch.succeeds(config_for(api, concurrency=1))
    assert purged and report.passes == {"events": 2}, report
    assert set(served(api)) <= set(table()), sorted(set(served(api)) - set(table()))


@pytest.mark.parametrize("seed", range(4))
def test_purges_at_random_moments_of_a_concurrent_listing_lose_no_record(api, watch, seed):
    """Pages served in a shuffled order (random delays) at concurrency 8, and 1 to 5 records
    purged when some page is asked for: every record still in the API is loaded."""
    rnd = random.Random(seed)
    api.set_records(default_records(1000))
    at, victims = rnd.randrange(100, 1000, 100), rnd.sample(range(1, 1000), rnd.choice([1, 2, 5]))
    purged: list = []

    def shuffle_and_purge(request):
        time.sleep(rnd.random() * 0.03)
        if request.offset == at and not purged:
            api.delete_records(*victims)
            purged.append(victims)

    api.status_script = shuffle_and_purge
    watch.succeeds(config_for(api, concurrency=8), mode=rnd.choice(["incremental", "full_refresh"]))
    assert purged and set(served(api)) <= set(table()), sorted(set(served(api)) - set(table()))


def test_a_wobbling_total_of_a_concurrent_listing_is_no_purge(api, watch):
    """Totals 0 to 3 below the true count on random pages, served in a shuffled order: no key
    comes twice, so no total is read as a fall, and no load pages twice."""
    rnd = random.Random(7)
    api.set_records(default_records(2000))
    api.total = lambda true, offset: true - rnd.choice([0, 0, 1, 3])
    api.status_script = lambda request: time.sleep(rnd.random() * 0.05)
    for _ in range(3):
        report = watch.succeeds(config_for(api, concurrency=8), mode="full_refresh")
        assert not report.passes and len(table()) == 2000, report
    assert "total fell" not in watch.log.getvalue()


def test_a_listing_growing_while_paged_with_a_late_answer_is_no_purge(api, watch):
    """An events API gains a record (at the end) with every request; at concurrency 8 the page
    at offset 500 is answered first (total=502) but arrives last, after pages that said 506.
    Nothing shifted: the totals only look like a fall in the order the answers arrived. Pages
    in flight together were answered in an unknown order: one pass, no failure (a helper's
    check found such a listing paged 3 times, then the load failed as "kept changing")."""
    new_id = iter(range(10_000, 20_000))
    lock = threading.Lock()

    def grow(request):
        if request.path == api.path:
            time.sleep(0.03 if request.offset == 0 else 0.05 if request.offset != 500 else 0)
            with lock:
                record_id = next(new_id)
                api.add_records([{"id": record_id, "updated_at": iso(START + 10**6 + record_id, z=True),
                                  "value": 1.0, "kind": "view"}])

    def answer_late(body, offset):
        if offset == 500:
            time.sleep(0.3)
        return body

    api.status_script, api.transform = grow, answer_late
    report = watch.succeeds(config_for(api, concurrency=8))
    assert not report.passes and "total fell" not in watch.log.getvalue(), report
    assert set(range(1, 501)) <= set(table())


def test_a_total_one_page_contradicts_is_not_read_as_a_purge(api, watch):
    """One page says total=300 while it holds records past 300: that total is no count, and the
    listing is paged once."""
    api.total = lambda true, offset: 300 if offset == 400 else true
    report = watch.succeeds(config_for(api, concurrency=1))
    assert not report.passes and table() == served(api)
    assert "total fell" not in watch.log.getvalue()


def test_a_purge_is_seen_past_a_total_one_page_gets_wrong(api, watch):
    """One page's wrong total is left out, not the whole check: the purge still pages again."""
    purged = purge_when_asked_for(api, 200, record=50)
    api.total = lambda true, offset: 300 if offset == 400 else true
    report = watch.succeeds(config_for(api, concurrency=1))
    assert purged and report.passes == {"events": 2}, report
    assert set(served(api)) <= set(table())


def test_a_data_selector_that_selects_a_number_says_so(api, watch):
    """``data_selector: "total"`` picked the count beside the records, and the load failed as "the API serves
    at most 1 per page" (helper-53)."""
    config = config_for(api)
    config["resources"][0]["endpoint"]["data_selector"] = "total"
    error = watch.fails(config)
    assert "data_selector 'total' selects one int (500)" in str(error) and "a list under 'data'" in str(error)
    assert "perhaps 'data'" in error.guidance and not table()


@pytest.mark.parametrize("at", ["listing", "token URL"])
def test_a_501_is_said_as_a_request_the_server_never_serves(api, watch, canary, at, monkeypatch):
    """An OAuth token URL answering 501 was called "failing or overloaded", with advice to retry longer."""
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")  # dlt's own retries of the token request
    config = config_for(api)
    if at == "token URL":
        config["client"]["auth"] = {"type": "oauth2_client_credentials", "client_id": "kit-client",
                                    "client_secret": canary, "access_token_url": f"{api.base_url}/oauth/token"}
    api.status_script = lambda req: 501 if at == "listing" or req.path == "/oauth/token" else None
    error = watch.fails(config)
    assert "HTTP 501" in str(error) and "does not serve this request at all" in str(error), error
    assert "overloaded" not in str(error) + error.guidance and "token URL" in error.guidance
    assert canary not in str(error) + error.guidance


def test_a_failing_token_url_is_said_as_retried_by_dlts_own_settings(api, watch, canary, monkeypatch):
    """dlt asks for an OAuth token with its own client, 5 attempts: the message said "after 1 attempt(s)" and
    advised error_handler.max_retries, which that request does not follow (helper-55)."""
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")
    config = config_for(api)
    config["client"]["auth"] = {"type": "oauth2_client_credentials", "client_id": "kit-client",
                                "client_secret": canary, "access_token_url": f"{api.base_url}/oauth/token"}
    api.status_script = lambda req: 503 if req.path == "/oauth/token" else None
    error = watch.fails(config)
    assert "HTTP 503" in str(error) and "dlt's own retries (RUNTIME__REQUEST_MAX_ATTEMPTS" in str(error), error
    assert "RUNTIME__REQUEST_MAX_ATTEMPTS" in error.guidance and "error_handler" not in error.guidance
    assert len([r for r in api.requests if r.path == "/oauth/token"]) == 5 and canary not in str(error)


@pytest.mark.parametrize("status", [507, 599])
def test_a_status_the_policy_does_not_retry_is_said_so_not_raise_max_retries(api, watch, status):
    """A 507 answered once was "failing or overloaded: raise error_handler.max_retries", which changes nothing for
    it: its status is not in retry_on_status_codes (helper-146). A retried status out of attempts keeps that advice."""
    api.status_script = lambda req: status
    error = watch.fails(config_for(api))
    assert f"HTTP {status}" in str(error) and "a status the resource's error_handler does not retry" in str(error)
    assert f"add {status} to error_handler.retry_on_status_codes" in error.guidance, error.guidance
    assert len(api.requests) == 1
    api.status_script = lambda req: 503
    error = watch.fails(config_for(api))
    assert "after 3 attempt(s)" in str(error) and "raise error_handler.max_retries" in error.guidance, error


def _with_summary_row(body: dict, offset: int) -> dict:
    """A row of totals after the records of a short page, without a key, as some APIs end a listing."""
    summary = {"summary": True, "count": len(body["data"]), "updated_at": body["data"][-1]["updated_at"]}
    return {**body, "data": body["data"] + [summary]} if 0 < len(body["data"]) < 100 else body


@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
def test_records_without_a_key_a_filter_drops_load_as_with_dlt(canary, watch, mode, tmp_path):
    """The key was checked before the config's steps, so a filter dropping an API's summary row, a common dlt pattern,
    was refused as a record without its key, where dlt loads the rest (helper-145). One the filter keeps still stops
    the load, after the steps."""
    with Adversary(n=450, key=canary) as api:
        api.transform = _with_summary_row
        config = config_for(api)
        config["resources"][0]["processing_steps"] = [{"filter": lambda r: "id" in r}]
        report = watch.succeeds(config, mode=mode, database=str(tmp_path / "a.duckdb"))
        assert report.rows == {"events": 450} and table(str(tmp_path / "a.duckdb")) == served(api)
        config["resources"][0]["processing_steps"] = [{"filter": lambda r: True}]
        error = watch.fails(config, mode="full_refresh", database=str(tmp_path / "a.duckdb"))
        assert "the primary key 'id' is missing or null in record 51 on GET /v1/events" in str(error), error
        assert table(str(tmp_path / "a.duckdb")) == served(api)  # the table as the first load left it


def test_a_response_action_that_drops_records_is_named_and_a_filter_does_it(canary, watch, tmp_path):
    """A response_actions hook taking records out of offset pages read as "the API serves at most 3 per page", and its
    advice (limit 3) failed again (helper-145). The message names the hook; the filter it advises loads the rest."""
    import json as json_module

    def drop_odd(response, *args, **kwargs):
        payload = response.json()
        payload["data"] = [r for r in payload["data"] if r["id"] % 2 == 0]
        response._content = json_module.dumps(payload).encode()
        return response

    with Adversary(n=450, key=canary) as api:
        config = config_for(api)
        config["resources"][0]["endpoint"]["response_actions"] = [drop_odd]
        error = watch.fails(config, database=str(tmp_path / "a.duckdb"))
        assert "were left by the endpoint's response_actions" in str(error) and "processing_steps filter" in \
            error.guidance, error
        # an action that ignores a status takes no record out of a page: a cap is the API's (helper-150)
        api.page_cap = 50
        config["resources"][0]["endpoint"]["response_actions"] = [{"status_code": 404, "action": "ignore"}]
        error = watch.fails(config, database=str(tmp_path / "a.duckdb"))
        assert "it serves at most 50 per page" in str(error) and "response_actions" not in str(error), error
        api.page_cap = None
        del config["resources"][0]["endpoint"]["response_actions"]
        config["resources"][0]["processing_steps"] = [{"filter": lambda r: r["id"] % 2 == 0}]
        watch.succeeds(config, database=str(tmp_path / "a.duckdb"))
        assert table(str(tmp_path / "a.duckdb")) == {k: v for k, v in served(api).items() if k % 2 == 0}


@pytest.mark.parametrize("mode", ["full_refresh", "incremental"])
def test_a_keyless_row_the_total_counts_is_no_missing_record_and_a_filter_counts_rows(mode, tmp_path):
    """A row of totals inside the listing, which the API's total counts and a filter drops, read as a record missing:
    the listing was paged 4 times with a warning blaming the API; and the keys counted before the filter (25) were
    the report's and history's rows where the table held 13 (helper-150)."""
    import json as json_module
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    records = [{"id": i} for i in range(1, 26)]
    records.insert(5, {"kind": "summary"})

    class Listing(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = {k: int(v[0]) for k, v in parse_qs(urlparse(self.path).query).items()}
            body = json_module.dumps({"data": records[query["offset"]:query["offset"] + query["limit"]],
                                      "total": len(records)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Listing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {"client": {"base_url": f"http://127.0.0.1:{server.server_port}"},
              "resources": [{"name": "items", "primary_key": "id", "write_disposition": "merge",
                             "endpoint": {"path": "/items", "data_selector": "data",
                                          "paginator": {"type": "offset", "limit": 10, "total_path": "total"}},
                             "processing_steps": [{"filter": lambda r: "id" in r and r["id"] % 2 == 1}]}]}
    database = str(tmp_path / "items.duckdb")
    try:
        report = ak.load(config, mode, database=database, progress=False)
    finally:
        server.shutdown()
    assert report.rows == {"items": 13} and report.requests == {"items": 3}, report
    assert not report.passes and not report.warnings, (report.passes, report.warnings)
    assert ak.query("SELECT count(*) AS n FROM items", database).n[0] == 13
    assert ak.history(database)["rows"].tolist() == [13]


def test_a_token_url_answering_no_json_is_named_as_dlts_own_request(tmp_path, monkeypatch):
    """dlt asks for an OAuth token itself: its empty answer read "not valid JSON on  (" with no request named, and
    the advice pointed at base_url alone (helper-150)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0")

    class TokenURL(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenURL)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    config = {"client": {"base_url": base, "auth": {"type": "oauth2_client_credentials", "client_id": "kit-client",
                                                    "access_token_url": f"{base}/token", "client_secret": "s3cret-7788"}},
              "resources": [{"name": "items", "endpoint": {"path": "/items", "data_selector": "data"}}]}
    try:
        with pytest.raises(ak.LoadError) as caught:
            ak.load(config, database=str(tmp_path / "t.duckdb"), progress=False)
    finally:
        server.shutdown()
    assert "not valid JSON on a request dlt sent itself (the auth block token URL, say)" in str(caught.value)
    assert "or the token URL" in caught.value.guidance and "s3cret-7788" not in str(caught.value)


def test_a_total_too_high_and_a_record_added_while_paged_again_is_no_skip(api, watch):
    """An honest API whose total counts two more than it serves, and a record added as the pass half a page later
    runs: that pass found the new record, and the load stopped, blaming pages that skip records (helper-158)."""
    config = config_for(api)
    watch.succeeds(config)
    api.total = lambda true, offset: true + 2
    newest = iso(START + 60 * 10_000, z=True)

    def add_once(req):
        if req.params.get("offset") == "50" and not any(r["id"] == 9_999 for r in api.records()):
            api.add_records([{"id": 9_999, "updated_at": newest, "value": 1.0, "kind": "view"}])
        return None

    api.status_script = add_once
    report = watch.succeeds(config, mode="full_refresh")
    assert any("found no more but 1 record(s) past where its pages ended" in w for w in report.warnings), \
        report.warnings
    assert table() == served(api) or set(table()) == set(served(api)) - {9_999}
