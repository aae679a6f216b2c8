"""How fast the demo API serves: sequential keep-alive paging with requests.Session.

    python bench/demo_api_speed.py [--pages 1000] [--limit 100] [--events 1000000]

Fetches pages of events one after another (as a loader does) from the demo API in a thread and
in a subprocess, and prints pages/s and total seconds for each. Target: 1,000 pages of 100 in
under 2 s. A script, not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

from analytics_kit import demo  # noqa: E402


def fetch(api: demo.DemoAPI, pages: int, limit: int) -> float:
    with requests.Session() as s:
        s.trust_env = False  # 127.0.0.1 only, never via a proxy
        url = f"{api.base_url}/v1/events"
        params = {api.key_param: api.api_key, "limit": limit}
        s.get(url, params={**params, "limit": 1}).raise_for_status()  # connect outside the clock
        start = time.perf_counter()
        rows = 0
        for i in range(pages):
            r = s.get(url, params={**params, "offset": i * limit})
            r.raise_for_status()
            rows += len(r.json()["data"])
        elapsed = time.perf_counter() - start
    assert rows == pages * limit, f"got {rows} rows; need at least pages*limit events"
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=1000)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--events", type=int, default=1_000_000)
    args = p.parse_args(argv)
    if args.events < args.pages * args.limit:
        p.error("--events must be at least --pages * --limit")
    print(f"{args.pages} pages of {args.limit} events, sequential, keep-alive, requests.Session")
    for process in (False, True):
        t = time.perf_counter()
        with demo.serve(events=args.events, customers=1000, process=process) as api:
            startup = time.perf_counter() - t
            elapsed = fetch(api, args.pages, args.limit)
        mode = "subprocess" if process else "thread    "
        verdict = "ok" if elapsed * 1000 / args.pages < 2 else "SLOW: target is 2 s per 1,000 pages"
        print(f"  {mode}: {args.pages / elapsed:7.0f} pages/s, {elapsed:.2f} s total "
              f"(startup {startup:.2f} s) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
