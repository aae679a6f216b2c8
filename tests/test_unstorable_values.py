"""Values dlt's steps cannot store, each named with what to do instead of the words of the library that stopped.

- A value of another type where the column may not be empty: a primary key (or a column declared NOT NULL)
  holding ``"2.0"`` or ``True`` after numbers. dlt puts it in a variant column and leaves the key NULL; the load
  failed in normalize with Arrow's "Column 'id' is declared non-nullable but contains nulls", naming no record.
- Data nested deeper than dlt's files take: objects past 254 levels (orjson's "Recursion limit reached"), lists
  nested so deep that a nested table's file name passes the file system's limit (reported as a folder to fix).

Each case is loaded on the Arrow path and on dicts against a small API serving exactly the records given; a
failed full refresh keeps the table's rows."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest

import analytics_kit as ak
from analytics_kit.fetch import source as kit_source

KEY = "kt-key-5b1e7c"


class Listing:
    """Serves ``{"data": records}`` on /items to a request carrying ``KEY``, on 127.0.0.1."""

    def __init__(self, records: list) -> None:
        self.records = records
        self.pages: list | None = None
        listing = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                ok = self.path.startswith("/items?") and f"api_key={KEY}" in self.path
                answer: dict = {"data": listing.records}
                if listing.pages is not None:  # by offset, as many records a page as the first holds, with a total
                    at = int(re.search(r"offset=(\d+)", self.path).group(1)) // len(listing.pages[0])
                    answer = {"data": listing.pages[at] if at < len(listing.pages) else [],
                              "total": sum(map(len, listing.pages))}
                body = json.dumps(answer if ok else {"error": "no"}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listing():
    servers: list[Listing] = []

    def start(records: list) -> Listing:
        servers.append(Listing(records))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(params=["arrow", "dicts"])
def path(request, monkeypatch):
    if request.param == "dicts":
        monkeypatch.setattr(kit_source, "FAST_PATH", False)
    return request.param


def config(api: Listing, **resource) -> dict:
    return {"client": {"base_url": api.base_url,
                       "auth": {"type": "api_key", "name": "api_key", "api_key": KEY, "location": "query"}},
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": [{"name": "items", "endpoint": {"path": "items", "paginator": "single_page"}, **resource}]}


def paged(api: Listing) -> dict:
    """The config for ``api.pages``: offset paging, as many records a page as its first holds."""
    paginated = config(api)
    paginated["resources"][0]["endpoint"]["paginator"] = {"type": "offset", "limit": len(api.pages[0]),
                                                          "total_path": "total"}
    return paginated


def rows(database: str) -> list[tuple]:
    with duckdb.connect(database, read_only=True) as con:
        return con.sql("SELECT id, v FROM items ORDER BY v").fetchall()


FIRST = [{"id": 1, "v": 1}, {"id": 2, "v": 2}]


@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
@pytest.mark.parametrize(("odd", "shown"), [("2.0", "'2.0'"), (2.5, "2.5"), ("abc", "'abc'")],
                         ids=["text-number", "fraction", "text"])
def test_a_key_of_another_type_names_its_record_and_keeps_the_table(listing, path, tmp_path, mode, odd, shown):
    api = listing(FIRST)
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api), database=database, progress=False)
    api.records = [{"id": 3, "v": 3}, {"id": odd, "v": 4}]
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(api), mode, database=database, progress=False)
    message = str(caught.value)
    assert f"has {shown} in column 'id', its primary key, which the table holds as bigint" in message
    assert "variant column" in message and "GET /items?api_key=***" in message and "record with id=" in message
    assert '"data_type": "text"' in message and "ArrowInvalid" not in message and KEY not in message
    assert "run a full refresh once" in message  # the table holds the key: an incremental load would fail
    assert rows(database) == [(1, 1), (2, 2)]
    if mode == "full_refresh":  # as it says
        ak.load(config(api, columns={"id": {"data_type": "text"}}), mode, database=database, progress=False)
        assert rows(database) == [("3", 3), (str(odd), 4)]


@pytest.mark.parametrize(("records", "said"), [
    ([{"id": True, "v": 1}, {"id": 2, "v": 2}, {"id": 3, "v": 3}],  # dlt made 2 and 3 true
     "has 2 in column 'id'.*: dlt would store it as True, and a key stored as another kind of value can become one"),
    ([{"id": 1, "v": 1}, {"id": True, "v": 2}],
     "has True in column 'id'.*: dlt would put this one in a variant column"),
    ([{"id": True, "k": "a", "v": 1}, {"id": 2, "k": "a", "v": 2}],
     "has 2 in column 'id', part of .*: dlt would store it as True, and a key stored as another kind of value "
     "can become one"),
], ids=["numbers-after-true", "true-after-numbers", "compound"])
def test_true_or_false_beside_numbers_in_a_key_stops_the_load(listing, path, tmp_path, records, said):
    """True, 2, 3 loaded three rows of the key true into a merge table: dlt typed the column bool and made 2 and 3 true,
    and the pass's tally, counting three distinct keys, told it no dedup was needed (helper-130)."""
    api = listing(records)
    key = ["id", "k"] if "k" in records[0] else "id"
    with pytest.raises(ak.LoadError, match=said):
        ak.load(config(api, primary_key=key), database=str(tmp_path / "a.duckdb"), progress=False)


def test_numbers_after_a_run_of_true_or_false_keys_stop_the_load(listing, path, tmp_path):
    """The first check looked within one pass: keys stored as true and false, then 2 and 3 in the next run, left two
    rows of the key true (helper-132)."""
    api = listing([{"id": True, "v": 1}, {"id": False, "v": 2}])
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api), database=database, progress=False)
    api.records = [{"id": 2, "v": 3}, {"id": 3, "v": 4}]
    with pytest.raises(ak.LoadError, match=r"has 2 in column 'id', its primary key, which the table holds as bool"):
        ak.load(config(api), database=database, progress=False)
    assert rows(database) == [(True, 1), (False, 2)]


@pytest.mark.parametrize(("records", "resource", "loaded"), [
    ([{"id": True, "v": 1}, {"id": False, "v": 2}], {}, [(True, 1), (False, 2)]),
    ([{"id": True, "v": 1}, {"id": 2, "v": 2}], {"columns": {"id": {"data_type": "text"}}}, [("True", 1), ("2", 2)]),
    ([{"id": True, "v": 1}, {"id": 0, "v": 2}], {"columns": {"id": {"data_type": "bool"}}}, [(True, 1), (False, 2)]),
    ([{"id": "abc", "v": 1}, {"id": True, "v": 2}], {}, [("abc", 1), ("True", 2)]),
    ([{"id": True, "v": 1}, {"id": 2, "v": 2}, {"id": 3, "v": 3}],
     {"processing_steps": [{"filter": lambda r: r["id"] is not True}]}, [(2, 2), (3, 3)]),
    ([{"id": True, "v": 1}, {"id": 2, "v": 2}], {"processing_steps": [{"map": lambda r: {**r, "id": str(r["id"])}}]},
     [("True", 1), ("2", 2)]),
    ([{"id": 1, "v": 1}, {"id": 0, "v": 2}], {}, [(1, 1), (0, 2)]),
], ids=["all-bools", "declared-text", "declared-bool", "text-then-true", "filter-drops-true", "map-makes-text",
        "zero-and-one"])
def test_true_or_false_keys_dlt_keeps_distinct_load(listing, path, tmp_path, records, resource, loaded):
    """As plain dlt loads them: a first check on the raw keys refused these (helper-132)."""
    api = listing(records)
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api, **resource), database=database, progress=False)
    assert rows(database) == loaded


@pytest.mark.parametrize("size", [100, 10])
def test_a_key_deep_in_a_group_of_pages_names_its_request(listing, path, tmp_path, size):
    """Records are converted 2,000 at a time: only the last 8 pages' requests were kept, so a record of the second of
    20 pages of the guide's 100 was named without its request (helper-130); 32 pages, at a limit under 63 (helper-132).
    """
    api = listing([])
    api.pages = [[{"id": n, "v": n} for n in range(p * size, p * size + size)] for p in range(2000 // size)]
    api.pages[1][size // 2] = {"id": "x1", "v": size + size // 2}
    with pytest.raises(ak.LoadError, match=rf"the record with id='x1' on GET /items\?offset={size}&limit={size}&"
                                           r"api_key=\*\*\* has 'x1'"):
        ak.load(paged(api), database=str(tmp_path / "a.duckdb"), progress=False, concurrency=1)


def test_a_key_a_copying_map_step_passes_on_names_its_request(listing, path, tmp_path):
    """The request was found by the record's identity: a map step returning a copy (``{**r}``) named none
    (helper-133)."""
    api = listing([])
    api.pages = [[{"id": n, "v": n} for n in range(p * 5, p * 5 + 5)] for p in range(3)]
    api.pages[1][2] = {"id": "x1", "v": 7}
    copying = paged(api)
    copying["resources"][0]["processing_steps"] = [{"map": lambda record: {**record}}]
    with pytest.raises(ak.LoadError, match=r"the record with id='x1' on GET /items\?offset=5&limit=5&api_key=\*\*\* "
                                           r"has 'x1'"):
        ak.load(copying, database=str(tmp_path / "a.duckdb"), progress=False, concurrency=1)


def test_a_long_key_is_cut_in_the_message(listing, path, tmp_path):
    api = listing([{"id": 1, "v": 1}, {"id": "k" * 200_000, "v": 2}])
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(api), database=str(tmp_path / "a.duckdb"), progress=False)
    assert "has 'kkkk" in str(caught.value) and len(str(caught.value)) < 2_000


@pytest.mark.parametrize(("records", "resource", "said"), [
    ([{"id": 1, "v": 1, "ts": "z" * 200_000}], {"columns": {"ts": {"data_type": "timestamp"}}}, "has 'zzzz"),
    ([{"id": 1, "v": 1}, {"id": ["z" * 200_000], "v": 2}], {}, "the primary key 'id' is ['zzzz"),
    ([{"id": 1, "v": 1, "ts": "z" * 200_000}],
     {"endpoint": {"path": "items", "paginator": "single_page", "incremental": {"cursor_path": "ts",
                                                                                "initial_value": 5}}}, "('zzzz"),
], ids=["declared-column", "key-a-list", "cursor"])
def test_any_long_value_is_cut_in_the_message(listing, path, tmp_path, records, resource, said):
    """Values the API sends are quoted in many messages; only keys were cut, and a 200,000-character cursor, list or
    declared column made messages of 200,000 to 400,000 characters (helper-132). Each quoted run is cut to its ends."""
    api = listing(records)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(api, **resource), database=str(tmp_path / "a.duckdb"), progress=False)
    shown = str(caught.value)
    assert said in shown and len(shown) < 2_000 and KEY not in shown


def test_a_secret_in_a_long_run_is_redacted_before_the_run_is_cut():
    from analytics_kit.errors import LoadError

    secret = "sk-abcdef123456"
    error = LoadError("sent " + "x" * 190 + secret + "y" * 1000, guidance="g").redacted(
        lambda text: text.replace(secret, "***"))
    assert secret[:6] not in str(error) and "x" * 190 + "***" in str(error) and len(str(error)) < 400


def test_the_first_values_type_the_key_in_a_first_load(listing, path, tmp_path):
    api = listing([{"id": 1, "v": 1}, {"id": "x1", "v": 2}])
    with pytest.raises(ak.LoadError, match=r"has 'x1' in column 'id', its primary key, which the values before it "
                                           r"made of type bigint"):
        ak.load(config(api), database=str(tmp_path / "a.duckdb"), progress=False)


@pytest.mark.parametrize("records", [
    [{"id": 1, "v": 1}, {"id": "2", "v": 2}],  # dlt coerces "2" into a bigint key
    [{"id": "a", "v": 1}, {"id": 3, "v": 2}],  # and 3 into a text one
    [{"id": 1.5, "v": 1}, {"id": 3, "v": 2}],  # and 3 into a double one
], ids=["digits-after-numbers", "number-after-text", "integer-after-fraction"])
def test_keys_dlt_coerces_load(listing, path, tmp_path, records):
    api = listing(records)
    database = str(tmp_path / "a.duckdb")
    report = ak.load(config(api), database=database, progress=False)
    assert report.rows == {"items": 2}
    assert [v for _, v in rows(database)] == [1, 2]


def test_a_declared_text_key_takes_both(listing, path, tmp_path):
    api = listing([{"id": 2, "v": 1}, {"id": "2.0", "v": 2}])
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api, columns={"id": {"data_type": "text"}}), database=database, progress=False)
    assert rows(database) == [("2", 1), ("2.0", 2)]


def test_a_part_of_a_compound_key(listing, path, tmp_path):
    api = listing([{"id": 1, "v": 1}, {"id": True, "v": 2}])
    with pytest.raises(ak.LoadError, match=r"record with id=True, v=2 .* has True in column 'id', part of its primary "
                                           r"key"):
        ak.load(config(api, primary_key=["id", "v"]), database=str(tmp_path / "a.duckdb"), progress=False)


def test_a_timestamp_key_then_text(listing, path, tmp_path):
    api = listing([{"id": "2026-01-01T00:00:00Z", "v": 1}, {"id": "abc", "v": 2}])
    with pytest.raises(ak.LoadError, match=r"has 'abc' in column 'id', its primary key, which the values before it "
                                           r"made of type timestamp"):
        ak.load(config(api), database=str(tmp_path / "a.duckdb"), progress=False)


def test_a_declared_key_is_not_told_to_go_to_a_variant_column(listing, path, tmp_path):
    api = listing([{"id": 2, "v": 1}, {"id": "2.0", "v": 2}])
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(api, columns={"id": {"data_type": "bigint"}}), database=str(tmp_path / "a.duckdb"),
                progress=False)
    message = str(caught.value)
    assert "has '2.0' in column 'id', which the config declares of type bigint" in message
    assert "a primary key cannot go to a variant column" in message and "leave 'id' undeclared" not in message


def test_a_not_null_column_emptied_by_a_variant_is_explained(listing, path, tmp_path):
    """A column declared NOT NULL without a type: the value reaches dlt's normaliser, whose words are explained."""
    api = listing([{"id": 1, "n": 2}, {"id": 2, "n": "x"}])
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(api, columns={"n": {"nullable": False}}), database=str(tmp_path / "a.duckdb"), progress=False)
    message = str(caught.value)
    assert "leaves column 'n'" in message and "variant column" in message and "n__v_text" in message
    assert "ArrowInvalid" not in message


@pytest.mark.parametrize("record", [{"id": 2}, {"id": 2, "n": None}, None], ids=["without-the-field", "null", "never"])
def test_a_not_null_column_left_empty_is_explained(listing, path, tmp_path, record):
    """On dicts a record without the field was explained as a value of another type, and one with null failed with
    dlt's CannotCoerceNullException and "run the load again" (helper-130); Arrow pages said "has no value"."""
    api = listing([{"id": 1, "n": 2}, record] if record else [{"id": 1}, {"id": 2}])  # never: no record fills it
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(api, columns={"n": {"nullable": False}}), database=str(tmp_path / "a.duckdb"), progress=False)
    message = str(caught.value)
    assert "'n'" in message and ("leaves column 'n'" in message or "has no value" in message), message
    assert "CannotCoerceNull" not in message and "run the load again" not in message


def nested(levels: int, kind: type) -> object:
    value: object = 1
    for _ in range(levels):
        value = {"a": value} if kind is dict else [value]
    return value


@pytest.mark.parametrize(("kind", "levels", "said"), [
    (dict, 300, "nested more than 254 levels deep"),
    (list, 45, "dlt makes a table of the lists in a field, and of every level of lists nested in them, named by "
               "the path to it (items__deep__list__list"),
], ids=["objects", "lists"])
def test_data_nested_too_deep_says_to_keep_it_as_json(listing, path, tmp_path, kind, levels, said):
    api = listing([{"id": 1, "v": 1, "deep": nested(levels, kind)}])
    database = str(tmp_path / "a.duckdb")
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config(api), database=database, progress=False)
    message = str(caught.value)
    assert said in message and '"data_type": "json"' in message
    assert "writable" not in message and "Recursion limit" not in message
    # as it says: declared json on Arrow pages; a step's JSON text where records stay dicts (dlt writes them itself)
    fix = {"columns": {"deep": {"data_type": "json"}}} if path == "arrow" or kind is list else \
        {"processing_steps": [{"map": lambda r: {**r, "deep": json.dumps(r["deep"])}}]}
    assert ("processing_steps" in message) is (kind is dict)
    ak.load(config(api, **fix), database=database, progress=False)
    with duckdb.connect(database, read_only=True) as con:
        assert json.loads(con.execute("SELECT deep FROM items").fetchone()[0]) == nested(levels, kind)


@pytest.mark.parametrize(("first", "declared", "second"), [
    ([{"id": 1, "v": 1}], "text", [{"id": "5", "v": 2}, {"id": "05", "v": 3}]),  # one 5 as bigint
    ([{"id": "2026-01-01T00:00:00Z", "v": 1}], "text",
     [{"id": "2026-01-02T00:00:00Z", "v": 2}, {"id": "2026-01-02T00:00:00+00:00", "v": 3}]),  # one instant
    ([{"id": 0.5, "v": 1}], "text", [{"id": 2**53 + 1, "v": 2}, {"id": 2**53, "v": 3}]),  # one double
    ([{"id": 1, "v": 1}], "text", [{"id": True, "v": 2}]),  # DuckDB's raw "Could not convert string 'True' to INT64"
    ([{"id": "a", "v": 1}], "bigint", [{"id": 5, "v": 2}]),  # the old "05" would stay beside the new 5
], ids=["text-over-bigint", "text-over-timestamp", "text-over-double", "true-as-text-over-bigint", "bigint-over-text"])
def test_a_key_declared_as_another_type_than_the_table_holds_needs_a_full_refresh(listing, path, tmp_path, first,
                                                                                 declared, second):
    """The kit's advice (declare the key's type, run a full refresh once) followed without the full refresh: keys the
    declared type keeps apart were one key in the table, held twice in a merge table where plain dlt keeps one, or
    DuckDB's raw conversion error (helper-133). Refused before a page is fetched; the full refresh then loads."""
    api = listing(first)
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api), database=database, progress=False)
    before = rows(database)
    api.records = second
    retyped = config(api, columns={"id": {"data_type": declared}})
    with pytest.raises(ak.ConfigError, match=rf"declares its primary key 'id' as '{declared}', and the table 'items' "
                                             r"holds that column as '\w+', a type an incremental load does not change"
                       ) as caught:
        ak.load(retyped, database=database, progress=False)
    assert 'mode="full_refresh"' in caught.value.guidance and KEY not in str(caught.value)
    assert rows(database) == before
    ak.load(retyped, "full_refresh", database=database, progress=False)
    assert len(rows(database)) == len(second)
    ak.load(retyped, database=database, progress=False)  # the table holds the declared type now
    assert len(rows(database)) == len(second)


@pytest.mark.parametrize(("column", "value", "declared", "stored"), [
    ("at", "2026-03-02T10:00:00.9996+01:00", {"data_type": "timestamp", "precision": 3, "timezone": False},
     "timestamp"),  # the kit's files cut the value to .999 for a TIMESTAMPTZ that keeps .9996 with dlt
    ("n", 100, {"data_type": "bigint", "precision": 8}, "bigint"),  # 200 was "too large for the TINYINT" it did not hold
], ids=["timestamp-precision", "bigint-precision"])
def test_a_precision_or_time_zone_that_makes_another_column_type_needs_a_full_refresh(listing, path, tmp_path, column,
                                                                                   value, declared, stored):
    """A precision or a time zone declared over a column the table holds without it made another column type in the
    kit's files than the table's: values cut where dlt keeps them, or a load failing on the wrong type (helper-152).
    Refused before a page as another data_type is; a full refresh then makes the declared column."""
    api = listing([{"id": 1, "v": 1, column: value}])
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api), database=database, progress=False)
    before = rows(database)
    api.records = [{"id": 2, "v": 2, column: value}]
    retyped = config(api, columns={column: declared})
    with pytest.raises(ak.ConfigError, match=rf"declares column '{column}' as '{declared['data_type']}[^']+', and the "
                                             rf"table 'items' holds that column as '{stored}', a type an incremental"):
        ak.load(retyped, database=database, progress=False)
    assert rows(database) == before
    ak.load(config(api, columns={column: {"data_type": stored}}), database=database, progress=False)  # as it holds it
    ak.load(retyped, "full_refresh", database=database, progress=False)
    ak.load(retyped, database=database, progress=False)  # the table holds the declared type now
    assert rows(database) == [(2, 2)]


def test_a_key_declared_as_the_table_holds_it_merges(listing, path, tmp_path):
    api = listing([{"id": 1, "v": 1}])
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api), database=database, progress=False)
    api.records = [{"id": "1", "v": 2}, {"id": 2, "v": 3}]
    ak.load(config(api, columns={"id": {"data_type": "bigint"}}), database=database, progress=False)
    assert rows(database) == [(1, 2), (2, 3)]


def test_a_schema_an_earlier_run_retyped_is_judged_by_the_table(listing, path, tmp_path, monkeypatch):
    """dlt's schema takes a declared type the table does not: after a run declaring text over a BIGINT column (before
    such runs were refused), declaring bigint, as the table holds it, was refused as "holds that column as 'text'",
    whose advice made a key twice in the table (helper-134). The table's own type decides."""
    from analytics_kit.run import load as load_module

    api = listing([{"id": 5, "v": 1}])
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api), database=database, progress=False)
    with monkeypatch.context() as earlier:
        earlier.setattr(load_module, "refuse_retyped_columns", lambda *args: None)
        ak.load(config(api, columns={"id": {"data_type": "text"}}), database=database, progress=False)
    api.records = [{"id": "5", "v": 2}, {"id": 6, "v": 3}]
    ak.load(config(api, columns={"id": {"data_type": "bigint"}}), database=database, progress=False)
    assert rows(database) == [(5, 2), (6, 3)]
    with pytest.raises(ak.ConfigError, match="holds that column as 'bigint'"):
        ak.load(config(api, columns={"id": {"data_type": "text"}}), database=database, progress=False)
    assert ak.schema(database=database).columns.query("table == 'items' and column == 'id'")["type"].tolist() == [
        "bigint"]


@pytest.mark.parametrize(("declared", "value", "stored"), [("text", "abc", 10), ("double", 1.5, 10),
                                                            ("bool", True, 10)], ids=["text", "double", "bool"])
def test_a_column_declared_as_another_type_than_the_table_holds_needs_a_full_refresh(listing, path, tmp_path, declared,
                                                                                    value, stored):
    """DuckDB's raw "Could not convert string 'abc' to INT64", whose advice (run the load again) failed the same way;
    or 1.5 stored as 2 and true as 1 without a word (helper-134)."""
    api = listing([{"id": 1, "v": stored}])
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api), database=database, progress=False)
    api.records = [{"id": 1, "v": value}]
    retyped = config(api, columns={"v": {"data_type": declared}})
    with pytest.raises(ak.ConfigError, match=rf"declares column 'v' as '{declared}', and the table 'items' holds that "
                                             r"column as 'bigint'.*converted to bigint"):
        ak.load(retyped, database=database, progress=False)
    assert rows(database) == [(1, stored)]
    ak.load(retyped, "full_refresh", database=database, progress=False)
    assert rows(database) == [(1, str(value) if declared == "text" else value)]


@pytest.mark.parametrize("mode", ["incremental", "full_refresh"])
def test_a_tables_columns_come_in_dlts_order(listing, path, tmp_path, mode):
    """Declared columns, then the fields as the records first hold them, as dlt orders them: the fast path sorted the
    undeclared ones by name (alpha, id, zeta for dlt's id, zeta, alpha; helper-134)."""
    api = listing([{"zeta": 10, "v": 1, "id": 1, "alpha": "a"}, {"id": 2, "v": 2, "alpha": "b", "zeta": 3}])
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api, columns={"v": {"data_type": "bigint"}}), mode, database=database, progress=False)
    with duckdb.connect(database, read_only=True) as con:
        columns = [row[0] for row in con.sql("DESCRIBE items").fetchall()]
    assert columns == ["v", "zeta", "id", "alpha", "_dlt_load_id", "_dlt_id"]


@pytest.mark.parametrize(("first", "declared", "records", "held"), [
    (None, {"id": {"data_type": "bigint"}}, [{"id": "5", "v": 1}, {"id": "05", "v": 2}], 1),
    (None, {"id": {"data_type": "timestamp"}},
     [{"id": "2026-01-02T00:00:00Z", "v": 1}, {"id": "2026-01-02T00:00:00+00:00", "v": 2}], 1),
    ([{"id": "5", "v": 0}], {}, [{"id": 5, "v": 1}, {"id": "05", "v": 2}], 2),  # a text column keeps them apart
    (None, {"id": {"data_type": "text"}}, [{"id": 5, "v": 1}, {"id": "05", "v": 2}, {"id": 5.0, "v": 3}], 3),
    (None, {"id": {"data_type": "double"}}, [{"id": 1, "v": 1}, {"id": 1.0, "v": 2}, {"id": "1e0", "v": 3}], 1),
    (None, {"id": {"data_type": "text"}}, [{"id": 1.0, "v": 1}, {"id": True, "v": 2}, {"id": "x", "v": 3}], 3),
], ids=["text-into-bigint", "two-forms-of-an-instant", "number-and-text-into-text", "declared-text",
        "declared-double", "true-beside-one-as-text"])
def test_the_report_counts_keys_as_the_tables_key_column_holds_them(listing, path, tmp_path, first, declared,
                                                                     records, held):
    """The report counted the keys as the API wrote them: 2 rows for a table of 1 ("5" and "05" into BIGINT), and
    1 for 2 rows changed (5 and "05" into a text column; helper-134)."""
    database = str(tmp_path / "a.duckdb")
    api = listing(first or records)
    if first:
        ak.load(config(api), database=database, progress=False)
        api.records = records
    api.pages = [records]  # by offset, with a total: a listing whose keys seemed to repeat was paged again
    retyped = paged(api)
    retyped["resources"][0]["columns"] = declared
    report = ak.load(retyped, database=database, progress=False)
    assert report.rows == {"items": held}
    api.pages = [[{"id": n, "v": n} for n in range(1, len(records) + 1)]]  # as many keys, plainly distinct
    plain = ak.load(paged(api), database=str(tmp_path / "plain.duckdb"), progress=False)
    if held == len(records):  # no second pass for keys the table keeps apart
        assert report.requests == plain.requests and not report.warnings
    else:  # one key written two ways is a key repeated: it may make up for a record never served (helper-138)
        assert report.passes == {"items": 2} and any("the same way in two passes" in w for w in report.warnings)
    with duckdb.connect(database, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM items WHERE v > 0").fetchone()[0] == held


@pytest.mark.parametrize("key", ["ID", "Id"])
def test_a_key_named_otherwise_than_its_field_finds_it_as_dlt_does(listing, path, tmp_path, key):
    """dlt names the key "ID" and the field "id" one column: the kit looked for a field "ID", and every record was
    "missing its key" (helper-135)."""
    api = listing([{"id": 1, "v": 1}, {"id": 2, "v": 2}])
    database = str(tmp_path / "a.duckdb")
    ak.load(config(api, primary_key=key), database=database, progress=False)
    api.records = [{"id": 2, "v": 3}]
    assert ak.load(config(api, primary_key=key), database=database, progress=False).rows == {"items": 1}
    assert rows(database) == [(1, 1), (2, 3)]



def two_into_one(api: Listing, first: dict, second: dict, **defaults) -> dict:
    """Two resources of ``api``'s records into table ``t``."""
    both = config(api)
    both["resource_defaults"].update(defaults)
    both["resources"] = [{"name": name, "endpoint": {"path": "items", "paginator": "single_page",
                                                     "params": {"from": name}}, **hints}
                         for name, hints in (("ra", first), ("rb", second))]
    return both


def test_a_table_name_function_beside_another_resource_keeps_one_row_per_key(listing, path, tmp_path):
    """Keys proven distinct in each resource's pages were taken as distinct in the table, which a table_name function
    may share with any resource: each key twice (helper-136)."""
    api = listing([{"id": 1, "v": 1}, {"id": 2, "v": 2}])
    database = str(tmp_path / "a.duckdb")
    routed = two_into_one(api, {"table_name": lambda record: "t"}, {"table_name": "t"})
    for mode in ("incremental", "incremental", "full_refresh"):
        ak.load(routed, mode, database=database, progress=False)
        with duckdb.connect(database, read_only=True) as con:
            assert con.sql("SELECT id, count(*) FROM t GROUP BY id ORDER BY id").fetchall() == [(1, 1), (2, 1)]


@pytest.mark.parametrize("hints", [{}, {"primary_key": "id"}], ids=["no-key", "with-a-key"])
def test_resources_appending_to_one_table_report_every_row(listing, path, tmp_path, hints):
    """The report counted 0 rows (no key) or each key once (with one) where the table gained every row (helper-136)."""
    api = listing([{"id": 1, "v": 1}, {"id": 2, "v": 2}])
    database = str(tmp_path / "a.duckdb")
    appended = two_into_one(api, {"table_name": "t", **hints}, {"table_name": "t", **hints},
                            write_disposition="append", primary_key=None)
    assert ak.load(appended, database=database, progress=False).rows == {"t": 4}
    with duckdb.connect(database, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 4
