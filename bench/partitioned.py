"""The best a load split into page ranges across processes could do here. An experiment, not the kit.

    .venv/bin/python bench/partitioned.py                    # 100,000 events, 3 rounds in turns
    .venv/bin/python bench/partitioned.py --events 1000000 --rounds 1

``kit_http_apart.py`` showed that the loading process's work without any HTTP (checks, conversion,
dlt's extract and load) is already about 1.3x the fetch-and-parse floor at 100,000 events: moving
the transport out cannot reach the target. What could is sharing the per-record work between
processes. This bounds that design from above, with the kit itself: each round runs

- ``whole``: ``ak.load`` (a full refresh) of the guide's config in one process;
- ``halves``: two processes at once, each an ``ak.load`` of half the events listing (the offset
  paginator's ``offset`` and ``maximum_offset``) into a database of its own; the customers go with
  the first half.

- ``floor-seq`` and ``floor-threads``: ``load_speed.py``'s two floors (fetch and parse the same
  pages, store nothing; one page after another, and in the kit's page workers), so that the
  halves can be read against the target's floor in the same run.

Every variant imports first and waits for a start signal; timed from the signal to the last load's
end. The halves pay the fixed costs twice and skip what a real split would add (one load step
into one file, one tally of keys over both halves, one cursor), so read ``halves / floor`` as the
least a split of the per-record work between two processes could give here: if it is above 1.3,
no such split reaches issue 15's target on this machine. Each database's rows and distinct ids
are counted against the API, and each floor's records.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "PARTITIONED_API_KEY"
VARIANTS = ("whole", "halves", "floor-seq", "floor-threads")
FLOORS = ("floor-seq", "floor-threads")


def run_part(base_url: str, database: str, part: str, events: int, go: str) -> None:
    """One loading process: imports, says it is ready, waits for ``go`` to exist, loads, prints its times."""
    if part in FLOORS:
        run_floor(base_url, part, go)
        return
    import analytics_kit as ak
    from analytics_kit.fetch import source  # noqa: F401 - imported before the clock starts

    config = ak.guide_config(base_url, os.environ[KEY_ENV])
    events_resource = next(r for r in config["resources"] if r["name"] == "events")
    paginator = events_resource["endpoint"]["paginator"]
    half = events // 2 // 100 * 100
    if part == "first":
        paginator["maximum_offset"] = half
    elif part == "second":
        paginator["offset"] = half
        config["resources"] = [events_resource]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    started = time.time()
    report = ak.load(config, "full_refresh", database=database, progress=False)
    print(json.dumps({"started": started, "ended": time.time(), "rows": report.rows}), flush=True)


def run_floor(base_url: str, part: str, go: str) -> None:
    """One of ``load_speed.py``'s floors, started by ``go`` as the loads are."""
    sys.path.insert(0, str(Path(__file__).parent))
    import load_speed

    os.environ[load_speed.KEY_ENV] = os.environ[KEY_ENV]
    for module in load_speed.IMPORTS[part]:
        __import__(module)
    rule = load_speed.floor_rule(None)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    started = time.time()
    result = load_speed.LOADERS[part](base_url, "", "full_refresh", rule)
    print(json.dumps({"started": started, "ended": time.time(), "records": result["rows"]}), flush=True)


def one_round(variant: str, base_url: str, events: int, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        parts = ["all"] if variant == "whole" else [variant] if variant in FLOORS else ["first", "second"]
        go = f"{folder}/go"
        children = [subprocess.Popen([sys.executable, __file__, "--part", part, base_url, f"{folder}/{part}.duckdb",
                                      str(events), go], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                    for part in parts]
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        Path(go).touch()
        signalled = time.time()
        results = []
        for child in children:
            out, _ = child.communicate()
            if child.returncode:
                raise SystemExit(f"{variant}: a loading process failed ({child.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        if variant in FLOORS:
            return {"seconds": results[0]["ended"] - signalled, "rows": results[0]["records"]}
        import duckdb

        counted: dict[str, list[int]] = {}
        for part in parts:
            with duckdb.connect(f"{folder}/{part}.duckdb", read_only=True) as con:
                for table in ("events", "customers"):
                    try:
                        rows, ids = con.execute(f"SELECT count(*), count(DISTINCT id) FROM main.{table}").fetchone()
                    except duckdb.CatalogException:
                        continue
                    total = counted.setdefault(table, [0, 0])
                    total[0], total[1] = total[0] + rows, total[1] + ids
    return {"seconds": max(r["ended"] for r in results) - signalled, "rows": counted}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part", nargs=5, metavar=("PART", "URL", "DATABASE", "EVENTS", "GO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        part, url, database, events, go = args.part
        run_part(url, database, part, int(events), go)
        return 0

    from analytics_kit import demo

    print(f"machine: {os.cpu_count()} cores; demo API in a subprocess, {args.events:,} events + 50 customers; "
          f"{args.rounds} rounds, the variants in turns")
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with demo.serve(events=args.events, customers=50, process=True) as api:
        env = {**os.environ, KEY_ENV: api.api_key}
        expected = {"events": [args.events] * 2, "customers": [50, 50]}
        records = args.events + 50
        for round_ in range(args.rounds):
            for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
                result = one_round(variant, api.base_url, args.events, env)
                if result["rows"] != (records if variant in FLOORS else expected):
                    raise SystemExit(f"{variant}: [rows, distinct ids] {result['rows']}, the API holds {expected}")
                times[variant].append(result["seconds"])
                print(f"  round {round_ + 1}: {variant:<13} {result['seconds']:.3f} s from the start signal to the "
                      "last load's end", flush=True)
    medians = {v: statistics.median(times[v]) for v in VARIANTS}
    print(f"median of {args.rounds}: " + ", ".join(f"{v} {medians[v]:.3f} s" for v in VARIANTS))
    print(f"  halves / whole {medians['halves'] / medians['whole']:.3f}")
    for floor in FLOORS:
        for variant in ("whole", "halves"):
            # each round's ratio, its variants run under about the same load, then their median
            ratios = [a / b for a, b in zip(times[variant], times[floor])]
            print(f"  {variant} / {floor}: {statistics.median(ratios):.3f} (rounds: "
                  f"{', '.join(f'{r:.3f}' for r in ratios)}; issue 15's target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
