"""Keys a busy listing's last pass missed, looked up before they count (analytics_kit/fetch/vouched.py).

The listing is ``test_newest``'s: ordered by its cursor, it moves an updated record to its end, so the
records after its old place slide into pages already read. Every test holds the kit to one rule: a load
that succeeds has every record the API holds, and a quiet run after it brings the table level with the API;
otherwise the load fails as "kept changing", having committed nothing.
"""

from __future__ import annotations

import logging
import random
from array import array

import pytest

import analytics_kit as ak
from analytics_kit.fetch import vouched
from analytics_kit.fetch.tally import SMALL, Tally
from test_newest import KEY, Listing, api_table, busy, config, listing, table  # noqa: F401 - listing: a fixture


def lookups_asked(server: Listing) -> list[dict]:
    """The requests from a cursor of the load's own (the passes start from the config's 2025 value)."""
    return [q for q in server.queries if q.get("since", "").startswith(("2026", "17"))]


def asking_lookup(server: Listing) -> bool:
    """Whether the request being answered is a lookup."""
    return bool(lookups_asked(server)) and server.queries[-1] is lookups_asked(server)[-1]


def loaded_whole(server: Listing, mode: str = "incremental", **kwargs) -> bool:
    """Loads the listing: True where the load succeeded with every record the API holds, False where it failed
    as "kept changing" (anything else fails the test)."""
    try:
        ak.load(config(server, **kwargs), mode, progress=False)
    except ak.LoadError as error:
        assert "kept changing" in str(error)
        return False
    assert set(server.records) <= set(table())
    return True


def quiet_run_levels(server: Listing, **kwargs) -> None:
    """A quiet incremental run brings every record the API holds to its value there (a record the API purged
    stays in the table: a merge deletes nothing it is not told of)."""
    server.on_request = None
    ak.load(config(server, **kwargs), progress=False)
    loaded = table()
    assert {key: loaded.get(key) for key in server.records} == api_table(server)


@pytest.mark.parametrize("unix", [False, True])
def test_a_busy_listing_loads_with_cursors_as_the_api_writes_them(listing, unix):
    """ISO text and Unix seconds: the lookup writes the page's first cursor into the start parameter as the
    passes' requests write it."""
    server = listing(501, unix=unix)
    busy(server)
    report = ak.load(config(server), progress=False)
    assert report.passes == {"events": 2} and set(table()) == set(server.records)
    asked = lookups_asked(server)
    assert asked and all(q["since"].isdigit() == unix for q in asked)
    quiet_run_levels(server)


def test_a_busy_full_refresh_loads_every_record(listing):
    server = listing(501)
    busy(server)
    report = ak.load(config(server), "full_refresh", progress=False)
    assert report.rows == {"events": 501} and set(table()) == set(server.records)
    quiet_run_levels(server)


def test_a_lookup_the_api_refuses_counts_nothing(listing, caplog):
    """The lookups fail (503 after the retries): no key is counted on their word, the kit pages again, and
    with every pass missing another record the load fails as before, with nothing committed. The failed
    lookups are logged without the key."""
    caplog.set_level(logging.DEBUG)
    server = listing(501)
    updated = busy(server)
    on_request = server.on_request

    def refuse_lookups(offset: int, asked: list[int]) -> int | None:
        on_request(offset, asked)
        return 503 if asking_lookup(server) else None

    server.on_request = refuse_lookups
    with pytest.raises(ak.LoadError, match="kept changing"):
        ak.load(config(server), progress=False)
    assert len(updated) == 3 and lookups_asked(server)  # three passes; the lookups were asked and refused
    assert "looking up the records the last pass missed failed" in caplog.text and KEY not in caplog.text
    with pytest.raises(ak.QueryError, match="no load into it has completed"):
        table()


def test_an_api_that_ignores_the_start_parameter_vouches_for_nothing_it_does_not_show(listing):
    """The lookup is answered with the listing's first page: the missed record is not on it, so it does not
    count, and the load fails rather than trust the earlier pass."""
    server = listing(501, ignore_since=True)
    busy(server)
    with pytest.raises(ak.LoadError, match="kept changing"):
        ak.load(config(server), progress=False)
    assert lookups_asked(server)


def test_a_record_purged_before_its_lookup_is_not_counted(listing):
    """Pass 2 misses K, which pass 1 saw; K is purged before the lookup, and one record is added, so that the
    total stays the same. The lookup does not find K: it does not count, and no pass that misses a record is
    taken for a whole one."""
    server = listing(501)
    ids: list[int] = []

    def schedule(offset: int, asked: list[int]) -> None:
        if offset == 300:
            first = server.rows(None)[0]["id"]
            ids.append(server.rows(None)[300]["id"])  # K: slides into the page before, already read
            server.update(first)
        if len(ids) == 2 and offset == 0 and lookups_asked(server) and ids[-1] in server.records:
            del server.records[ids[-1]]  # as the lookup asks
            server.clock += 1
            server.records[9999] = {"id": 9999, "value": 0, "t": server.clock}

    server.on_request = schedule
    loaded_whole(server)  # what was loaded holds every record the API has


@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
def test_a_purge_hidden_by_an_addition_in_the_last_pass_is_no_count_for_a_record_missed_twice(listing, mode):
    """helper-64's schedule (20 records, 2 a page). Pass 1: two updates as offset 8 is asked for; K, at offset 8,
    and the record after it slide past the pager. Pass 2: as offset 6 is asked for, a record already read is
    purged and one added at the same moment, so the total stays 20, and K slides past again; as offset 12 is
    asked for, an update makes pass 2 miss one more record, which pass 1 saw. One lookup found that one: pass
    2's 19 keys, the purged one among them, and the one found made 20, and K was lost for good. The load must
    fail, or load K."""
    server = listing(20)
    paginator = {"type": "offset", "limit": 2, "total_path": "total"}
    zeros = {"n": 0}
    missed: list[int] = []

    def schedule(offset: int, asked: list[int]) -> None:
        query = server.queries[-1]
        if query.get("since", "").startswith(("2026", "17")):
            return  # a lookup
        if offset == 0:
            zeros["n"] += 1  # pass 1 asks for offset 0 twice (before and after its newest read), pass 2 once
        ids = [r["id"] for r in Listing.rows(server, None)]
        if zeros["n"] in (2, 5) and offset == 8 and asked.count(8) in (1, 3):  # pass 1 (of each extraction)
            missed.append(ids[8])
            server.update(ids[0], ids[1])
        elif zeros["n"] in (3, 6) and offset == 6 and asked.count(6) in (2, 4):  # pass 2
            del server.records[ids[0]]
            server.clock += 1
            server.records[1000 + zeros["n"]] = {"id": 1000 + zeros["n"], "value": 0, "t": server.clock}
        elif zeros["n"] in (3, 6) and offset == 12 and asked.count(12) in (2, 4):
            server.update(ids[0])

    server.on_request = schedule
    if loaded_whole(server, mode, paginator=paginator):
        assert missed and missed[0] in table()
        quiet_run_levels(server, paginator=paginator)


@pytest.mark.parametrize("added", [
    "newer", "tie",
    pytest.param("backdated", marks=pytest.mark.xfail(raises=AssertionError, strict=True, reason=(
        "an addition with a cursor before the newest read looks like a record the earlier passes missed: it hides "
        "the purge from both checks, as it hides one from a single pass (helper-65)")))])
def test_an_addition_that_hides_a_purge_stops_the_lookups_whatever_its_cursor(listing, added):
    """helper-65: the schedule above, with the addition's cursor equal to the newest read before pass 1 (a clock
    that counts seconds or days), or before it. A key past the newest that no earlier pass saw was the only sign of
    an addition, so a tie hid it; the sign is now a key at the newest or past it."""
    server = listing(20)
    paginator = {"type": "offset", "limit": 2, "total_path": "total"}
    newest = max(r["t"] for r in server.records.values())  # read by the kit before pass 1
    missed: list[int] = []

    def schedule(offset: int, asked: list[int]) -> None:
        if asking_lookup(server):
            return
        ids = [r["id"] for r in Listing.rows(server, None)]
        if offset == 8 and asked.count(8) == 1:  # pass 1: two records read move to the end, K slides past
            missed.append(ids[8])
            server.update(ids[0], ids[1])
        elif offset == 6 and asked.count(6) == 2:  # pass 2: a record read is purged, one added at that moment
            del server.records[ids[0]]
            server.clock += 1
            t = {"newer": server.clock, "tie": newest, "backdated": newest - 30}[added]
            server.records[100] = {"id": 100, "value": 0, "t": t}
        elif offset == 12 and asked.count(12) == 2:  # pass 2: one more update, one more record missed
            server.update(ids[0])

    server.on_request = schedule
    if loaded_whole(server, paginator=paginator):
        assert missed and missed[0] in table()
        quiet_run_levels(server, paginator=paginator)


def test_a_key_updated_again_before_its_lookup_is_loaded_in_its_newest_version(listing):
    """The lookup finds K in a newer version than the pass that saw it: that version is staged too."""
    server = listing(501)
    missed: list[int] = []

    def schedule(offset: int, asked: list[int]) -> None:
        if offset == 300:
            missed.append(server.rows(None)[300]["id"])
            server.update(server.rows(None)[0]["id"])
        elif asking_lookup(server):
            # as the lookup is asked: K is updated, and moves behind the lookup's start
            for key in missed:
                server.records[key]["value"] += 10
            server.update(*missed)

    server.on_request = schedule
    if loaded_whole(server):
        quiet_run_levels(server)


def test_text_keys_are_looked_up_in_the_order_they_were_seen(listing):
    """UUID-like keys have no array of integers: the pass keeps them in a list, in the order seen."""
    server = listing(501)
    shown = server.rows
    server.rows = lambda since: [{**r, "id": f"rec-{r['id']:05d}"} for r in shown(since)]
    busy_ids = busy(server)
    report = ak.load(config(server, columns={"id": {"data_type": "text"}}), progress=False)
    assert busy_ids and report.passes == {"events": 2}
    assert set(table()) == {f"rec-{i:05d}" for i in server.records}


@pytest.mark.parametrize("seed", range(6))
def test_updates_and_inserts_at_random_never_lose_a_record(listing, seed):
    """Updates of one to three records, and inserts, at random requests, concurrency 1 or 8: a load either
    fails as "kept changing" or has every record, and a quiet run levels the table with the API."""
    rng = random.Random(seed)
    server = listing(rng.choice([301, 457, 501]))
    concurrency = rng.choice([1, 8])

    def change(offset: int, asked: list[int]) -> None:
        if rng.random() < 0.3:
            server.update(*rng.sample(sorted(server.records), rng.randint(1, 3)))
        if rng.random() < 0.1:
            server.clock += 1
            key = 10_000 + len(server.records)
            server.records[key] = {"id": key, "value": 0, "t": server.clock}

    server.on_request = change
    if loaded_whole(server, concurrency=concurrency):
        quiet_run_levels(server, concurrency=concurrency)


def test_no_lookup_or_its_failure_shows_the_key(listing, caplog):
    server = listing(501)
    busy(server)
    on_request = server.on_request
    server.on_request = lambda offset, asked: on_request(offset, asked) or (
        401 if server.queries[-1].get("since", "").startswith("2026") else None)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(server), progress=False)
    assert lookups_asked(server) and KEY not in caplog.text and KEY not in str(caught.value)


# -- lookups(): which keys, from which cursor ------------------------------------------------------


def tally_of(pages: list[list[tuple]], total: int = 4, newer: set = frozenset()) -> Tally:
    """A pass's tally from pages of (key, cursor), whose pages all gave ``total``; ``newer``: keys seen with a
    cursor past the newest read before the first pass."""
    tally = Tally("id")
    for page in pages:
        tally.mark(page[0][1])
        tally.see([{"id": key, "t": cursor} for key, cursor in page])
    tally.totals, tally.newer = {total}, set(newer)
    return tally


def test_a_key_is_looked_up_from_the_first_cursor_of_the_page_it_was_last_seen_on():
    first = tally_of([[(1, "a"), (2, "b")], [(3, "c"), (4, "d")]])
    second = tally_of([[(1, "a"), (2, "b")], [(4, "d"), (3, "e")]])  # 3 updated: now on the second page's end
    last = tally_of([[(1, "a"), (2, "b")], [(4, "d")]])
    assert vouched.lookups([first, second, last], 1) == {"d": [3]}
    assert vouched.lookups([first, last], 1) == {"c": [3]}
    assert vouched.lookups([first, last], 2) is None  # one key cannot make up two


def test_no_lookup_for_too_many_keys_keys_of_two_kinds_or_a_pass_out_of_order():
    many = tally_of([[(i, f"{i:03d}") for i in range(20)]])
    few = tally_of([[(i, f"{i:03d}") for i in range(20 - vouched.MAX_KEYS - 1)]])
    assert vouched.lookups([many, few], vouched.MAX_KEYS + 1) is None
    mixed = tally_of([[(1, "a"), ("2", "b")]])
    assert vouched.lookups([mixed, tally_of([[(1, "a")]])], 1) is None
    unordered = tally_of([[(1, "a"), (2, "b")]])
    unordered.mark(None)
    assert vouched.lookups([unordered, tally_of([[(1, "a")]])], 1) is None


def test_large_passes_find_the_same_keys_as_small_ones():
    """Past SMALL keys the difference is taken in numpy; it must agree with the sets'."""
    n = SMALL + 5
    earlier, last = Tally("id"), Tally("id")
    earlier.ints, earlier.starts, earlier.firsts = array("q", range(n)), [0], ["x"]
    last.ints, last.starts = array("q", (k for k in range(n) if k not in (7, n - 2))), [0]
    earlier.totals = last.totals = {n}
    assert sorted(vouched._missed([earlier.ints], last.ints)) == [7, n - 2]
    assert sorted(vouched._missed([list(earlier.ints)], list(last.ints))) == [7, n - 2]
    assert vouched.lookups([earlier, last], 2) == {"x": [7, n - 2]}
    last.newer = {5, n - 1}  # updated: an earlier pass saw them
    assert vouched.lookups([earlier, last], 2) == {"x": [7, n - 2]}
    last.newer = {5, n + 3}  # n + 3: added while paged
    assert vouched._added(last.newer, [earlier.ints]) and vouched.lookups([earlier, last], 2) is None
    assert vouched._added({n + 3}, [list(earlier.ints)]) and not vouched._added({n - 1}, [list(earlier.ints)])


def test_no_lookup_where_a_total_moved_or_the_last_pass_saw_a_record_added():
    """An addition can hide a purge from the total; the purged key, seen by the last pass, would then make up the
    count for a record no pass saw (helper-64)."""
    first = tally_of([[(1, "a"), (2, "b")], [(3, "c"), (4, "d")]])
    last = tally_of([[(1, "a"), (2, "b")], [(4, "d")]])
    assert vouched.lookups([first, last], 1) == {"c": [3]}
    assert vouched.lookups([first, tally_of([[(1, "a"), (2, "b")], [(4, "d")]], total=5)], 1) is None
    moving = tally_of([[(1, "a"), (2, "b")], [(4, "d")]])
    moving.totals = {4, 5}
    assert vouched.lookups([first, moving], 1) is None
    assert vouched.lookups([first, tally_of([[(1, "a"), (2, "b")], [(4, "d"), (9, "z")]], newer={9})], 1) is None
    assert vouched.lookups([first, tally_of([[(1, "a"), (2, "b")], [(4, "d"), (1, "z")]], newer={1})], 1) == {
        "c": [3]}  # 1 was updated, not added
