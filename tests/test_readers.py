"""The readers as an analyst meets them: SQL mistakes, file names, a missing or empty database,
a file another program holds, and what the DuckDB CLI sees in the file.

Real DuckDB files in the test's folder, the demo API on 127.0.0.1, and the ``analytics-kit``
and ``duckdb`` commands as subprocesses.
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import analytics_kit as ak
from analytics_kit.read import connection

from helpers import closed_port, served

BIN = Path(sys.executable).parent


def kit(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "analytics-kit"), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, **(env or {})})


# -- SQL mistakes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sql, says", [
    ("SELECT * FROM analytics.evnts", r"^Catalog Error: Table with name evnts does not exist! Did you mean events\? "
                                      r"Tables in .*analytics\.duckdb: customers, events \(as analytics\.<table> or <table>\)\.$"),
    ("SELECT * FROM nope", r"^Catalog Error: Table with name nope does not exist! Tables in .*: customers, events "),
    ("SELECT evnt_type FROM events", r'^Binder Error: Referenced column "evnt_type" not found in FROM clause! '
                                     r"Did you mean event_type\? Tables in .*: customers, events"),
    ("SELEC 1", r'^Parser Error: syntax error at or near "SELEC"$'),
])
def test_a_sql_mistake_is_one_query_error_with_the_tables_and_a_did_you_mean(loaded, sql, says):
    with pytest.raises(ak.QueryError) as caught:
        ak.query(sql)
    error = caught.value
    assert isinstance(error, ak.KitError) and isinstance(error, ValueError)
    assert re.search(says, str(error)), str(error)
    assert "\n" not in str(error)
    assert "pg_enum" not in str(error)  # DuckDB's guess from its system catalog
    if sql.startswith("SELEC "):
        assert "LINE 1: SELEC 1" in error.detail
    else:
        assert error.tables == ("customers", "events")


def test_a_sql_mistake_on_the_command_line_is_one_line_and_exit_1(loaded):
    for sql in ("SELECT * FROM nope", "SELEC 1", "SELECT evnt_type FROM analytics.events"):
        result = kit("query", sql)
        assert result.returncode == 1, result
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr
    assert "Did you mean event_type?" in kit("query", "SELECT evnt_type FROM events").stderr


def test_describe_a_table_that_is_not_there(loaded):
    with pytest.raises(ak.QueryError, match=r"There is no table 'evnts' in .*Did you mean 'events'\? Tables there: customers, events"):
        ak.describe("evnts")


# -- names that work for every file -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["mydata.duckdb", "2024 copy.duckdb", "select.duckdb", "memory.duckdb"])
def test_analytics_dot_events_and_plain_events_work_whatever_the_file_is_called(api, config, name):
    ak.load(config, database=name, progress=False)
    for sql in ("SELECT count(*) AS n FROM analytics.events", "SELECT count(*) AS n FROM events",
                "SELECT count(*) AS n FROM analytics.main.events"):
        assert ak.query(sql, database=name)["n"].iloc[0] == 250, sql
    result = kit("query", "--database", name, "SELECT count(*) AS n FROM analytics.events")
    assert result.returncode == 0 and result.stdout.split() == ["n", "250"], result
    assert set(ak.tables(database=name)["table"]) == {"events", "customers"}
    assert list(ak.describe("events", database=name)["column"])[:2] == ["id", "customer_id"]


def test_the_files_own_name_is_explained(api, config):
    ak.load(config, database="mydata.duckdb", progress=False)
    with pytest.raises(ak.QueryError, match="The kit's readers name the file 'analytics' whatever it is called: "
                                            "write analytics.events or events"):
        ak.query("SELECT count(*) FROM mydata.events", database="mydata.duckdb")


def test_demo_with_another_file_name_runs_to_the_end_and_prints_a_cli_command_that_works(tmp_path):
    result = kit("demo", "--database", "mydata.duckdb", "--events", "300", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4. events per type" in result.stdout
    command = result.stdout.split("Ad-hoc SQL: ", 1)[1].strip()
    args = shlex.split(command)
    # the CLI beside the kit's Python, by a path that works from this folder (not .venv/bin/duckdb: helper-118)
    assert args[0] == str(BIN / "duckdb") and "SET TimeZone = 'UTC'" in command, command
    cli = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert re.search(r"\b30[0-9]\b", cli.stdout), cli.stdout  # 300 events and the few the demo adds
    # the same SQL, the same answer: the CLI in UTC, as the kit's readers, whatever the machine's zone
    day = "SELECT min(timestamp)::DATE::VARCHAR AS d FROM analytics.events"
    kit_day = ak.query(day, database=str(tmp_path / "mydata.duckdb")).d[0]
    cli, *rest = shlex.split(command.replace("SELECT count(*) FROM analytics.events", day))
    cli_day = subprocess.run([cli, "-csv", *rest],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60,
                             env={**os.environ, "TZ": "America/Los_Angeles"})
    assert cli_day.stdout.split() == ["d", kit_day], (cli_day.stdout, cli_day.stderr)


def test_a_dataset_named_analytics_is_refused_in_any_file(api, config):
    with pytest.raises(ak.ConfigError, match="would hide the tables from the kit's readers"):
        ak.load(config, database="mydata.duckdb", dataset="analytics")
    assert api.requests == [] and not Path("mydata.duckdb").exists()


@pytest.mark.parametrize(("given", "plain"), [("Raw", "raw"), ("2024", "_2024"), ("My Data", "my_data"),
                                               ("x" * 51, "x" * 50), ("sales-eu", "sales_eu"),
                                               # dlt's renames of underscores (helper-126: raw_ loaded into rawx)
                                               ("raw_", "raw"), ("raw__x", "raw_x"), ("__raw", "_raw")])
def test_a_dataset_dlt_would_rename_or_refuse_is_refused_with_the_name_to_use(api, config, given, plain):
    """"Raw" loaded into raw with 35 of dlt's warnings, and readers given "Raw" found nothing; "My Data" failed as
    dlt's InvalidSchemaName (helper-125)."""
    api.clear_log()
    for call in (lambda: ak.load(config, dataset=given, progress=False), lambda: ak.tables(dataset=given),
                 lambda: ak.query("SELECT 1", dataset=given)):
        with pytest.raises(ak.ConfigError) as caught:
            call()
        assert caught.value.path == "dataset" and f"Pass dataset={plain!r}" in caught.value.guidance
    assert api.requests == [] and not Path("analytics.duckdb").exists()
    result = kit("tables", "--dataset", given)
    assert result.returncode == 1 and f"Pass dataset={plain!r}" in result.stderr
    assert ak.load(config, dataset=plain, progress=False).rows["events"] == 250
    assert sorted(ak.tables(dataset=plain).table) == ["customers", "events"]


def test_another_dataset_in_the_file_answers_to_its_name_and_plain_names(api, config):
    ak.load(config, database="mydata.duckdb", dataset="raw", progress=False)
    for sql in ("SELECT count(*) AS n FROM raw.events", "SELECT count(*) AS n FROM events"):
        assert ak.query(sql, database="mydata.duckdb", dataset="raw")["n"].iloc[0] == 250


READERS = {"tables": lambda: ak.tables(database="mydata.duckdb"),
           "query": lambda: ak.query("SELECT * FROM events", database="mydata.duckdb"),
           "history": lambda: ak.history(database="mydata.duckdb"),
           "state": lambda: ak.state(database="mydata.duckdb")}


@pytest.mark.parametrize("reader", list(READERS))
def test_a_reader_without_the_dataset_the_load_was_given_names_it(api, config, reader):
    """The readers said the file "holds no loaded tables", as of a file no load had completed into."""
    ak.load(config, database="mydata.duckdb", dataset="raw", progress=False)
    with pytest.raises(ak.QueryError) as raised:
        READERS[reader]()
    assert "loads completed into dataset 'raw'" in str(raised.value), raised.value
    assert "dataset='raw'" in (raised.value.guidance or ""), raised.value
    with pytest.raises(ak.QueryError) as raised:  # "'analytics' unless one is given", where one was (helper-142)
        {"query": ak.tables, "tables": ak.tables, "describe": ak.tables, "history": ak.history,
         "state": ak.state}.get(reader, ak.tables)(database="mydata.duckdb", dataset="raw2")
    assert "in the dataset read, 'raw2';" in str(raised.value), raised.value


# -- a missing or empty database ----------------------------------------------------------------------


def test_the_readers_never_create_a_file_and_name_the_path_they_looked_at(tmp_path):
    for read in (lambda: ak.query("SELECT 1"), ak.tables, lambda: ak.describe("events")):
        with pytest.raises(ak.QueryError, match=rf"There is no DuckDB file at {re.escape(str(tmp_path))}/analytics\.duckdb "
                                                r"\(the default database: analytics\.duckdb in the current folder\)"):
            read()
    with pytest.raises(ak.QueryError, match=r"no DuckDB file at .*/other\.duckdb \(database='other\.duckdb', resolved"):
        ak.query("SELECT 1", database="other.duckdb")
    for command in (["tables"], ["query", "SELECT 1"], ["state"], ["tables", "--database", "x.duckdb"]):
        result = kit(*command, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.startswith("error: There is no DuckDB file at "), result
        assert "Traceback" not in result.stderr and "analytics-kit load" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failed_first_load_leaves_a_file_the_readers_call_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEY", "k" * 12)
    with pytest.raises(ak.LoadError):
        ak.load(ak.guide_config(f"http://127.0.0.1:{closed_port()}"), progress=False)
    assert Path("analytics.duckdb").exists()
    empty = r"analytics\.duckdb holds no loaded tables: no load into it has completed"
    with pytest.raises(ak.QueryError, match=empty):
        ak.tables()
    with pytest.raises(ak.QueryError, match=rf"^Catalog Error: Table with name events does not exist, since .*{empty}"):
        ak.query("SELECT count(*) FROM analytics.events")
    for command in (["tables"], ["state"]):
        result = kit(*command)
        assert result.returncode == 1 and "holds no loaded tables" in result.stderr and "(no rows)" not in result.stdout


@pytest.mark.parametrize("damage", ["cut in half", "header overwritten"])
def test_a_damaged_file_is_named_damaged_by_the_load_and_the_readers(loaded, config, damage, caplog):
    """DuckDB's "Could not read enough bytes" came with "Fix the cause and run the load again. Nothing is lost" and the
    readers' "Pass the DuckDB file a load wrote": neither any run could follow (helper-116)."""
    data = loaded.read_bytes()
    loaded.write_bytes(data[:len(data) // 2] if damage == "cut in half" else b"\0" * 4096 + data[4096:])
    said = (r"is damaged: DuckDB cannot read it \(.*\)" if damage == "cut in half"
            else r"is not a DuckDB database file \(or its first bytes are damaged\)")
    for mode in ("incremental", "full_refresh"):
        with pytest.raises(ak.LoadError) as caught:
            ak.load(config, mode, progress=False)
        assert re.search(rf"^The load stopped: {re.escape(str(loaded))} {said}; this load changed nothing in it\.$",
                         caught.value.message), caught.value.message
        assert "Restore it from a backup" in caught.value.guidance and "Nothing is lost" not in str(caught.value)
        # not first "restored from the database", which cannot be read (helper-117)
        assert "could not be read" not in caplog.text, caplog.text
    failed = []
    # what a reader needs of a file cut short may still be there (its catalog): those answer
    whole_table = "SELECT sum(hash(id, customer_id, properties)) FROM events"
    for read in (ak.state, ak.tables, lambda: ak.query(whole_table), ak.history):
        try:
            read()
        except ak.QueryError as error:
            assert re.search(rf"^{re.escape(str(loaded))} {said}\.$", error.message), error.message
            assert "Restore it from a backup" in error.guidance
            failed.append(error)
    assert len(failed) >= (1 if damage == "cut in half" else 4)
    assert loaded.stat().st_size == (len(data) // 2 if damage == "cut in half" else len(data))  # left as it was


def test_a_wal_beside_a_file_it_was_not_written_for_is_named_with_what_to_do(loaded, config, api):
    """A killed process's .wal stays beside a file then restored from a backup: every load and reader failed on it,
    the load saying "Fix the cause and run the load again", a reader "Pass the DuckDB file a load wrote" (helper-148)."""
    shutil.copy(loaded, "backup.duckdb")
    api.advance(new=5)
    ak.load(config, progress=False)
    rows = ak.query("SELECT count(*) AS n, max(updated_at) AS newest FROM events").iloc[0].tolist()
    # a process that dies after a commit and before DuckDB's checkpoint, as a killed load can
    subprocess.run([sys.executable, "-c", "import duckdb, os; c = duckdb.connect('analytics.duckdb'); c.execute("
                    "\"SET checkpoint_threshold='1TB'\"); c.execute('CREATE TABLE t (x INT)'); os._exit(0)"], check=True)
    assert Path("analytics.duckdb.wal").exists()
    shutil.copy("backup.duckdb", loaded)
    said = f"{loaded} cannot be opened: DuckDB's log of its last changes beside it, {loaded}.wal, does not belong to it"
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    assert said in caught.value.message and f"Move {loaded}.wal aside" in caught.value.guidance, caught.value
    assert "run the load again" not in str(caught.value).lower()
    with pytest.raises(ak.QueryError) as caught:
        ak.tables()
    assert said in str(caught.value) and f"Move {loaded}.wal aside" in str(caught.value), caught.value
    Path("analytics.duckdb.wal").rename("aside.wal")
    ak.load(config, progress=False)  # from the backup's cursor
    assert ak.query("SELECT count(*) AS n, max(updated_at) AS newest FROM events").iloc[0].tolist() == rows


def test_a_file_of_a_newer_duckdb_is_named_so_by_an_older_one(tmp_path):
    """The oldest supported duckdb (1.4) cannot read the v1.5 format newer ones write; it said "Fix the cause and run
    the load again" and "Pass the DuckDB file a load wrote" (helper-116)."""
    newer, older = (Path(__file__).resolve().parents[1] / venv / "bin" / "python" for venv in (".venv", ".venv-oldest"))
    version = "import duckdb; print(duckdb.__version__)"
    if not (newer.exists() and older.exists()):
        pytest.skip("needs both .venv and .venv-oldest (make test sets up both)")
    versions = [subprocess.run([str(p), "-c", version], capture_output=True, text=True).stdout.strip()
                for p in (newer, older)]
    if versions[0].split(".")[:2] == versions[1].split(".")[:2] or versions[0].startswith("1.4"):
        pytest.skip(f"duckdb {versions[0]} and {versions[1]} share a storage format")
    database = tmp_path / "newer.duckdb"
    subprocess.run([str(newer), "-c", "import sys, duckdb; from analytics_kit.store.database import ensure_database; "
                    "from pathlib import Path; ensure_database(Path(sys.argv[1]))", str(database)], check=True)
    read = subprocess.run([str(older), "-c", "import sys, analytics_kit as ak\ntry: ak.tables(database=sys.argv[1])\n"
                           "except ak.QueryError as e: print(e.message); print(e.guidance)", str(database)],
                          capture_output=True, text=True, timeout=120)
    assert f"{database} was written by a newer DuckDB than this one (duckdb {versions[1]}): its storage version is" \
        in read.stdout, read
    assert "Upgrade duckdb where you read or load it" in read.stdout


def test_a_notebook_in_a_subfolder_is_told_where_make_demo_wrote(loaded, tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    with pytest.raises(ak.QueryError, match=rf"Found {re.escape(str(loaded))} in a folder above: pass "
                                            rf"database='{re.escape(str(loaded))}', or set ANALYTICS_DATABASE="):
        ak.tables()


def test_the_default_database_follows_ANALYTICS_DATABASE(api, config, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("ANALYTICS_DATABASE", str(tmp_path / "data" / "shared.duckdb"))
    ak.load(config, progress=False)
    assert (tmp_path / "data" / "shared.duckdb").exists() and not Path("analytics.duckdb").exists()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert ak.query("SELECT count(*) AS n FROM analytics.events")["n"].iloc[0] == 250
    assert kit("tables").stdout.split() == ["table", "rows", "customers", "20", "events", "250"]
    # an explicit path wins over the variable
    with pytest.raises(ak.QueryError, match=r"no DuckDB file at .*elsewhere/analytics\.duckdb \(database="):
        ak.tables(database="analytics.duckdb")
    monkeypatch.setenv("ANALYTICS_DATABASE", str(tmp_path / "nowhere.duckdb"))
    with pytest.raises(ak.QueryError, match=r"no DuckDB file at .*nowhere\.duckdb \(\$ANALYTICS_DATABASE\)"):
        ak.tables()


# -- a file another program holds ------------------------------------------------------------------


HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write: DuckDB locks the file for this process
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold(path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_query_waits_for_another_process_holding_the_file(loaded):
    holder = hold(loaded, 1.5)
    try:
        started = time.monotonic()
        assert ak.query("SELECT count(*) AS n FROM analytics.events")["n"].iloc[0] == 250
        assert time.monotonic() - started >= 0.8  # it waited for the holder to let go
    finally:
        holder.wait(timeout=30)
    for command in (["query", "SELECT count(*) AS n FROM events"], ["tables"], ["state"]):
        holder = hold(loaded, 1.5)
        try:
            result = kit(*command)
            assert result.returncode == 0 and "Traceback" not in result.stderr, result  # not dlt's raw IO error
            assert "250" in result.stdout or "events:" in result.stdout, result
        finally:
            holder.wait(timeout=30)


def test_a_query_that_waits_too_long_names_the_holder_not_a_raw_io_error(loaded, monkeypatch):
    monkeypatch.setattr(connection, "LOCK_WAIT_SECONDS", 0.5)
    holder = hold(loaded, 20)
    try:
        with pytest.raises(ak.KitError, match=rf"is locked by another process \(PID {holder.pid}\)") as caught:
            ak.query("SELECT 1")
        assert not isinstance(caught.value, duckdb.Error)
        assert "Run the query again when the load has finished" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()


# -- what the DuckDB CLI sees ------------------------------------------------------------------------


def cli_tables(path: Path) -> set[str]:
    result = subprocess.run([str(BIN / "duckdb"), "-readonly", "-csv", str(path), "-c",
                             "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split()[1:])


def test_the_file_holds_the_users_tables_and_bookkeeping_not_dlts_staging(api, config):
    ak.load(config, progress=False)
    api.advance(new=5, updated=7, deleted=2)
    second = ak.load(config, progress=False)  # merges: dlt stages in main_staging
    assert second.rows["events"] == 14
    names = cli_tables(Path("analytics.duckdb"))
    assert not [n for n in names if n.startswith("main_staging.")], names
    assert {"main.events", "main.customers", "main._dlt_loads", "main._dlt_version"} <= names
    assert all(n.split(".")[1].startswith(("_dlt", "_analytics_kit")) or n in ("main.events", "main.customers")
               for n in names), names
    # dlt recreates its staging tables in the next merge, and the merge is right
    api.advance(new=3, updated=4, deleted=0)
    assert ak.load(config, progress=False).rows["events"] == 7
    frame = ak.query("SELECT id, updated_at FROM events ORDER BY id")
    assert {r.id: r.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ") for r in frame.itertuples()} == served(api)


def test_staging_tables_an_earlier_run_left_are_dropped_by_the_next_load(api, config):
    ak.load(config, progress=False)
    with duckdb.connect("analytics.duckdb") as con:  # what a run killed in its load step leaves
        con.execute("CREATE SCHEMA main_staging; CREATE TABLE main_staging.events AS SELECT 1 AS id")
    assert "main_staging.events" in cli_tables(Path("analytics.duckdb"))
    api.advance(new=2, updated=0)
    assert ak.load(config, progress=False).rows["events"] == 2
    assert not [n for n in cli_tables(Path("analytics.duckdb")) if n.startswith("main_staging.")]


# -- what an independent check found -------------------------------------------------------------


def test_a_file_with_dlts_bookkeeping_but_no_committed_load_is_empty_to_every_reader(tmp_path):
    """A first load that failed after dlt created its tables (the tables exist, no load in
    ``_dlt_loads`` is committed): tables, state and history say what to run, not "0 rows"."""
    path = tmp_path / "failed.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE _dlt_loads (load_id VARCHAR, status BIGINT)")
        con.execute("INSERT INTO _dlt_loads VALUES ('1', 1)")  # not committed
        con.execute("CREATE TABLE events (id BIGINT)")
    for read in (ak.tables, ak.state, ak.history):
        with pytest.raises(ak.QueryError, match="no load into it has completed"):
            read(str(path))


def test_a_duckdb_file_of_ones_own_is_read_as_it_is(tmp_path):
    path = tmp_path / "mine.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS a")
    assert ak.query("SELECT a FROM t", database=str(path))["a"].tolist() == [1]
    assert ak.tables(str(path))["table"].tolist() == ["t"]


@pytest.mark.parametrize("spoil, says", [
    ("the lock a folder", r"analytics\.duckdb\.state/load\.lock is a folder where the kit keeps a file"),
    ("the working folder a link to itself", r"analytics\.duckdb\.state is a link that leads back to itself"),
    ("a read-only disk", r"analytics\.duckdb\.state/load\.lock is on a read-only file system"),
])
def test_a_folder_the_load_cannot_write_is_named_with_what_is_wrong(loaded, config, spoil, says):
    """A bare "OSError: [Errno 30] Read-only file system" came with "each table's merge is all-or-nothing"
    (helper-116)."""
    state = Path("analytics.duckdb.state")
    before = ak.query("SELECT count(*) AS n FROM events").n[0]
    if spoil == "the lock a folder":
        (state / "load.lock").unlink()
        (state / "load.lock").mkdir()
    elif spoil == "the working folder a link to itself":
        shutil.rmtree(state)
        state.symlink_to(state.name)
    elif subprocess.run(["mount", "-o", "remount,ro", "--bind", ".", "."], capture_output=True).returncode:
        if subprocess.run(["mount", "--bind", ".", "."], capture_output=True).returncode:
            pytest.skip("cannot make a read-only mount here (run as root)")
        subprocess.run(["mount", "-o", "remount,ro,bind", "."], check=True)
    try:
        with pytest.raises(ak.LoadError) as caught:
            ak.load(config, progress=False)
    finally:
        subprocess.run(["umount", str(Path.cwd())], capture_output=True) if spoil == "a read-only disk" else None
    assert re.search(rf"^The load failed: /\S*{says}", caught.value.message), caught.value.message
    assert "make that folder and the database's writable" in caught.value.guidance
    assert "OSError" not in str(caught.value) and ak.query("SELECT count(*) AS n FROM events").n[0] == before


# duckdb 1.4 reads an IMPORT's files as it parses it: the refusal comes from there
_IMPORTED = r"(IMPORT DATABASE is not run|could not be told apart .*file system operations are disabled)"


@pytest.mark.parametrize("sql, says", [
    ("USE memory; DETACH analytics; ATTACH '{path}' AS again; DROP TABLE again.customers; SELECT 1",
     "ATTACH and DETACH are not run"),
    ("USE memory; DETACH analytics; COPY (SELECT 'x') TO '{path}' (FORMAT csv); SELECT 1",
     "COPY and DETACH are not run"),
    ("COPY events TO '{folder}/copied.parquet'", "COPY is not run"),
    ("SELECT * FROM read_csv('/etc/passwd')", r"read_csv\(\) is not run"),
    ("SELECT * FROM read_parquet('{folder}/*.parquet')", r"read_parquet\(\) is not run"),
    ("LOAD '{folder}/not_there.duckdb_extension'", "INSTALL and LOAD is not run"),  # no INSTALL: the network
    ("SET enable_external_access = true; SELECT 1", "the configuration has been locked"),
    # the temporary folder DuckDB allows (./.tmp), an IMPORT of files written there running an ATTACH, and the
    # file's .wal, which duckdb 1.4 let COPY write (helper-119)
    ("USE memory; EXPORT DATABASE '.tmp'; EXPORT DATABASE '.tmp/a'; COPY (SELECT 'DETACH analytics;' AS s) TO "
     "'.tmp/a/schema.sql' (FORMAT csv, HEADER false, QUOTE ''); IMPORT DATABASE '.tmp/a'; SELECT 1",
     r"(COPY, EXPORT DATABASE and IMPORT DATABASE are not run|could not be told apart)"),
    ("/* a comment */ import database '{folder}'", _IMPORTED),
    ("COPY (SELECT 1 AS a) TO '{path}.wal' (FORMAT csv, USE_TMP_FILE false); SELECT 1", "COPY is not run"),
    ("SELECT * FROM glob('.tmp/*')", r"glob\(\) is not run"),
    # COPY inside PREPARE, its path a parameter; PRAGMA import_database running files written to the spill folder
    # (helper-120: both overwrote the file)
    ("SET VARIABLE f = (SELECT path FROM duckdb_databases() WHERE database_name = 'analytics'); PREPARE w AS COPY "
     "(SELECT 42 AS x) TO ? (FORMAT csv, USE_TMP_FILE false); EXECUTE w(getvariable('f')); SELECT 1",
     "EXECUTE and PREPARE are not run"),
    ("PRAGMA import_database(current_setting('temp_directory')); SELECT 1",
     r"(PRAGMA import_database is not run|could not be told apart)"),
    ("CALL checkpoint()", "CALL is not run"),
    ("CHECKPOINT", "nothing else: CHECKPOINT is not run"),  # duckdb types it a CALL
    ("force  checkpoint", "FORCE CHECKPOINT is not run"),
    # a PRAGMA behind nested comments; the file itself opened again (its close drops the reader's lock); a secret
    # written where its name leads; logging to a file (duckdb 1.4 aborted the process) (helper-121)
    ("/* /* */ PRAGMA show */ PRAGMA force_checkpoint; SELECT 1 AS x", "PRAGMA force_checkpoint is not run"),
    ("SELECT count(*) FROM read_duckdb('{path}', table_name='events')", r"read_duckdb\(\) is not run"),
    ("SELECT size FROM read_blob('{path}')", r"read_blob\(\) is not run"),
    ("SELECT * FROM '{path}'", "a file named in FROM"),
    ("CREATE PERSISTENT SECRET \"../../../{folder}/evil\" (TYPE http, BEARER_TOKEN 'x'); SELECT 1",
     r"(Persistent secrets are disabled|a file named as a table)"),
    ("SELECT * FROM enable_logging(storage='file', storage_path='{folder}/logs')", r"enable_logging\(\) is not run"),
    # SQL in a string, a file named as a table, GLOB as a keyword (helper-122)
    ("SELECT * FROM query('SELECT octet_length(content) n FROM read_blob(''{path}'')')", r"query\(\) is not run"),
    ("SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
     r"json_execute_serialized_sql\(\) is not run"),
    ('SELECT count(*) FROM "{path}"', "a file named as a table"),
    ("SELECT * FROM glob('{path}')", r"glob\(\) is not run"),
])
def test_a_readers_sql_reads_the_file_and_nothing_else(loaded, sql, says):
    """The readers attach the file read-only to a database in memory: SQL detached it and attached it again writable
    (a table dropped), wrote other files (COPY TO), read any (/etc/passwd) and asked the network for extensions
    (helper-118)."""
    before = loaded.read_bytes()
    sql = sql.format(path=loaded, folder=loaded.parent)
    with pytest.raises(ak.QueryError) as caught:
        ak.query(sql)
    assert re.search(f"read {re.escape(str(loaded))} and nothing else.*{says}|{says}", str(caught.value)), caught.value
    result = kit("query", sql)
    assert result.returncode == 1 and re.search(says, result.stderr) and "Traceback" not in result.stderr, result
    assert loaded.read_bytes() == before and not (loaded.parent / "copied.parquet").exists()
    assert not Path(f"{loaded}.wal").exists() and not (loaded.parent / ".tmp").exists()
    assert not list(loaded.parent.glob("evil*")) and not (loaded.parent / "logs").exists()
    assert sorted(ak.tables().table) == ["customers", "events"]
    assert ak.query("SELECT count(*) AS n FROM analytics.events").n[0] == 250  # the readers read as before


def test_a_readers_analysis_works_beside_the_lockdown_and_what_it_refuses_says_what_to_do(loaded):
    """Temp tables, EXPLAIN, PRAGMA, parameters, several statements still run; a CREATE TABLE in the file and a SET
    say where to go instead (helper-119: no guidance)."""
    both = "CREATE TEMP TABLE mine AS SELECT event_type, count(*) n FROM events GROUP BY 1; SELECT sum(n) n FROM mine"
    assert ak.query(both).n[0] == 250
    within = "WITH t AS (SELECT id FROM events WHERE id <= ?) SELECT count(*) AS n FROM t"
    assert ak.query(within, params=[10]).n[0] == 10
    assert len(ak.query("EXPLAIN SELECT * FROM events")) and "id" in set(ak.query("PRAGMA table_info('events')").name)
    with pytest.raises(ak.QueryError) as caught:
        ak.query("CREATE TABLE mine AS SELECT 1 AS a; SELECT * FROM mine")
    assert "CREATE TEMP TABLE" in caught.value.guidance and "attached in read-only mode" in caught.value.message
    with pytest.raises(ak.QueryError) as caught:
        ak.query("SET TimeZone = 'Europe/Paris'; SELECT 1")
    assert "AT TIME ZONE" in caught.value.guidance and caught.value.message.endswith(".")


def test_intervals_come_back_as_timedeltas(loaded):
    """An INTERVAL was one DateOffset object a value: no arithmetic, no .dt. A month counts 30 days, as in DuckDB's
    own .df(); NULL is NaT; an interval beyond a timedelta's range stays as it was rather than wrapping around."""
    frame = ak.query("SELECT max(timestamp) - min(timestamp) AS span, max(timestamp) AS last, min(timestamp) AS first, "
                     "age(max(timestamp), min(timestamp)) AS age, INTERVAL 2 MONTH AS months, "
                     "NULL::INTERVAL AS nothing, -INTERVAL '1 day 2.5 seconds' AS back FROM events")
    assert all(str(frame.dtypes[c]) == "timedelta64[us]" for c in ("span", "age", "months", "nothing", "back"))
    assert frame.span[0] == frame["last"][0] - frame["first"][0] and frame.span[0].total_seconds() > 0
    assert frame.months[0] == pd.Timedelta(days=60) and pd.isna(frame.nothing[0])
    assert frame.back[0] == -pd.Timedelta(days=1, seconds=2.5)
    gaps = ak.query("SELECT timestamp - lag(timestamp) OVER (ORDER BY timestamp) AS gap FROM events")
    assert gaps.gap.isna().sum() == 1 and (gaps.gap.dropna() >= pd.Timedelta(0)).all()
    assert gaps.gap.dt.total_seconds().sum() == frame.span[0].total_seconds()
    assert len(ak.query("SELECT INTERVAL 1 DAY AS i FROM range(0)")) == 0
    huge = ak.query("SELECT to_months(2000000000) AS huge")
    assert huge.huge[0].months == 2000000000


def test_a_column_pandas_cannot_take_is_a_query_error_saying_how_to_cast_it(loaded):
    """A UNION column raised a raw ArrowNotImplementedError, and the CLI printed a traceback (helper-127)."""
    with pytest.raises(ak.QueryError) as caught:
        ak.query("SELECT union_value(k := 1) AS u, 1 AS n")
    assert "u (sparse_union" in caught.value.message and "CAST(col AS VARCHAR)" in caught.value.guidance
    assert ak.query("SELECT union_value(k := 1)::VARCHAR AS u").u[0] == "1"
    with pytest.raises(ak.QueryError, match="outside the years 1 to 9999"):  # a raw ValueError (helper-128)
        ak.query("SELECT '-infinity'::DATE AS d")


@pytest.mark.parametrize("sql", ["", "   ", "-- only a comment"])
def test_empty_sql_is_a_query_error(loaded, sql):
    with pytest.raises(ak.QueryError, match="returns no rows to read"):
        ak.query(sql)


_PARQUET = b"PAR1" + b"\0" * 60
_FOREIGN = {"export.csv": (b"id,name\n1,a\n", "a CSV file"), "Rows.JSON": (b'{"id": 1}\n', "a JSON file"),
            "events.ndjson": (b'{"id": 1}\n', "a JSON file"), "data.tsv": (b"id\tname\n", "a CSV file"),
            "table.parquet": (_PARQUET, "a Parquet file"), "named.duckdb": (_PARQUET, "a Parquet file"),
            "export.csv.gz": (b"\x1f\x8b\x08\x00" + b"\0" * 20, "a gzip file")}


@pytest.mark.parametrize("name", sorted(_FOREIGN))
def test_a_data_file_given_as_the_database_is_refused_before_the_api_is_paged(api, config, tmp_path, name):
    """DuckDB opens an existing CSV, JSON or Parquet file as an in-memory database that reads it: loads "into" one
    reported their rows and kept none, and the readers said "Cannot launch in-memory database" (helper-125)."""
    content, kind = _FOREIGN[name]
    given = tmp_path / name
    given.write_bytes(content)
    api.clear_log()
    with pytest.raises(ak.ConfigError) as caught:
        ak.load(config, database=given, progress=False)
    assert caught.value.path == "database" and caught.value.message == (
        f"database: {str(given)!r} is {kind}, not a DuckDB database: DuckDB would open it as data to read, and what a load "
        "wrote into it would be lost")
    assert "a new name such as 'analytics.duckdb'" in caught.value.guidance
    assert api.requests == [] and given.read_bytes() == content and sorted(tmp_path.iterdir()) == [given]
    with pytest.raises(ak.ConfigError, match=re.escape(kind)):
        ak.tables(database=given)
    result = kit("load", "--quiet", "--database", str(given), env={"ANALYTICS_API_BASE_URL": api.base_url,
                                                                  "API_KEY": api.api_key})
    assert result.returncode == 1 and kind in result.stderr and given.read_bytes() == content


def test_a_sqlite_file_given_as_the_database_is_refused_by_the_readers_without_an_extension(tmp_path):
    """DuckDB reads a SQLite file through its sqlite extension, which it tried to download (helper-125)."""
    given = tmp_path / "app.db"
    given.write_bytes(b"SQLite format 3\x00" + b"\0" * 100)
    for read in (ak.tables, ak.state, lambda database: ak.query("SELECT 1", database=database)):
        with pytest.raises(ak.ConfigError, match="is a SQLite database, not a DuckDB database"):
            read(database=given)
    assert not (tmp_path / ".duckdb").exists()


def test_a_file_named_like_data_that_a_load_wrote_is_read_as_the_database(api, config, tmp_path):
    """A new file may be called export.csv: DuckDB makes a database there, and opens it as one afterwards."""
    given = tmp_path / "export.csv"
    assert ak.load(config, database=given, progress=False).rows["events"] == 250
    assert ak.load(config, database=given, progress=False).cursor_before["events"] is not None
    assert ak.query("SELECT count(*) AS n FROM events", database=given).n[0] == 250


@pytest.mark.parametrize("odd", ["a device", "a name too long", "a pipe", "stdout", "a link to stdout"])
def test_a_database_path_no_file_can_have_is_refused_before_anything_is_written(api, config, tmp_path, odd):
    """/dev/null made /dev/null.state, then failed to fsync; a path past the system's limit escaped load() as a raw
    OSError (helper-124); /dev/stdout led to whatever the output went to, and a .state folder was made beside it
    (helper-127)."""
    if odd == "a pipe":
        os.mkfifo(tmp_path / "fifo")
    if odd == "a link to stdout":  # passed as the file stdout went to (helper-128)
        (tmp_path / "fifo").symlink_to("/dev/stdout")
    given = {"a device": "/dev/null", "a name too long": str(tmp_path / "/".join(["d" * 200] * 22) / "x.duckdb"),
             "a pipe": str(tmp_path / "fifo"), "stdout": "/dev/stdout", "a link to stdout": str(tmp_path / "fifo")}[odd]
    says = {"a device": "leads into /dev", "a name too long": "cannot be used: File name too long",
            "a pipe": "is a device, pipe or socket, not a file", "stdout": "leads into /dev",
            "a link to stdout": "leads into /dev"}[odd]
    api.clear_log()
    for call in (lambda: ak.load(config, database=given, progress=False), lambda: ak.tables(database=given)):
        with pytest.raises(ak.ConfigError) as caught:
            call()
        assert caught.value.path == "database" and says in str(caught.value)
    assert api.requests == [] and not Path("/dev/null.state").exists()
    assert list(tmp_path.iterdir()) == ([tmp_path / "fifo"] if odd in ("a pipe", "a link to stdout") else [])


def test_a_quote_in_the_database_path_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEY", "k")
    with pytest.raises(ak.ConfigError, match="single quote") as caught:
        ak.load(ak.guide_config(f"http://127.0.0.1:{closed_port()}"), database=str(tmp_path / "bob's.duckdb"),
                progress=False)
    assert caught.value.path == "database"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "odd"), [("a?b", "?"), ("a\\b", "\\"), ("year=2024", "="), ("a%b", "%")])
def test_a_name_duckdb_cannot_write_is_refused_before_the_api_is_paged(tmp_path, monkeypatch, name, odd):
    """DuckDB reads "?" as the start of a path's options, "\\" as a folder separator and year=2024 as a partition
    column; dlt's file writer takes the path as a %-template (helper-69, helper-70)."""
    monkeypatch.setenv("API_KEY", "k")
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(ak.ConfigError, match="does not read as part of a name") as caught:
        ak.load(ak.guide_config(f"http://127.0.0.1:{closed_port()}"), database=str(folder / "analytics.duckdb"),
                progress=False)
    assert caught.value.path == "database" and f'has "{odd}"' in str(caught.value)
    assert list(folder.iterdir()) == []


def test_a_folder_given_as_the_database_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEY", "k")
    folder = tmp_path / "data"
    folder.mkdir()
    calls = [lambda: ak.load(ak.guide_config(f"http://127.0.0.1:{closed_port()}"), database=str(folder),
                             progress=False),
             lambda: ak.query("SELECT 1", database=str(folder)), lambda: ak.tables(str(folder)), lambda: ak.state(folder)]
    for call in calls:
        with pytest.raises(ak.ConfigError, match="names a folder; expected the path of a DuckDB file") as caught:
            call()
        assert caught.value.path == "database" and str(folder / "analytics.duckdb") in caught.value.guidance
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []
    # the folder set in $ANALYTICS_DATABASE is the one named; a path ending in a slash names a folder;
    # a file where a folder should be, or where the working files go, is named too
    (tmp_path / "a file").write_text("")
    (tmp_path / "taken.duckdb.state").write_text("")
    monkeypatch.setenv("ANALYTICS_DATABASE", str(folder))
    for database, message in ((None, f"'{folder}' names a folder"), (str(tmp_path / "new") + "/", "names a folder"),
                              (str(tmp_path / "a file" / "x.duckdb"), "is a file, not a folder"),
                              (str(tmp_path / "taken.duckdb"), "where the kit keeps the load's working files")):
        with pytest.raises(ak.ConfigError, match=re.escape(message)):
            ak.tables() if database is None else ak.load(ak.guide_config("http://127.0.0.1:9"), database=database,
                                                         progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "data", "taken.duckdb.state"]


def test_the_readers_read_the_file_whatever_is_where_the_working_folder_goes(loaded, config):
    """ak.state() refused a file because a file stood where the load keeps its working folder (helper-116): the
    readers read the database alone; the load still says what is in its way."""
    state = Path("analytics.duckdb.state")
    shutil.rmtree(state)
    state.write_text("not a folder")
    assert set(ak.state()["cursors"]) == {"events", "customers"}
    assert ak.query("SELECT count(*) AS n FROM events").n[0] == 250 and len(ak.history()) == 1
    with pytest.raises(ak.ConfigError, match="where the kit keeps the load's working files beside the database, is a"):
        ak.load(config, progress=False)


def test_a_load_that_fails_in_its_load_step_leaves_no_staging_tables(api, config):
    ak.load(config, progress=False)
    with duckdb.connect("analytics.duckdb") as con:  # dlt's merge will name a column that is gone
        con.execute("ALTER TABLE events DROP COLUMN event_type")
    api.advance(new=2, updated=0)
    with pytest.raises((ak.LoadError, ak.ConfigError)):  # since the fortieth session refused before it pages
        ak.load(config, progress=False)
    assert not [n for n in cli_tables(Path("analytics.duckdb")) if n.startswith("main_staging.")]


def test_describe_takes_a_table_as_sql_names_it(loaded):
    plain = ak.describe("events")
    assert ak.describe("analytics.events").equals(plain) and ak.describe("main.events").equals(plain)


WRITE_ATTEMPT = """
import sys, duckdb
try:
    duckdb.connect(sys.argv[1]).close()
    print("opened")
except duckdb.IOException:
    print("locked")
"""


def _writable_elsewhere(path: Path) -> bool:
    """Whether another process can open ``path`` read-write now (nothing in this one holds a lock on it)."""
    done = subprocess.run([sys.executable, "-c", WRITE_ATTEMPT, str(path)], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() == "opened"


@pytest.mark.parametrize("how", ["read_only", "read_write", "attached", "hard_link", "other_name"])
def test_the_readers_keep_the_lock_of_a_connection_the_process_holds(loaded, tmp_path, how):
    """DuckDB's locks belong to the process: the readers' second handle of the file, closed, dropped the lock of
    the notebook's own connection, and loads in another process wrote under it (helper-103); sharing that
    connection's database opened a second handle anyway where it was ATTACHed or a hard link (helper-108)."""
    path = loaded
    if how == "hard_link":
        os.link(loaded, tmp_path / "same.duckdb")
    elif how == "other_name":
        path = tmp_path / "mydata.duckdb"
        shutil.copy(loaded, path)
    assert _writable_elsewhere(path)
    own = duckdb.connect(":memory:") if how == "attached" else duckdb.connect(
        str(tmp_path / "same.duckdb" if how == "hard_link" else path), read_only=how != "read_write")
    if how == "attached":
        own.execute(f"ATTACH '{path}' AS mine (READ_ONLY)")
    try:
        assert not _writable_elsewhere(path)
        started = time.monotonic()
        for read in (lambda: ak.query("SELECT 1", path), lambda: ak.tables(path), lambda: ak.history(path)):
            with pytest.raises(ak.QueryError, match="open in another connection of this process") as caught:
                read()
            assert "close it first" in caught.value.guidance
        assert time.monotonic() - started < 5  # the caller's own connection is not waited for
        assert not _writable_elsewhere(path), "a reader dropped the lock of the process's own connection"
    finally:
        own.close()
    assert ak.query("SELECT count(*) AS n FROM events", path)["n"].iloc[0] == 250 and _writable_elsewhere(path)


def test_readers_in_several_threads_take_turns(loaded):
    """Two readers' handles side by side: the first one closed dropped the other's lock (see above)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda _: ak.query("SELECT count(*) AS n FROM events")["n"].iloc[0], range(40)))
    assert counts == [250] * 40


@pytest.mark.parametrize("held_by", ["link", "file"])
def test_a_load_through_another_name_of_a_held_file_is_refused(loaded, config, tmp_path, held_by):
    """A load through a hard link to a file this process holds open under the other name went ahead beside
    that connection, and its close dropped the connection's lock (helper-109)."""
    link = tmp_path / "same.duckdb"
    os.link(loaded, link)
    own = duckdb.connect(str(link if held_by == "link" else loaded), read_only=True)
    try:
        started = time.monotonic()
        with pytest.raises(ak.LoadError, match="under another name") as caught:
            ak.load(config, database=loaded if held_by == "link" else link, progress=False)
        assert time.monotonic() - started < 5 and "Close that connection" in caught.value.guidance
        assert not _writable_elsewhere(loaded), "the load dropped the lock of the process's own connection"
    finally:
        own.close()
    assert isinstance(ak.load(config, database=loaded, progress=False), ak.LoadReport)  # closed: it loads again


@pytest.mark.parametrize("how, said", [("read_only", "read-only"), ("attached", "read-only"),
                                       ("attached_rw", "ATTACHed"), ("configured", "configuration of its own")])
def test_a_load_beside_a_connection_of_the_callers_it_cannot_share_is_refused_at_once_and_keeps_its_lock(
        loaded, config, how, said):
    """DuckDB opens no read-write connection beside these: the load waited its 10 s for a connection only the
    caller can close (helper-109, helper-111), and beside an ATTACH each refused attempt opened the file and closed
    it, which dropped the caller's lock (helper-111). Told from the process's locks and its connections' own
    catalogs now, without opening the file."""
    if how in ("attached", "attached_rw"):
        own = duckdb.connect(":memory:")
        own.execute(f"ATTACH '{loaded}' AS mine {'(READ_ONLY)' if how == 'attached' else ''}")
    else:
        own = duckdb.connect(str(loaded), read_only=how == "read_only",
                             config={"threads": 1} if how == "configured" else {})
    try:
        started = time.monotonic()
        with pytest.raises(ak.LoadError, match="open in another connection of this process") as caught:
            ak.load(config, database=loaded, progress=False)
        assert time.monotonic() - started < 5 and said in str(caught.value)
        assert "Close that connection" in caught.value.guidance
        assert not _writable_elsewhere(loaded), "the load dropped the lock of the process's own connection"
    finally:
        own.close()
    assert isinstance(ak.load(config, database=loaded, progress=False), ak.LoadReport)


def test_a_load_waits_for_a_reader_of_this_process_and_keeps_its_lock(loaded, config):
    """A load retried its read-write open every 0.1 s beside a kit reader's read-only one in another thread, and
    each refused open dropped the reader's lock: another process opened the file read-write under the query
    (helper-111). The load now takes the readers' turn before it opens the file."""
    from analytics_kit.store import database

    outcome: list = []
    with database.reading(loaded):  # a reader in another thread, as ak.query holds it
        reader = database.connect_waiting(loaded, True, 1, None, ak.QueryError, "", attach_as="reader")
        try:
            loading = threading.Thread(target=lambda: outcome.append(
                _outcome(lambda: ak.load(config, database=loaded, progress=False, lock_timeout=2))))
            loading.start()
            time.sleep(0.5)
            assert not _writable_elsewhere(loaded), "the waiting load dropped the reader's lock"
            loading.join()
            assert not _writable_elsewhere(loaded)
            assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 250
        finally:
            reader.close()
    assert isinstance(outcome[0], ak.LoadError) and "in use by a query or a load of this process" in str(outcome[0])
    assert isinstance(ak.load(config, database=loaded, progress=False), ak.LoadReport)


def test_readers_beside_the_callers_read_write_connection_are_refused_at_once_while_loads_go_on(loaded, config, api):
    """A reader took the file's turn, saw a load waiting for that turn, and waited for the load while holding it:
    the load failed after its lock_timeout (helper-112). A load counts for the readers only once it is open."""
    own = duckdb.connect(str(loaded))
    stop, refused = threading.Event(), []

    def read() -> None:
        while not stop.is_set():
            started = time.monotonic()
            with pytest.raises(ak.QueryError):
                ak.tables(loaded)
            refused.append(time.monotonic() - started)
            time.sleep(0.05)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(4):
            api.advance(new=2, updated=1, deleted=0)
            ak.load(config, database=loaded, progress=False, lock_timeout=3)
        assert own.execute("SELECT count(*) FROM events").fetchone()[0] == 258
    finally:
        stop.set()
        reader.join()
        own.close()
    assert refused and max(refused) < 2


def test_readers_through_two_names_of_one_file_take_turns(loaded, tmp_path):
    """Keyed by name, two readers of one file through a hard link went side by side, and one was refused as if
    the caller's own code held the file (helper-111)."""
    from concurrent.futures import ThreadPoolExecutor

    os.link(loaded, tmp_path / "same.duckdb")
    names = [loaded, tmp_path / "same.duckdb"] * 15
    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda name: ak.query("SELECT count(*) AS n FROM events", name)["n"].iloc[0], names))
    assert counts == [250] * 30


def _outcome(run):
    try:
        return run()
    except Exception as error:  # noqa: BLE001 - the test looks at it
        return error


def test_a_load_shares_the_callers_read_write_connection(loaded, config, api):
    """A read-write duckdb.connect(path) of the caller's is the same DuckDB database as the load's: it loads through
    it, the caller's connection sees the rows, and its lock stays."""
    own = duckdb.connect(str(loaded))
    try:
        api.advance(new=7, updated=0, deleted=0)
        report = ak.load(config, database=loaded, progress=False)
        assert report.rows["events"] == 7
        assert own.execute("SELECT count(*) FROM events").fetchone()[0] == 257
        assert not _writable_elsewhere(loaded)
    finally:
        own.close()


def test_a_transaction_left_open_on_the_callers_connection_is_named(loaded, config, api):
    """dlt retried the load's job over rows the caller's open transaction deleted, then failed as "TransactionContext
    Error: Conflict on tuple deletion!" with "Fix the cause and run the load again" (helper-116)."""
    own = duckdb.connect(str(loaded))
    try:
        own.execute("BEGIN TRANSACTION")
        own.execute("DELETE FROM events WHERE id <= 10")
        api.advance(new=0, updated=20, deleted=0)  # rows the merge deletes and inserts again
        with pytest.raises(ak.LoadError) as caught:
            ak.load(config, database=loaded, progress=False)
        message = caught.value.message
        assert message.startswith(f"The load failed in load: another connection of this process to {loaded} holds a "
                                  "transaction that changed the rows this load writes"), message
        assert "con.commit() or con.rollback()" in caught.value.guidance
        own.execute("ROLLBACK")
        assert ak.load(config, database=loaded, progress=False).rows["events"] == 20  # as the transaction is over
    finally:
        own.close()


def test_a_descriptor_of_the_file_that_is_no_duckdb_connection_is_read_beside(loaded):
    """A plain open() of the file (a backup copying it) holds no lock: the readers refused as if the caller's code
    had a DuckDB connection to it (helper-113)."""
    with open(loaded, "rb") as copying:
        copying.read(16)
        assert ak.query("SELECT count(*) AS n FROM events", loaded)["n"].iloc[0] == 250


def test_a_query_waits_for_the_files_turn_no_longer_than_for_a_lock(loaded, monkeypatch):
    """A query waited 34 s behind a load of this process that waited for another process (helper-113)."""
    from analytics_kit.store import database

    monkeypatch.setattr(database, "LOCK_WAIT_SECONDS", 0.5)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with database.reading(loaded):  # as a load waiting in the file's turn holds it
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    started = time.monotonic()
    try:
        with pytest.raises(ak.QueryError, match="in use by a load or a query of this process"):
            ak.query("SELECT 1", loaded)
        assert time.monotonic() - started < 3
    finally:
        done.set()
        holder.join()


@pytest.mark.parametrize("where", ["API_KEY", "SOURCES__ANALYTICS__CREDENTIALS__API_KEY", "secrets.toml"])
def test_a_key_typed_into_the_sql_is_masked_in_the_readers_errors(tmp_path, monkeypatch, where):
    """The readers quoted DuckDB's message, which quotes the SQL, with the key a person typed into it; the load masks
    it everywhere (helper-142)."""
    key = "hk_S3cr3tKey_9f8e7d6c5b"
    monkeypatch.chdir(tmp_path)
    if where == "secrets.toml":
        (tmp_path / ".dlt").mkdir()
        (tmp_path / ".dlt" / "secrets.toml").write_text(f'[sources.analytics.credentials]\napi_key = "{key}"\n')
    else:
        monkeypatch.setenv(where, key)
    monkeypatch.setenv("SHORT_TOKEN", "1")  # too short to be a secret: "LINE 1:" stays readable
    with duckdb.connect("mine.duckdb") as con:
        con.execute("CREATE TABLE requests AS SELECT 1 AS id, 'x' AS url")
    for sql in [f"SELECT * FROM requests WHERE {key} = 1", f"SELECT '{key}'::INT", f"SELECT * FROM {key}"]:
        with pytest.raises(ak.QueryError) as caught:
            ak.query(sql, database="mine.duckdb")
        assert key not in str(caught.value) + caught.value.detail and "***" in str(caught.value) + caught.value.detail
    result = subprocess.run([str(BIN / "analytics-kit"), "query", f"SELECT '{key}'::INT", "--database", "mine.duckdb"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and key not in result.stdout + result.stderr and "***" in result.stderr


def test_a_file_of_ones_own_is_read_as_it_is_and_state_and_history_say_why_they_have_nothing(tmp_path, monkeypatch):
    """state() and history() said a file with tables of one's own "holds no loaded tables" while tables() listed
    them; schema() raised a bare KitError (helper-142)."""
    monkeypatch.chdir(tmp_path)
    with duckdb.connect("own.duckdb") as con:
        con.execute("CREATE TABLE events AS SELECT 1 AS id")
    assert list(ak.tables("own.duckdb").table) == ["events"]
    for reader in (ak.state, ak.history, ak.schema):
        with pytest.raises(ak.QueryError) as caught:
            reader(database="own.duckdb")
        assert "holds no loaded tables" not in str(caught.value) and "ak.tables()" in str(caught.value), caught.value


@pytest.mark.parametrize("damage", [
    "UPDATE analytics._analytics_kit_loads SET facts = '{not json'",
    """UPDATE analytics._analytics_kit_loads SET facts = '{"rows": "many", "requests": [1], "cursor_after": "x",
       "cursor_before": 5, "fetched": null, "retries": 1e400}'""",
    """UPDATE analytics._analytics_kit_loads SET facts = '{"rows": {"events": {"a": 1}}}', started_at = 'yesterday'""",
    "ALTER TABLE analytics._analytics_kit_loads DROP COLUMN facts"])
def test_a_load_whose_recorded_facts_are_damaged_is_still_listed(loaded, damage):
    """A load record the kit cannot read raised the json module's own error from state() and history() (helper-142),
    or a ValueError, TypeError or OverflowError of the values in it (helper-143): the load is committed, and listed
    without the details it cannot read."""
    with duckdb.connect(str(loaded)) as con:
        con.execute(damage)
    assert len(ak.history(str(loaded))) == 1 and ak.state(str(loaded)).cursors


def test_a_backslash_in_a_files_name_is_said_to_be_read_as_a_folder(loaded, tmp_path):
    """DuckDB opens "Q3\\2024.duckdb" as Q3/2024.duckdb: the readers said the file did not exist there (helper-142)."""
    odd = tmp_path / "Q3\\2024.duckdb"
    shutil.copy(loaded, odd)
    with pytest.raises(ak.QueryError) as caught:
        ak.tables(str(odd))
    assert "reads a backslash in a path as a folder separator" in str(caught.value)
    odd.rename(tmp_path / "q3_2024.duckdb")
    assert len(ak.tables(str(tmp_path / "q3_2024.duckdb"))) > 0


@pytest.mark.parametrize(("where", "secret", "typed"), [
    ("DESTINATION__POSTGRES__CREDENTIALS", "postgresql://loader:pgpass-4321xyz@127.0.0.1:5/db", "pgpass-4321xyz"),
    ("secrets.toml", 'private_key = "pk-abcdef123456"', "pk-abcdef123456"),
    ("secrets.toml", 'credentials = "md:db?motherduck_token=tok-987654321"', "tok-987654321"),
    ("MY_TOKEN", "tok'en-789abc", "tok''en-789abc"),
    ("API_KEY", "hk_S3cr3tKey_9f8e7d6c5b", "upper('hk_S3cr3tKey_9f8e7d6c5b')"),
    # escaped in the URL, typed as it is; a query parameter of another name; any variable's URL (helper-144)
    ("DESTINATION__POSTGRES__CREDENTIALS", "postgresql://u:envconn%40pw9@h:5432/db", "envconn@pw9"),
    ("DESTINATION__POSTGRES__CREDENTIALS", "postgresql://u@h/db?sslpassword=sslpw_777", "sslpw_777"),
    ("DATABASE_URL", "postgresql://u:plainurlpw9@h/db", "plainurlpw9")])
def test_a_secret_inside_another_or_written_another_way_is_masked_and_not_chained(tmp_path, monkeypatch, where,
                                                                                  secret, typed):
    """A password inside a connection string, a private_key, a token in a URL's query, a quote doubled as SQL
    writes it, the key in upper(): shown by the readers' errors; DuckDB's own error, chained, showed the key in any
    traceback (helper-143)."""
    import traceback

    monkeypatch.chdir(tmp_path)
    if where == "secrets.toml":
        (tmp_path / ".dlt").mkdir()
        (tmp_path / ".dlt" / "secrets.toml").write_text(secret + "\n")
    else:
        monkeypatch.setenv(where, secret)
    with duckdb.connect("mine.duckdb") as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS id")
    sql = f"SELECT '{typed}'::INT" if not typed.startswith("upper") else f"SELECT {typed}::INT"
    with pytest.raises(ak.QueryError) as caught:
        ak.query(sql, database="mine.duckdb")
    shown = "".join(traceback.format_exception(caught.value)) + caught.value.detail
    plain = typed.replace("''", "'").removeprefix("upper('").removesuffix("')")
    assert "***" in shown and plain.lower() not in shown.lower() and typed not in shown, shown


def test_a_word_named_a_secret_is_masked_only_where_it_stands_alone(tmp_path, monkeypatch):
    """DB_PASSWORD=postgres made "postgres_tables" read "***_tables", MY_SECRET=onvers "C***ion Error" (helper-143);
    POSTGRES_PASSWORD=postgres, docker's default, a path "/tmp/***/data.duckdb" (helper-144): a plain word is no
    secret the readers mask."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTGRES_PASSWORD", "postgres")
    (tmp_path / "postgres").mkdir()
    with duckdb.connect("postgres/data.duckdb") as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS id")
    with pytest.raises(ak.QueryError, match="Tables in .*/postgres/data.duckdb"):
        ak.query("SELECT * FROM nosuch", database="postgres/data.duckdb")
    monkeypatch.setenv("DB_PASSWORD", "postgres")
    monkeypatch.setenv("MY_SECRET", "onvers")
    with duckdb.connect("mine.duckdb") as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS id")
    with pytest.raises(ak.QueryError, match="Table with name postgres_tables does not exist"):
        ak.query("SELECT * FROM postgres_tables", database="mine.duckdb")
    with pytest.raises(ak.QueryError, match="Conversion Error"):
        ak.query("SELECT 'x'::INT", database="mine.duckdb")


def test_integers_inside_lists_and_structs_stay_exact_beside_a_null(tmp_path):
    """Arrow made 9007199254740993 inside a struct or a list a float beside a NULL (…992.0), where DuckDB's own
    .df() keeps it (helper-143)."""
    database = str(tmp_path / "mine.duckdb")
    with duckdb.connect(database) as con:
        con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, {'a': 9007199254740993, 'b': 'x'}, "
                    "[9007199254740993, NULL]), (2, {'a': NULL, 'b': NULL}, [1])) v(id, s, l)")
    frame = ak.query("SELECT s, l FROM t ORDER BY id", database)
    assert frame.to_dict("records") == [{"s": {"a": 9007199254740993, "b": "x"}, "l": [9007199254740993, None]},
                                        {"s": {"a": None, "b": None}, "l": [1]}]
    assert type(frame.s[0]["a"]) is int


def test_a_file_dlt_loaded_into_a_dataset_named_analytics_is_read_as_the_advice_says(tmp_path, monkeypatch):
    """Plain dlt's dataset 'analytics': the readers said to pass dataset='analytics', which they refuse (helper-143)."""
    import dlt

    monkeypatch.chdir(tmp_path)
    pipeline = dlt.pipeline("plain", destination=dlt.destinations.duckdb(str(tmp_path / "plain.duckdb")),
                            dataset_name="analytics", pipelines_dir=str(tmp_path / "pipelines"))
    pipeline.run([{"id": 1}, {"id": 2}], table_name="things")
    with pytest.raises(ak.QueryError) as caught:
        ak.tables("plain.duckdb")
    assert "Pass dataset=" not in str(caught.value) and "analytics.analytics.<table>" in str(caught.value)
    assert ak.query("SELECT count(*) AS n FROM analytics.analytics.things", "plain.duckdb").n[0] == 2


def test_a_short_key_of_an_earlier_load_is_masked_in_readers_errors_only_as_a_token(tmp_path, monkeypatch):
    """A load in the same process with the key "test" made a reader's error read "/tmp/py***-of-root/..." (the
    loads' masks apply inside words): the readers mask it where it stands alone."""
    from analytics_kit.redact import Redactor, guard_logs

    monkeypatch.chdir(tmp_path)
    live = Redactor(["test"])
    guard_logs(live)
    with duckdb.connect("pytest_db.duckdb") as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS id")
    with pytest.raises(ak.QueryError) as caught:
        ak.query("SELECT 'test'::INT", database="pytest_db.duckdb")
    assert "'***'" in str(caught.value), caught.value
    with pytest.raises(ak.QueryError) as caught:
        ak.query("SELECT * FROM latest_tests", database="pytest_db.duckdb")
    assert "latest_tests" in str(caught.value) and "pytest_db.duckdb" in str(caught.value), caught.value
    del live


def test_uhugeint_values_are_refused_not_read_as_negative_numbers(tmp_path):
    """UHUGEINT reaches Arrow as signed: 2**128-1 read -1, also inside a list (helper-144)."""
    database = str(tmp_path / "mine.duckdb")
    with duckdb.connect(database) as con:
        con.execute("CREATE TABLE t AS SELECT 340282366920938463463374607431768211455::UHUGEINT AS u, [1::UHUGEINT] AS l")
    with pytest.raises(ak.QueryError, match=r"UHUGEINT values, which pandas cannot take whole: u, l") as caught:
        ak.query("SELECT u, l FROM t", database)
    assert "::VARCHAR" in caught.value.guidance
    assert ak.query("SELECT u::VARCHAR AS u FROM t", database).u[0] == str(2**128 - 1)


def test_timestamps_pandas_cannot_show_are_refused_with_the_cast(tmp_path):
    """A load stores 9999-12-31T23:30:00-01:00 as the year 10000; pandas took it, and printing the frame raised
    "year 10000 is out of range" (helper-146). DuckDB's infinity too. Those in range, and the cast, read as ever."""
    database = tmp_path / "far.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE t (id INT, \"at\" TIMESTAMPTZ)")
        con.execute("INSERT INTO t VALUES (1, '2026-01-01 00:00:00+00'), (2, '10000-01-01 00:30:00+00'), "
                    "(3, 'infinity'), (4, '0000-12-31 23:30:00+00'), (5, NULL)")
    for where in ("id = 2", "id = 3", "id = 4", "true"):
        with pytest.raises(ak.QueryError, match=r"dates or timestamps outside the years 1 to 9999, which pandas holds "
                                                r"but cannot show: at\.") as caught:
            ak.query(f"SELECT * FROM t WHERE {where}", database=database)
        assert '"at"::VARCHAR' in caught.value.guidance
    kept = ak.query("SELECT id FROM t WHERE \"at\" BETWEEN '0001-01-01' AND '9999-12-31 23:59:59.999999' ORDER BY id",
                    database=database)
    with pytest.raises(ak.QueryError, match="cannot show: ns"):  # infinity in nanoseconds reads as 2262 (helper-151)
        ak.query("SELECT 'infinity'::TIMESTAMP_NS AS ns", database=database)
    assert kept.id.tolist() == [1]  # the advice works: every far value left out (helper-150)
    frame = ak.query("SELECT * FROM t WHERE id IN (1, 5) ORDER BY id", database=database)
    assert str(frame["at"].iloc[0]) == "2026-01-01 00:00:00+00:00" and repr(frame)
    texts = ak.query("SELECT \"at\"::VARCHAR AS at FROM t WHERE id = 2", database=database)
    assert texts["at"].iloc[0].startswith("10000-01-01")
    # a DATE out of range failed as pandas' "year 10000 is out of range" (session 39's note): the same refusal, and
    # its advice works for dates too
    for far in ("DATE '10000-01-01'", "'infinity'::DATE", "'-infinity'::DATE", "DATE '0044-03-15 (BC)'"):
        with pytest.raises(ak.QueryError, match=r"outside the years 1 to 9999.*: d\.") as caught:
            ak.query(f"SELECT {far} AS d, 1 AS i", database=database)
        advice = re.search(r"WHERE (.*?)\)", caught.value.guidance).group(1)
        assert ak.query(f"SELECT * FROM (VALUES ({far}), (DATE '2020-02-02')) v(d) WHERE {advice}",
                        database=database).d.tolist() == [datetime.date(2020, 2, 2)]
    assert ak.query("SELECT DATE '9999-12-31' AS d", database=database).d[0] == datetime.date(9999, 12, 31)
    # inside a list, a struct or a map: a TIMESTAMP_NS infinity read as 2262-04-11, a date like any (helper-156)
    for nested in ("['infinity'::TIMESTAMP_NS]", "{'a': '-infinity'::TIMESTAMP_NS}", "MAP {'k': 'infinity'::TIMESTAMP_NS}",
                   "[[DATE '10000-01-01']]", "{'t': [TIMESTAMPTZ '0044-03-15 00:00:00+00' - INTERVAL 100 YEAR]}"):
        with pytest.raises(ak.QueryError, match=r"outside the years 1 to 9999.*: n\.") as caught:
            ak.query(f"SELECT {nested} AS n", database=database)
        assert '"n"::VARCHAR' in caught.value.guidance and "BETWEEN" not in caught.value.guidance
        assert "kit query" not in caught.value.guidance
        assert kit("query", f"SELECT {nested} AS n", "--database", str(database)).returncode == 1
        assert ak.query(f"SELECT {nested}::VARCHAR AS n", database=database).n[0].count("infinity") <= 1
    assert ak.query("SELECT [TIMESTAMP '2020-01-01'] AS l", database=database).l[0] == [datetime.datetime(2020, 1, 1)]


def test_several_queries_in_one_sql_are_refused_not_all_but_the_last_dropped(loaded):
    """DuckDB returns the last statement's rows: "select count(*) from events; select count(*) from customers" gave
    the customers' count alone, without a word (helper-149). A temp table then a query is one query."""
    with pytest.raises(ak.QueryError, match=r"This SQL holds 2 queries; a reader returns one table") as caught:
        ak.query("SELECT count(*) AS n FROM events; SELECT count(*) AS n FROM customers")
    assert "UNION ALL" in caught.value.guidance
    # statements of other types that return rows count too (helper-150)
    for sql in ("SELECT count(*) AS n FROM events; PRAGMA show_tables", "PRAGMA show_tables; SELECT 1",
                "EXPLAIN SELECT 1; SELECT 1", "PIVOT events ON event_type USING count(*); SELECT 1",
                "SHOW TABLES; SELECT 1",
                # a change with RETURNING returns its rows: a query beside it dropped them (session 39's note)
                "CREATE TEMP TABLE r(a INT); INSERT INTO r VALUES (1) RETURNING *; SELECT 2",
                "CREATE TEMP TABLE r(a INT); SELECT 2; DELETE FROM r RETURNING a"):
        with pytest.raises(ak.QueryError, match=r"This SQL holds 2 queries"):
            ak.query(sql)
    assert ak.query("CREATE TEMP TABLE r(a INT); INSERT INTO r VALUES (4) RETURNING a * 2 AS b").b[0] == 8
    assert ak.query("CREATE TEMP TABLE r(a INT); INSERT INTO r VALUES (4); SELECT a FROM r").a[0] == 4
    assert ak.query("CREATE TEMP TABLE few AS SELECT id FROM events LIMIT 3; SELECT count(*) AS n FROM few").n[0] == 3
    assert ak.query("SELECT 1 AS one;").one[0] == 1


@pytest.mark.parametrize("call", [lambda: ak.query(None), lambda: ak.query(123), lambda: ak.describe(5)])
def test_a_reader_argument_that_is_no_text_says_so(call):
    """None or 123 read as DuckDB's "incompatible function arguments" or "Could not convert string 'customers' to
    INT32" (helper-149)."""
    with pytest.raises(ak.QueryError, match=r"^(sql|table): got (NoneType|int); expected .* as text"):
        call()


def test_a_known_key_passed_as_an_argument_is_masked_in_its_refusal(monkeypatch):
    """A key given as the dataset showed in the refusal, as typed and lower-cased (helper-149)."""
    key = "sk_live_Zq8xT3pL9vR2mN7wKc4"
    monkeypatch.setenv("API_KEY", key)
    with pytest.raises(ak.ConfigError) as caught:
        ak.tables(dataset=key)
    assert key.lower() not in (str(caught.value) + caught.value.guidance).lower() and "***" in str(caught.value)
    # its advice echoed the key lower-cased, joined by "_" (helper-150); glued to a name, or through ak.load (helper-151)
    config = {"client": {"base_url": "http://127.0.0.1:9"}, "resources": [{"name": "x", "endpoint": {"path": "/x"}}]}
    for dataset in (f"{key}-raw", f"raw.{key}", f"Raw_{key}", f"1{key}", key):
        for call in (lambda: ak.tables(dataset=dataset), lambda: ak.load(config, dataset=dataset, progress=False)):
            with pytest.raises(ak.ConfigError) as caught:
                call()
            assert key.lower() not in (str(caught.value) + caught.value.guidance).lower(), caught.value


def test_a_reader_during_a_first_load_says_it_is_running_not_that_one_failed(tmp_path, monkeypatch):
    """While a file's first load ran, a reader said "no load into it has completed (a first load that failed leaves
    an empty file behind)" and advised to run a load (helper-147)."""
    import analytics_kit.run.load  # noqa: F401 - dlt imported before the thread, as the README asks
    from analytics_kit import demo

    database = tmp_path / "first.duckdb"
    with demo.serve(events=300) as api:
        monkeypatch.setenv("API_KEY", api.api_key)
        api.set_latency(0.4)
        loading = threading.Thread(target=ak.load, args=(ak.guide_config(api.base_url),),
                                   kwargs={"database": database, "progress": False})
        loading.start()
        said = None
        while loading.is_alive() and said is None:
            try:
                ak.tables(database=database)
            except ak.QueryError as error:
                said = str(error) if "holds no loaded tables" in str(error) else None
            time.sleep(0.1)
        loading.join()
    assert said is not None and "its first load is running (another thread of this process" in said, said
    assert "failed" not in said
    assert set(ak.tables(database=database).table) == {"customers", "events"}
