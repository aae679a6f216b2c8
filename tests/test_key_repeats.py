"""A key seen twice in a pass is weighed as the table's key column holds it, with a total and without one
(helper-138): a record the pass never saw is paged for again, or the load says it may be missing."""

from __future__ import annotations

import json
import threading

import pytest

import analytics_kit as ak
from adversary import MISSING, Adversary, default_records

N, LIMIT = 40, 10


def config(server: Adversary, concurrency: int, total: bool = True) -> dict:
    paginator = {"type": "offset", "limit": LIMIT}
    if not total:
        paginator.update(total_path=None, stop_after_empty_page=True)
    return {"client": {"base_url": server.base_url,
                       "auth": {"type": "api_key", "name": "api_key", "api_key": server.key, "location": "query"}},
            "resources": [{"name": "events", "primary_key": "id", "write_disposition": "merge",
                           "endpoint": {"path": "/v1/events", "data_selector": "data", "paginator": paginator,
                                        "concurrency": concurrency, "error_handler": {"max_retries": 0},
                                        "incremental": {"cursor_path": "updated_at", "start_param": "updated_since",
                                                        "initial_value": "2026-01-01T00:00:00Z"}}}]}


def ids(database: str) -> list:
    return ak.query("SELECT id FROM events ORDER BY id", database).id.tolist()


@pytest.mark.parametrize("key", ["id", ["id", "kind"]], ids=["one field", "two fields"])
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("form", [str, float, lambda key: f"0{key}"], ids=["text", "float", "padded"])
def test_a_key_repeated_in_another_form_does_not_make_up_for_a_record_never_served(tmp_path, form, concurrency, key):
    """The page at offset 20 starts a record early, once, and writes the repeated key another way (20 as "20",
    20.0 or "020"): counted as written, 40 keys met the total of 40, and the record never served (31) was lost
    without a word (helper-138; a key of two fields, helper-139). As the table holds them there are 39: the listing
    is paged again and loads whole."""
    database = str(tmp_path / "a.duckdb")
    shifted = threading.Event()
    with Adversary(default_records(N)) as server:
        full = {r["id"]: r for r in server.records()}

        def shift(body: dict, offset: int) -> dict:
            if offset != 20 or shifted.is_set():
                return body
            shifted.set()
            data = [dict(full[20], id=form(20))] + body["data"][:-1]  # 31 slides out of every page
            return {**body, "data": data}

        server.transform = shift
        cfg = config(server, concurrency)
        cfg["resources"][0]["primary_key"] = key
        report = ak.load(cfg, database=database, progress=False)
        assert shifted.is_set()
    assert ids(database) == list(range(1, N + 1)), report.warnings
    assert report.rows["events"] == N


@pytest.mark.parametrize("concurrency", [1, 4])
def test_without_a_total_a_key_seen_twice_has_the_listing_paged_again(tmp_path, concurrency):
    """No total: record 3, updated while the listing is paged, moves to its end, and the record after the page
    boundary slides into a page already read. The pass saw key 3 twice and nothing else to count: it loaded 39 of
    40 with no warning, and 21's cursor, older than the one stored, kept it out of every later run too."""
    database = str(tmp_path / "a.duckdb")
    updated = threading.Event()
    with Adversary(default_records(N)) as server:
        server.total = MISSING
        order = [r["id"] for r in sorted(server.records(), key=lambda r: r["updated_at"])]

        def update(body: dict, offset: int) -> dict:
            if offset == 20 and not updated.is_set():
                updated.set()
                server.update_record(order[2], value=123.0)  # an early record, now the newest
            return body

        server.transform = update
        report = ak.load(config(server, concurrency, total=False), database=database, progress=False)
        assert updated.is_set()
        served = sorted(r["id"] for r in server.records())
    assert ids(database) == served, report.warnings
    assert report.rows["events"] == N


def test_without_a_total_a_listing_that_repeats_keys_the_same_way_loads_with_a_warning(tmp_path):
    """A change feed without a total (each key twice, two versions): paged twice, the same way, then loaded one row
    per key with the warning that says an overlapping listing would have hidden records."""
    database = str(tmp_path / "a.duckdb")
    records = default_records(N)
    versions = [dict(r, value=-1.0, updated_at=records[-1]["updated_at"]) for r in records[:5]]
    with Adversary(records + versions) as server:
        server.total = MISSING
        report = ak.load(config(server, 1, total=False), database=database, progress=False)
        asked = len(server.requests)
    assert ids(database) == sorted(r["id"] for r in records)
    assert asked >= 2 * -(-len(records + versions) // LIMIT), asked  # two passes
    assert any("the same way in two passes" in w and "report it to the API's provider" in w
               for w in report.warnings), report.warnings


@pytest.mark.parametrize("written", ["9007199254740993.0", "9.007199254740993e15", "-9007199254740993.0"])
def test_a_key_written_as_a_float_past_2_53_is_refused_and_the_table_stays(tmp_path, written):
    """9007199254740993 written with ".0" is read as 9007199254740992.0: its update was merged into a row
    9007199254740992 the API never had, beside the old one (helper-138)."""
    database = str(tmp_path / "a.duckdb")
    big = int(float(written)) + (1 if not written.startswith("-") else -1)  # the integer the API meant
    records = default_records(3)
    records[0]["id"] = big
    with Adversary(records) as server:
        ak.load(config(server, 1), database=database, progress=False)
        server.update_record(big, value=-1.0)
        server.transform = lambda body, offset: as_text(body).replace(str(big).encode(), written.encode())
        with pytest.raises(ak.LoadError, match=r"past 2\*\*53") as caught:
            ak.load(config(server, 1), database=database, progress=False)
    assert "GET /v1/events" in str(caught.value)  # the request is named
    table = ak.query("SELECT id, value FROM events ORDER BY id", database)
    assert sorted(table.id.tolist()) == sorted(r["id"] for r in records)  # the old rows, whole
    assert -1.0 not in table.value.tolist()


def as_text(body: dict) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize("dicts", [False, True], ids=["arrow", "dicts"])
def test_a_value_too_large_for_a_declared_precision_says_so_and_a_full_refresh_mends_it(tmp_path, dicts):
    """A bigint declared with precision 8 is a TINYINT: 300 failed in the load step with DuckDB's "out of range for
    the destination type INT8" and the advice to run the load again (helper-138); where records stay dicts, in
    dlt's parquet writer with Arrow's "too large to fit in C integer type" (helper-139)."""
    database = str(tmp_path / "a.duckdb")
    records = [dict(r, n=i) for i, r in enumerate(default_records(5), 1)]
    with Adversary(records) as server:
        cfg = config(server, 1)
        cfg["resources"][0]["columns"] = {"n": {"data_type": "bigint", "precision": 8}}
        if dicts:
            cfg["resources"][0]["processing_steps"] = [{"map": lambda record: record}]
        ak.load(cfg, database=database, progress=False)
        server.update_record(3, n=300)
        with pytest.raises(ak.LoadError) as caught:
            ak.load(cfg, database=database, progress=False)
        said = str(caught.value)
        assert ("sent 300 for a column, too large for the integer type a declared precision gives" if dicts else
                "sent 300 for column 'n', which the table holds as TINYINT") in said, said
        assert "run a full refresh once" in said and "Fix the cause and run the load again" not in said, said
        assert sorted(ak.query("SELECT n FROM events", database).n) == [1, 2, 3, 4, 5]  # the table stays
        del cfg["resources"][0]["columns"]["n"]["precision"]  # as the advice says
        ak.load(cfg, "full_refresh", database=database, progress=False)
        assert sorted(ak.query("SELECT n FROM events", database).n) == [1, 2, 4, 5, 300]


@pytest.mark.parametrize("odd, number", [("\u0663", 3), ("\uff14", 4), ("1_0", 10), ("0x10", 16)])
@pytest.mark.parametrize("declared", [None, "bigint", "text"])
def test_text_a_numeric_key_column_reads_as_another_key_is_refused(tmp_path, odd, number, declared):
    """"1_0" beside 10 ("٣" beside 3, "0x10" beside 16) was one row of two records, without a word: Python's int()
    reads each, and dlt's coercion with it (helper-138). A text key column keeps them apart, and loads them."""
    database = str(tmp_path / "a.duckdb")
    records = default_records(2)
    records[0]["id"], records[1]["id"] = number, odd
    with Adversary(records) as server:
        cfg = config(server, 1)
        if declared:
            cfg["resources"][0]["columns"] = {"id": {"data_type": declared}}
        if declared == "text":
            ak.load(cfg, database=database, progress=False)
            assert sorted(ak.query("SELECT id FROM events", database).id) == sorted([str(number), odd])
            return
        with pytest.raises(ak.LoadError) as caught:
            ak.load(cfg, database=database, progress=False)
    said = str(caught.value)
    assert f"reads as the number {number}" in said and "data_type\": \"text\"" in said, said


def test_text_keys_with_underscores_load_in_a_text_key_column(tmp_path):
    """The check asks for the key column's type only where text keys would be read as numbers: "user_1" stays."""
    database = str(tmp_path / "a.duckdb")
    records = default_records(3)
    for record, key in zip(records, ("user_1", "1_0", "0x10")):
        record["id"] = key
    with Adversary(records) as server:
        report = ak.load(config(server, 1), database=database, progress=False)
    assert report.rows["events"] == 3
    assert sorted(ak.query("SELECT id FROM events", database).id) == ["0x10", "1_0", "user_1"]


def test_without_a_total_a_listing_that_keeps_changing_loads_after_two_passes_with_a_warning(tmp_path):
    """A busy feed without a total repeats keys in every pass, another way each time: paged until it settled, it
    failed every load (helper-113). Two passes, their union loaded, and a warning that says what may be missing."""
    database = str(tmp_path / "a.duckdb")
    with Adversary(default_records(N)) as server:
        server.total = MISSING
        updates = iter(range(1, N))

        def busy(body: dict, offset: int) -> dict:
            if offset == 20:
                server.update_record(next(updates), value=-1.0)  # another early record each pass
            return body

        server.transform = busy
        report = ak.load(config(server, 1, total=False), database=database, progress=False)
    assert report.passes == {"events": 2}, report.passes
    assert any("in another way in each of two passes" in w and "run a full refresh" in w for w in report.warnings)
    assert len(ids(database)) == report.rows["events"]


@pytest.mark.parametrize("beside", [{"errors": [{"message": "field x is deprecated"}]}, {"error": "none"},
                                    {"error_code": "0"}, {"status": "Error"}])
def test_an_answer_with_an_error_field_beside_whole_pages_loads(tmp_path, beside):
    """An error field beside the records is no refusal: GraphQL's warnings, a "none" or "0" code loaded before, and
    must still (helper-139); a page it cuts short says it (``test_total_an_answer_that_is_not_records...``)."""
    database = str(tmp_path / "a.duckdb")
    with Adversary(default_records(N)) as server:
        # beside the records only: beside the empty page that ends the listing, an error is one (helper-126)
        server.transform = lambda body, offset: {**body, **beside} if body["data"] else body
        report = ak.load(config(server, 1), database=database, progress=False)
        served = sorted(r["id"] for r in server.records())
    assert ids(database) == served and report.rows["events"] == N


def test_records_under_an_errors_field_load(tmp_path):
    """An error log's listing: its records under "errors", selected so (helper-139)."""
    database = str(tmp_path / "a.duckdb")
    with Adversary(default_records(N)) as server:
        server.transform = lambda body, offset: {"errors": body["data"], "total": body["total"]}
        cfg = config(server, 1)
        cfg["resources"][0]["endpoint"]["data_selector"] = "errors"
        report = ak.load(cfg, database=database, progress=False)
    assert report.rows["events"] == N and len(ids(database)) == N


def test_a_listing_of_one_page_that_repeats_a_key_is_asked_once(tmp_path):
    """One page cannot have shifted: a record's history in one answer cost a second request, and a warning of pages
    that overlap (helper-139: a child asked once per parent paid it for every parent)."""
    database = str(tmp_path / "a.duckdb")
    records = default_records(5)
    with Adversary(records + [dict(records[0], value=-1.0, updated_at=records[-1]["updated_at"])]) as server:
        server.total = MISSING
        cfg = config(server, 1, total=False)
        cfg["resources"][0]["endpoint"]["paginator"] = "single_page"
        report = ak.load(cfg, database=database, progress=False)
        asked = len(server.requests)
    assert asked == 1 and not report.passes and not report.warnings, (asked, report.warnings)
    assert ids(database) == [r["id"] for r in records]


def test_a_field_of_a_compound_key_a_numeric_column_reads_as_another_is_refused(tmp_path):
    """(10, "view") beside ("1_0", "view") was one row of two records: the check looked at single keys only."""
    database = str(tmp_path / "a.duckdb")
    records = default_records(2)
    records[0].update(id=10, kind="view")
    records[1].update(id="1_0", kind="view")
    with Adversary(records) as server:
        cfg = config(server, 1)
        cfg["resources"][0]["primary_key"] = ["id", "kind"]
        with pytest.raises(ak.LoadError, match=r"the primary key 'id' is '1_0' .* reads as the number 10"):
            ak.load(cfg, database=database, progress=False)


def test_text_a_key_column_typed_by_an_earlier_page_reads_as_another_key_is_refused_on_dicts(tmp_path):
    """Records that stay dicts (a map step): 10 on one page typed the key column bigint, and "1_0" on the next, a page
    of text keys only, was one row with it: the page's check could not know the column's type (helper-139)."""
    database = str(tmp_path / "a.duckdb")
    records = default_records(2)
    records[0]["id"], records[1]["id"] = 10, "1_0"
    with Adversary(records) as server:
        cfg = config(server, 1)
        cfg["resources"][0]["endpoint"]["paginator"]["limit"] = 1
        cfg["resources"][0]["processing_steps"] = [{"map": lambda record: record}]
        with pytest.raises(ak.LoadError, match=r"'1_0'.*made of type bigint"):
            ak.load(cfg, database=database, progress=False)


def test_a_column_declared_in_two_spellings_is_the_later_one_on_every_run(tmp_path):
    """{"Value": text, "value": double}: dlt takes the later; the kit loaded run 1 so, then refused every incremental
    run as declaring text over a DOUBLE column, and the full refresh it advised built DOUBLE again (helper-140)."""
    database = str(tmp_path / "a.duckdb")
    with Adversary(default_records(5)) as server:
        cfg = config(server, 1)
        cfg["resources"][0]["columns"] = {"Value": {"data_type": "text"}, "value": {"data_type": "double"}}
        for _ in range(2):
            ak.load(cfg, database=database, progress=False)
            server.update_record(1, value=1.5)
    with duckdb_connect(database) as con:
        assert con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'events' "
                           "AND column_name = 'value'").fetchone()[0] == "DOUBLE"


def duckdb_connect(database: str):
    import duckdb

    return duckdb.connect(database, read_only=True)
