"""The kit's full load with its transport as it is, against the same load with the transport's
per-request savings undone. Not a timed test: ratios from one run.

    .venv/bin/python bench/transport_speed.py                   # 100,000 events, 6 rounds in turns
    .venv/bin/python bench/transport_speed.py --events 1000000 --rounds 2
    .venv/bin/python bench/transport_speed.py --per-request     # CPU per request, one thread

The page workers' socket reads let go of the GIL, and each release costs a thread switch while
the extracting thread and the other worker wait for it. The kit therefore reads an answer
through a 64 KB buffer (one ``recv`` for a page), waits in ``recv`` itself (its deadline bounds
the read, not a socket timeout that polls first), looks an origin's connection pool up once,
and parses plain header blocks without the email parser. ``before`` undoes those four in the
loading process (``undo``), so both variants run the code of this checkout.

Each round runs ``ak.load`` (a full refresh) once per variant, each in a fresh process, the
order alternating. Printed: each load's time and CPU (all threads of the loading process),
and the medians' ratio. Every load's rows are checked against the API's count.
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

VARIANTS = ("kit", "before")
REQUESTS = 2000  # per process, in --per-request mode
KEY_ENV = "TRANSPORT_SPEED_API_KEY"


def undo() -> None:
    """The transport as it was before its per-request savings."""
    import http.client

    from requests.adapters import HTTPAdapter

    from analytics_kit.fetch import cut_answers, header_fields, transport

    cut_answers.HeaderCheckedResponse.__init__ = http.client.HTTPResponse.__init__  # 8 KB reads
    header_fields.begin = http.client.HTTPResponse.begin  # the email parser
    transport.DeadlineAdapter.get_connection_with_tls_context = HTTPAdapter.get_connection_with_tls_context
    init = transport.KitSession.__init__

    def with_read_timeout(self, *, timeout, **kwargs):  # type: ignore[no-untyped-def]
        init(self, timeout=timeout, **kwargs)
        self.timeout = timeout  # connect and each read

    transport.KitSession.__init__ = with_read_timeout


def load(variant: str, base_url: str) -> dict:
    import analytics_kit as ak
    from analytics_kit.fetch import transport  # noqa: F401 - imported by both variants before the clock starts

    if variant == "before":
        undo()
    with tempfile.TemporaryDirectory() as folder:
        config = ak.guide_config(base_url, os.environ[KEY_ENV])
        cpu, started = time.process_time(), time.perf_counter()
        report = ak.load(config, "full_refresh", database=f"{folder}/analytics.duckdb", progress=False)
        return {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                "rows": sum(report.rows.values()), "extract": report.steps["extract"]}


def per_request(variant: str, base_url: str) -> dict:
    """CPU per page sent through the kit's retrying session, one thread, nothing else running."""
    from analytics_kit.fetch.retry import RetryPolicy, retry_session
    from analytics_kit.fetch.stats import LoadStats

    if variant == "before":
        undo()
    session = retry_session(RetryPolicy(), resource="events", stats=LoadStats())
    params = {"api_key": os.environ[KEY_ENV], "limit": 100, "offset": 0}
    for _ in range(50):
        _ = session.get(f"{base_url}/v1/events", params=params).content
    cpu = time.process_time()
    for _ in range(REQUESTS):
        _ = session.get(f"{base_url}/v1/events", params=params).content
    return {"cpu_us": (time.process_time() - cpu) / REQUESTS * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-request", action="store_true",
                        help="CPU per request through the kit's session instead of whole loads")
    parser.add_argument("--load", nargs=2, metavar=("VARIANT", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--send", nargs=2, metavar=("VARIANT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(*args.load)))
        return 0
    if args.send:
        print(json.dumps(per_request(*args.send)))
        return 0
    if args.per_request:
        return per_request_rounds(args)

    from analytics_kit import demo

    print(f"{args.events:,} events + 50 customers from the demo API in a subprocess; {args.rounds} rounds, "
          "each loader in a fresh process, the order alternating")

    def shown(round_: int, variant: str, result: dict) -> None:
        if result["rows"] != args.events + 50:
            raise SystemExit(f"{variant} loaded {result['rows']:,} rows, not {args.events + 50:,}")
        print(f"  round {round_ + 1}: {variant:<6} load {result['wall']:.3f} s, CPU {result['cpu']:.3f} s, "
              f"extract {result['extract']:.3f} s", flush=True)

    with demo.serve(events=args.events, customers=50, process=True) as api:
        results = in_turns(__file__, "--load", VARIANTS, args.rounds, api.base_url,
                           {**os.environ, KEY_ENV: api.api_key}, shown)
    medians = {variant: {key: statistics.median(r[key] for r in rs) for key in ("wall", "cpu", "extract")}
               for variant, rs in results.items()}
    for variant, median in medians.items():
        print(f"  median {variant:<6} load {median['wall']:.3f} s, CPU {median['cpu']:.3f} s, "
              f"extract {median['extract']:.3f} s")
    kit, before = medians["kit"], medians["before"]
    print(f"  kit / before: load {kit['wall'] / before['wall']:.3f}, CPU {kit['cpu'] / before['cpu']:.3f}, "
          f"extract {kit['extract'] / before['extract']:.3f}")
    return 0


def per_request_rounds(args: argparse.Namespace) -> int:
    from analytics_kit import demo

    print(f"CPU per request: {REQUESTS:,} pages of 100 events through the kit's retrying session, one thread, "
          f"{args.rounds} rounds, each variant in a fresh process, the order alternating")
    with demo.serve(events=1000, customers=5, process=True) as api:
        runs = in_turns(__file__, "--send", VARIANTS, args.rounds, api.base_url, {**os.environ, KEY_ENV: api.api_key})
    results = {variant: [r["cpu_us"] for r in rs] for variant, rs in runs.items()}
    kit, before = (statistics.median(results[v]) for v in VARIANTS)
    for variant in VARIANTS:
        print(f"  {variant:<6} median {statistics.median(results[variant]):.0f} us a request "
              f"(rounds: {', '.join(f'{v:.0f}' for v in results[variant])})")
    print(f"  kit / before: {kit / before:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
