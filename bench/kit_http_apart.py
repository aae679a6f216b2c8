"""The kit's own full load with its page workers' HTTP in a child process. An experiment, not the kit.

    .venv/bin/python bench/kit_http_apart.py                   # 100,000 events, 5 rounds in turns
    .venv/bin/python bench/kit_http_apart.py --events 1000000 --rounds 1

``split_process.py`` measured a toy pipeline: a child process doing the HTTP made it 0.74-0.82x
as long. This asks the same of the kit itself. Each round runs ``ak.load`` (a full refresh)
twice in fresh processes, in turns:

- ``kit``: as it is;
- ``http-apart``: the workers that fetch a listing's pages after its first send each request
  (already prepared by the kit, key included) to a child process, which sends it with a plain
  ``requests.Session`` and returns status, headers and body through a Unix socket. The kit
  parses, checks, converts and loads as always. The child skips the kit's transport (its retries,
  deadlines, origin and header checks), so it is faster than a real port of it could be.

Printed per loader: the load's wall time, and the CPU time of the loading process during it
(all threads; the child's not included). Each table's row count is checked against the API.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "KIT_HTTP_APART_API_KEY"
LOADERS = ("kit", "http-apart")


# -- the child: sends prepared requests ---------------------------------------------------------


def serve_http(folder: str) -> None:
    """Answers each connection's (method, url, headers, body) with (status, headers, url, elapsed, body)."""
    from multiprocessing.connection import Listener

    import requests

    listener = Listener(f"{folder}/http.sock", family="AF_UNIX", authkey=b"bench")
    print("ready", flush=True)

    def serve(conn) -> None:  # type: ignore[no-untyped-def]
        session = requests.Session()
        session.trust_env = False  # 127.0.0.1 only
        while True:
            try:
                method, url, headers, body = conn.recv()
            except EOFError:
                return
            started = time.perf_counter()
            r = session.request(method, url, headers=headers, data=body, timeout=60, allow_redirects=False)
            conn.send((r.status_code, list(r.headers.items()), r.url, time.perf_counter() - started, r.content))

    # the parent holds our stdin: gone with it
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    while True:
        threading.Thread(target=serve, args=(listener.accept(),), daemon=True).start()


class ApartSession:
    """What ``OffsetPass.fetch`` asks of a worker's session, sent through the child."""

    sent = 0  # requests sent through the child, all workers together (under ``lock``)
    lock = threading.Lock()

    def __init__(self, path: str) -> None:
        from multiprocessing.connection import Client

        self.conn = Client(path, family="AF_UNIX", authkey=b"bench")

    def merge_environment_settings(self, *args, **kwargs) -> dict:  # type: ignore[no-untyped-def]
        return {}

    def send(self, prepared, **kwargs):  # type: ignore[no-untyped-def]
        import datetime

        import requests
        from requests.structures import CaseInsensitiveDict

        self.conn.send((prepared.method, prepared.url, dict(prepared.headers), prepared.body))
        with ApartSession.lock:
            ApartSession.sent += 1
        status, headers, url, elapsed, content = self.conn.recv()
        response = requests.Response()
        response.status_code, response.headers, response.url = status, CaseInsensitiveDict(headers), url
        response._content, response.request, response.encoding = content, prepared, None
        response.elapsed = datetime.timedelta(seconds=elapsed)
        response.raise_for_status()
        return response


# -- one loader in a fresh process --------------------------------------------------------------


def run_loader(loader: str, base_url: str, folder: str) -> None:
    import json
    import resource

    import analytics_kit as ak
    from analytics_kit.fetch.offsets import OffsetPass

    child = None
    if loader == "http-apart":
        child = subprocess.Popen([sys.executable, __file__, "--serve-http", folder],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        local = threading.local()

        def apart_session(self):  # type: ignore[no-untyped-def]
            if not hasattr(local, "session"):
                local.session = ApartSession(f"{folder}/http.sock")
            return local.session

        OffsetPass._session = apart_session  # the workers' sessions only: the first page stays the kit's

    config = ak.guide_config(base_url, os.environ[KEY_ENV])
    used = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    report = ak.load(config, "full_refresh", database=f"{folder}/analytics.duckdb", progress=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    print(json.dumps({"wall": wall, "cpu": cpu, "rows": report.rows, "kit_requests": report.requests,
                      "apart_requests": ApartSession.sent}))
    if child is not None:
        child.kill()


# -- the rounds ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve-http", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--loader", nargs=3, metavar=("LOADER", "URL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_http:
        serve_http(args.serve_http)
        return 0
    if args.loader:
        run_loader(*args.loader)
        return 0

    import json

    from analytics_kit import demo

    times: dict[str, list[float]] = {name: [] for name in LOADERS}
    cpus: dict[str, list[float]] = {name: [] for name in LOADERS}
    print(f"machine: {os.cpu_count()} cores; demo API in a subprocess, {args.events:,} events + 50 customers")
    with demo.serve(events=args.events, customers=50, process=True) as api:
        expected = {"events": args.events, "customers": 50}
        env = dict(os.environ, **{KEY_ENV: api.api_key})
        for round_ in range(1, args.rounds + 1):
            for name in LOADERS:
                with tempfile.TemporaryDirectory() as folder:
                    done = subprocess.run([sys.executable, __file__, "--loader", name, api.base_url, folder],
                                          check=False, env=env, capture_output=True, text=True, cwd=ROOT)
                if done.returncode:
                    sys.stderr.write(done.stderr[-3000:])
                    return 1
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if result["rows"] != expected:
                    print(f"{name}: rows {result['rows']} where the API holds {expected}")
                    return 1
                if (name == "http-apart") != (result["apart_requests"] > 0):
                    print(f"{name}: {result['apart_requests']} requests went through the child")
                    return 1
                times[name].append(result["wall"])
                cpus[name].append(result["cpu"])
                print(f"  round {round_}: {name:<10} load {result['wall']:.3f} s, "
                      f"its process's CPU {result['cpu']:.3f} s; "
                      f"requests: {result['kit_requests']} by the kit, {result['apart_requests']} through the child",
                      flush=True)
    kit, apart = statistics.median(times["kit"]), statistics.median(times["http-apart"])
    print(f"median of {args.rounds}: kit {kit:.3f} s (CPU {statistics.median(cpus['kit']):.3f} s), http-apart "
          f"{apart:.3f} s (CPU {statistics.median(cpus['http-apart']):.3f} s); http-apart / kit {apart / kit:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
