"""Cursors the kit leaves as the API writes them are stored so too: compared with a stored cursor in the kit's own
form ("...+00:00"), "...Z" records were newer as text (an append loaded its last record again each run) and
"...-05:00" ones older, never loaded (helper-137)."""

from __future__ import annotations

import pytest

import analytics_kit as ak
from adversary import START, Adversary, iso

N = 30


def records(n: int, zone: int, z: bool) -> list[dict]:
    """``n`` records a minute apart in the zone ``zone`` minutes east of UTC, the cursor also nested under ``meta``."""
    out = []
    for i in range(1, n + 1):
        at = iso(START + 60 * i, zone, z=z)
        out.append({"id": i, "updated_at": at, "meta": {"ts": at}, "value": i})
    return out


def config(server: Adversary, cursor_path: str, columns: dict, disposition: str, start: str) -> dict:
    return {"client": {"base_url": server.base_url,
                       "auth": {"type": "api_key", "name": "api_key", "api_key": server.key, "location": "query"}},
            "resources": [{"name": "events", "primary_key": "id", "write_disposition": disposition,
                           "columns": columns,
                           "endpoint": {"path": "/v1/events", "data_selector": "data",
                                        "paginator": {"type": "offset", "limit": 10},
                                        "error_handler": {"max_retries": 0},
                                        "incremental": {"cursor_path": cursor_path, "start_param": "updated_since",
                                                        "initial_value": start}}}]}


CASES = {  # (cursor_path, declared columns, the zone the API writes in, "Z" for UTC)
    "declared text, -05:00": ("updated_at", {"updated_at": {"data_type": "text"}}, -300, False),
    "declared text, Z": ("updated_at", {"updated_at": {"data_type": "text"}}, 0, True),
    "nested, -05:00": ("meta.ts", {}, -300, False),
    "nested, Z": ("meta.ts", {}, 0, True),
}


@pytest.mark.parametrize("disposition", ["append", "merge"])
@pytest.mark.parametrize("case", CASES)
def test_a_cursor_left_as_the_api_writes_it_loads_each_record_once_and_every_new_one(tmp_path, case, disposition):
    cursor_path, columns, zone, z = CASES[case]
    database = str(tmp_path / "a.duckdb")
    with Adversary(records(N, zone, z)) as server:
        cfg = config(server, cursor_path, columns, disposition, iso(START, zone, z=z))
        ak.load(cfg, database=database, progress=False)
        again = ak.load(cfg, database=database, progress=False)  # nothing changed
        assert sum(again.rows.values()) == 0, again
        server.add_records(records(N + 2, zone, z)[N:])  # two newer records
        newer = ak.load(cfg, database=database, progress=False)
        ids = ak.query("SELECT id FROM events ORDER BY id", database).id.tolist()
    assert ids == list(range(1, N + 3)), (case, ids)  # once each, the newer two included
    assert newer.rows.get("events") == 2, newer


def test_a_cursor_declared_text_under_dlts_name_for_its_field_keeps_the_apis_form(tmp_path):
    """The cursor "updatedAt" declared as "updated_at" (dlt's column for it): the kit looked the declaration up by the
    raw name, took the cursor as undeclared and stored "...+00:00" where dlt stores the API's "...Z" (helper-140)."""
    database = str(tmp_path / "a.duckdb")
    renamed = lambda body, offset: {**body, "data": [{("updatedAt" if k == "updated_at" else k): v  # noqa: E731
                                                      for k, v in r.items()} for r in body["data"]]}
    with Adversary(records(5, 0, True)) as server:
        server.transform = renamed
        cfg = config(server, "updatedAt", {"updated_at": {"data_type": "text"}}, "merge", iso(START, 0, z=True))
        ak.load(cfg, database=database, progress=False)
        stored = sorted(ak.query("SELECT updated_at FROM events", database).updated_at)
    assert stored == sorted(r["updated_at"] for r in records(5, 0, True)) and stored[0].endswith("Z"), stored


def test_a_cursor_stored_in_the_kits_form_for_records_now_left_as_written_loads_every_newer_record(tmp_path):
    """Run 1 compares the cursor as instants and stores "...+00:00"; run 2's config gains a convert, so the records
    stay "...-05:00" (so did every text or nested cursor of a file an earlier version loaded): dlt compared them as
    text with the stored form, and newer records that sort before it were never loaded (helper-140)."""
    database = str(tmp_path / "a.duckdb")
    with Adversary(records(N, -300, False)) as server:
        cfg = config(server, "updated_at", {}, "merge", iso(START, -300))
        ak.load(cfg, database=database, progress=False)
        cfg["resources"][0]["endpoint"]["incremental"]["convert"] = lambda value: value
        server.add_records(records(N + 2, -300, False)[N:])  # newer, and earlier as text than "...+00:00"
        ak.load(cfg, database=database, progress=False)
        ak.load(cfg, database=database, progress=False)  # and the run after: moved back once only
        asked = [r.params.get("updated_since") for r in server.requests if r.path == "/v1/events"]
        ids = ak.query("SELECT id FROM events ORDER BY id", database).id.tolist()
    assert ids == list(range(1, N + 3)), ids
    assert asked[-1] == iso(START + 60 * (N + 2), -300), asked  # from the newest record, as the API writes it
