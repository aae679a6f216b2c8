"""What overlapping the load with the fetch could save (issue 15, item 4): measured, and not used.

    .venv/bin/python bench/overlap.py                      # 100,000 events, 3 loads
    .venv/bin/python bench/overlap.py --events 1000000 --loads 1

dlt runs extract, normalize and load as three discrete steps, each on the whole package: nothing
is normalised or loaded while pages are still being fetched. This prints what an overlap could win:

1. A kit full refresh (``ak.load``, in this process, the demo API in its own): when its first request
   went out, when its last page came back, and what ran after it (normalize, the load step, the rest).
   The load step is what an overlap could move into the fetch; its own SQL is timed too (the swap's
   statement, its COMMIT, and the file's checkpoint when the connection closes).
2. The swap's rows three ways, on a copy of the table the load wrote, in files of dlt's size:
   - ``parquet``: read from the files in the swap, as the kit does;
   - ``side file``: read from a second DuckDB file the files went into while pages were still being
     fetched (the one overlap open to the kit without holding the target file): the swap still
     copies every row, so the overlap saves only what the side file is faster to read;
   - ``rename``: a table built in the target file during the fetch, renamed in the swap: almost
     nothing is left for the end, but the load would hold the file's write lock through the whole
     fetch, and the README promises readers the file while the API is fetched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FILE_ROWS = 100_000  # the kit's data_writer.file_max_items (analytics_kit/_settings.py)


@contextmanager
def timeline(sql: list):
    """Records each request's start and end, and the time of the load step's costly SQL, into ``sql``."""
    import requests
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

    from analytics_kit.run import steps

    times: list = []
    send, query, commit, close = (requests.Session.send, DuckDbSqlClient.execute_query,
                                  DuckDbSqlClient.commit_transaction, steps.closed_for_writing)

    def timed_send(self, *args, **kwargs):
        began = time.perf_counter()
        try:
            return send(self, *args, **kwargs)
        finally:
            times.append((began, time.perf_counter()))

    @contextmanager
    def timed_query(self, statement, *args, **kwargs):
        began = time.perf_counter()
        with query(self, statement, *args, **kwargs) as cursor:
            yield cursor
        if "read_parquet" in str(statement):
            sql.append(("swap statement", time.perf_counter() - began))

    def timed(label, function):
        def run(*args):
            began = time.perf_counter()
            try:
                return function(*args)
            finally:
                sql.append((label, time.perf_counter() - began))
        return run

    requests.Session.send, DuckDbSqlClient.execute_query = timed_send, timed_query
    DuckDbSqlClient.commit_transaction = timed("COMMIT", commit)
    steps.closed_for_writing = timed("close (checkpoint)", close)
    try:
        yield times
    finally:
        requests.Session.send, DuckDbSqlClient.execute_query = send, query
        DuckDbSqlClient.commit_transaction, steps.closed_for_writing = commit, close


def one_load(config: dict, database: str) -> dict:
    import analytics_kit as ak

    sql: list = []
    with timeline(sql) as times:
        began = time.perf_counter()
        report = ak.load(config, "full_refresh", database=database, progress=False)
        ended = time.perf_counter()
    costs: dict = {}
    for label, seconds in sql:
        costs[label] = costs.get(label, 0.0) + seconds
    return {"total": ended - began, "first request": times[0][0] - began,
            "fetching": times[-1][1] - times[0][0], "after the last page": ended - times[-1][1],
            "normalize": report.steps["normalize"], "load step": report.steps["load"],
            **{f"  {label}": seconds for label, seconds in costs.items()}}


def swap_three_ways(database: str, folder: str) -> dict:
    """The seconds each way of filling the swapped table took, on the rows of ``database``'s events."""
    import duckdb
    import pyarrow.parquet as pq

    with duckdb.connect(database, read_only=True) as source:
        table = source.sql("SELECT * FROM events").to_arrow_table()
    files = []
    for start in range(0, table.num_rows, FILE_ROWS):
        files.append(f"{folder}/part{start // FILE_ROWS}.parquet")
        pq.write_table(table.slice(start, FILE_ROWS), files[-1])
    listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    target, side = f"{folder}/target.duckdb", f"{folder}/side.duckdb"
    seconds = {}
    with duckdb.connect(target) as con:
        con.sql("SET memory_limit = '96MB'")  # as the kit's load step runs (store/target.py)
        con.sql(f"CREATE TABLE parquet_way AS SELECT * FROM read_parquet({listed}) LIMIT 0")
        con.sql(f"ATTACH '{side}' AS side")
        began = time.perf_counter()
        con.sql(f"CREATE TABLE side.built AS SELECT * FROM read_parquet({listed})")  # during the fetch
        con.sql("CHECKPOINT side")
        seconds["side file, read during the fetch (not at the end)"] = time.perf_counter() - began
        ways = (("parquet (the kit's swap)", f"INSERT INTO parquet_way SELECT * FROM read_parquet({listed})"),
                ("side file (its swap)", "CREATE TABLE from_side AS SELECT * FROM side.built"))
        for way, statement in ways:
            began = time.perf_counter()
            con.sql(f"BEGIN; {statement}; COMMIT")
            seconds[way] = time.perf_counter() - began
        con.sql(f"CREATE TABLE built AS SELECT * FROM read_parquet({listed})")
        began = time.perf_counter()
        con.sql("BEGIN; DROP TABLE parquet_way; ALTER TABLE built RENAME TO parquet_way; COMMIT")
        seconds["rename (its swap; the file held through the fetch)"] = time.perf_counter() - began
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=3, help="full refreshes to time (medians printed)")
    args = parser.parse_args()
    import analytics_kit as ak
    import analytics_kit.run.load  # noqa: F401 - imported before the clock starts, as bench/load_speed.py does
    from analytics_kit import demo

    print(f"{os.cpu_count()} cores; the demo API in a subprocess, {args.events:,} events, 100 a page")
    with tempfile.TemporaryDirectory(prefix="overlap_") as folder, \
            demo.serve(events=args.events, customers=50, process=True) as api:
        config = ak.guide_config(api.base_url, api.api_key)
        database = f"{folder}/analytics.duckdb"
        runs = [one_load(config, database) for _ in range(args.loads)]
        print(f"1. a full refresh, medians of {len(runs)} (seconds):")
        for key in runs[0]:
            print(f"   {key:<28} {statistics.median(run.get(key, 0.0) for run in runs):7.3f}")
        total = statistics.median(run["total"] for run in runs)
        step = statistics.median(run["load step"] + run["normalize"] for run in runs)
        print(f"   an overlap could move at most normalize and the load step into the fetch: {step:.3f} s, "
              f"{step / total:.0%} of the load")
        print("2. the swap's rows, three ways (seconds):")
        for way, seconds in swap_three_ways(database, folder).items():
            print(f"   {way:<52} {seconds:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
