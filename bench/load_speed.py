"""Loader benchmark: analytics_kit.load against dlt's defaults and a hand-written loop.

    .venv/bin/python bench/load_speed.py                     # 100,000 events
    .venv/bin/python bench/load_speed.py --events 1000000
    .venv/bin/python bench/load_speed.py --latency 0.05 --pages 1000   # a slow API

The demo API runs in its own process. Each loader runs in a fresh child process, so its wall
time includes starting Python and importing its libraries, and its peak memory (ru_maxrss) is
its own. Printed: wall time, peak memory and rows per loader, the ratios, and for the
incremental run (after ``api.advance()`` changed 1% of the events) its requests and its time
as a fraction of the full load, two ways:

- in a warm process, as in a notebook: the kit's full-refresh process waits, the API changes,
  and the same process runs the incremental load; the ``load()`` calls are compared;
- in a fresh process, as from the command line: whole processes are compared, Python's start
  and the imports (about 1 s) included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "BENCH_API_KEY"


# -- the loaders, each run in a child process ------------------------------------------------


def run_kit(base_url: str, folder: str, mode: str, concurrency: str) -> dict:
    import analytics_kit as ak

    config = ak.guide_config(base_url, os.environ[KEY_ENV])
    report = ak.load(config, mode, database=f"{folder}/analytics.duckdb", progress=False,
                     concurrency=int(concurrency) if concurrency else None)
    return {"rows": sum(report.rows.values()), "requests": report.requests, "retries": len(report.retries)}


def run_dlt_default(base_url: str, folder: str, mode: str, concurrency: str) -> dict:
    import analytics_kit as ak  # only for the guide's config dict
    import dlt
    from dlt.sources.rest_api import rest_api_source

    config = ak.guide_config(base_url, os.environ[KEY_ENV])
    for res in config["resources"]:
        res["endpoint"].pop("error_handler")
    pipeline = dlt.pipeline(pipeline_name="bench_dlt_default", pipelines_dir=f"{folder}/pipelines",
                            destination=dlt.destinations.duckdb(f"{folder}/dlt.duckdb"), dataset_name="main")
    info = pipeline.run(rest_api_source(config))
    counts = pipeline.last_trace.last_normalize_info.row_counts
    del info
    return {"rows": sum(v for k, v in counts.items() if not k.startswith("_dlt"))}


def run_hand_written(base_url: str, folder: str, mode: str, concurrency: str) -> dict:
    import duckdb
    import pyarrow as pa
    import requests

    session = requests.Session()
    con = duckdb.connect(f"{folder}/hand.duckdb")
    rows_loaded = 0
    for name in ("events", "customers"):
        rows, offset = [], 0
        while True:
            page = session.get(f"{base_url}/v1/{name}", params={
                "api_key": os.environ[KEY_ENV], "offset": offset, "limit": 100}).json()
            rows.extend(page["data"])
            offset += 100
            if offset >= page["total"]:
                break
        page_rows = pa.Table.from_pylist(rows)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM page_rows")
        rows_loaded += page_rows.num_rows
    con.close()
    return {"rows": rows_loaded}


LOADERS = {"kit": run_kit, "dlt": run_dlt_default, "hand": run_hand_written}
IMPORTS = {"kit": ("analytics_kit",), "dlt": ("analytics_kit", "dlt.sources.rest_api"),
           "hand": ("duckdb", "pyarrow", "requests")}


def child(args: list[str]) -> None:
    """Runs one loader and prints its RESULT line; with ``then``, waits for a line on stdin
    and runs it again in that mode (the warm incremental run)."""
    kind, base_url, folder, mode, concurrency, then = args
    started = time.perf_counter()
    for module in IMPORTS[kind]:
        __import__(module)
    imported = time.perf_counter()
    result = LOADERS[kind](base_url, folder, mode, concurrency)
    result["import_seconds"] = imported - started
    result["load_seconds"] = time.perf_counter() - imported
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)
    if then and sys.stdin.readline():
        started = time.perf_counter()
        result = LOADERS[kind](base_url, folder, then, concurrency)
        result["load_seconds"] = time.perf_counter() - started
        print("RESULT " + json.dumps(result), flush=True)


# -- the parent -------------------------------------------------------------------------------


class Child:
    """A loader in a child process; ``result()`` waits for its next RESULT line."""

    def __init__(self, kind: str, base_url: str, folder: str, mode: str = "full_refresh",
                 concurrency: int | None = None, then: str = "") -> None:
        self.kind = kind
        self.stderr = tempfile.TemporaryFile("w+")  # a pipe could fill up and stall the child
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, base_url, folder, mode, str(concurrency or ""), then],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=folder,
            env={**os.environ, "PYTHONPATH": str(ROOT)})

    def result(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return {**json.loads(line[7:]), "wall": time.perf_counter() - self.started}
        self.proc.wait()
        self.stderr.seek(0)
        sys.exit(f"{self.kind} failed:\n{self.stderr.read()[-4000:]}")

    def again(self) -> dict:
        """Runs the ``then`` mode in the same process; its wall is the load() call alone."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        result = self.result()
        result["wall"] = result["load_seconds"]
        return result

    def close(self) -> None:
        self.proc.communicate("")
        self.stderr.close()


def measure(kind: str, base_url: str, folder: str, mode: str = "full_refresh", concurrency: int | None = None) -> dict:
    child_ = Child(kind, base_url, folder, mode, concurrency)
    result = child_.result()
    child_.close()
    return result


def show(label: str, r: dict) -> None:
    peak = f"{r['peak_mb']:7.0f} MB" if "import_seconds" in r else "          "
    detail = (f"   (imports {r['import_seconds']:.2f} s, load {r['load_seconds']:.2f} s)"
              if "import_seconds" in r else "   (load() in the warm process)")
    print(f"  {label:<46} {r['wall']:7.2f} s  {peak}  {r['rows']:>9,} rows{detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per API request (slow-API mode)")
    parser.add_argument("--pages", type=int, default=None, help="slow-API mode: pages of 100 events")
    parser.add_argument("--concurrency", type=int, default=None, help="the kit's workers (default: its own)")
    parser.add_argument("--skip-sequential", action="store_true", help="slow-API mode: skip concurrency=1")
    parser.add_argument("--dlt-default", choices=("auto", "yes", "no"), default="auto",
                        help="run dlt's defaults too (auto: only below 1,000,000 events, where it needs "
                             "~2.5 GB per 100k rows and would not fit this machine's memory)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from analytics_kit import demo

    events = args.pages * 100 if args.pages else args.events
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; demo API in a subprocess, "
          f"{events:,} events + 50 customers, 100 a page, latency {args.latency * 1000:g} ms")
    with tempfile.TemporaryDirectory(prefix="load_speed_") as tmp, \
            demo.serve(events=events, customers=50, process=True, latency=args.latency) as api:
        os.environ[KEY_ENV] = api.api_key
        folders = {}
        for name in ("kit", "dlt", "hand", "seq"):
            folders[name] = f"{tmp}/{name}"
            os.makedirs(folders[name])
        if args.latency:
            kit = measure("kit", api.base_url, folders["kit"], concurrency=args.concurrency)
            show(f"analytics_kit.load (concurrency {args.concurrency or 'default'})", kit)
            if not args.skip_sequential:
                seq = measure("kit", api.base_url, folders["seq"], concurrency=1)
                show("analytics_kit.load (concurrency 1)", seq)
                print(f"  speed-up of concurrency: {seq['wall'] / kit['wall']:.1f}x")
            print(f"  target: {events // 100:,} pages in <= 10 s -> {kit['wall']:.2f} s")
            return
        kit_process = Child("kit", api.base_url, folders["kit"], concurrency=args.concurrency, then="incremental")
        kit = kit_process.result()
        show("1. analytics_kit.load (full refresh)", kit)
        run_dlt = args.dlt_default == "yes" or (args.dlt_default == "auto" and events < 1_000_000)
        dlt_default = measure("dlt", api.base_url, folders["dlt"]) if run_dlt else None
        if dlt_default:
            show("2. dlt rest_api_source, defaults", dlt_default)
        else:
            print("  2. dlt rest_api_source, defaults   skipped (--dlt-default yes to run it; "
                  "it took 2.5 GB per 100k rows)")
        hand = measure("hand", api.base_url, folders["hand"])
        show("3. hand-written requests+pyarrow+duckdb", hand)

        changed = events // 100
        api.advance(new=0, updated=changed, deleted=0, seconds=3600)
        api.clear_log()
        warm = kit_process.again()
        kit_process.close()
        warm_requests = api.count("/v1/events")
        show(f"4. kit incremental, {changed:,} changed, warm", warm)
        api.advance(new=0, updated=changed, deleted=0, seconds=3600)
        api.clear_log()
        cold = measure("kit", api.base_url, folders["kit"], mode="incremental", concurrency=args.concurrency)
        cold_requests = api.count("/v1/events")
        show(f"   kit incremental, {changed:,} changed, fresh process", cold)

        if dlt_default:
            print(f"  kit / dlt-default      {kit['wall'] / dlt_default['wall']:.3f}   (target <= 0.25)")
        print(f"  kit / hand-written     {kit['wall'] / hand['wall']:.3f}   (target <= "
              f"{'1.0' if events >= 1_000_000 else '1.5'})")
        limit = 100
        print(f"  incremental requests to /v1/events: {warm_requests} warm, {cold_requests} fresh "
              f"(target <= {-(-changed // limit) + 1})")
        print(f"  incremental time, warm:  {warm['load_seconds']:.2f} s of load() vs the full load()'s "
              f"{kit['load_seconds']:.2f} s = {warm['load_seconds'] / kit['load_seconds']:.1%} (target <= 15%)")
        print(f"  incremental time, fresh: {cold['wall']:.2f} s vs {kit['wall']:.2f} s, whole processes = "
              f"{cold['wall'] / kit['wall']:.1%}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
