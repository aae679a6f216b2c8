"""A full refresh into a DuckDB file with its swap reading the parquet files, against dlt's way
(every file copied into main_staging, then main_staging into the table). Not a timed test: ratios
from one run.

    .venv/bin/python bench/replace_swap.py                          # 100,000 events, 4 rounds in turns
    .venv/bin/python bench/replace_swap.py --events 1000000 --rounds 2

Each round runs ``ak.load`` (a full refresh) once per variant, each in a fresh process, the
order alternating; ``staged`` is this checkout with ``seam.replace_from_files`` switched off.
Printed: the load step's time (DuckDB's part of the load), the whole load's, the process's peak
memory, and the medians' ratios. Every load's table is counted against the API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time

from _turns import in_turns

VARIANTS = ("kit", "staged")
KEY_ENV = "REPLACE_SWAP_API_KEY"
SHOWN = {"load_step": "load step", "wall": "load", "peak_mb": "peak MB"}


def load(variant: str, base_url: str) -> dict:
    import analytics_kit as ak
    from analytics_kit.run import load as load_module

    if variant == "staged":
        load_module.replace_from_files = lambda load_ids: contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as folder:
        database = f"{folder}/analytics.duckdb"
        started = time.perf_counter()
        report = ak.load(ak.guide_config(base_url, os.environ[KEY_ENV]), "full_refresh", database=database,
                         progress=False)
        wall = time.perf_counter() - started
        rows = int(ak.query("SELECT count(*) AS n FROM events", database=database).n[0])
    return {"wall": wall, "load_step": report.steps["load"], "rows": rows,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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
        if result["rows"] != args.events:
            raise SystemExit(f"{variant} loaded {result['rows']:,} events, not {args.events:,}")
        print(f"  round {round_ + 1}: {variant:<6} " + ", ".join(f"{label} {result[key]:.3f}"
                                                          for key, label in SHOWN.items()), flush=True)

    with demo.serve(events=args.events, customers=50, process=True) as api:
        results = in_turns(__file__, "--load", VARIANTS, args.rounds, api.base_url,
                           {**os.environ, KEY_ENV: api.api_key}, shown)
    medians = {variant: {key: statistics.median(r[key] for r in rs) for key in SHOWN}
               for variant, rs in results.items()}
    for variant, median in medians.items():
        print(f"  median {variant:<6} " + ", ".join(f"{label} {median[key]:.3f}" for key, label in SHOWN.items()))
    kit, staged = medians["kit"], medians["staged"]
    print("  kit / staged: " + ", ".join(f"{label} {kit[key] / staged[key]:.3f}" for key, label in SHOWN.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
