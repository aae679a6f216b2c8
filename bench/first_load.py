"""A first load into a new DuckDB file as a replace (the kit's way since the twenty-fourth session)
against dlt's merge (the way before it). Not a timed test: ratios from one run.

    .venv/bin/python bench/first_load.py                          # 100,000 events, 4 rounds in turns
    .venv/bin/python bench/first_load.py --events 1000000 --rounds 2

Each round runs ``ak.load`` (incremental, the default, into a new file) once per variant, each in a
fresh process, the order alternating; ``merge`` is this checkout with the first load's replace
switched off (the dataset never counts as empty), so dlt stages every row and merges it. Printed:
the load step's time (DuckDB's part of the load), the whole load's, the process's peak memory
(VmHWM), and the medians' ratios. Every load's table is counted against the API.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from _turns import in_turns

VARIANTS = ("replace", "merge")
KEY_ENV = "FIRST_LOAD_API_KEY"
SHOWN = {"load_step": "load step", "wall": "load", "peak_mb": "peak MB"}


def peak_mb() -> float:
    """This process's own peak resident memory (see load_speed.peak_mb)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def load(variant: str, base_url: str) -> dict:
    import analytics_kit as ak
    from analytics_kit.store import recovery

    if variant == "merge":
        recovery._fresh = lambda client, tables: False
    with tempfile.TemporaryDirectory() as folder:
        database = f"{folder}/analytics.duckdb"
        started = time.perf_counter()
        report = ak.load(ak.guide_config(base_url, os.environ[KEY_ENV]), database=database, progress=False)
        wall = time.perf_counter() - started
        peak = peak_mb()  # before the count below reads the table back
        rows = int(ak.query("SELECT count(*) AS n FROM events", database=database).n[0])
    return {"wall": wall, "load_step": report.steps["load"], "rows": rows, "peak_mb": peak, "mode": report.mode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--load", nargs=2, metavar=("VARIANT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(*args.load)))
        return 0

    from analytics_kit import demo

    print(f"{args.events:,} events + 50 customers from the demo API in a subprocess; {args.rounds} rounds, "
          "each variant in a fresh process, the order alternating")

    def shown(round_: int, variant: str, result: dict) -> None:
        if result["rows"] != args.events or result["mode"] != "incremental":
            raise SystemExit(f"{variant} loaded {result['rows']:,} events ({result['mode']}), not {args.events:,}")
        print(f"  round {round_ + 1}: {variant:<7} " + ", ".join(f"{label} {result[key]:.3f}"
                                                           for key, label in SHOWN.items()), flush=True)

    with demo.serve(events=args.events, customers=50, process=True) as api:
        results = in_turns(__file__, "--load", VARIANTS, args.rounds, api.base_url,
                           {**os.environ, KEY_ENV: api.api_key}, shown)
    medians = {variant: {key: statistics.median(r[key] for r in rs) for key in SHOWN}
               for variant, rs in results.items()}
    for variant, median in medians.items():
        print(f"  median {variant:<7} " + ", ".join(f"{label} {median[key]:.3f}" for key, label in SHOWN.items()))
    first, merge = medians["replace"], medians["merge"]
    print("  replace / merge: " + ", ".join(f"{label} {first[key] / merge[key]:.3f}" for key, label in SHOWN.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
