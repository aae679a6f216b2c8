"""This tree's loaders against another commit's, taking turns against one demo API.

    .venv/bin/python bench/against.py --ref f53bd92                          # 100,000 events, 8 pairs
    .venv/bin/python bench/against.py --ref f53bd92 --events 1000000 --pairs 3 --loaders kit,command

The other commit is exported with ``git archive`` into a temporary folder, with this tree's
``bench/load_speed.py`` beside it, and each loader runs as that script's own child process (see
there: a fresh process, load time after the imports). Pairs alternate which code goes first, and
the floor (fetch and parse, one page after another) runs once per pair. On a machine whose speed
drifts, the pairs' medians compare the two codes where single runs cannot.

    .venv/bin/python bench/against.py --ref 7a03577 --incremental --pairs 20

``--incremental`` compares the everyday run instead: each tree's ``analytics-kit load`` loads the API
in full once, the API then changes 1% of its events, and each pair runs each tree's incremental load
from a copy of its folder, timed from launch to exit (a fresh process, imports included, as
``bench/peers.py`` times it). Both trees keep their bytecode and regex cache from the full load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export(ref: str, into: Path) -> Path:
    """The tree of ``ref`` in ``into``, with this tree's load_speed.py as its bench."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    into.mkdir()
    with tempfile.TemporaryFile() as tar:
        tar.write(archive)
        tar.seek(0)
        extract = tarfile.open(fileobj=tar).extractall
        # the "data" filter (Python 3.11.4 and later) refuses links and paths out of ``into``
        extract(into, filter="data") if hasattr(tarfile, "data_filter") else extract(into)
    (into / "bench").mkdir(exist_ok=True)
    (into / "bench" / "load_speed.py").write_text((ROOT / "bench" / "load_speed.py").read_text())
    return into


def run(root: Path, kind: str, base_url: str, folder: str, key: str, mode: str = "full_refresh",
        bytecode: bool = False) -> dict:
    """One load in a fresh process: load_speed.py's RESULT, and ``wall`` from launch to exit."""
    sys.path.insert(0, str(ROOT / "bench"))
    from load_speed import floor_rule

    concurrency = floor_rule(None) if kind.startswith("floor") else ""
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_API_KEY": key}
    if bytecode:  # as on a machine that does not set it (this sandbox does): both trees' caches are written
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    launched = time.perf_counter()
    out = subprocess.run([sys.executable, str(root / "bench" / "load_speed.py"), "--child", kind, base_url, folder,
                          mode, concurrency, ""], capture_output=True, text=True, cwd=folder, env=env)
    wall = time.perf_counter() - launched
    line = next((line for line in out.stdout.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{kind} in {root} failed:\n{out.stderr[-3000:]}")
    return {**json.loads(line[7:]), "wall": wall}


def incremental(trees: dict[str, Path], api, events: int, pairs: int, tmp: str) -> None:
    """Each tree's incremental ``analytics-kit load``, in turns, from a copy of its folder after its full load."""
    bases = {}
    for name, root in trees.items():
        bases[name] = tempfile.mkdtemp(dir=tmp)
        run(root, "command", api.base_url, bases[name], api.api_key, bytecode=True)
    changed = events // 100
    api.advance(new=0, updated=changed, deleted=0, seconds=3600)
    walls: dict[str, list[float]] = {name: [] for name in trees}
    print(f"{events:,} events, {changed:,} changed, {pairs} pairs; each tree's incremental analytics-kit load, "
          "seconds from launch to exit")
    for number in range(pairs):
        shown = []
        for name, root in list(trees.items()) if number % 2 == 0 else list(reversed(trees.items())):
            folder = tempfile.mkdtemp(dir=tmp)
            shutil.copytree(bases[name], folder, dirs_exist_ok=True)
            result = run(root, "command", api.base_url, folder, api.api_key, mode="incremental", bytecode=True)
            if result["rows"] != changed:
                sys.exit(f"{name}'s incremental load loaded {result['rows']} rows; {changed} changed")
            walls[name].append(result["wall"])
            shown.append(f"{name} {result['wall']:.3f} s")
        print(f"  pair {number + 1}: " + ", ".join(shown))
    for name, values in walls.items():
        print(f"  median {name:<12} {statistics.median(values):8.3f} s   (fastest {min(values):.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the commit to compare with (anything git archive takes)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--loaders", default="kit", help="kit, command or both (comma-separated)")
    parser.add_argument("--incremental", action="store_true",
                        help="compare the incremental analytics-kit load from the shell (1%% changed) instead")
    args = parser.parse_args()
    loaders = [name.strip() for name in args.loaders.split(",") if name.strip()]
    if not loaders or set(loaders) - {"kit", "command"}:
        parser.error("--loaders takes kit, command or kit,command")
    sys.path.insert(0, str(ROOT))
    from analytics_kit import demo

    with tempfile.TemporaryDirectory(prefix="against_") as tmp, \
            demo.serve(events=args.events, customers=50, process=True) as api:
        trees = {"this": ROOT, args.ref: export(args.ref, Path(tmp) / "ref")}
        if args.incremental:
            incremental(trees, api, args.events, args.pairs, tmp)
            return
        took: dict[tuple[str, str], list[float]] = {(t, k): [] for t in trees for k in loaders}
        floor: list[float] = []
        print(f"{args.events:,} events, {args.pairs} pairs; load seconds after the imports")
        for number in range(args.pairs):
            order = list(trees.items()) if number % 2 == 0 else list(reversed(trees.items()))
            shown = []
            for kind in loaders:
                for name, root in order:
                    folder = tempfile.mkdtemp(dir=tmp)
                    took[(name, kind)].append(run(root, kind, api.base_url, folder, api.api_key)["load_seconds"])
                    shown.append(f"{name} {kind} {took[(name, kind)][-1]:.2f} s")
            floor.append(run(ROOT, "floor-seq", api.base_url, tempfile.mkdtemp(dir=tmp), api.api_key)["load_seconds"])
            print(f"  pair {number + 1}: " + ", ".join(shown) + f", floor {floor[-1]:.2f} s")
        middle = statistics.median(floor)
        for (name, kind), values in took.items():
            print(f"  median {name:<12} {kind:<8} {statistics.median(values):8.3f} s   "
                  f"/ floor {statistics.median(values) / middle:.3f}")
        print(f"  median floor, one page after another {middle:.3f} s")


if __name__ == "__main__":
    main()
