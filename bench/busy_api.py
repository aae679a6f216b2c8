"""First loads from a listing that is updated all the time: how many succeed, and are they right?

    .venv/bin/python bench/busy_api.py                    # 6 runs of 10,000 records
    .venv/bin/python bench/busy_api.py --runs 10 --records 5000 --every 0.5
    .venv/bin/python bench/busy_api.py --full-refresh         # full refreshes instead of first loads

A real analytics API changes while it is paged. The listing here (``tests/test_newest.py``'s
``Listing``: ordered by ``updated_at``, oldest first, 50 ms a request) gives one random record the
newest cursor every ``--every`` seconds while the kit's first load pages it (concurrency 8). An
update moves its record to the end, and the record after its old place can slide into a page
already read: each pass of the listing may miss a different record. After each load, the updates
stop and a quiet incremental run follows; the table must then equal the API. Printed per run: the
passes the load took, or its error; and whether the table equals the API. A load that fails
("kept changing") is sound, if not helpful: the script exits non-zero only for a load that
succeeded with a table that differs from the API.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two updates")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--full-refresh", action="store_true", help="a full refresh instead of the first load")
    args = parser.parse_args()

    from test_newest import Listing, config  # the tests' listing, which can change while it is paged

    import analytics_kit as ak

    random.seed(args.seed)
    loaded = right = 0
    with tempfile.TemporaryDirectory() as folder:
        for run in range(1, args.runs + 1):
            server = Listing(args.records)
            answer = server.server.RequestHandlerClass.do_GET

            def slowly(handler, answer=answer):  # type: ignore[no-untyped-def]
                time.sleep(args.latency)  # outside the listing's lock: requests wait side by side
                answer(handler)

            server.server.RequestHandlerClass.do_GET = slowly
            quiet = threading.Event()

            def update(server: Listing = server, quiet: threading.Event = quiet) -> None:
                while not quiet.wait(args.every):
                    server.update(random.randint(1, args.records))

            threading.Thread(target=update, daemon=True).start()
            database = os.path.join(folder, f"run{run}.duckdb")
            try:
                report = ak.load(config(server, concurrency=8), "full_refresh" if args.full_refresh else "incremental",
                                 progress=False, database=database)
                outcome = (f"loaded in {report.passes.get('events', 1)} pass(es), "
                           f"{report.requests.get('events', 0)} requests")
                loaded += 1
            except ak.LoadError as error:
                outcome = f"failed: {str(error).split(';')[0]}"
            quiet.set()
            if outcome.startswith("loaded"):
                ak.load(config(server, concurrency=8), progress=False, database=database)
                table = {row.id: row.value for row in ak.query("SELECT id, value FROM events", database).itertuples()}
                equal = table == {r["id"]: r["value"] for r in server.records.values()}
                right += equal
                outcome += f"; after a quiet run the table {'equals' if equal else 'DIFFERS FROM'} the API"
            print(f"  run {run}: {outcome}", flush=True)
            server.close()
    kind = "full refreshes" if args.full_refresh else "first loads"
    print(f"{loaded} of {args.runs} {kind} succeeded; {right} equal to the API after a quiet run")
    return 0 if right == loaded else 1


if __name__ == "__main__":
    sys.exit(main())
