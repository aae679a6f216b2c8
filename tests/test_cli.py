"""The analytics-kit command and the DuckDB CLI, run as a user would: real processes."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

BIN = Path(sys.executable).parent


def kit(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "analytics-kit"), *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
        cwd=cwd, timeout=120,
    )


@pytest.fixture
def config_files(api, tmp_path: Path) -> dict[str, Path]:
    """The guide's config as TOML, YAML and JSON (no key inside: it comes from API_KEY)."""
    import yaml

    import analytics_kit as ak

    config = ak.guide_config(api.base_url)
    config["client"]["auth"].pop("api_key")
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    toml = f"""
[client]
base_url = "{api.base_url}"
auth = {{ type = "api_key", name = "api_key", location = "query" }}

[resource_defaults]
primary_key = "id"
write_disposition = "merge"

[[resources]]
name = "events"
[resources.endpoint]
path = "/v1/events"
data_selector = "data"
paginator = {{ type = "offset", limit = 100 }}
error_handler = {{ retry_on_status_codes = [429, 500, 502, 503, 504], max_retries = 3, backoff_factor = 2 }}
incremental = {{ cursor_path = "updated_at", start_param = "updated_since", initial_value = "2025-01-01T00:00:00Z" }}
"""
    (tmp_path / "config.toml").write_text(toml)
    return {suffix: tmp_path / f"config.{suffix}" for suffix in ("toml", "yaml", "json")}


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_config_file_formats(api, config_files, suffix):
    result = kit("load", "--config", str(config_files[suffix]), "--quiet", env={"API_KEY": api.api_key})
    assert result.returncode == 0, result.stderr
    assert "LoadReport(mode='incremental', rows=270" in result.stdout  # 250 events + 20 customers


def test_load_tables_query_state_round_trip(api, config_files):
    env = {"API_KEY": api.api_key}
    suffix = "toml"
    first = kit("load", "--config", str(config_files[suffix]), env=env)
    assert first.returncode == 0, first.stderr
    assert "LoadReport(mode='incremental', rows=" in first.stdout
    assert re.search(r"^took \d+\.\d s: setup .*, extract .*, normalize .*, load \d+\.\d; load id \d", first.stdout,
                     re.MULTILINE), first.stdout
    assert api.api_key not in first.stdout + first.stderr

    api.advance(new=3)
    api.clear_log()
    second = kit("load", "--config", str(config_files[suffix]), "--quiet", env=env)
    assert second.returncode == 0, second.stderr
    assert api.count(path="/v1/events") == 1

    tables = kit("tables")
    assert tables.returncode == 0 and "events" in tables.stdout and "253" in tables.stdout
    described = kit("describe", "events")
    columns = [line.split()[:2] for line in described.stdout.splitlines()[1:]]
    assert described.returncode == 0 and ["id", "BIGINT"] in columns and ["_dlt_id", "VARCHAR"] in columns, described
    assert described.stdout.split()[:3] == ["column", "type", "nullable"]
    query = kit("query", "SELECT count(*) AS n FROM analytics.events")
    assert query.returncode == 0 and query.stdout.split() == ["n", "253"]
    none = kit("query", "SELECT id, event_type FROM analytics.events WHERE false")  # its columns named (helper-118)
    assert none.returncode == 0 and none.stdout.splitlines() == ["id  event_type", "(no rows)"], none.stdout
    state = kit("state")
    assert state.returncode == 0 and "events: 20" in state.stdout and "last loads:" in state.stdout

    refresh = kit("load", "--full-refresh", "--config", str(config_files[suffix]), "--quiet", env=env)
    assert refresh.returncode == 0 and "mode='full_refresh'" in refresh.stdout


def test_the_load_command_says_where_it_wrote_and_what_it_made(api, config_files, tmp_path):
    """A mistyped path, or an $ANALYTICS_DATABASE left set, made folders and a file without a word."""
    env = {"API_KEY": api.api_key, "ANALYTICS_DATABASE": str(tmp_path / "typo" / "deep" / "x.duckdb")}
    first = kit("load", "--quiet", "--config", str(config_files["json"]), env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == f"into {tmp_path / 'typo/deep/x.duckdb'} (a new file; the folder " \
        f"{tmp_path / 'typo'} is new too)", first.stdout
    again = kit("load", "--quiet", "--config", str(config_files["json"]), env=env, cwd=tmp_path)
    assert again.stdout.splitlines()[-1] == f"into {tmp_path / 'typo/deep/x.duckdb'}", again.stdout
    beside = kit("load", "--quiet", "--config", str(config_files["json"]), "--database", "here.duckdb", env=env,
                 cwd=tmp_path)
    assert beside.stdout.splitlines()[-1] == f"into {tmp_path / 'here.duckdb'} (a new file)", beside.stdout
    # two at once into a new file: the one that made it says so, the one that waited for it does not (helper-125)
    both = [subprocess.Popen([str(BIN / "analytics-kit"), "load", "--quiet", "--config", str(config_files["json"]),
                              "--database", str(tmp_path / "shared" / "s.duckdb")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "API_KEY": api.api_key})
            for _ in range(2)]
    said = [run.communicate(timeout=120)[0].splitlines()[-1] for run in both]
    assert sorted(said) == [f"into {tmp_path / 'shared/s.duckdb'}", f"into {tmp_path / 'shared/s.duckdb'} (a new "
                            f"file; the folder {tmp_path / 'shared'} is new too)"], said


def test_the_load_command_loads_with_the_oldest_pyarrow_which_needs_numpy(api, config_files, tmp_path):
    """pyarrow 16, the oldest the kit supports, imports numpy: the command's numpy refusal stopped every
    `analytics-kit load` there with "numpy is not imported while analytics-kit load imports pyarrow"."""
    oldest = Path(__file__).resolve().parents[1] / ".venv-oldest" / "bin" / "analytics-kit"
    if not oldest.exists():
        pytest.skip("needs .venv-oldest (make test sets it up)")
    result = subprocess.run([str(oldest), "load", "--quiet", "--config", str(config_files["json"]), "--database",
                             str(tmp_path / "old.duckdb")], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "API_KEY": api.api_key})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "events           250 rows" in result.stdout and (tmp_path / "old.duckdb").exists()


def test_what_the_shell_prints_acts_on_no_terminal(tmp_path):
    """An ESC from the API's data reached the terminal as it was: it recoloured or rewrote the screen (helper-123)."""
    import duckdb

    database = tmp_path / "own.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE t AS SELECT 'red' || chr(27) || '[31m' || chr(7) AS \"x\x1b\", [chr(27)] AS l, "
                    "{'a': chr(155)} AS s, 'tab' || chr(9) || 'here' AS ok, NULL::VARCHAR AS z")
    shown = kit("query", "SELECT * FROM t", "--database", str(database))
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\x9b" not in shown.stdout, repr(shown.stdout)
    assert "red\\x1b[31m\\x07" in shown.stdout and "x\\x1b" in shown.stdout and "<NA>" in shown.stdout
    listed = kit("describe", "t", "--database", str(database))
    assert "\x1b" not in listed.stdout and "x\\x1b" in listed.stdout


def test_a_working_folder_deleted_under_the_command_is_named(api, tmp_path):
    """From a deleted folder, a load with an absolute database said "dlt refuses this source name
    (FileNotFoundError)", and `tables` printed a raw traceback (helper-124)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    script = ("import os, subprocess, sys\n"
              "os.chdir(sys.argv[1]); os.rmdir(sys.argv[1])\n"
              "for args in (['load', '--quiet', '--database', sys.argv[2]], ['tables'], ['demo']):\n"
              "    done = subprocess.run([sys.argv[3], *args], capture_output=True, text=True)\n"
              "    print(done.returncode, repr(done.stderr))\n"
              "import analytics_kit as ak\n"
              "try:\n"
              "    ak.query('SELECT 1')\n"
              "except ak.ConfigError as e:\n"
              "    print('query', e.path)\n")
    result = subprocess.run([sys.executable, "-c", script, str(gone), str(tmp_path / "abs.duckdb"),
                             str(BIN / "analytics-kit")], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "API_KEY": api.api_key, "ANALYTICS_API_BASE_URL": api.base_url})
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[3] == "query working folder", result
    for line in lines[:3]:
        assert line.startswith("1 ") and "the current folder no longer exists" in line and "Traceback" not in line
    assert api.requests == [] and not (tmp_path / "abs.duckdb").exists()


def test_a_sigterm_ends_a_load_as_ctrl_c_does(tmp_path):
    """timeout, docker stop and systemd send SIGTERM: the command ended at -15 without a word (helper-124)."""
    import signal

    from analytics_kit import demo

    database = tmp_path / "term.duckdb"
    with demo.serve(events=3000, customers=5, latency=0.05) as slow:
        env = {**os.environ, "ANALYTICS_API_BASE_URL": slow.base_url, "API_KEY": slow.api_key}
        load = subprocess.Popen([str(BIN / "analytics-kit"), "load", "--quiet", "--database", str(database)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 60
        while not slow.requests and time.monotonic() < deadline:  # paging has begun
            time.sleep(0.05)
        load.send_signal(signal.SIGTERM)
        _, err = load.communicate(timeout=120)
    assert load.returncode == 130, err
    assert "nothing from this run was committed" in err or err.strip() == "interrupted: terminated (SIGTERM)", err
    assert "Ctrl-C" not in err and "SIGTERM" in err, err  # it read "(Ctrl-C, or the notebook's stop button)" (helper-141)


def _rows(database: Path) -> dict[str, tuple[list, list]]:
    """Each table's columns and types, and its rows without dlt's per-load ids, in key order."""
    with duckdb.connect(str(database), read_only=True) as con:
        return {table: (con.execute(f"DESCRIBE {table}").fetchall(),
                        con.execute(f"SELECT * EXCLUDE (_dlt_load_id, _dlt_id) FROM {table} "
                                    "ORDER BY id").fetchall())
                for table in ("events", "customers")}


def test_the_load_command_loads_without_numpy_what_ak_load_loads(api, config_files, tmp_path, monkeypatch):
    """The command imports pyarrow without numpy (analytics_kit_command); ak.load has it."""
    import analytics_kit as ak

    monkeypatch.setenv("API_KEY", api.api_key)
    config = json.loads(config_files["json"].read_text())
    by_command, by_library = tmp_path / "command.duckdb", tmp_path / "library.duckdb"

    def command(*args: str) -> None:
        # -X importtime lists every module imported, and a refused one without its submodules
        result = subprocess.run([sys.executable, "-X", "importtime", str(BIN / "analytics-kit"), "load", "--quiet",
                                 "--config", str(config_files["json"]), "--database", str(by_command), *args],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        imported = re.findall(r"^import time:.*\|\s*([\w.]+)$", result.stderr, re.MULTILINE)
        assert "pyarrow" in imported and not [name for name in imported if name.startswith(("numpy.", "pandas."))]

    command("--full-refresh")
    ak.load(config, mode="full_refresh", database=str(by_library), progress=False)
    assert _rows(by_command) == _rows(by_library)
    api.advance(new=30, updated=40, deleted=5)
    api.advance(new=0, updated=3, resource="customers")
    command()
    ak.load(config, database=str(by_library), progress=False)
    after = _rows(by_command)
    assert after == _rows(by_library)
    assert len(after["events"][1]) == len(api.records("events", include_deleted=False)) == 275


def test_errors_are_one_clear_line_without_a_traceback(api, config_files):
    missing = kit("load", "--config", str(config_files["json"]))  # no API_KEY anywhere
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ") and "API_KEY" in missing.stderr
    assert "Traceback" not in missing.stderr

    rejected = kit("load", "--config", str(config_files["json"]), env={"API_KEY": "not-the-key-9f8e"})
    assert rejected.returncode == 1 and "rejected the key" in rejected.stderr
    assert "not-the-key-9f8e" not in rejected.stderr and "Traceback" not in rejected.stderr

    debug = kit("--debug", "load", "--config", str(config_files["json"]))
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    after = kit("load", "--config", str(config_files["json"]), "--debug")  # was "unrecognized" (helper-118)
    assert after.returncode == 1 and "Traceback" in after.stderr, after.stderr


def test_an_interrupted_load_exits_130_wherever_it_was(api, config_files):
    """Ctrl-C during the extract came back as a LoadError ("The load was interrupted") and exit 1,
    elsewhere as exit 130: a script could not tell an interrupt from a failed load."""
    import signal
    import time

    api.set_latency(0.5)  # every page takes half a second: the extract is under way for seconds
    process = subprocess.Popen(
        [str(BIN / "analytics-kit"), "load", "--config", str(config_files["json"]), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "API_KEY": api.api_key},
        cwd=config_files["json"].parent,
        # a shell's background job starts with SIGINT ignored, and Python keeps it so
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not api.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (process.returncode, err)
    assert "interrupted" in err and "Traceback" not in err and api.api_key not in out + err


@pytest.mark.parametrize("library", ["libarrow", "duckdb"])
def test_an_interrupt_while_the_package_imports_exits_130_without_a_traceback(tmp_path, library):
    """The package's import (pyarrow, DuckDB) runs before the command can handle anything: a Ctrl-C
    there printed a Python traceback and exited 1 or -2 (once -6, the teardown aborting)."""
    import signal
    import time

    process = subprocess.Popen([str(BIN / "analytics-kit"), "tables"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and library not in maps.read_text():
        time.sleep(0.002)
    assert process.poll() is None, "the command ended before the import was caught under way"
    process.send_signal(signal.SIGINT)  # its library is mapped: the package's import is under way
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and err.strip() == "interrupted", (process.returncode, err[-2000:])


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[client\nbase_url = 1")
    result = kit("load", "--config", str(bad))
    assert result.returncode == 1 and "not valid TOML" in result.stderr
    result = kit("load")
    assert result.returncode == 1 and "--config FILE" in result.stderr


@pytest.mark.parametrize("name, text, says", [
    ("bad.yaml", 'client:\n  auth:\n    type: api_key\n    api_key: "s3cr3tKEY-never-shown" x\n',
     "bad.yaml is not valid YAML: expected <block end>, but found '<scalar>' (line 4, column "),
    ("tab.yml", "client:\n\tapi_key: s3cr3tKEY-never-shown\n", "tab.yml is not valid YAML: found character '\\t'"),
    ("bad.json", '{"client": {"api_key": "s3cr3tKEY-never-shown" x}}', "bad.json is not valid JSON: Expecting"),
])
def test_a_config_file_that_does_not_parse_is_one_line_without_its_contents(tmp_path, name, text, says):
    """PyYAML's error quotes the line, and a YAML syntax error was a raw traceback showing the key (helper-118)."""
    (tmp_path / name).write_text(text)
    result = kit("load", "--config", str(tmp_path / name))
    assert result.returncode == 1 and result.stderr.startswith(f"error: {says}"), result.stderr
    assert "s3cr3tKEY" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_a_config_files_suffix_in_capitals_is_read(api, config_files, tmp_path):
    shouting = tmp_path / "API.JSON"
    shouting.write_text(config_files["json"].read_text())
    result = kit("load", "--config", str(shouting), "--quiet", env={"API_KEY": api.api_key})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["load", "query", "tables", "state", "demo-api", "demo"])
def test_every_command_has_help(command):
    result = kit(command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


def test_the_duckdb_cli_reads_the_file(api, config_files):
    assert kit("load", "--config", str(config_files["json"]), "--quiet", env={"API_KEY": api.api_key}).returncode == 0
    result = subprocess.run(
        [str(BIN / "duckdb"), "-readonly", "analytics.duckdb", "-csv", "-c", "select count(*) as n from analytics.events"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["n", "250"]


def test_demo_runs_the_whole_job(tmp_path):
    result = kit("demo", "--events", "600", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mode='full_refresh', rows=612" in result.stdout  # 600 events + 12 customers
    assert "mode='incremental'" in result.stdout
    # the table listing's counts are the file's own
    with duckdb.connect(str(tmp_path / "analytics.duckdb"), read_only=True) as con:
        counts = dict(con.execute("SELECT 'events', count(*) FROM analytics.events UNION ALL "
                                  "SELECT 'customers', count(*) FROM analytics.customers").fetchall())
    assert counts["customers"] == 12 and counts["events"] >= 600
    for table, rows in counts.items():
        assert re.search(rf"^\s*{table}\s+{rows}\s*$", result.stdout, re.M), (table, rows, result.stdout)


def test_the_load_command_waits_for_another_load_as_long_as_it_is_told(api, config_files, tmp_path):
    """The lock's error told the command's users to pass a longer lock_timeout, which only ak.load
    took (helper-50): the command has --lock-timeout."""
    from analytics_kit.store.lock import load_lock

    database = tmp_path / "held.duckdb"
    args = ("load", "--quiet", "--database", str(database), "--config", str(config_files["json"]))
    with load_lock(Path(f"{database}.state"), 0, str(database)):  # another load of it, in this process
        started = time.monotonic()
        waited = kit(*args, "--lock-timeout", "0.5", env={"API_KEY": api.api_key})
        took = time.monotonic() - started
    shown = waited.stdout + waited.stderr
    assert waited.returncode == 1 and f"(PID {os.getpid()}); this one waited 0.5 s" in shown, shown
    assert "--lock-timeout" in shown and "Traceback" not in shown and took < 8  # not the default 10 s
    refused = kit(*args, "--lock-timeout", "-1", env={"API_KEY": api.api_key})
    assert refused.returncode == 1 and "lock_timeout" in refused.stderr and "Traceback" not in refused.stderr
    assert kit(*args, "--lock-timeout", "5", env={"API_KEY": api.api_key}).returncode == 0


def test_query_prints_every_double_and_timestamp_as_duckdb_holds_them(tmp_path):
    """pandas printed 4e-07 as 0.0 and 1.23456789 as 1.234568, and a timestamp past the year 9999 (DuckDB stores it,
    a load takes "9999-12-31T23:30:00-01:00") failed with a traceback of 63 lines (helper-142)."""
    database = tmp_path / "mine.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, TIMESTAMPTZ '10000-01-01 00:30:00+00', 4e-7::DOUBLE),"
                    " (2, TIMESTAMPTZ '2024-01-01 00:00:00.5+00', 1.23456789), (3, NULL, 1.797e308)) v(id, seen_at, x)")
    result = kit("query", "SELECT * FROM t ORDER BY id", "--database", str(database))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()[1:]]
    assert lines == [["1", "10000-01-01", "00:30:00.000+00:00", "4e-07"],
                     ["2", "2024-01-01", "00:00:00.500+00:00", "1.23456789"], ["3", "NaT", "1.797e+308"]], result.stdout
    assert kit("query", "SELECT 12.5::DOUBLE AS x", "--database", str(database)).stdout.split() == ["x", "12.5"]
    # DuckDB's infinities, as its CLI shows them, not as the year 294247 (helper-144)
    assert kit("query", "SELECT 'infinity'::TIMESTAMP AS a, '-infinity'::TIMESTAMPTZ AS b", "--database",
               str(database)).stdout.split() == ["a", "b", "infinity", "-infinity"]
    # in every unit, and alone: a plain TIMESTAMP's printed as 294247-01-10, TIMESTAMP_NS's as 2262-04-11 (helper-151)
    for kind in ("TIMESTAMP", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMP_NS"):
        assert kit("query", f"SELECT 'infinity'::{kind} AS a, '-infinity'::{kind} AS b", "--database",
                   str(database)).stdout.split() == ["a", "b", "infinity", "-infinity"], kind
    # a DATE past 9999, DATE's infinities and years before 1 failed the command as "year 10000 is out of range"
    # (session 39's note); a year before 1 printed -005: both as the DuckDB CLI shows them
    far = ("SELECT * FROM (VALUES (1, DATE '10000-01-01', TIMESTAMP '0001-03-15 12:00:00' - INTERVAL 44 YEAR),"
           " (2, 'infinity'::DATE, NULL), (3, DATE '0044-03-15 (BC)', TIMESTAMP '2020-01-01')) v(i, d, t)")
    result = kit("query", far, "--database", str(database))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert [line.split() for line in result.stdout.splitlines()[1:]] == [
        ["1", "10000-01-01", "0044-03-15", "(BC)", "12:00:00"], ["2", "infinity", "NaT"],
        ["3", "0044-03-15", "(BC)", "2020-01-01", "00:00:00"]], result.stdout
    # a FLOAT at its own width: pandas handed the formatter the double 1.100000023841858 (helper-143)
    assert kit("query", "SELECT 1.1::FLOAT AS f UNION ALL SELECT NULL ORDER BY f", "--database",
               str(database)).stdout.split() == ["f", "1.1", "<NA>"]


SLIPPED_KEY = "sk_live_Zq8xT3pL9vR2mN7wKc4"


@pytest.mark.parametrize("value", ["postgresql://loader:Pg_Secret_9x8y7z@db.example.com:5432/analytics",
                                   "md:analytics?motherduck_token=mdtok_Zq8xT3pL9vR2", f"u:{SLIPPED_KEY}@h.duckdb"])
def test_a_connection_string_in_analytics_database_is_refused_unquoted(tmp_path, value):
    """$ANALYTICS_DATABASE names the default file, and is checked as --database is: a connection string there loaded
    into a folder named after it, and the output showed its password (helper-149)."""
    for command in (["load", "--quiet"], ["tables"]):
        done = kit(*command, env={"ANALYTICS_DATABASE": value, "API_KEY": "demo-key-1", "ANALYTICS_API_BASE_URL":
                                  "http://127.0.0.1:9"}, cwd=tmp_path)
        assert done.returncode == 1 and "database ($ANALYTICS_DATABASE): got a connection string" in done.stderr, done
        for secret in ("Pg_Secret", "mdtok", SLIPPED_KEY):
            assert secret not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_one_letter_user_before_a_password_is_a_connection_string(tmp_path):
    done = kit("tables", "--database", f"u:{SLIPPED_KEY}@h.duckdb", cwd=tmp_path)
    assert done.returncode == 1 and "database: got a connection string" in done.stderr and SLIPPED_KEY not in done.stderr


def test_a_known_key_typed_as_an_argument_is_masked_in_the_usage_error(tmp_path):
    done = kit("load", "--api-key", SLIPPED_KEY, env={"API_KEY": SLIPPED_KEY}, cwd=tmp_path)
    assert done.returncode == 2 and "unrecognized arguments: --api-key ***" in done.stderr, done.stderr
    assert SLIPPED_KEY not in done.stderr


def test_output_with_nowhere_to_go_is_one_message_and_what_was_done_stays(api, config_files, tmp_path):
    """`load > log` on a full disk ended with a traceback and exit 1 after the load had committed; `tables >&-` and a
    character stdout's encoding lacks did too (helper-149)."""
    database, env = tmp_path / "out.duckdb", {"API_KEY": api.api_key}
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(BIN / "analytics-kit"), "load", "--config", str(config_files["toml"]), "--database",
                               str(database)], stdout=full, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env}, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("error: could not write to the standard output: No space left on device") == 1
    assert "a load's commit included" in done.stderr
    history = kit("history", "--database", str(database))
    assert history.returncode == 0 and "incremental" in history.stdout, history  # the load committed
    closed = subprocess.run(["bash", "-c", f'"{BIN / "analytics-kit"}" tables --database "{database}" >&-'],
                            capture_output=True, text=True, timeout=120)
    assert closed.returncode == 0 and closed.stderr == "", closed.stderr
    ascii_only = kit("query", "select 'ü' AS a", "--database", str(database), env={"PYTHONIOENCODING": "ascii"})
    assert ascii_only.returncode == 0 and "\\xfc" in ascii_only.stdout, ascii_only


def test_the_open_files_limit_reached_is_named_not_blamed_on_the_api(api, config_files, tmp_path, limit=10):
    """Under a low ``ulimit -n`` a new connection's "[Errno 24] Too many open files" was taken for a dropped
    connection, retried with the whole backoff and blamed on the server; dlt's steps gave a bare BadGzipFile (helper-148)."""
    import resource

    database = tmp_path / "files.duckdb"
    assert kit("load", "--quiet", "--config", str(config_files["json"]), "--database", str(database),
               env={"API_KEY": api.api_key}).returncode == 0
    started = time.monotonic()
    done = subprocess.run([str(BIN / "analytics-kit"), "load", "--full-refresh", "--quiet", "--config",
                           str(config_files["json"]), "--database", str(database)], capture_output=True, text=True,
                          env={**os.environ, "API_KEY": api.api_key}, timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
    assert done.returncode == 1, done
    assert f"This process ran out of open files (its limit: {limit}, `ulimit -n`)" in done.stderr, done.stderr
    assert "The API is not at fault" in done.stderr and "dropped the connection" not in done.stderr
    assert time.monotonic() - started < 30  # not retried with the backoff
    assert kit("load", "--quiet", "--config", str(config_files["json"]), "--database", str(database),
               env={"API_KEY": api.api_key}).returncode == 0  # nothing left behind that a rerun trips on


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_a_demo_api_port_that_is_no_port_is_a_usage_error(port):
    done = kit("demo-api", "--port", port)  # bind()'s OverflowError and a traceback (helper-149)
    assert done.returncode == 2 and f"argument --port: '{port}' is no port" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("path", "said"), [("", "--config '' names no file"), ("/tmp", "--config '/tmp' names a folder")])
def test_a_config_path_that_is_no_file_says_so(path, said):
    done = kit("load", "--config", path)  # "config file . not found", "config file /tmp not found" (helper-149)
    assert done.returncode == 1 and said in done.stderr, done.stderr



def test_a_setting_dlt_refuses_is_named_not_blamed_on_the_source_name(tmp_path):
    """[runtime] log_level = "verbose" read as "dlt refuses this source name ... Name the source with a snake_case
    Python identifier" (helper-149)."""
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text('[runtime]\nlog_level = "verbose"\n')
    done = kit("load", env={"API_KEY": "demo-key-1234", "ANALYTICS_API_BASE_URL": "http://127.0.0.1:9"}, cwd=tmp_path)
    assert done.returncode == 1 and "dlt settings (runtime.log_level): dlt refuses its own settings" in done.stderr
    assert "Unknown level: 'verbose'" in done.stderr and "source name" not in done.stderr, done.stderr


@pytest.mark.parametrize(("file", "text", "said"), [
    ("config.toml", '[sources.analytics.credentials]\napi_key = "abcdef123456"\n',
     "Move the credentials from .dlt/config.toml to .dlt/secrets.toml"),
    ("secrets.toml", '[sources.analytics]\napi_key = ["abcdef123456"]\n', "the API key in dlt secrets is a list, not text"),
    ("secrets.toml", 'api_key = {a = "abcdef123456"}\n', "the API key in dlt secrets is a dict, not text")])
def test_a_key_in_the_wrong_file_or_of_the_wrong_type_says_so(tmp_path, file, text, said):
    """A key in config.toml got "Give the auth as a dict with 'type'"; one of another type "no API key ... none in dlt
    secrets" (helper-149)."""
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / file).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "API_KEY"}
    done = subprocess.run([str(BIN / "analytics-kit"), "load"], capture_output=True, text=True, cwd=tmp_path,
                          env={**env, "ANALYTICS_API_BASE_URL": "http://127.0.0.1:9"}, timeout=120)
    assert done.returncode == 1 and said in done.stderr and "abcdef123456" not in done.stderr, done.stderr


def test_a_config_piped_in_is_read(api, config_files, tmp_path):
    """--config /dev/stdin (or <(...)) said "config file /dev/stdin not found": a pipe is no regular file, and has no
    suffix (helper-150). Its text tells the format."""
    for suffix in ("json", "toml", "yaml"):
        done = subprocess.run([str(BIN / "analytics-kit"), "load", "--quiet", "--config", "/dev/stdin", "--database",
                               str(tmp_path / f"{suffix}.duckdb")], input=config_files[suffix].read_text(),
                              capture_output=True, text=True, env={**os.environ, "API_KEY": api.api_key}, timeout=120)
        assert done.returncode == 0, (suffix, done.stderr)
        with open(config_files[suffix]) as redirected:  # stdin a file, not a pipe: "unknown type ''" (helper-151)
            done = subprocess.run([str(BIN / "analytics-kit"), "load", "--quiet", "--config", "/dev/stdin",
                                   "--database", str(tmp_path / f"{suffix}.duckdb")], stdin=redirected,
                                  capture_output=True, text=True, env={**os.environ, "API_KEY": api.api_key}, timeout=120)
        assert done.returncode == 0, (suffix, done.stderr)
