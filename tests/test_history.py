"""What the database remembers of each load (``ak.history``, ``ak.state``) and of its tables
(``ak.schema``): real loads of the demo API into DuckDB files, a real SIGKILL, the real CLI."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import analytics_kit as ak

BIN = Path(sys.executable).parent


def test_history_has_one_row_per_load_with_the_reports_numbers(api, config):
    first = ak.load(config, progress=False)
    api.advance(new=5, updated=3, deleted=2)
    second = ak.load(config, progress=False)
    full = ak.load(config, mode="full_refresh", progress=False)

    history = ak.history()
    assert len(history) == 3
    assert history["load_id"].tolist() == [first.load_id, second.load_id, full.load_id]
    assert history["mode"].tolist() == ["incremental", "incremental", "full_refresh"]
    for row, report in zip(history.to_dict("records"), (first, second, full)):
        assert row["rows"] == report.total_rows
        assert {t: row[f"rows_{t}"] for t in ("customers", "events")} == {
            t: report.rows.get(t, 0) for t in ("customers", "events")}
        assert row["requests"] == report.total_requests and row["retries"] == report.total_retries
        for table in ("customers", "events"):
            assert row[f"cursor_{table}_after"] == report.cursor_after[table]
            before = row[f"cursor_{table}_before"]
            assert (None if pd.isna(before) else before) == report.cursor_before.get(table)
        # from the run's start to dlt's commit: a little less than the report's whole run
        assert 0 < row["duration"] <= report.duration + 0.05
    assert str(history["loaded_at"].dtype) == "datetime64[us, UTC]"
    assert history["loaded_at"].is_monotonic_increasing
    assert history["cursor_events_before"].isna().tolist() == [True, False, False]
    assert ak.history(last=1)["load_id"].tolist() == [full.load_id]
    assert ak.history(last=0).empty
    for last in (-1, 1.5, True):  # -1 read as "none" without a word (helper-118)
        with pytest.raises(ak.ConfigError, match=r"^last: got .*; expected a whole number of loads, 0 or more"):
            ak.history(last=last)


def test_history_survives_a_full_refresh_and_counts_retries(api, config):
    ak.load(config, progress=False)
    api.inject("status", path="/v1/events", status=503, times=2)
    retried = ak.load(config, mode="full_refresh", progress=False)
    assert retried.total_retries == 2
    assert ak.history()["retries"].tolist() == [0, 2]


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import dlt
    import analytics_kit as ak

    def killed(self, *args, **kwargs):  # SIGKILL as dlt's load step starts: nothing committed
        os.kill(os.getpid(), signal.SIGKILL)

    dlt.Pipeline.load = killed
    ak.load(ak.guide_config(sys.argv[1]), progress=False)
""")


def test_a_killed_load_never_shows_in_history_and_its_row_is_dropped(api, config, tmp_path):
    first = ak.load(config, progress=False)
    api.advance(new=5, updated=3)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN)
    run = subprocess.run([sys.executable, str(script), api.base_url], env={**os.environ}, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr

    # The killed run wrote its row before dlt's load step; dlt never marked the load complete.
    with duckdb.connect("analytics.duckdb", read_only=True) as con:
        kept = [r[0] for r in con.execute("SELECT load_id FROM _analytics_kit_loads ORDER BY load_id").fetchall()]
    assert len(kept) == 2 and first.load_id in kept
    assert ak.history()["load_id"].tolist() == [first.load_id]
    assert len(ak.state().loads) == 1

    second = ak.load(config, progress=False)
    # 8 changed records; the one at the cursor was fetched again and left out, already loaded
    assert second.rows["events"] == 8 and second.fetched["events"] == 9
    with duckdb.connect("analytics.duckdb", read_only=True) as con:
        kept = [r[0] for r in con.execute("SELECT load_id FROM _analytics_kit_loads ORDER BY load_id").fetchall()]
    assert kept == [first.load_id, second.load_id]
    assert ak.history()["load_id"].tolist() == [first.load_id, second.load_id]


def test_a_failed_first_load_leaves_no_history(api, config):
    api.inject("status", path="/v1/events", status=503, times=None)
    with pytest.raises(ak.LoadError):
        ak.load(config, progress=False)
    with pytest.raises(ak.KitError, match="no load into it has completed|No load|no loaded tables"):
        ak.history()


def test_state_is_a_small_object_that_says_what_it_holds(api, config):
    first = ak.load(config, progress=False)
    api.advance(new=5, updated=3, deleted=2)
    second = ak.load(config, progress=False)
    state = ak.state()
    assert state.cursors == second.cursor_after == state["cursors"]  # as when state() was a dict
    assert state["loads"] is state.loads
    assert state.loads["load_id"].tolist() == [second.load_id, first.load_id]  # newest first
    assert state.loads["status"].tolist() == ["committed", "committed"]
    assert state.loads["rows"].tolist() == [second.total_rows, first.total_rows]
    text = repr(state)
    assert text.splitlines()[0] == "State(2 cursors, last 2 loads)"
    assert "status 0" not in text and "each committed" in text
    assert f"events     {second.cursor_after['events']}" in text
    assert "    incremental  270 rows  6 requests  0 retries" in text  # events: 3 pages + 2 reads of its newest
    assert first.load_id not in text  # nothing that changes from run to run


def test_schema_is_a_data_dictionary_with_sources_parents_and_a_diagram(api, config):
    # events: the guide's Schema section, plus a list per record dlt puts in a nested table
    config = copy.deepcopy(config)
    events = config["resources"][0]
    assert events["name"] == "events"
    events["processing_steps"] = [{"map": lambda r: {**r, "tags": [r["event_type"], "demo"]}}]
    # customers: no Schema section, every column inferred
    del config["resources"][1]["columns"]
    ak.load(config, progress=False)

    dictionary = ak.schema()
    columns = dictionary.columns.set_index(["table", "column"])
    assert columns.loc[("events", "id")].to_dict() == {
        "type": "bigint", "nullable": False, "primary_key": True, "parent": None, "source": "config", "hints": None}
    assert columns.loc[("events", "value"), "nullable"] and columns.loc[("events", "value"), "source"] == "config"
    assert columns.loc[("events", "updated_at"), "hints"] == "incremental, dedup_sort"
    assert columns.loc[("customers", "plan"), "source"] == "inferred"
    # the cursor the kit gave only dedup_sort read "config"; the key from resource_defaults "inferred" (helper-142)
    assert columns.loc[("customers", "updated_at"), "source"] == "inferred"
    assert columns.loc[("customers", "id"), "primary_key"]  # from resource_defaults, not a column hint
    assert columns.loc[("customers", "id"), "source"] == "config"
    assert columns.loc[("events", "_dlt_id"), "source"] == "dlt"
    assert columns.loc[("events__tags", "value")].to_dict() == {
        "type": "text", "nullable": True, "primary_key": False, "parent": "events", "source": "inferred", "hints": None}
    assert dictionary.tables.set_index("table").loc["events__tags", "parent"] == "events"

    # the diagram: dlt's mermaid, with the parent-child link, as Markdown JupyterLab draws
    assert dictionary.mermaid.startswith("erDiagram")
    assert '    events__tags }|--|| events : "_dlt_parent"' in dictionary.mermaid.splitlines()
    assert "_dlt_loads" not in dictionary.mermaid
    assert dictionary.diagram._repr_markdown_() == f"```mermaid\n{dictionary.mermaid}\n```"
    text = repr(dictionary)
    assert text.splitlines()[0] == "DataDictionary(3 tables, 25 columns)"
    assert "  source inferred: typed by dlt from the data" in text
    assert "events__tags (nested in events)" in text


def _in_a_terminal(argv: list[str], columns: int) -> str:
    """What ``argv`` prints with its output on a terminal ``columns`` wide (a pseudo-terminal)."""
    import pty

    leader, follower = pty.openpty()
    child = subprocess.Popen(argv, stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": str(columns)})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert child.wait(timeout=120) == 0, b"".join(chunks)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_a_wide_table_is_wrapped_to_the_terminal_and_not_when_piped(api, config):
    ak.load(config, progress=False)
    ak.load(config, progress=False)
    shown = _in_a_terminal([str(BIN / "analytics-kit"), "history"], 100)
    lines = shown.rstrip("\n").splitlines()
    assert max(map(len, lines)) <= 100, shown
    assert "cursor_events_after" in shown and len(lines) > 3, shown  # every column, in blocks below
    piped = subprocess.run([str(BIN / "analytics-kit"), "history"], capture_output=True, text=True, timeout=120)
    assert len(piped.stdout.splitlines()) == 3 and max(map(len, piped.stdout.splitlines())) > 100


def test_history_and_schema_from_the_shell(api, config):
    ak.load(config, progress=False)
    history = subprocess.run([str(BIN / "analytics-kit"), "history"], capture_output=True, text=True, timeout=120)
    assert history.returncode == 0, history.stderr
    header, row = history.stdout.splitlines()
    assert header.split()[:6] == ["loaded_at", "mode", "rows", "rows_customers", "rows_events", "requests"]
    assert row.split()[2:7] == ["incremental", "270", "20", "250", "6"]  # events: 3 pages + 2 reads of its newest
    assert row.split()[1].endswith("Z"), row  # loaded_at is UTC, and says so
    schema = subprocess.run([str(BIN / "analytics-kit"), "schema"], capture_output=True, text=True, timeout=120)
    assert schema.returncode == 0, schema.stderr
    assert schema.stdout.startswith("DataDictionary(2 tables, 20 columns)")
    assert "  id            bigint     no        PK   config" in schema.stdout
    mermaid = subprocess.run([str(BIN / "analytics-kit"), "schema", "--mermaid"], capture_output=True, text=True,
                             timeout=120)
    assert mermaid.stdout.startswith("erDiagram\n") and "bigint id PK" in mermaid.stdout


def test_history_in_an_empty_folder_says_what_to_run(tmp_path):
    result = subprocess.run([str(BIN / "analytics-kit"), "history"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "analytics.duckdb").exists()


def test_loads_from_before_the_kits_record_show_with_their_time(api, config):
    """A file loaded by an older kit (or by dlt alone) has _dlt_loads but no _analytics_kit_loads."""
    first = ak.load(config, progress=False)
    with duckdb.connect("analytics.duckdb") as con:
        con.execute("DROP TABLE _analytics_kit_loads")
    second = ak.load(config, progress=False)
    history = ak.history()
    assert history["load_id"].tolist() == [first.load_id, second.load_id]
    assert history["mode"].isna().tolist() == [True, False] and history["rows"].isna().tolist() == [True, False]
    assert repr(ak.state()).endswith("\n    ?            ? rows  ? requests  ? retries")
    assert ak.schema().columns.set_index(["table", "column"]).loc[("events", "id"), "source"] == "config"
