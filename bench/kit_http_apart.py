"""The kit's own full load with its page workers' HTTP in a child process. An experiment, not the kit.

    .venv/bin/python bench/kit_http_apart.py                   # 100,000 events, 5 rounds in turns
    .venv/bin/python bench/kit_http_apart.py --events 1000000 --rounds 2

``split_process.py`` measured a toy pipeline: a child process doing the HTTP made it 0.74-0.82x
as long. This asks the same of the kit itself. Each round runs ``ak.load`` (a full refresh) in
fresh processes, the loaders' order alternating from round to round:

- ``kit``: as it is;
- ``plain``: the page workers send the kit's prepared requests with a plain ``requests.Session``
  in the same process, none of the kit's transport around them (its retries, deadlines, origin
  and header checks): what skipping the transport alone is worth;
- ``http-apart``: the page workers hand each prepared request (key included) to a child process,
  which sends it as it is on one kept-alive ``http.client`` connection per worker and returns
  status, headers and body in one message through a Unix socket. The kit parses, checks,
  converts and loads as always. No transport checks either: faster than a real port could be.
- ``kit-apart``: the page workers' requests go to a child forked from the loading process at the
  first worker's first page, where each worker has a session of the kit's own (``new_session``:
  retries, deadlines, origin and header checks) in a thread of its own. The split a real port
  would make: what the HTTP stack costs leaves the GIL the extract and the checks need.

Each loader's first page and the reads of its newest cursor stay on the kit's own session.
Printed per run: the load's wall time and steps; the CPU during the load of the loading
process (all threads), of the child and of the demo API; the requests the kit sent and those
sent for it. Each table's rows and distinct ids are counted in DuckDB against the API.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import requests
from requests.structures import CaseInsensitiveDict

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "KIT_HTTP_APART_API_KEY"
LOADERS = ("kit", "plain", "http-apart", "kit-apart")
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """Seconds of CPU a process has used so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# -- the child: sends prepared requests ---------------------------------------------------------


def asked(conn) -> Iterator[tuple]:  # type: ignore[no-untyped-def]
    """Each (method, url, headers, body) a worker sends on ``conn``, until it hangs up."""
    while True:
        try:
            yield conn.recv()
        except EOFError:
            return


def serve_http(folder: str) -> None:
    """Answers each connection's (method, url, headers, body) with (status, headers, url, elapsed, body),
    sent as it is on one kept-alive connection per worker."""
    import http.client
    from multiprocessing.connection import Listener
    from urllib.parse import urlsplit

    listener = Listener(f"{folder}/http.sock", family="AF_UNIX", authkey=b"bench")
    print("ready", flush=True)

    def serve(conn) -> None:  # type: ignore[no-untyped-def]
        http_conn = None
        for method, url, headers, body in asked(conn):
            started = time.perf_counter()
            parts = urlsplit(url)
            if parts.hostname != "127.0.0.1":
                raise SystemExit(f"refused: {parts.hostname} is not the demo API")
            if http_conn is None:
                http_conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            http_conn.request(method, parts.path + ("?" + parts.query if parts.query else ""), body=body,
                              headers=headers)
            answer = http_conn.getresponse()
            content = answer.read()
            conn.send((answer.status, answer.getheaders(), url, time.perf_counter() - started, content))

    # the parent holds our stdin: gone with it
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    while True:
        threading.Thread(target=serve, args=(listener.accept(),), daemon=True).start()


class ApartSession:
    """What ``OffsetPass.fetch`` asks of a worker's session, sent through the child."""

    sent = 0  # requests sent past the kit's transport, all workers together (under ``lock``)
    lock = threading.Lock()

    def __init__(self, path: str) -> None:
        from multiprocessing.connection import Client

        self.conn = Client(path, family="AF_UNIX", authkey=b"bench")

    def merge_environment_settings(self, *args, **kwargs) -> dict:  # type: ignore[no-untyped-def]
        return {}

    def send(self, prepared, **kwargs):  # type: ignore[no-untyped-def]
        self.conn.send((prepared.method, prepared.url, dict(prepared.headers), prepared.body))
        with ApartSession.lock:
            ApartSession.sent += 1
        answer = self.conn.recv()
        if answer[0] == "error":  # the forked child's session raised (see serve_kit)
            raise RuntimeError(f"the child: {answer[1]}")
        status, headers, url, elapsed, content = answer
        response = requests.Response()
        response.status_code, response.headers, response.url = status, CaseInsensitiveDict(headers), url
        response._content, response.request, response.encoding = content, prepared, None
        response.elapsed = datetime.timedelta(seconds=elapsed)
        response.raise_for_status()
        return response


def serve_kit(new_session, conns) -> None:  # type: ignore[no-untyped-def]
    """The forked child: each connection's requests sent through a retrying session of the kit's own."""
    from analytics_kit.fetch import deadlines

    deadlines._WATCHDOG = deadlines._Watchdog()  # the parent's watchdog thread did not come along

    def serve(conn) -> None:  # type: ignore[no-untyped-def]
        session = new_session(sleep=time.sleep)
        for method, url, headers, body in asked(conn):
            prepared = requests.PreparedRequest()
            prepared.prepare(method=method, url=url, headers=headers, data=body)
            prepared.url = url  # as the parent prepared it
            try:
                answer = session.send(prepared)
                conn.send((answer.status_code, list(answer.headers.items()), answer.url,
                           answer.elapsed.total_seconds(), answer.content))
            except Exception as error:  # noqa: BLE001 - handed to the worker that asked
                conn.send(("error", repr(error)))

    threads = [threading.Thread(target=serve, args=(conn,), daemon=True) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os._exit(0)


class ForkedSession(ApartSession):
    """A worker's session whose requests the forked child sends."""

    def __init__(self, conn) -> None:  # type: ignore[no-untyped-def]
        self.conn = conn


# -- one loader in a fresh process --------------------------------------------------------------


def run_loader(loader: str, base_url: str, folder: str) -> None:
    import json
    import resource

    import duckdb

    import analytics_kit as ak
    from analytics_kit.fetch.offsets import OffsetPass

    child = None
    local = threading.local()
    if loader == "http-apart":
        child = subprocess.Popen([sys.executable, __file__, "--serve-http", folder],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"

        def worker_session(self):  # type: ignore[no-untyped-def]
            if not hasattr(local, "session"):
                local.session = ApartSession(f"{folder}/http.sock")
            return local.session

        OffsetPass._session = worker_session  # the workers' sessions only: the first page stays the kit's
    elif loader == "plain":

        def worker_session(self):  # type: ignore[no-untyped-def]
            if not hasattr(local, "session"):
                session = local.session = requests.Session()
                session.trust_env = False  # 127.0.0.1 only
                send = session.send

                def counted(prepared, **kwargs):  # type: ignore[no-untyped-def]
                    with ApartSession.lock:
                        ApartSession.sent += 1
                    response = send(prepared, **kwargs)
                    response.raise_for_status()
                    return response

                session.send = counted
            return local.session

        OffsetPass._session = worker_session
    elif loader == "kit-apart":
        import multiprocessing

        forked: dict = {}

        def worker_session(self):  # type: ignore[no-untyped-def]
            nonlocal child
            if not hasattr(local, "session"):
                with ApartSession.lock:
                    if not forked:
                        pairs = [multiprocessing.Pipe() for _ in range(16)]
                        child = multiprocessing.get_context("fork").Process(
                            target=serve_kit, args=(self.owner.new_session, [c for _, c in pairs]), daemon=True)
                        child.start()
                        forked["free"] = [p for p, _ in pairs]
                    local.session = ForkedSession(forked["free"].pop())
            return local.session

        OffsetPass._session = worker_session

    try:
        config = ak.guide_config(base_url, os.environ[KEY_ENV])
        api_pid = int(os.environ["KIT_HTTP_APART_API_PID"])
        used, api_before = resource.getrusage(resource.RUSAGE_SELF), process_cpu(api_pid)
        child_before = process_cpu(child.pid) if child is not None and loader != "kit-apart" else 0.0
        started = time.perf_counter()
        report = ak.load(config, "full_refresh", database=f"{folder}/analytics.duckdb", progress=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        if loader == "kit-apart" and child is not None:
            child_cpu = process_cpu(child.pid)  # forked inside the load: all of its CPU is the load's
        else:
            child_cpu = process_cpu(child.pid) - child_before if child else 0.0
        api_cpu = process_cpu(api_pid) - api_before
    finally:
        if child is not None:
            child.kill()
            child.join() if loader == "kit-apart" else child.wait()
    with duckdb.connect(f"{folder}/analytics.duckdb", read_only=True) as con:
        counted_rows = {table: list(con.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone())
                        for table in report.rows}
    print(json.dumps({"wall": wall, "cpu": after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime,
                      "child_cpu": child_cpu, "api_cpu": api_cpu, "rows": counted_rows,
                      "kit_requests": report.requests, "sent_for_it": ApartSession.sent,
                      "steps": {step: round(seconds, 3) for step, seconds in report.steps.items()}}))


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
        expected = {"events": [args.events] * 2, "customers": [50, 50]}
        env = dict(os.environ, **{KEY_ENV: api.api_key, "KIT_HTTP_APART_API_PID": str(api._proc.pid)})
        for round_ in range(1, args.rounds + 1):
            for name in LOADERS if round_ % 2 else LOADERS[::-1]:
                with tempfile.TemporaryDirectory() as folder:
                    done = subprocess.run([sys.executable, __file__, "--loader", name, api.base_url, folder],
                                          check=False, env=env, capture_output=True, text=True, cwd=ROOT)
                if done.returncode:
                    sys.stderr.write(done.stderr[-3000:])
                    return 1
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if result["rows"] != expected:
                    print(f"{name}: [rows, distinct ids] {result['rows']} where the API holds {expected}")
                    return 1
                if (name == "kit") != (result["sent_for_it"] == 0):
                    print(f"{name}: {result['sent_for_it']} requests were sent past the kit's transport")
                    return 1
                times[name].append(result["wall"])
                cpus[name].append(result["cpu"])
                print(f"  round {round_}: {name:<10} load {result['wall']:.3f} s {result['steps']}; CPU: its "
                      f"process {result['cpu']:.3f} s, child {result['child_cpu']:.3f} s, API {result['api_cpu']:.3f} "
                      f"s; requests: {result['kit_requests']} by the kit, {result['sent_for_it']} past it", flush=True)
    kit = statistics.median(times["kit"])
    for name in LOADERS:
        print(f"median of {args.rounds}: {name:<10} load {statistics.median(times[name]):.3f} s "
              f"(its process's CPU {statistics.median(cpus[name]):.3f} s); / kit "
              f"{statistics.median(times[name]) / kit:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
