"""``python -m analytics_kit.demo --port N``: serve the demo API until Ctrl-C.

Prints the base URL. The key comes from --api-key or $ANALYTICS_KIT_DEMO_API_KEY; otherwise a
throwaway key is generated and printed once, labelled. ``build_parser``/``main`` are reused by
the ``analytics-kit demo-api`` command.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from analytics_kit.demo.api import KEY_ENV, serve


def _port(text: str) -> int:
    """A TCP port: 70000 or -1 ended the command with bind()'s OverflowError and a traceback (helper-149)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is no port: give a number from 0 to 65535 (0: pick a free one)")
    return port


def build_parser(parser: argparse.ArgumentParser | None = None, prog: str = "python -m analytics_kit.demo"
                 ) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(
        prog=prog,
        description="Serve the deterministic demo analytics API on 127.0.0.1 until Ctrl-C.")
    p.add_argument("--port", type=_port, default=8765, help="port on 127.0.0.1 (0: pick a free one)")
    p.add_argument("--events", type=int, default=1000, help="initial number of events")
    p.add_argument("--customers", type=int, default=50, help="initial number of customers")
    p.add_argument("--seed", type=int, default=7, help="seed for the generated data")
    p.add_argument("--api-key", default=None,
                   help=f"the key clients must send (default: ${KEY_ENV} or a generated one)")
    p.add_argument("--key-param", default="api_key", help="query parameter carrying the key")
    p.add_argument("--latency", type=float, default=0.0, help="seconds of delay per request")
    # used by serve(process=True): the parent holds our stdin open and we exit when it closes
    p.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``prog`` is the command as the user typed it (``analytics-kit demo-api``), for ``--help``."""
    args = build_parser(prog=prog or "python -m analytics_kit.demo").parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Serve with parsed arguments (so a CLI that adds build_parser's options can call this)."""
    key = args.api_key or os.environ.get(KEY_ENV) or None
    try:
        api = serve(events=args.events, customers=args.customers, seed=args.seed, api_key=key,
                    key_param=args.key_param, latency=args.latency, port=args.port)
    except (ValueError, OSError, OverflowError) as e:
        print(f"error: cannot start the demo API: {e}", file=sys.stderr)
        return 1
    # A list, not a threading.Event: a handler that set the Event while the main thread held its lock inside
    # wait() waited on that lock for ever, and the API outlived SIGINT and SIGTERM (helper-118)
    stop: list[str] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: stop.append(signal.Signals(number).name))
    if args.exit_on_stdin_eof:
        def watch() -> None:
            while sys.stdin.buffer.read1(4096):
                pass
            stop.append("stdin closed")
        threading.Thread(target=watch, daemon=True).start()
    with api:
        print(f"Demo analytics API serving at {api.base_url} (resources: /v1/events, "
              f"/v1/customers; key in the '{api.key_param}' query parameter)", flush=True)
        if key is None:
            print(f"Demo API key (throwaway, generated for this run): {api.api_key}", flush=True)
        if not args.exit_on_stdin_eof:
            print("Press Ctrl-C to stop.", flush=True)
        while not stop:
            time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
