"""Time spent in Python's garbage collector during a load, with the kit's threshold and with Python's default.

    .venv/bin/python bench/gc_cost.py                       # 100,000 events, 3 rounds
    .venv/bin/python bench/gc_cost.py --events 1000000 --rounds 2

Each round runs one ``ak.load`` (a full refresh) per variant, each in a fresh process, the
order alternating. dlt is imported before the clock starts, so its imports' collections are
not counted. The collector reports each collection through ``gc.callbacks``, so the time is
its own, not a difference of noisy wall times. ``default`` sets ``run/collector.YOUNG_OBJECTS``
to 0, which leaves Python's threshold (700) in place. Printed per load: collections and their
seconds by generation, the load's time, the process's peak memory; then the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

from _turns import in_turns

KEY_ENV = "GC_COST_API_KEY"


def load(variant: str, base_url: str) -> dict:
    import gc

    import analytics_kit as ak
    from analytics_kit.fetch import transport  # noqa: F401 - dlt's imports, before the clock starts
    from analytics_kit.run import collector

    if variant == "default":
        collector.YOUNG_OBJECTS = 0
    seconds, counts, began = [0.0, 0.0, 0.0], [0, 0, 0], [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            seconds[info["generation"]] += time.perf_counter() - began[0]
            counts[info["generation"]] += 1

    with tempfile.TemporaryDirectory() as folder:
        config = ak.guide_config(base_url, os.environ[KEY_ENV])
        gc.callbacks.append(timed)
        started = time.perf_counter()
        report = ak.load(config, "full_refresh", database=f"{folder}/analytics.duckdb", progress=False)
        wall = time.perf_counter() - started
        gc.callbacks.remove(timed)
    return {"wall": wall, "seconds": seconds, "counts": counts, "rows": sum(report.rows.values()),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", nargs=2, metavar=("VARIANT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(*args.load)))
        return 0

    from analytics_kit import demo

    print(f"{args.events:,} events + 50 customers from the demo API in a subprocess; {args.rounds} rounds, "
          "each load in a fresh process, the order alternating")

    def shown(round_: int, variant: str, r: dict) -> None:
        if r["rows"] != args.events + 50:
            raise SystemExit(f"{variant} loaded {r['rows']:,} rows, not {args.events + 50:,}")
        by_generation = ", ".join(f"gen{g} {n} in {s:.3f} s" for g, (n, s) in enumerate(zip(r["counts"], r["seconds"])))
        print(f"  round {round_ + 1}: {variant:<8} collector {sum(r['seconds']):.3f} s of a {r['wall']:.2f} s "
              f"load ({sum(r['seconds']) / r['wall']:.1%}): {by_generation}; peak {r['peak_mb']:.0f} MB", flush=True)

    with demo.serve(events=args.events, customers=50, process=True) as api:
        results = in_turns(__file__, "--load", ("kit", "default"), args.rounds, api.base_url,
                           {**os.environ, KEY_ENV: api.api_key}, shown)
    for variant, rs in results.items():
        print(f"  median {variant:<8} collector {statistics.median(sum(r['seconds']) for r in rs):.3f} s, "
              f"load {statistics.median(r['wall'] for r in rs):.2f} s, "
              f"peak {statistics.median(r['peak_mb'] for r in rs):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
