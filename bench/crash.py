"""Crash recovery, measured: SIGKILL a load at random points, rerun it, compare with the API.

    .venv/bin/python bench/crash.py                      # 30 kills, seed 1
    .venv/bin/python bench/crash.py --kills 60 --seed 7 --events 20000

The demo API runs in this process (thread mode). Every load runs in a child process
(``python -c`` calling ``analytics_kit.load(config, mode, progress=False)`` on a DuckDB file in
a temp folder, the key in ``API_KEY``). The child prints a marker with a timestamp right before
``load()`` (so its ~1 s of imports is outside the kill window) and when dlt's extract,
normalize and load steps start and end.

First two unkilled runs in a scratch folder measure each phase's duration, for a full load and
for an incremental one. Then each round:

1. sometimes ``api.advance()`` changes data (new, updated and soft-deleted records);
2. a load (mostly incremental, sometimes ``full_refresh``; the first one on an empty file) is
   killed with SIGKILL. Target phases rotate through setup (before extract: lock, state
   restore), extract, normalize, load, and "committed" (right after dlt's load step returned,
   i.e. after the package was committed). The kill lands a random delay after the target
   phase's start marker, uniform over that phase's measured duration, so kills spread over
   the whole run. Each kill is classified by the last marker the child printed before it died;
3. sometimes the API changes again while the load is "down";
4. the load is rerun, unkilled, exactly as a user would (incremental, no folder deleted);
5. both tables are compared with the API's current non-deleted records: lost ids, duplicated
   ids (count(*) vs count(DISTINCT id)), stale rows (updated_at differs), extra rows (ids the
   API no longer serves), and stuck (the rerun failed; its tables are then not compared).

Before those rounds, ``--create-kills`` first loads (default 2), each in an empty folder, are
killed the moment the DuckDB file appears on disk, while the kit is creating it.

The last line is ``N kills, L lost, D duplicated, S stuck``, L and D counted as distinct ids
over the whole run; the exit status is 1 if any count (stale and extra included) is not 0.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics_kit import demo  # noqa: E402

RESOURCES = ("events", "customers")
MARK = "@@"
# Target phases, in run order, and the marker each one starts at.
PHASES = ("setup", "extract", "normalize", "load", "committed")
# Extra target, on an empty folder only: while the kit creates the DuckDB file.
CREATE = "create"
PHASE_START = {"setup": "start", "extract": "extract", "normalize": "normalize", "load": "load",
               "committed": "load_end"}
PHASE_END = {"setup": "extract", "extract": "extract_end", "normalize": "normalize_end",
             "load": "load_end", "committed": "done"}
# Where a child was, by the last marker it printed.
PHASE_OF_MARKER = {"start": "setup", "extract": "extract", "extract_end": "normalize",
                   "normalize": "normalize", "normalize_end": "load", "load": "load",
                   "load_end": "committed", "done": "committed", "report": "committed"}
# A kill "just after the commit" lands within this many seconds of dlt's load step returning.
COMMITTED_WINDOW = 0.002
CHILD_TIMEOUT = 120.0

# The child: markers on stdout, flushed, with its own monotonic clock.
CHILD = r"""
import json, sys, time
def mark(name, extra=""):
    print(f"@@ {name} {time.perf_counter():.6f} {extra}".rstrip(), flush=True)
import analytics_kit as ak
from dlt.pipeline.pipeline import Pipeline
for step in ("extract", "normalize", "load"):
    def wrapped(self, *args, _orig=getattr(Pipeline, step), _step=step, **kwargs):
        mark(_step)
        result = _orig(self, *args, **kwargs)
        mark(_step + "_end")
        return result
    setattr(Pipeline, step, wrapped)
base_url, mode, database = sys.argv[1:4]
config = ak.guide_config(base_url)  # the key comes from API_KEY, as dlt secrets
mark("start")
report = ak.load(config, mode, database=database, progress=False)
mark("done")
mark("report", json.dumps({"rows": report.rows, "recovered": report.recovered_packages,
                           "load_id": report.load_id}))
"""


@dataclass
class ChildRun:
    returncode: int | None
    markers: dict[str, float]           # marker -> child clock, first occurrence
    last_marker: str | None
    killed: bool
    seconds: float                      # wall time of the whole child, imports included
    stderr: str
    report: dict | None = None
    kill_offset: float | None = None    # when the kill was sent, seconds after the start marker

    def phase_durations(self) -> dict[str, float]:
        m = self.markers
        return {p: m[PHASE_END[p]] - m[PHASE_START[p]] for p in PHASES
                if PHASE_START[p] in m and PHASE_END[p] in m}

    def since_start(self, marker: str) -> float | None:
        if marker in self.markers and "start" in self.markers:
            return self.markers[marker] - self.markers["start"]
        return None


def run_child(base_url: str, mode: str, database: Path, env: dict, *,
              kill_at: str | None = None, delay: float = 0.0, kill_on_file: bool = False) -> ChildRun:
    """One load in a child; with ``kill_at``, SIGKILL it ``delay`` s after that marker.

    With ``kill_on_file`` the kill comes as soon as ``database`` appears on disk (after the
    ``kill_at`` marker): the moment the kit is creating the DuckDB file.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, base_url, mode, str(database)],
                                cwd=database.parent, env=env, stdout=subprocess.PIPE, stderr=err,
                                text=True, bufsize=1)
        lines: queue.Queue[str | None] = queue.Queue()

        def drain() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        markers: dict[str, float] = {}
        order: list[str] = []
        report = None
        start_seen = None
        kill_offset = None

        def take(line: str) -> None:
            nonlocal report
            parts = line.split(maxsplit=3)
            if len(parts) >= 3 and parts[0] == MARK:
                markers.setdefault(parts[1], float(parts[2]))
                order.append(parts[1])
                if parts[1] == "report" and len(parts) == 4:
                    report = json.loads(parts[3])

        deadline = time.monotonic() + CHILD_TIMEOUT
        finished = False
        while not finished:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                proc.kill()
                break
            if line is None:
                finished = True
                break
            take(line)
            if start_seen is None and "start" in markers:
                start_seen = time.perf_counter()
            if kill_at is not None and order and order[-1] == kill_at:
                if delay > 0:
                    time.sleep(delay)
                while kill_on_file and not database.exists() and proc.poll() is None:
                    pass  # busy-wait: the file is created and written within milliseconds
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    kill_offset = time.perf_counter() - (start_seen or started)
                break
        proc.wait(timeout=CHILD_TIMEOUT)
        reader.join(10)
        while True:  # what the child printed before it died
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                take(line)
        killed = proc.returncode == -signal.SIGKILL and kill_offset is not None
        err.seek(0)
        return ChildRun(proc.returncode, markers, order[-1] if order else None, killed,
                        time.perf_counter() - started, err.read(), report, kill_offset)


@dataclass
class Diff:
    """Ids (``(resource, id)``) that differ from the API, after one rerun or over all of them."""

    lost: set = field(default_factory=set)
    duplicated: set = field(default_factory=set)
    stale: set = field(default_factory=set)
    extra: set = field(default_factory=set)
    rows: dict[str, str] = field(default_factory=dict)

    KINDS = ("lost", "duplicated", "stale", "extra")

    def add(self, other: "Diff") -> None:
        for kind in self.KINDS:
            getattr(self, kind).update(getattr(other, kind))

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in self.KINDS}


def compare(api: demo.DemoAPI, database: Path) -> Diff:
    """The tables against the API's current non-deleted records."""
    diff = Diff()
    try:
        con = duckdb.connect(str(database), read_only=True)
    except duckdb.Error as error:  # no file, or a broken one: everything is lost
        for resource in RESOURCES:
            served = api.records(resource, include_deleted=False)
            diff.lost.update((resource, r["id"]) for r in served)
            diff.rows[resource] = f"0/{len(served)} ({str(error).splitlines()[0][:80]})"
        return diff
    with con:
        present = {name for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        for resource in RESOURCES:
            served = {r["id"]: r["updated_at"] for r in api.records(resource, include_deleted=False)}
            rows: list[tuple] = []
            if resource in present:
                rows = con.execute(
                    f"SELECT id, strftime(updated_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') "
                    f"FROM main.{resource}").fetchall()
            table = dict(rows)
            seen: set = set()
            diff.duplicated.update((resource, i) for i, _ in rows if i in seen or seen.add(i))
            diff.lost.update((resource, i) for i in served.keys() - table.keys())
            diff.extra.update((resource, i) for i in table.keys() - served.keys())
            diff.stale.update((resource, i) for i in served.keys() & table.keys() if served[i] != table[i])
            diff.rows[resource] = f"{len(rows)}/{len(served)}"
    return diff


@dataclass
class Result:
    kills: int = 0
    missed: int = 0                      # children that finished before the kill landed
    stuck: int = 0
    failed_before_kill: int = 0          # a load that failed by itself (counted as stuck too)
    diff: Diff = field(default_factory=Diff)
    targets: Counter = field(default_factory=Counter)
    phases: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    recovered_packages: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (any(self.diff.counts().values()) or self.stuck)

    def summary(self) -> str:
        n = self.diff.counts()
        return f"{self.kills} kills, {n['lost']} lost, {n['duplicated']} duplicated, {self.stuck} stuck"


def measure(api: demo.DemoAPI, env: dict, folder: Path, out) -> dict[str, dict[str, float]]:
    """Phase durations of an unkilled full load and an unkilled incremental one."""
    database = folder / "baseline" / "analytics.duckdb"
    database.parent.mkdir()
    timings = {}
    for kind, mode in (("full", "incremental"), ("incremental", "incremental")):
        if kind == "incremental":
            api.advance(new=40, updated=30, deleted=5)
        run = run_child(api.base_url, mode, database, env)
        if run.returncode != 0:
            raise SystemExit(f"baseline {kind} load failed:\n{run.stderr[-3000:]}")
        timings[kind] = run.phase_durations()
        total = run.since_start("done") or 0.0
        spans = "  ".join(f"{p} {run.since_start(PHASE_START[p]):.3f}+{d:.3f}s"
                          for p, d in timings[kind].items())
        print(f"baseline {kind:11} load {total:.2f}s (child {run.seconds:.2f}s incl. start-up): {spans}",
              file=out)
    return timings


def crash(kills: int = 30, seed: int = 1, events: int = 10_000, customers: int = 200,
          create_kills: int = 2, full_refresh_share: float = 0.25, out=sys.stdout,
          folder: Path | None = None) -> Result:
    """Kill ``kills`` loads and check every rerun; see the module docstring.

    ``create_kills`` of them hit a first load while it creates the DuckDB file, each in an
    empty folder of its own; the rest run in one folder, one after another.
    """
    rng = random.Random(seed)
    result = Result()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ak-crash-", dir=folder) as tmp, \
            demo.serve(events=events, customers=customers, seed=seed) as api:
        tmp_path = Path(tmp)
        env = dict(os.environ, API_KEY=api.api_key, PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        env.pop("ANALYTICS_API_BASE_URL", None)
        timings = measure(api, env, tmp_path, out)

        def one_round(database: Path, mode: str, target: str, delay: float, fresh: bool) -> bool:
            """Kill, maybe change data, rerun, compare; False if the kill did not land."""
            killed = run_child(api.base_url, mode, database, env, delay=delay,
                               kill_at=PHASE_START.get(target, "start"), kill_on_file=target == CREATE)
            if not killed.killed:
                if killed.returncode == 0:
                    result.missed += 1  # finished first: no kill, the caller tries again
                    return False
                result.failed_before_kill += 1
                result.stuck += 1
                result.problems.append(f"{mode} load failed before the kill (exit {killed.returncode}): "
                                       f"{killed.stderr.strip()[-1500:]}")
            else:
                result.kills += 1
            phase = CREATE if target == CREATE and killed.killed else \
                PHASE_OF_MARKER.get(killed.last_marker or "", "start-up")
            result.targets[target] += 1
            result.phases[phase] += 1
            result.modes[mode] += 1
            at_text = f"{killed.kill_offset:.3f}s" if killed.kill_offset is not None else "?"
            left = ""
            if target == CREATE:
                left = f", left a {database.stat().st_size} byte file" if database.exists() else ", left no file"
            if not fresh and rng.random() < 0.3:  # the API changes while the load is down
                api.advance(new=rng.randint(1, 20), updated=rng.randint(0, 20), deleted=rng.randint(0, 4))
            rerun = run_child(api.base_url, "incremental", database, env)
            status = "rerun ok"
            if rerun.returncode != 0:
                result.stuck += 1
                last = (rerun.stderr.strip().splitlines() or ["?"])[-1]
                status = f"RERUN FAILED (exit {rerun.returncode}: {last[:160]})"
                result.problems.append(f"kill {result.kills} ({phase}, {mode}): rerun failed: "
                                       f"{rerun.stderr.strip()[-1500:]}")
                print(f"kill {result.kills:3}/{kills} {mode:12} target {target:9} died in {phase:9} "
                      f"at ~{at_text:>7} (marker {killed.last_marker}{left})  {status}; tables not compared",
                      file=out, flush=True)
                return True
            recovered = (rerun.report or {}).get("recovered", 0)
            result.recovered_packages += recovered
            if recovered:
                status += f", dropped {recovered} package(s)"
            diff = compare(api, database)
            result.diff.add(diff)
            bad = [f"{n} {k}" for k, n in diff.counts().items() if n]
            if bad:
                result.problems.append(f"kill {result.kills} ({phase}, {mode}): {', '.join(bad)}")
            rows = " ".join(f"{r} {n}" for r, n in diff.rows.items())
            print(f"kill {result.kills:3}/{kills} {mode:12} target {target:9} died in {phase:9} "
                  f"at ~{at_text:>7} (marker {killed.last_marker}, +{delay * 1000:.0f} ms{left})  "
                  f"{status}; {rows}{'  ' + ', '.join(bad).upper() if bad else ''}", file=out, flush=True)
            return True

        for i in range(min(create_kills, kills)):
            database = tmp_path / f"create-{i}" / "analytics.duckdb"
            database.parent.mkdir()
            for _ in range(3):  # retried in a new folder should the load be too quick to catch
                if one_round(database, "incremental", CREATE, 0.0, fresh=True):
                    break
                database = database.parent.with_name(database.parent.name + "x") / database.name
                database.parent.mkdir()

        database = tmp_path / "run" / "analytics.duckdb"
        database.parent.mkdir()
        loaded_once = False
        attempts = 0
        while result.kills < kills and attempts < kills * 3:
            attempts += 1
            if loaded_once and rng.random() < 0.6:
                api.advance(new=rng.randint(5, 60), updated=rng.randint(0, 40), deleted=rng.randint(0, 8))
            mode = "full_refresh" if loaded_once and rng.random() < full_refresh_share else "incremental"
            kind = "full" if mode == "full_refresh" or not loaded_once else "incremental"
            target = PHASES[(result.kills - create_kills) % len(PHASES)]
            span = COMMITTED_WINDOW if target == "committed" else timings[kind].get(target, 0.05)
            one_round(database, mode, target, rng.uniform(0, span), fresh=not loaded_once)
            loaded_once = True
        if result.kills < kills:
            result.problems.append(f"only {result.kills} kills landed in {attempts} attempts")
    result.seconds = time.perf_counter() - began
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=10_000,
                        help="demo API events; 10,000 make a full load take ~1-2 s")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--create-kills", type=int, default=2,
                        help="how many of the kills hit a first load while it creates the DuckDB file")
    args = parser.parse_args(argv)
    result = crash(args.kills, args.seed, args.events, args.customers, args.create_kills)
    print("\nphases hit: " + ", ".join(f"{p} {result.phases[p]}" for p in (CREATE,) + PHASES + ("start-up",)
                                        if result.phases[p]), flush=True)
    print("modes: " + ", ".join(f"{m} {n}" for m, n in sorted(result.modes.items()))
          + f"; kills that missed (load finished first, retried): {result.missed}"
          + f"; unfinished packages dropped by reruns: {result.recovered_packages}")
    n = result.diff.counts()
    print(f"distinct ids: lost {n['lost']}, duplicated {n['duplicated']}, stale {n['stale']}, "
          f"extra {n['extra']}; {result.seconds:.0f} s")
    for problem in result.problems:
        print("PROBLEM:", problem)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
