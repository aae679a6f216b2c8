"""Loader benchmark: analytics_kit.load against dlt's defaults and a hand-written loop.

    .venv/bin/python bench/load_speed.py                     # 100,000 events
    .venv/bin/python bench/load_speed.py --events 1000000
    .venv/bin/python bench/load_speed.py --latency 0.05 --pages 1000   # a slow API
    .venv/bin/python bench/load_speed.py --only kit,floor             # a subset
    .venv/bin/python bench/load_speed.py --rounds 5                   # kit vs floor, in turns, medians
    .venv/bin/python bench/load_speed.py --rounds 3 --only kit,hand,floor --events 1000000   # and vs hand-written

The demo API runs in its own process. Each loader runs in a fresh child process, so its wall
time includes starting Python and importing its libraries, and its peak memory (VmHWM) is
its own. Printed: wall time, peak memory and rows per loader, the ratios, and for the
incremental run (after ``api.advance()`` changed 1% of the events) its requests and its time
as a fraction of the full load, two ways:

- in a warm process, as in a notebook: the kit's full-refresh process waits, the API changes,
  and the same process runs the incremental load; the ``load()`` calls are compared;
- in a fresh process, as from the command line: whole processes are compared, Python's start
  and the imports (about 1 s) included.

The floor: the same pages the kit fetches (the same requests, the final empty page included),
fetched with a ``requests.Session`` and parsed with ``orjson.loads`` and nothing else, no
storage (the reads of a listing's newest cursor before its pages included, as the kit makes them); once one page after another, once with the kit's own worker count in threads (the
kit's rule: its default concurrency, cut to two workers when the first page came back in
under 20 ms). The kit's full load is given as a multiple of each, load against load and wall
against wall; each floor's requests are counted by the API and checked against the kit's.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import resource
import statistics
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

    if os.environ.get("BENCH_CURL_ADAPTER"):  # bench/curl_adapter.py's experiment
        sys.path.insert(0, str(ROOT / "bench"))
        import curl_adapter

        curl_adapter.patch()

    config = ak.guide_config(base_url, os.environ[KEY_ENV])
    report = ak.load(config, mode, database=f"{folder}/analytics.duckdb", progress=False,
                     concurrency=int(concurrency) if concurrency else None)
    return {"rows": sum(report.rows.values()), "requests": report.requests, "retries": len(report.retries),
            "sql": table_sql(folder), "steps": report.steps, "timing": report.timing()}


def run_kit_command(base_url: str, folder: str, mode: str, concurrency: str) -> dict:
    """``analytics-kit load`` as the shell runs it: no pandas (see ``run/lean.py``)."""
    import contextlib
    import io

    from analytics_kit import cli

    os.environ.update(ANALYTICS_API_BASE_URL=base_url, API_KEY=os.environ[KEY_ENV])
    argv = ["load", "--quiet", "--database", f"{folder}/analytics.duckdb"] + (["--full-refresh"] if mode == "full_refresh" else [])
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        if cli.main(argv, lean=True):  # as the command runs it (cli.run)
            raise SystemExit("analytics-kit load failed")
    rows = sum(int(n.replace(",", "")) for n in re.findall(r"^ +\S+ +([\d,]+) rows", printed.getvalue(), re.M))
    return {"rows": rows}


def table_sql(folder: str) -> dict:
    """{table: the SQL dlt ran on it after staging its rows}: the load's package is kept until
    the next run, its SQL jobs with it. A full refresh shows a replace (a DELETE and an INSERT
    ... SELECT in one transaction), an incremental load a merge."""
    jobs = Path(folder).glob("analytics.duckdb.state/*/load/loaded/*/completed_jobs/*.sql")
    return {job.name.split(".")[0]: " ".join(job.read_text().split()) for job in sorted(jobs)}


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


# -- the floor: fetch and parse the kit's pages, store nothing --------------------------------

# The kit's full refresh sends the guide's incremental start value too (dlt writes it this way).
FLOOR_SINCE = "2025-01-01T00:00:00+00:00"
FLOOR_LIMIT = 100


def _floor_session():
    import requests

    session = requests.Session()
    session.trust_env = False  # 127.0.0.1 only, never through a proxy from the environment
    return session


def _floor_page(session, url: str, offset: int) -> tuple[int, int | None, float]:
    """GET one page and parse it: (records, the API's total, the response's elapsed seconds)."""
    import orjson

    resp = session.get(url, params={"updated_since": FLOOR_SINCE, "offset": offset, "limit": FLOOR_LIMIT,
                                    "api_key": os.environ[KEY_ENV]})
    resp.raise_for_status()
    body = orjson.loads(resp.content)
    return len(body["data"]), body.get("total"), resp.elapsed.total_seconds()


def _floor_done(offset: int, n: int, total: int | None) -> bool:
    """Where the kit stops on a clean listing: an empty page, or a short one that ends at the total
    (a full last page is followed by one more request, which comes back empty)."""
    return n == 0 or (n < FLOOR_LIMIT and total is not None and offset + n >= total)


def _floor_newest(session, url: str, n: int, total: int | None) -> int:
    """The kit's reads of an incremental listing's newest cursor before its pages, where the first
    page says more follow (analytics_kit/fetch/newest.py): the last page, then the first again.
    Returns the requests made."""
    if total is None or n < FLOOR_LIMIT or total <= FLOOR_LIMIT:
        return 0
    _floor_page(session, url, (total - 1) // FLOOR_LIMIT * FLOOR_LIMIT)
    _floor_page(session, url, 0)
    return 2


def run_floor_sequential(base_url: str, folder: str, mode: str, concurrency: str) -> dict:
    session = _floor_session()
    rows, requests_ = 0, {}
    for name in ("events", "customers"):
        url, offset = f"{base_url}/v1/{name}", 0
        requests_[name] = 0
        while True:
            n, total, _ = _floor_page(session, url, offset)
            requests_[name] += 1 + (_floor_newest(session, url, n, total) if offset == 0 else 0)
            rows += n
            if _floor_done(offset, n, total):
                break
            offset += FLOOR_LIMIT
    return {"rows": rows, "requests": requests_}


def run_floor_threads(base_url: str, folder: str, mode: str, concurrency: str) -> dict:
    """As the kit pages: the first page on the main thread's session; then, if the API answered it
    in under ``fast`` seconds, ``min(workers, fast_workers)`` threads (else ``workers``), each with
    its own session, at most twice that many requests in flight, up to the total and one past it;
    pages taken in offset order."""
    import threading
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    configured, fast, fast_workers = concurrency.split(":")
    main_session, local = _floor_session(), threading.local()

    def fetch(url: str, offset: int) -> tuple[int, int | None, float]:
        if not hasattr(local, "session"):
            local.session = _floor_session()
        return _floor_page(local.session, url, offset)

    rows, requests_, used = 0, {}, {}
    for name in ("events", "customers"):
        url = f"{base_url}/v1/{name}"
        n, total, elapsed = _floor_page(main_session, url, 0)
        requests_[name] = 1 + _floor_newest(main_session, url, n, total)
        rows += n
        if _floor_done(0, n, total):
            continue
        workers = int(configured)
        if elapsed < float(fast):
            workers = min(workers, int(fast_workers))
        used[name] = {"workers": workers, "first_ms": elapsed * 1000}
        stop = total
        next_offset, pending = FLOOR_LIMIT, deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="floor-page") as pool:
            while True:
                while len(pending) < 2 * workers and (stop is None or next_offset < stop or not pending):
                    pending.append((next_offset, pool.submit(fetch, url, next_offset)))
                    next_offset += FLOOR_LIMIT
                    if stop is not None and next_offset >= stop:
                        break  # one request past the total at most, as the kit
                offset, future = pending.popleft()
                n, total, _ = future.result()
                requests_[name] += 1
                rows += n
                if _floor_done(offset, n, total):
                    break
        for offset, future in pending:  # none on a clean listing
            future.cancel()
    return {"rows": rows, "requests": requests_, "workers": used}


LOADERS = {"kit": run_kit, "command": run_kit_command, "dlt": run_dlt_default, "hand": run_hand_written,
           "floor-seq": run_floor_sequential, "floor-threads": run_floor_threads}
# ak.load imports dlt on first use: the kit's imports include it, so "load" is the load alone.
IMPORTS = {"kit": ("analytics_kit", "analytics_kit.run.load"), "command": ("analytics_kit.cli",), "dlt": ("analytics_kit", "dlt.sources.rest_api"),
           "hand": ("duckdb", "pyarrow", "requests"), "floor-seq": ("requests", "orjson"),
           "floor-threads": ("requests", "orjson", "concurrent.futures")}


def peak_mb() -> float:
    """This process's peak resident memory. Not ``ru_maxrss``: a child started by subprocess
    (vfork, then exec) starts with the parent's peak in it, about 130 MB for this script's
    parent (analytics_kit imported), so a smaller child read as 130 MB. ``VmHWM`` is the peak of
    the process's own address space, which starts afresh at exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: list[str]) -> None:
    """Runs one loader and prints its RESULT line; with ``then``, waits for a line on stdin
    and runs it again in that mode (the warm incremental run)."""
    kind, base_url, folder, mode, concurrency, then = args
    started = time.perf_counter()
    if kind == "command":
        import analytics_kit_command

        analytics_kit_command.start(["load"])  # as `analytics-kit load` starts: its regex cache, pyarrow without numpy
    for module in IMPORTS[kind]:
        __import__(module)
    imported = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = LOADERS[kind](base_url, folder, mode, concurrency)
    if kind == "command":
        analytics_kit_command.save_regex_cache()  # as the command does before it exits
    result["import_seconds"] = imported - started
    result["load_seconds"] = time.perf_counter() - imported
    result["peak_mb"] = peak_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # all threads, imports included
    result["load_cpu_seconds"] = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    print("RESULT " + json.dumps(result), flush=True)
    if then and sys.stdin.readline():
        started = time.perf_counter()
        result = LOADERS[kind](base_url, folder, then, concurrency)
        result["load_seconds"] = time.perf_counter() - started
        print("RESULT " + json.dumps(result), flush=True)


# -- the parent -------------------------------------------------------------------------------


def process_cpu(pid: int | None) -> float:
    """Seconds of CPU process ``pid`` has used so far (Linux's /proc); 0 without one."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# the demo API's process, whose CPU each loader's result counts (``api_cpu_seconds``)
API_PID: int | None = None


class Child:
    """A loader in a child process; ``result()`` waits for its next RESULT line."""

    def __init__(self, kind: str, base_url: str, folder: str, mode: str = "full_refresh",
                 concurrency: int | str | None = None, then: str = "") -> None:
        self.kind = kind
        self.api_cpu = process_cpu(API_PID)  # the API is idle while the child imports
        self.stderr = tempfile.TemporaryFile("w+")  # a pipe could fill up and stall the child
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", kind, base_url, folder, mode, str(concurrency or ""), then],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=folder,
            env={**os.environ, "PYTHONPATH": str(ROOT)})

    def result(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                api_cpu, self.api_cpu = self.api_cpu, process_cpu(API_PID)
                return {**json.loads(line[7:]), "wall": time.perf_counter() - self.started,
                        "api_cpu_seconds": self.api_cpu - api_cpu}
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


def measure(kind: str, base_url: str, folder: str, mode: str = "full_refresh",
            concurrency: int | str | None = None) -> dict:
    child_ = Child(kind, base_url, folder, mode, concurrency)
    result = child_.result()
    child_.close()
    return result


def show(label: str, r: dict) -> None:
    peak = f"{r['peak_mb']:7.0f} MB" if "import_seconds" in r else "          "
    detail = (f"   (imports {r['import_seconds']:.2f} s, load {r['load_seconds']:.2f} s)"
              if "import_seconds" in r else "   (load() in the warm process)")
    print(f"  {label:<46} {r['wall']:7.2f} s  {peak}  {r['rows']:>9,} rows{detail}")


def cpu_bound(kit: dict, floor: dict) -> str:
    """What the kit's CPU time says of the floor target. Its Python runs on one core at a time
    (the GIL): a load whose CPU time nearly equals its wall time cannot get much faster by
    overlapping, only by doing less, or by doing it in another process."""
    cpu, wall, floor_wall = kit["load_cpu_seconds"], kit["load_seconds"], floor["load_seconds"]
    return (f"kit CPU during the load: {cpu:.2f} s (all threads) over {wall:.2f} s ({cpu / wall:.0%} of one core), "
            f"{cpu / floor_wall:.2f}x the sequential floor's load time (whose own CPU was "
            f"{floor['load_cpu_seconds']:.2f} s); at one core, kit / floor <= 1.3 needs that below 1.3\n"
            f"  {least_ratio(kit, floor)}")


def least_wall(loader: dict) -> float:
    """The least wall time the work a loader did could take here, however it were split into
    threads or processes: its CPU and the demo API's (which shares the machine), spread over
    every core. A lower bound: it leaves out what splitting the work would cost."""
    return (loader["load_cpu_seconds"] + loader["api_cpu_seconds"]) / (os.cpu_count() or 1)


def least_ratio(kit: dict, floor: dict) -> str:
    """kit / floor had the kit's work been spread perfectly over the machine's cores."""
    least = least_wall(kit)
    return (f"the CPU bound: the kit's load used {kit['load_cpu_seconds']:.2f} s of CPU and made the API use "
            f"{kit['api_cpu_seconds']:.2f} s (the floor's: {floor['load_cpu_seconds']:.2f} s and "
            f"{floor['api_cpu_seconds']:.2f} s); spread perfectly over {os.cpu_count()} cores that takes at least "
            f"{least:.2f} s, {least / floor['load_seconds']:.2f}x the floor: kit / floor cannot be below that "
            f"without less CPU, whatever runs in parallel")


ONLY = ("kit", "command", "incremental", "dlt", "hand", "floor")


def parse_only(text: str) -> set[str]:
    chosen = {part.strip() for part in text.split(",") if part.strip()}
    unknown = chosen - set(ONLY)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(sorted(unknown))}; choose from {','.join(ONLY)}")
    return chosen


def ratio(label: str, kit: float, other: float, target: float | None = None) -> None:
    value = kit / other
    verdict = "" if target is None else f"   (target <= {target:g}: {'met' if value <= target else 'NOT met'})"
    print(f"  {label:<46} {value:6.3f}{verdict}")


def overlap_bound(steps: dict) -> str:
    """What overlapping the steps after extract with fetching could save, at most.

    dlt runs extract, normalize and load one after another, each on the whole package (the
    replace swaps every table in at the end), so normalize and load cannot start while pages
    are still being fetched. Had they overlapped, they could only have used the time the
    extracting thread sat waiting for the API: the saving is bounded by the smaller of the two.
    """
    after = steps.get("normalize", 0.0) + steps.get("load", 0.0)
    wait = steps.get("page_wait", 0.0)
    total = sum(v for k, v in steps.items() if k != "page_wait")
    bound = min(after, wait)
    return (f"overlap: normalize + load {after:.2f} s ran after extract; extract waited {wait:.2f} s for pages; "
            f"overlapping them could save at most {bound:.2f} s ({bound / total:.0%} of the load)" if total else "")


def floor_rule(concurrency: int | None) -> str:
    """The kit's rule for its worker count, as the floor children take it (``run_floor_threads``):
    the configured concurrency, at most FAST_API_WORKERS when the first page came back fast."""
    sys.path.insert(0, str(ROOT))
    from analytics_kit.config.prepared import DEFAULT_CONCURRENCY
    from analytics_kit.fetch.offsets import FAST_API_WORKERS, FAST_RESPONSE_SECONDS

    return f"{concurrency or DEFAULT_CONCURRENCY}:{FAST_RESPONSE_SECONDS}:{FAST_API_WORKERS}"


def floor_rounds(api, tmp: str, rounds: int, concurrency: int | None, rule: str, hand: bool = False) -> None:
    """The kit's load and the command against both floors (and the hand-written loop, with ``hand``),
    ``rounds`` times, taking turns.

    On this shared machine one run's ratio moved by 20% from run to run; the loaders of a round
    run one after another under about the same load, so each round gives its own ratios, and
    their median is what to quote. Each loader starts from an empty folder every round.
    """
    kinds = (("kit", "ak.load, load only"), ("command", "analytics-kit load"),
             ("floor-seq", "floor one page after another"), ("floor-threads", "floor in the kit's workers"),
             *((("hand", "hand-written"),) if hand else ()))
    ratios: dict[str, list[float]] = {"kit / floor-seq": [], "kit / floor-threads": [],
                                      "command / floor-seq": [], "command / floor-threads": [],
                                      "kit-cpu / floor-seq": [], "kit-least / floor-seq": [],
                                      **({"kit / hand": []} if hand else {})}
    for number in range(1, rounds + 1):
        took = {}
        for kind, _ in kinds:
            folder = f"{tmp}/round{number}-{kind}"
            os.makedirs(folder)
            took[kind] = measure(kind, api.base_url, folder, concurrency=rule if kind.startswith("floor") else concurrency)
        for name in ratios:
            # ak.load's load only (after its imports), as the other tables; the command's whole
            # process, as the shell runs it: it imports dlt inside its load
            loader, floor = name.split(" / ")
            seconds = "wall" if loader == "command" else "load_seconds"
            spent = (took["kit"]["load_cpu_seconds"] if loader == "kit-cpu" else least_wall(took["kit"])
                     if loader == "kit-least" else took[loader][seconds])
            ratios[name].append(spent / took[floor][seconds])
        print(f"  round {number}: " + ", ".join(f"{label} {took[kind]['load_seconds']:.3f} s ({took[kind]['wall']:.3f} s wall)"
                                              for kind, label in kinds)
              + f"; ak.load's CPU in its load {took['kit']['load_cpu_seconds']:.3f} s, the API's "
                f"{took['kit']['api_cpu_seconds']:.3f} s (for the sequential floor {took['floor-seq']['api_cpu_seconds']:.3f} s)")
    for name, values in ratios.items():
        median = statistics.median(values)
        how = ("CPU / load only" if "cpu" in name else "CPU bound" if "least" in name
               else "load only" if name.startswith("kit") else "wall")
        verdict = ("the kit's CPU in its load: below 1.3 before the time can be" if "cpu" in name
                   else f"the kit's and the API's CPU over {os.cpu_count()} cores: the least kit / floor "
                        "that much work allows" if "least" in name
                   else f"target <= 0.9: {'met' if median <= 0.9 else 'NOT met'}" if "hand" in name
                   else f"target <= 1.3: {'met' if median <= 1.3 else 'NOT met'}")
        print(f"  median of {rounds}: {name + ', ' + how:<36} {median:6.3f}   (rounds: "
              f"{', '.join(f'{v:.3f}' for v in values)}; {verdict})")


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
    parser.add_argument("--rounds", type=int, default=0, metavar="N",
                        help="only the kit, the command and the two floors, N rounds in turns: each round's "
                             "ratios and their medians")
    parser.add_argument("--only", type=parse_only, default=set(ONLY), metavar=",".join(ONLY),
                        help="run only these (default: all); incremental needs kit; the ratios are printed "
                             "for the loaders that ran")
    args = parser.parse_args()
    if "incremental" in args.only and "kit" not in args.only:
        parser.error("--only incremental needs kit (the warm run uses the kit's process)")
    sys.path.insert(0, str(ROOT))
    from analytics_kit import demo
    from analytics_kit.config.prepared import DEFAULT_CONCURRENCY
    from analytics_kit.fetch.offsets import FAST_API_WORKERS, FAST_RESPONSE_SECONDS

    events = args.pages * 100 if args.pages else args.events
    # as pip compiles an installed package (the children may run with PYTHONDONTWRITEBYTECODE)
    compileall.compile_dir(str(ROOT / "analytics_kit"), quiet=1)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; demo API in a subprocess, "
          f"{events:,} events + 50 customers, 100 a page, latency {args.latency * 1000:g} ms")
    with tempfile.TemporaryDirectory(prefix="load_speed_") as tmp, \
            demo.serve(events=events, customers=50, process=True, latency=args.latency) as api:
        os.environ[KEY_ENV] = api.api_key
        global API_PID
        API_PID = api._proc.pid
        folders = {}
        for name in ("kit", "command", "dlt", "hand", "seq", "floor"):
            folders[name] = f"{tmp}/{name}"
            os.makedirs(folders[name])
        if args.rounds:
            hand = "hand" in args.only and args.only != set(ONLY)  # asked for by name: it takes longest
            floor_rounds(api, tmp, args.rounds, args.concurrency, floor_rule(args.concurrency), hand)
            return
        if args.latency:
            kit = measure("kit", api.base_url, folders["kit"], concurrency=args.concurrency)
            show(f"analytics_kit.load (concurrency {args.concurrency or 'default'})", kit)
            if not args.skip_sequential:
                seq = measure("kit", api.base_url, folders["seq"], concurrency=1)
                show("analytics_kit.load (concurrency 1)", seq)
                print(f"  speed-up of concurrency: {seq['wall'] / kit['wall']:.1f}x")
            print(f"  target: {events // 100:,} pages in <= 10 s -> {kit['wall']:.2f} s")
            return

        def sent() -> dict:
            return {name: api.count(f"/v1/{name}") for name in ("events", "customers")}

        kit = kit_process = kit_sent = None
        if "kit" in args.only:
            api.clear_log()
            kit_process = Child("kit", api.base_url, folders["kit"], concurrency=args.concurrency,
                                then="incremental" if "incremental" in args.only else "")
            kit = kit_process.result()
            kit_sent = sent()
            show("1. analytics_kit.load (full refresh)", kit)
            print(f"     CPU: {kit['cpu_seconds']:.2f} s in the kit's process over {kit['wall']:.2f} s wall "
                  f"({kit['cpu_seconds'] / kit['wall']:.0%} of one core; the API's process has the other)")
            if kit.get("steps"):
                print(f"     steps: {kit['timing']}")
                print("     " + overlap_bound(kit["steps"]))
            for table, sql in kit.get("sql", {}).items():
                merge = any(word in sql for word in ("ROW_NUMBER", "_dlt_dedup", " IN (SELECT", "MERGE INTO"))
                print(f"     SQL on {table} after staging ({'a MERGE' if merge else 'no merge'}): {sql[:230]}...")
            if "incremental" not in args.only:
                kit_process.close()

        command = None
        if "command" in args.only:
            command = measure("command", api.base_url, folders["command"])
            show("1b. analytics-kit load --full-refresh", command)

        floors = {}
        if "floor" in args.only:
            # the kit's rule for its worker count (see analytics_kit/fetch/offsets.py): the
            # configured concurrency, at most FAST_API_WORKERS when the first page came back fast
            configured = args.concurrency or DEFAULT_CONCURRENCY
            rule = floor_rule(args.concurrency)
            for kind, label in (("floor-seq", "floor: fetch+parse, one page after another"),
                                ("floor-threads", "floor: fetch+parse, the kit's workers")):
                api.clear_log()
                floors[kind] = measure(kind, api.base_url, folders["floor"], concurrency=rule)
                floors[kind]["sent"] = sent()
                if kind == "floor-threads":
                    used = floors[kind]["workers"].get("events")
                    label = (f"floor: fetch+parse, {used['workers']} threads" if used
                             else "floor: fetch+parse, threads (one page)")
                show(label, floors[kind])
            used = floors["floor-threads"]["workers"].get("events")
            if used:
                print(f"     threads: {used['workers']} for /v1/events, by the kit's rule: concurrency {configured}"
                      f"{' (--concurrency)' if args.concurrency else ' (DEFAULT_CONCURRENCY)'}, "
                      f"{FAST_API_WORKERS} when the first page answers in < {FAST_RESPONSE_SECONDS * 1000:g} ms "
                      f"(it took {used['first_ms']:.1f} ms)")
            for kind, r in floors.items():
                if kit_sent is not None and r["sent"] != kit_sent:
                    print(f"  WARNING: {kind} sent {r['sent']} requests, the kit {kit_sent}")
            reference = kit_sent or next(iter(floors.values()))["sent"]
            print("     requests (counted by the API): " + ", ".join(f"/v1/{k} {v:,}" for k, v in reference.items())
                  + (" for the kit and each floor" if kit_sent and all(r["sent"] == kit_sent for r in floors.values())
                     else ""))

        run_dlt = "dlt" in args.only and (
            args.dlt_default == "yes" or (args.dlt_default == "auto" and events < 1_000_000))
        dlt_default = measure("dlt", api.base_url, folders["dlt"]) if run_dlt else None
        if dlt_default:
            show("2. dlt rest_api_source, defaults", dlt_default)
        elif "dlt" in args.only:
            print("  2. dlt rest_api_source, defaults   skipped (--dlt-default yes to run it; "
                  "it took 2.5 GB per 100k rows)")
        hand = None
        if "hand" in args.only:
            hand = measure("hand", api.base_url, folders["hand"])
            show("3. hand-written requests+pyarrow+duckdb", hand)

        changed = events // 100
        if "incremental" in args.only:
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

        if kit and dlt_default:
            ratio("kit / dlt-default", kit["wall"], dlt_default["wall"], 0.25)
        if kit and hand:
            ratio("kit / hand-written", kit["wall"], hand["wall"], 0.9 if events >= 1_000_000 else 1.5)
            ratio("kit / hand-written, peak memory", kit["peak_mb"], hand["peak_mb"])
        for label, r in (("analytics_kit.load", kit), ("analytics-kit load", command)):
            if r and events >= 1_000_000:
                print(f"  peak memory, {label:<31} {r['peak_mb']:6.0f} MB   (target <= 300 MB: "
                      f"{'met' if r['peak_mb'] <= 300 else 'NOT met'})")
        if kit:
            for kind, name in (("floor-seq", "floor, sequential"), ("floor-threads", "floor, threads")):
                if kind in floors:
                    floor = floors[kind]
                    ratio(f"kit / {name}, load only", kit["load_seconds"], floor["load_seconds"], 1.3)
                    ratio(f"kit / {name}, wall", kit["wall"], floor["wall"])
            if "floor-seq" in floors:
                print("  " + cpu_bound(kit, floors["floor-seq"]))
        if "incremental" in args.only:
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
