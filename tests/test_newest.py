"""The cursor a run stores when its listing changes while it is paged (analytics_kit/fetch/newest.py).

A listing of its own here, written for these tests: it orders its records by the cursor ascending,
descending, or by id, with ISO or Unix-second cursors, and updates records while it is paged. An
update gives a record the newest cursor, as an API does, so that in an ascending listing it moves
to the end and the records after its old place slide back one offset.
"""

from __future__ import annotations

import json
import random
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

import analytics_kit as ak
from analytics_kit.fetch import cursors
from analytics_kit.fetch.newest import Rising, capped, last_page_offset
from analytics_kit.fetch.vouched import MAX_KEYS
from helpers import NEWEST_READ

KEY = "newest-key-3c9a"
START = 1_767_225_600  # 2026-01-01T00:00:00Z


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Listing:
    """``GET /v1/events?offset&limit&since``: records with ``cursor >= since``, ordered by ``order``
    (``"asc"``, ``"desc"``, ``"id"``, or ``"tied"``: one cursor value for all, in a new order on every
    request, as a sort without a tie-breaker), ``{"data": [...], "total": N}``; with ``cache_first``, the
    first page's first answer again for every later request of it, as a stale cache. ``on_request(offset, asked)``
    runs before each answer (``asked``: the offsets asked so far, this one included); a status it
    returns is answered instead of the page."""

    def __init__(self, n: int, *, order: str = "asc", unix: bool = False, ignore_since: bool = False,
                 cache_first: bool = False):
        self.order, self.unix, self.ignore_since = order, unix, ignore_since
        self.cache_first = cache_first
        self.cached: bytes | None = None
        # cursors in another order than ids (a permutation: 7919 is a prime no n + 1 here is a multiple of)
        self.records = {i: {"id": i, "value": 0, "t": START + 60 * (i * 7919 % (n + 1))} for i in range(1, n + 1)}
        self.clock = START + 60 * (n + 1)
        self.asked: list[int] = []
        self.queries: list[dict] = []
        self.on_request: Callable[[int, list[int]], int | None] | None = None
        self.lock = threading.RLock()
        listing = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
                with listing.lock:
                    listing.asked.append(offset)
                    listing.queries.append(query)
                    status = listing.on_request(offset, list(listing.asked)) if listing.on_request else None
                    rows = listing.rows(query.get("since"))
                body = json.dumps({"data": rows[offset:offset + limit], "total": len(rows)} if status is None
                                  else {"error": "not now"}).encode()
                if listing.cache_first and offset == 0 and status is None:
                    body = listing.cached = listing.cached or body
                self.send_response(status or (200 if query.get("api_key") == KEY else 401))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client hanging up, when a load fails
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def shown(self, seconds: int):
        return seconds if self.unix else iso(seconds)

    def rows(self, since: str | None) -> list[dict]:
        floor = None if since is None or self.ignore_since else (
            int(since) if self.unix else int(cursors.parse(since).timestamp()))
        chosen = [r for r in self.records.values() if floor is None or r["t"] >= floor]
        key = {"asc": lambda r: (r["t"], r["id"]), "desc": lambda r: (-r["t"], -r["id"]),
               "id": lambda r: r["id"], "tied": lambda r: random.random()}[self.order]
        return [{"id": r["id"], "value": r["value"], "updated_at": self.shown(r["t"])} for r in sorted(chosen, key=key)]

    def update(self, *ids: int) -> None:
        """Each record gets a new value and the newest cursor, one second apart."""
        with self.lock:
            for record_id in ids:
                self.clock += 1
                self.records[record_id].update(value=self.records[record_id]["value"] + 1, t=self.clock)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listing():
    started: list[Listing] = []

    def start(*args, **kwargs) -> Listing:
        started.append(Listing(*args, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


def config(server: Listing, *, concurrency: int = 1, disposition: str = "merge", columns: dict | None = None,
           paginator: dict | None = None, **incremental) -> dict:
    initial = START - 3600 if server.unix else "2025-12-31T23:00:00Z"
    return {"client": {"base_url": server.base_url,
                       "auth": {"type": "api_key", "name": "api_key", "api_key": KEY, "location": "query"}},
            "resource_defaults": {"primary_key": "id", "write_disposition": disposition},
            "resources": [{"name": "events", "columns": columns or {"id": {"data_type": "bigint"}}, "endpoint": {
                "path": "/v1/events", "data_selector": "data", "concurrency": concurrency,
                "paginator": paginator or {"type": "offset", "limit": 100, "total_path": "total"},
                "error_handler": {"retry_on_status_codes": [503], "max_retries": 2, "backoff_factor": 0.001},
                "incremental": {"cursor_path": "updated_at", "start_param": "since", "initial_value": initial,
                                **incremental}}}]}


def table() -> dict:
    return {row.id: row.value for row in ak.query("SELECT id, value FROM events ORDER BY id").itertuples()}


def stored_cursor():
    return ak.state().cursors["events"]


# -- the rules, one by one --------------------------------------------------------------------------


def test_rising_holds_for_ascending_values_across_pages_and_not_otherwise():
    def rises(*pages) -> bool:
        rising = Rising("t")
        for page in pages:
            rising.see([{"t": v} for v in page])
        return rising.holds

    assert rises([1, 2, 2], [2, 3], [], [4])
    assert not rises([1, 3], [2, 4])  # falls at the page boundary
    assert not rises([2, 1])
    # records without a value (on_cursor_value_missing: include), nulls first as databases sort them
    assert rises([None, None], [None, 1, 3], [3, None, 4]) and not rises([3, None], [2])
    assert not rises(["2026-01-01T00:00:00+00:00", 5])  # kinds that do not compare
    rising = Rising("t")
    rising.see([{"id": 1}, ["not", "a", "record"]])
    assert not rising.holds


def test_the_last_page_is_asked_for_on_the_pass_s_own_steps():
    class Paginator:
        initial_value, value_step, base_index = 0, 100, 0

    assert [last_page_offset(Paginator, n) for n in (1, 100, 101, 250, 300)] == [0, 0, 100, 200, 200]
    Paginator.initial_value = Paginator.base_index = 1  # offsets counted from 1
    assert [last_page_offset(Paginator, n) for n in (100, 101, 250)] == [1, 101, 201]


def test_the_cursor_is_lowered_only_to_the_newest_from_before_and_never_below_the_start():
    assert capped("2026-01-05", "2026-01-01", "2026-01-09") == "2026-01-05"
    assert capped("2026-01-05", "2026-01-07", "2026-01-09") == "2026-01-07"  # never below where the run began
    assert capped("2026-01-09", None, "2026-01-09") is None  # nothing changed while paged: dlt's value
    assert capped("2026-01-10", None, "2026-01-09") is None  # the newest was purged meanwhile
    assert capped(None, None, "2026-01-09") is None and capped("2026-01-05", None, None) is None
    assert capped(5, "2026-01-01", 9) is None  # kinds that do not compare: dlt's value stays


# -- against a listing that changes while it is paged -----------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("unix", [False, True, "bigint"], ids=["iso", "unix-seconds", "unix-declared-bigint"])
@pytest.mark.parametrize("order", ["asc", "desc", "id"])
def test_records_updated_while_the_listing_is_paged_are_loaded_by_the_next_run(listing, order, unix, concurrency):
    """Three records change as the pass asks for its last page: in an ascending listing two new versions
    slide into pages already read while every key is seen once. The next quiet run loads them. A listing
    by id moves nothing: two updates land in pages already read, behind the third's newer cursor, which
    the run stores, as dlt alone does; the incremental's ``lag`` (here an hour) is the remedy the README
    names for such a listing."""
    server = listing(501, order=order, unix=bool(unix))
    columns = {"id": {"data_type": "bigint"}, "updated_at": {"data_type": "bigint"}} if unix == "bigint" else None
    before = max(r["t"] for r in server.records.values())
    changed: list[int] = []

    def update_at_the_last_page(offset: int, asked: list[int]) -> None:
        # the pass's own request for offset 500, not the read of the newest before the pages
        if offset == 500 and asked.count(500) == 2 and not changed:
            first_ids = [r["id"] for r in server.rows(None)]
            changed.extend([first_ids[10], first_ids[20], first_ids[500]])
            server.update(*changed)

    server.on_request = update_at_the_last_page
    lag = {"lag": 3600} if order == "id" else {}
    first = ak.load(config(server, concurrency=concurrency, columns=columns, **lag), progress=False)
    assert changed and first.rows == {"events": 501}
    assert server.asked[:3] == [0, 500, 0]
    # ascending: no later than the newest before the pages, as every update lies past it. Otherwise dlt's
    # cursor, the newest seen: descending, the updates moved to the front, and the records after them
    # slid into the next page, seen twice, so the listing was paged again; by id, the last page was read
    # after the updates and holds one of them
    expected = before if order == "asc" else server.clock
    assert stored_cursor() == (expected if unix else cursors.canonical(iso(expected)))
    server.on_request = None
    ak.load(config(server, concurrency=concurrency, columns=columns, **lag), progress=False)
    assert table() == {r["id"]: r["value"] for r in server.records.values()}


def test_a_quiet_listing_keeps_the_newest_cursor_and_the_next_run_asks_from_it(listing):
    server = listing(250)
    report = ak.load(config(server), progress=False)
    assert report.requests == {"events": 3 + NEWEST_READ} and server.asked == [0, 200, 0, 100, 200]
    newest = cursors.canonical(iso(max(r["t"] for r in server.records.values())))
    assert stored_cursor() == newest
    server.asked.clear()
    server.update(7)
    second = ak.load(config(server), progress=False)
    # the update only: the record at the cursor is left out by dlt's hashes of it, kept as dlt stored them
    assert server.asked == [0] and second.rows == {"events": 1}
    assert table()[7] == 1


def test_a_listing_of_one_page_costs_no_request_more(listing):
    server = listing(100)
    assert ak.load(config(server), progress=False).requests == {"events": 2}  # the full page, then an empty one
    server = listing(60)
    assert ak.load(config(server), progress=False, database="b.duckdb").requests == {"events": 1}


def test_an_end_value_stores_no_cursor_and_reads_no_newest(listing):
    server = listing(300)
    ak.load(config(server, end_value="2026-02-01T00:00:00Z"), progress=False)
    assert server.asked == [0, 100, 200, 300]


def test_a_first_run_never_stores_a_cursor_below_its_initial_value(listing):
    """An API that ignores the start parameter serves only records older than the initial value:
    the newest before the pages is older still, and is not stored."""
    server = listing(250, ignore_since=True)
    for record in server.records.values():
        record["t"] -= 86_400 * 30
    ak.load(config(server), progress=False)
    assert server.asked[:3] == [0, 200, 0]
    assert stored_cursor() == cursors.canonical("2025-12-31T23:00:00Z")


def test_the_read_of_the_newest_is_retried_and_named_like_any_page(listing):
    server = listing(250)
    server.on_request = lambda offset, asked: 503 if len(asked) == 2 else None  # the last page's read, once
    report = ak.load(config(server), progress=False)
    assert server.asked == [0, 200, 200, 0, 100, 200] and table() == {i: 0 for i in range(1, 251)}
    assert [(r.reason, r.attempt) for r in report.retries] == [("HTTP 503", 1)]
    assert "offset=200" in report.retries[0].request and KEY not in report.retries[0].request
    server.asked.clear()
    server.on_request = lambda offset, asked: 404 if offset == 200 else None
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(server), "full_refresh", progress=False)
    assert "HTTP 404" in str(caught.value) and "offset=200" in str(caught.value) and KEY not in str(caught.value)
    assert table() == {i: 0 for i in range(1, 251)}  # nothing from the failed run


@pytest.mark.parametrize("setting", [{"disposition": "append"}, {"range_start": "open"}], ids=["append", "open-start"])
def test_no_newest_is_read_where_a_lower_cursor_would_store_rows_twice_or_leave_some_out(listing, setting):
    """An append stores again what the next run fetches again; an open start leaves out the records at
    the value the cursor would be lowered to (helper-58)."""
    server = listing(250)
    ak.load(config(server, **setting), progress=False)
    assert server.asked == [0, 100, 200]
    server.update(3)
    ak.load(config(server, **setting), progress=False)
    rows = ak.query("SELECT id, count(*) AS n FROM events GROUP BY id HAVING count(*) > 1")
    assert list(rows.id) == ([3] if "disposition" in setting else [])  # an append's new version of 3, once


def test_a_listing_read_from_an_offset_past_its_first_record_is_paged_once(listing):
    server = listing(250)
    report = ak.load(config(server, paginator={"type": "offset", "limit": 100, "offset": 100, "total_path": "total"}),
                     progress=False)
    # its last page (the newest cursor), its first again, then the rest: one pass, as the total counts the records
    # before the offset it starts at too
    assert report.rows == {"events": 150} and server.asked == [100, 200, 100, 200] and not report.warnings
    assert report.passes.get("events", 1) == 1


def test_a_listing_whose_ties_come_in_another_order_on_every_request_is_named_as_such(listing):
    server = listing(300, order="tied")
    for record in server.records.values():
        record["t"] = START
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(server), progress=False)
    assert "Its total was 300 in every pass and no newer record came. If its data did not change, its order is not " \
        "stable" in caught.value.guidance
    assert "sort by a field that updates do not change" not in caught.value.guidance
    assert "sort parameter of updated_at,id" in caught.value.guidance


def test_a_first_page_served_stale_from_a_cache_is_reported(listing):
    """Record 5 changes after the first page was answered, which the API then serves from a cache: record
    101 slides into that page and no pass sees it, while record 5 is seen twice in each (helper-58)."""
    server = listing(250, cache_first=True)
    ids = [r["id"] for r in server.rows(None)]
    server.on_request = lambda offset, asked: server.update(ids[4]) if len(asked) == 2 else None
    report = ak.load(config(server), progress=False)
    # no pass at the listing's offsets saw it; since the fortieth session the pass half a page later finds it
    assert ids[100] in table() and set(table()) == {r["id"] for r in server.rows(None)}
    assert any("missing the same way in two passes; a pass with its pages half a page later found them" in w
               for w in report.warnings), report.warnings


# -- a listing updated all the time -------------------------------------------------------------------


def busy(server: Listing, at_once: int = 1) -> list[int]:
    """Each time a pass asks for offset 300, ``at_once`` records of the first page (already read) are updated: they
    move to the end and as many records from offset 300 on slide into the page before, which the pass read. Every
    pass misses records, never the same ones. Returns the ids updated so far."""
    updated: list[int] = []

    def update_some(offset: int, asked: list[int]) -> None:
        if offset == 300:
            first = [r["id"] for r in Listing.rows(server, None)][:at_once]  # the ids it keeps, whatever it shows
            updated.extend(first)
            server.update(*first)

    server.on_request = update_some
    return updated


def api_table(server: Listing) -> dict:
    return {r["id"]: r["value"] for r in server.records.values()}


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_listing_updated_in_every_pass_loads(listing, concurrency):
    """A first load of 10,000 records with an update a second (`bench/busy_api.py`) failed 5 times in 6 as
    "kept changing"; this is the same in small. Each pass misses another record, which the pass before saw: one
    request from the first cursor of the page it was on finds it still in the listing, and the load needs no
    third pass. Every record the API holds is in the table, and a quiet run then brings the updated values."""
    server = listing(501)
    updated = busy(server)
    report = ak.load(config(server, concurrency=concurrency), progress=False)
    # at concurrency 8 a page answered after the update at offset 300 can make pass 1 miss two records, one of
    # which pass 2 misses again: no earlier pass saw it, so it cannot be looked up, and a third pass is made
    passes = report.passes["events"]
    assert len(updated) == passes and (passes == 2 if concurrency == 1 else passes in (2, 3))
    assert report.rows == {"events": 501}
    assert set(table()) == set(server.records)
    # the lookups, besides the passes' requests: one for each record the last pass missed, from offset 0
    since = [q for q in server.queries if q.get("since", "").startswith("2026")]
    assert 1 <= len(since) <= len(updated) and {q["offset"] for q in since} == {"0"}
    server.on_request = None
    ak.load(config(server), progress=False)
    assert table() == api_table(server)


def test_a_record_skipped_in_every_pass_is_not_made_up_for_by_a_key_purged_between_them(listing):
    """helper-61's schedule, which the reverted union of passes lost (limit 10, 55 records). Pass 1: as it asks
    for offset 30 the first record is updated, and K, the record at offset 30, slides into the page before: pass 1
    misses K. As pass 2 begins, another record is purged and a new one inserted: the total stays 55. Pass 2: as it
    asks for offset 20, ten records of the first page are updated at once, and K slides back past the pager
    again. The passes together saw 55 keys, the purged one among them, for a total of 55: counting them as proof
    lost K for good. The load must fail, or load K."""
    server = listing(55)
    paginator = {"type": "offset", "limit": 10, "total_path": "total"}
    skipped: list[int] = []

    def schedule(offset: int, asked: list[int]) -> None:
        ids = [r["id"] for r in server.rows(None)]
        if offset == 30 and asked.count(30) == 1:  # pass 1
            skipped.append(ids[30])
            server.update(ids[0])
        elif offset == 0 and asked.count(0) == 3:  # pass 2's first page (pass 1 asked for it twice)
            del server.records[ids[40]]
            server.clock += 1
            server.records[1000] = {"id": 1000, "value": 0, "t": server.clock}
        elif offset == 20 and asked.count(20) == 2:  # pass 2
            server.update(*ids[:10])

    server.on_request = schedule
    try:
        ak.load(config(server, paginator=paginator), progress=False)
    except ak.LoadError as error:
        assert "kept changing" in str(error) and skipped
        return
    server.on_request = None
    ak.load(config(server, paginator=paginator), progress=False)  # a quiet run
    loaded = table()
    assert skipped[0] in loaded
    # the purged record stays in the table, as any purge does (a merge deletes nothing it is not told of)
    assert {r["id"]: loaded.get(r["id"]) for r in server.records.values()} == {
        r["id"]: r["value"] for r in server.records.values()}


def test_a_busy_listing_s_failure_says_what_to_do_and_the_advice_works(listing):
    """The records change in every pass, the total stays the same: that is no unstable order (the passes went
    past the newest cursor read before them). Eleven updates at once make each pass miss more records than the
    kit looks up (vouched.MAX_KEYS). Sorted by id, as the guidance says, with a lag, the same updates move no
    record between pages, and the next run loads the records updated meanwhile."""
    server = listing(501)
    busy(server, at_once=MAX_KEYS + 1)
    with pytest.raises(ak.LoadError, match="kept changing") as caught:
        ak.load(config(server), progress=False)
    assert "sort by a field that updates do not change" in caught.value.guidance
    assert "order is not stable" not in caught.value.guidance
    assert not [q for q in server.queries if q.get("since", "").startswith("2026")]  # too many to look up
    by_id = listing(501, order="id")
    updated = busy(by_id, at_once=MAX_KEYS + 1)
    report = ak.load(config(by_id, lag=3600), progress=False, database="by_id.duckdb")
    assert updated and report.rows == {"events": 501} and report.passes.get("events", 1) == 1
    by_id.on_request = None
    ak.load(config(by_id, lag=3600), progress=False, database="by_id.duckdb")
    loaded = {row.id: row.value for row in ak.query("SELECT id, value FROM events", "by_id.duckdb").itertuples()}
    assert loaded == {r["id"]: r["value"] for r in by_id.records.values()}


@pytest.mark.parametrize("case", ["no-newest-read", "purged"])
def test_a_listing_that_kept_changing_is_named_only_as_far_as_its_passes_tell(listing, case):
    """helper-62: with an end_value the kit reads no newest cursor, so a steady total cannot tell updates from an
    unstable order: both are named. A listing sorted by id whose records are purged while paged has its total
    fall: sorting cannot help, and the guidance says records were deleted."""
    if case == "no-newest-read":
        server = listing(501)
        busy(server)
        kwargs = {"end_value": "2027-01-01T00:00:00Z"}
    else:
        server = listing(501, order="id")

        def purge(offset: int, asked: list[int]) -> None:
            if offset == 300:
                del server.records[min(server.records)]

        server.on_request = purge
        kwargs = {"lag": 3600}
    with pytest.raises(ak.LoadError, match="kept changing") as caught:
        ak.load(config(server, **kwargs), progress=False)
    guidance = caught.value.guidance
    if case == "no-newest-read":
        assert "Its total was 501 in every pass." in guidance
        assert "sort by a field that updates do not change" in guidance and "its order is not stable" in guidance
    else:
        assert "Records were deleted while it was paged" in guidance
        assert "sort by a field" not in guidance and "order is not stable" not in guidance


def tied_in_groups(server: Listing, groups: int = 7) -> None:
    """The records share ``groups`` cursor values; each request orders those with the same one anew."""
    for record in server.records.values():
        record["t"] = START + 60 * (record["id"] % groups)
    ordered = server.rows
    server.rows = lambda since: sorted(ordered(since), key=lambda r: (r["updated_at"], random.random()))


@pytest.mark.parametrize("case", ["ties-then-quiet", "ties-and-inserts", "purge-insert-update"])
def test_the_guidance_names_each_cause_the_passes_cannot_rule_out(listing, case):
    """helper-63: one update in pass 1 of a listing whose ties come in a new order on every request left passes 2
    and 3 failing on the ties alone, and the guidance named only a busy API; inserts at the end shift nothing, so
    with ties they do not make it busy either; a purge with an insert keeps the total flat, but the passes then
    see more keys than the listing holds."""
    server = listing(300)
    ids = sorted(server.records)
    if case != "purge-insert-update":
        tied_in_groups(server)
    added: list[int] = []

    def change(offset: int, asked: list[int]) -> None:
        if case == "ties-then-quiet" and offset == 200 and asked.count(200) == 2:  # pass 1's own, after the newest read
            added.append(ids[0])
            server.update(ids[0])
        elif case == "ties-and-inserts" and offset == 200:
            server.clock += 60
            added.append(1000 + len(added))
            server.records[added[-1]] = {"id": added[-1], "value": 0, "t": server.clock}
        elif case == "purge-insert-update" and offset == 200:
            first = [r["id"] for r in server.rows(None)]
            del server.records[first[1]]
            server.update(first[0])
            server.clock += 1
            added.append(1000 + len(added))
            server.records[added[-1]] = {"id": added[-1], "value": 0, "t": server.clock}

    server.on_request = change
    with pytest.raises(ak.LoadError, match="kept changing") as caught:
        ak.load(config(server), progress=False)
    guidance = caught.value.guidance
    if case == "purge-insert-update":
        assert guidance.index("Records were deleted while it was paged") < guidance.index("sort by a field that")
    else:
        assert "sort by a field that updates do not change" in guidance and "its order is not stable" in guidance
        assert "Records were deleted" not in guidance
