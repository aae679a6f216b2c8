"""load(): incremental and full refresh against the demo API, checked by what was sent and what landed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import analytics_kit as ak
from analytics_kit.store.target import Target
from helpers import NEWEST_READ, loaded, served


def sent(api, path: str, param: str) -> list:
    return [r.params.get(param) for r in api.requests if r.path == path]


def as_the_guide_writes(cursor: str) -> str:
    """A stored cursor (``...+00:00``) as the start parameter goes out: in the layout of the guide's initial_value."""
    assert cursor.endswith("+00:00") and "." not in cursor, cursor
    return cursor.replace("+00:00", "Z")


def test_first_load_then_incremental_fetches_only_changes(api, config):
    first = ak.load(config)
    assert first.rows == {"events": 250, "customers": 20}
    assert loaded(api) == served(api)
    # 250 rows: 3 pages, and the last and the first again before them (analytics_kit/fetch/newest.py)
    assert sent(api, "/v1/events", "updated_since") == ["2025-01-01T00:00:00Z"] * (3 + NEWEST_READ)

    change = api.advance(new=7, updated=5, deleted=3)
    api.clear_log()
    second = ak.load(config)

    # The cursor sent is the one stored by the first run, and only the changes came back.
    assert sent(api, "/v1/events", "updated_since") == [as_the_guide_writes(first.cursor_after["events"])]
    assert second.cursor_before == first.cursor_after
    assert second.requests["events"] == 1
    assert second.rows["events"] >= 15
    # Merged in place: exactly the API's records, no duplicates, soft-deleted ones removed.
    assert loaded(api) == served(api)
    count = ak.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM analytics.events")
    assert count.n[0] == count.d[0] == 250 + 7 - 3
    assert not set(change.deleted_ids) & set(loaded(api))


def test_updated_rows_change_in_place(api, config):
    ak.load(config)
    change = api.advance(updated=4)
    ak.load(config)
    api_values = {r["id"]: r["value"] for r in api.records("events") if r["id"] in change.updated_ids}
    frame = ak.query("SELECT id, value FROM analytics.events WHERE id IN (SELECT unnest(?)) ORDER BY id",
                     params=[change.updated_ids])
    assert {row.id: (None if row.value is pd.NA else row.value)
            for row in frame.itertuples()} == api_values


def test_full_refresh_removes_rows_the_api_no_longer_has(api, config):
    ak.load(config)
    change = api.advance(purged=6, new=2)
    incremental = ak.load(config)
    # An incremental load cannot see a purge: the purged rows are still here.
    assert set(change.purged_ids) <= set(loaded(api))

    refresh = ak.load(config, mode="full_refresh")
    assert refresh.cursor_before == incremental.cursor_after
    assert loaded(api) == served(api)
    assert not set(change.purged_ids) & set(loaded(api))

    api.clear_log()
    ak.load(config)
    assert sent(api, "/v1/events", "updated_since") == [as_the_guide_writes(refresh.cursor_after["events"])]


def test_cursor_state_survives_a_restarted_process(api, config, tmp_path):
    script = textwrap.dedent(f"""
        import analytics_kit as ak
        config = ak.guide_config({api.base_url!r})
        print(ak.load(config, progress=False).cursor_after["events"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True)
    cursor = out.stdout.strip().splitlines()[-1]
    api.clear_log()
    report = ak.load(config)
    assert report.cursor_before["events"] == cursor
    assert sent(api, "/v1/events", "updated_since") == [as_the_guide_writes(cursor)]


def test_state_lives_beside_the_database_and_files_do_not_share_it(api, config, tmp_path):
    ak.load(config, database="one.duckdb")
    assert (tmp_path / "one.duckdb.state").is_dir()
    api.clear_log()
    other = ak.load(config, database="sub/two.duckdb")
    # A second file starts from scratch: its own state, the initial cursor.
    assert other.cursor_before == {}
    assert (tmp_path / "sub" / "two.duckdb.state").is_dir()
    assert sent(api, "/v1/events", "updated_since")[0] == "2025-01-01T00:00:00Z"


def test_a_relative_path_means_the_current_folder(api, config, tmp_path, monkeypatch):
    ak.load(config)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = ak.load(config)
    assert report.rows["events"] == 250  # a first load into the new folder's file
    assert (elsewhere / "analytics.duckdb").exists()


def test_a_rejected_key_is_a_load_error_without_the_key(api, config, monkeypatch):
    monkeypatch.setenv("API_KEY", "wrong-key-canary-1234")
    with pytest.raises(ak.LoadError, match=r"rejected the key \(HTTP 401\)") as caught:
        ak.load(config)
    assert "wrong-key-canary-1234" not in str(caught.value)
    assert api.count(status=401) == 1


def test_a_failed_run_leaves_tables_and_cursors_as_they_were(api, config):
    first = ak.load(config)
    before = ak.query("SELECT * EXCLUDE (_dlt_load_id, _dlt_id) FROM analytics.events ORDER BY id")
    api.advance(new=150, updated=10)
    api.inject("status", path="/v1/events", status=503, times=None, skip=1)  # page 2 of the run fails for good
    with pytest.raises(ak.LoadError, match=r"Resource 'events' failed with HTTP 503 on GET /v1/events\?.*offset=100.* after 4 attempt"):
        ak.load(config)
    after = ak.query("SELECT * EXCLUDE (_dlt_load_id, _dlt_id) FROM analytics.events ORDER BY id")
    assert after.equals(before)
    assert ak.state()["cursors"] == first.cursor_after

    api.clear_faults()
    ak.load(config)
    assert loaded(api) == served(api)


def test_a_stale_package_never_replaces_new_data(api, config):
    """A killed run leaves an extracted package; the next load fetches fresh data instead."""
    ak.load(config)
    api.advance(updated=5)
    # What a run killed between normalize and load leaves behind.
    stale = Target.of().pipeline()
    stale.extract(ak.build_source(config))
    stale.normalize()
    assert stale.has_pending_data

    change = api.advance(updated=5, new=3)
    report = ak.load(config)
    assert report.recovered_packages == 1
    assert loaded(api) == served(api)
    assert set(change.new_ids) <= set(loaded(api))


@pytest.mark.parametrize("read_only", [False, True])
def test_lock_held_by_another_process(api, config, tmp_path, read_only):
    ak.load(config)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect('analytics.duckdb', read_only={read_only}); "
         "print('ready', flush=True); sys.stdin.read()"],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ak.LoadError, match=rf"locked by another process \(PID {holder.pid}\)") as caught:
            ak.load(config, lock_timeout=0.5)
        assert "analytics.duckdb" in str(caught.value) and "Close" in str(caught.value)
    finally:
        holder.communicate("")
    assert ak.load(config).requests["events"] == 1
    assert ak.query("SELECT count(*) AS n FROM analytics.events").n[0] == 250  # the file is intact


def test_the_file_is_free_for_readers_while_the_api_is_fetched(api, config):
    """The load holds the file only while dlt reads or writes it, not during extraction."""
    ak.load(config)
    api.advance(new=150)
    read = []

    def read_from_another_process(server) -> None:
        out = subprocess.run(
            [sys.executable, "-c", "import duckdb; c = duckdb.connect('analytics.duckdb', read_only=True); "
             "print(c.execute('SELECT count(*) FROM events').fetchone()[0])"],
            capture_output=True, text=True, timeout=60,
        )
        read.append(out.stdout.strip() or out.stderr.strip().splitlines()[-1])

    api.inject("callback", path="/v1/events", times=1, skip=1, fn=read_from_another_process)
    ak.load(config)
    assert read == ["250"]  # the rows committed before this run
    assert loaded(api) == served(api)


def test_a_connection_open_in_this_process_is_named_not_blamed_on_credentials(api, config):
    ak.load(config)
    con = duckdb.connect("analytics.duckdb", read_only=True)
    try:
        with pytest.raises(ak.LoadError, match="open in another connection"):
            ak.load(config, lock_timeout=0.5)
    finally:
        con.close()
    ak.load(config)
    assert loaded(api) == served(api)


def test_dataset_named_like_the_file_is_refused_before_anything_runs(api, config):
    with pytest.raises(ak.ConfigError, match="same name as the DuckDB file"):
        ak.load(config, dataset="analytics")
    assert api.requests == []
    assert not Path("analytics.duckdb").exists()


def test_unknown_mode(config):
    with pytest.raises(ak.ConfigError, match="unknown mode 'fast'") as caught:
        ak.load(config, mode="fast")
    assert "Did you mean" not in caught.value.guidance and 'mode="full_refresh"' in caught.value.guidance
    for slip in ("full-refresh", "Full Refresh", "incremetal"):  # the command's flag is --full-refresh
        with pytest.raises(ak.ConfigError) as caught:
            ak.load(config, mode=slip)
        assert "Did you mean mode='" in caught.value.guidance, (slip, caught.value.guidance)


def test_telemetry_is_off(api, config):
    from dlt.common.runtime import anon_tracker

    ak.load(config)
    assert anon_tracker._ANON_TRACKER_ENDPOINT is None


def test_no_pipeline_folder_outside_the_database_folder(api, config, tmp_path):
    machine_wide = [Path.home() / ".dlt" / "pipelines", Path("/var/dlt/pipelines")]
    before = {p: set(p.iterdir()) if p.exists() else set() for p in machine_wide}
    ak.load(config)
    for place in machine_wide:
        assert (set(place.iterdir()) if place.exists() else set()) == before[place]


def test_a_failure_dlt_explains_is_shown_with_dlts_explanation(api, config):
    """dlt raised its explanation while handling a StopIteration, and the kit showed the bare
    StopIteration: "The load failed in extract: StopIteration:" (helper-52)."""
    config["resources"][0]["endpoint"]["paginator"] = {"type": "single_page"}  # paged by dlt itself
    config["resources"].append({"name": "detail", "include_from_parent": ["nope"], "endpoint": {
        "path": "/v1/events/{id}", "params": {"id": {"type": "resolve", "resource": "events", "field": "id"}}}})
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    text = str(caught.value)
    assert "Resource expects a field `nope`" in text and "Available parent fields are" in text, text
    assert "StopIteration" not in text


def test_a_configs_convert_gets_the_stored_cursor_as_the_api_wrote_it_on_every_run(api, config):
    """The kit rewrote stored timestamp cursors into its canonical form before each run, convert's too:
    a convert parsing the API's "...Z" got "...+00:00" from the second run on and failed (helper-53)."""
    from datetime import datetime

    seen: list[str] = []

    def strict(value: str) -> str:
        seen.append(value)
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").strftime("%Y-%m-%dT%H:%M:%SZ")

    for resource in config["resources"]:
        resource["endpoint"]["incremental"]["convert"] = strict
    ak.load(config, progress=False)
    api.advance(new=5, updated=5)
    report = ak.load(config, progress=False)
    assert report.rows.get("events") and loaded(api) == served(api)
    assert seen and all(value.endswith("Z") for value in seen), seen


@pytest.mark.parametrize("step, expected", [
    ({"map": "stop"}, "caused an exception: StopIteration"),
    (None, "the API's records have no field 'modified', which the incremental's cursor_path names"),
])
def test_failures_dlt_explains_badly_get_a_message_that_says_what_happened(api, config, step, expected):
    """A map step raising StopIteration left "... caused an exception: " and nothing after it, and a
    cursor_path the records lack got dlt's text for arrow tables, about columns and nested paths
    (helper-53)."""
    def stop(record):
        raise StopIteration

    events = config["resources"][0]
    if step is not None:
        events["processing_steps"] = [{"map": stop}]
    else:
        events["endpoint"]["incremental"]["cursor_path"] = "modified"
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    assert expected in str(caught.value), str(caught.value)


def test_the_callers_objects_in_the_config_are_left_as_they_were(api, config):
    """An Incremental given as a param is copied: the kit writes its bounds in its own form and sets its key, and
    the caller's object, reused with dlt alone, sent the rewritten form (helper-111). An auth instance is used as
    it is, as dlt uses it: a deep copy of an OAuth2 instance lost its session's timeout (helper-110)."""
    import dlt
    from dlt.sources.helpers.rest_client.auth import APIKeyAuth

    events = next(r for r in config["resources"] if r["name"] == "events")
    written = events["endpoint"].pop("incremental")
    since = dlt.sources.incremental(cursor_path=written["cursor_path"], initial_value="2025-01-01T00:00:00Z")
    events["endpoint"]["params"] = {**events["endpoint"].get("params", {}), written["start_param"]: since}
    auth = APIKeyAuth(name="api_key", api_key=api.api_key, location="query")
    config["client"]["auth"] = auth
    for number, mode in enumerate(("incremental", "incremental", "full_refresh")):
        if number:
            api.advance(new=3, updated=2, deleted=0)
        ak.load(config, mode, progress=False)
        assert loaded(api) == served(api)
    assert since.initial_value == "2025-01-01T00:00:00Z" and since.primary_key is None
    assert config["client"]["auth"] is auth and events["endpoint"]["params"][written["start_param"]] is since


def test_the_report_names_every_table_of_the_source_with_its_rows_even_none(api, config):
    """An incremental run that brought nothing had rows == {}: report.rows["events"] raised KeyError (helper-138)."""
    ak.load(config, progress=False)
    report = ak.load(config, progress=False)
    assert report.rows == {"events": 0, "customers": 0}, report.rows
    api.advance(new=3, updated=0)
    assert ak.load(config, progress=False).rows == {"events": 3, "customers": 0}
