"""The full refresh's swap read in one statement on every DuckDB thread, against the kit's per-file reads.
An experiment, not the kit: ratios from one run.

    .venv/bin/python bench/parallel_swap.py                     # 1,000,000 events, 2 rounds in turns
    .venv/bin/python bench/parallel_swap.py --events 100000

A full refresh's swap (``seam.replace_from_files``) reads each parquet file of the package in its own
``INSERT ... SELECT * FROM read_parquet(file)``, in the order dlt lists its jobs. One statement over
all the files with ``preserve_insertion_order = false`` lets DuckDB read them on all its threads. This
loads the demo API once with the kit, then replays the swap's statements on copies of the file, each
way in a fresh process, in turns, under the kit's memory cap, and prints the time and the process's
peak memory. Then the same for wide records (2 KB of text, a JSON object of 100 keys and one 2 MB
value in every 10,000 rows), under 64 MB and 96 MB caps: what each way needs to run at all.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

WAYS = ("per-file", "parallel")


def swap(database: str, files: list[str], way: str, memory: str) -> dict:
    """The swap's DELETE and INSERTs in one transaction; its seconds and this process's peak memory."""
    import duckdb

    con = duckdb.connect(database)
    con.execute(f"SET memory_limit = '{memory}'")
    table = con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT starts_with(table_name, '_dlt') "
                        "ORDER BY estimated_size DESC LIMIT 1").fetchone()[0]
    listed = ", ".join(f"'{f}'" for f in files)
    reads = ([f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet('{f}', union_by_name=true)" for f in files]
             if way == "per-file" else ["SET preserve_insertion_order = false",
                                        f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet([{listed}], "
                                        "union_by_name=true)"])
    started = time.perf_counter()
    try:
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {table}")
        for statement in reads:
            con.execute(statement)
        con.execute("COMMIT")
    except duckdb.Error as error:
        return {"error": str(error).splitlines()[0][:80]}
    seconds = time.perf_counter() - started
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))
    return {"seconds": seconds, "peak_mb": peak, "rows": rows}


def in_child(database: str, files: list[str], way: str, memory: str) -> dict:
    copy = f"{database}.{way}.duckdb"
    shutil.copy(database, copy)
    try:
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps([copy, files, way, memory])],
                              capture_output=True, text=True, check=True)
    finally:
        os.remove(copy)
    return json.loads(done.stdout.strip().splitlines()[-1])


def package(folder: str, events: int) -> tuple[str, list[str]]:
    """The demo API loaded by the kit (a full refresh); the database and the events table's parquet files."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import analytics_kit as ak

    database = f"{folder}/analytics.duckdb"
    with ak.demo.serve(events=events, customers=50, process=True) as api:
        ak.load(ak.guide_config(api.base_url, api.api_key), "full_refresh", database=database, progress=False)
    return database, sorted(glob.glob(f"{database}.state/*/load/loaded/*/completed_jobs/events.*.parquet"))


def wide(folder: str) -> tuple[str, list[str]]:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = []
    for number in range(6):
        rows = [{"id": number * 10_000 + i, "text": random.randbytes(1_000).hex(),  # text that does not compress
                 "props": json.dumps({f"k{j}": random.random() for j in range(100)}),
                 "big": "y" * 2_000_000 if i == 5_000 else "y"} for i in range(10_000)]
        files.append(f"{folder}/wide{number}.parquet")
        pq.write_table(pa.Table.from_pylist(rows), files[-1], row_group_size=1_000)
    database = f"{folder}/wide.duckdb"
    with duckdb.connect(database) as con:
        con.execute("CREATE TABLE wide (id BIGINT, text VARCHAR, props JSON, big VARCHAR)")
    return database, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(swap(*json.loads(args.child))))
        return
    with tempfile.TemporaryDirectory() as folder:
        database, files = package(folder, args.events)
        print(f"{args.events:,} events in {len(files)} parquet files; the kit's cap 96MB; {args.rounds} round(s) in "
              "turns")
        took: dict[str, list[dict]] = {way: [] for way in WAYS}
        for number in range(args.rounds):
            for way in WAYS if number % 2 == 0 else WAYS[::-1]:
                took[way].append(in_child(database, files, way, "96MB"))
        for way in WAYS:
            seconds = statistics.median(r["seconds"] for r in took[way])
            peak = statistics.median(r["peak_mb"] for r in took[way])
            print(f"  {way:9} swap {seconds:.3f} s, peak {peak:.0f} MB (the swap's process alone), "
                  f"rows {took[way][0]['rows']:,}")
        ratio = statistics.median(r["seconds"] for r in took["parallel"]) / statistics.median(
            r["seconds"] for r in took["per-file"])
        print(f"  parallel / per-file: {ratio:.3f}")
        database, files = wide(folder)
        for memory in ("64MB", "96MB"):
            for way in WAYS:
                outcome = in_child(database, files, way, memory)
                shown = (f"failed: {outcome['error']}" if "error" in outcome else
                         f"{outcome['seconds']:.2f} s, peak {outcome['peak_mb']:.0f} MB")
                print(f"  wide records, cap {memory}, {way}: {shown}")


if __name__ == "__main__":
    main()
