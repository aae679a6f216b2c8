"""A full refresh into a DuckDB file writes each row once: the swap reads the package's files.

dlt's insert-from-staging copied every file into main_staging and then main_staging into the
table. The kit skips the first copy for the tables it replaces and reads the files in the
swap's transaction (``seam.replace_from_files``); these tests hold it to the same results and the
same all-or-nothing swap, and keep it off loads that are not the kit's.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import dlt
import pytest
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

import analytics_kit as ak
from analytics_kit import demo
from analytics_kit.fetch import batches

from tests.helpers import fast, loaded, served
from tests.test_faults import checksum, snapshot
from tests.test_full_refresh import followup_sql

FILE_ROWS = "1000"


@pytest.fixture
def api():
    """Enough events for several groups of pages, so several files."""
    with demo.serve(events=4500, customers=20, seed=11) as server:
        yield server


@pytest.fixture
def statements(monkeypatch) -> list[str]:
    """Every statement dlt's DuckDB client runs, in order, from any thread."""
    seen: list[str] = []
    one, many = DuckDbSqlClient.execute_sql, DuckDbSqlClient.execute_many

    def execute_sql(self, sql, *args, **kwargs):
        seen.append(str(sql))
        return one(self, sql, *args, **kwargs)

    def execute_many(self, sqls, *args, **kwargs):
        seen.extend(map(str, sqls))
        return many(self, sqls, *args, **kwargs)

    monkeypatch.setattr(DuckDbSqlClient, "execute_sql", execute_sql)
    monkeypatch.setattr(DuckDbSqlClient, "execute_many", execute_many)
    return seen


@pytest.fixture
def small_files(monkeypatch) -> None:
    monkeypatch.setenv("SOURCES__DATA_WRITER__FILE_MAX_ITEMS", FILE_ROWS)
    monkeypatch.setenv("NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS", FILE_ROWS)
    monkeypatch.setattr(batches, "BATCH_ROWS", 500)  # the kit writes a group of pages at a time


def files_read(sql: str, schema: str, table: str) -> list[str]:
    return re.findall(rf'INSERT INTO "{schema}"."{table}" BY NAME SELECT \* FROM read_parquet\(\'([^\']+)\'', sql)


def test_a_full_refresh_reads_each_file_once_into_the_table_in_the_swap(api, config, statements, small_files):
    ak.load(config, progress=False)
    api.advance(new=30, updated=20, deleted=10)
    statements.clear()
    report = ak.load(config, mode="full_refresh", progress=False)
    everything = "\n".join(statements)
    assert not files_read(everything, "main_staging", "events"), "rows were copied into main_staging first"
    swap = followup_sql()
    files = files_read(swap, "main", "events")
    assert len(files) == len(set(files)) >= 3
    assert all(Path(f).name.startswith("events.") and "/completed_jobs/" in f for f in files)
    # the swap empties the table first, in the same job: one transaction
    assert swap.index('DELETE FROM "main"."events" WHERE 1=1') < swap.index("read_parquet")
    assert loaded(api) == served(api) and report.rows["events"] == len(served(api))
    assert checksum("customers")[0] == len(served(api, "customers"))


def test_a_swap_failing_after_some_files_were_read_leaves_the_old_table_whole(api, config, small_files, monkeypatch):
    ak.load(config, progress=False)
    before = snapshot()
    api.advance(new=40, updated=40, deleted=20)
    many = DuckDbSqlClient.execute_many

    def full_after_one_file(self, sqls, *args, **kwargs):
        sqls = list(sqls)
        if not any("read_parquet" in s and '"main"."events"' in s for s in sqls):
            return many(self, sqls, *args, **kwargs)
        reads = 0
        for sql in sqls:  # as DuckDB would: some statements done, then the disk is full
            reads += "read_parquet" in sql
            if reads > 1:
                raise RuntimeError("IO Error: No space left on device (injected)")
            self.execute_sql(sql)

    monkeypatch.setattr(DuckDbSqlClient, "execute_many", full_after_one_file)
    with pytest.raises(ak.LoadError):
        ak.load(config, mode="full_refresh", progress=False)
    monkeypatch.setattr(DuckDbSqlClient, "execute_many", many)
    assert snapshot() == before  # every old row, the old cursor
    report = ak.load(config, mode="full_refresh", progress=False)
    assert report.mode == "full_refresh" and loaded(api) == served(api)


def test_loads_in_two_threads_each_read_their_own_files(tmp_path, small_files, monkeypatch):
    with demo.serve(events=300, customers=10, seed=3) as one, demo.serve(events=200, customers=15, seed=4) as two:
        monkeypatch.setenv("API_KEY", one.api_key)
        apis = {"one": one, "two": two}
        configs = {name: fast(ak.guide_config(a.base_url, a.api_key)) for name, a in apis.items()}
        errors: list[BaseException] = []

        def load(name: str) -> None:
            try:
                for mode in ("incremental", "full_refresh", "full_refresh"):
                    ak.load(configs[name], mode, database=tmp_path / f"{name}.duckdb", progress=False)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=load, args=(name,)) for name in apis]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        for name, api in apis.items():
            ids = ak.query("SELECT id FROM analytics.events ORDER BY id", database=tmp_path / f"{name}.duckdb")
            assert list(ids.id) == sorted(served(api))


def test_a_replace_outside_the_kit_keeps_dlts_staging(tmp_path, statements, monkeypatch):
    """Another dlt pipeline in the process, while a kit load is in its swap, keeps dlt's own way."""
    from analytics_kit.seam import replace_from_files

    monkeypatch.setenv("DESTINATION__REPLACE_STRATEGY", "insert-from-staging")
    pipeline = dlt.pipeline("plain", destination=dlt.destinations.duckdb(str(tmp_path / "plain.duckdb")),
                            pipelines_dir=str(tmp_path / "pipelines"), dataset_name="things_data")
    rows = [{"id": i, "name": f"n{i}"} for i in range(50)]
    with replace_from_files(["a-kit-load"]):  # hooks installed and a kit load's package active
        pipeline.run(rows, table_name="things", write_disposition="replace", loader_file_format="parquet")
    assert files_read("\n".join(statements), "things_data_staging", "things")
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT count(*) FROM things")[0][0] == 50


@pytest.mark.parametrize("folder", ["Walter Schemas", "ALTER SCHEMA x", "a;b", "a\nb", "a\u2028b", "a\x85b"])
def test_a_folder_name_dlts_sql_job_would_change_keeps_dlts_staging(tmp_path, config, api, folder):
    """dlt joins a job's lines, splits it at ';', and runs a job naming ALTER SCHEMA without a transaction: a swap
    holding such a path failed every full refresh, or committed statement by statement (helper-69)."""
    database = tmp_path / folder / "analytics.duckdb"
    database.parent.mkdir()
    ak.load(config, database=database, progress=False)
    api.advance(new=20, updated=10, deleted=5)
    report = ak.load(config, mode="full_refresh", database=database, progress=False)
    swap = followup_sql(database=str(database))
    assert "read_parquet" not in swap and 'DELETE FROM "main"."events" WHERE 1=1' in swap
    assert report.rows["events"] == len(served(api))
    assert loaded(api, database=database) == served(api)
