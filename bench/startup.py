"""The `analytics-kit load` command's start-up, with and without each of its cuts, in fresh processes.

    .venv/bin/python bench/startup.py [--rounds 8]

Each round runs, in turns, a fresh process that starts as `analytics-kit load` does
(``analytics_kit_command.start``), then imports dlt and the load's modules (``run/lean.py``), and
prints how long that took: with everything, without the regex cache (``ANALYTICS_KIT_REGEX_CACHE=0``),
and with numpy allowed. The regex cache is written to a file of this run's own first (one
recording run), so the rounds read it warm. Medians are quoted; this machine's speed drifts, so
read the differences within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import os, sys, time
started = time.perf_counter()
import analytics_kit_command
argv = ["load"] if os.environ["BENCH_NUMPY"] == "refused" else ["query"]
analytics_kit_command.start(argv)
from analytics_kit.run import lean
lean.skip_pandas_probe()
lean.import_load()
print(time.perf_counter() - started)
analytics_kit_command.save_regex_cache()
"""
VARIANTS = {
    "as the command starts": {"BENCH_NUMPY": "refused"},
    "without the regex cache": {"BENCH_NUMPY": "refused", "ANALYTICS_KIT_REGEX_CACHE": "0"},
    "with numpy": {"BENCH_NUMPY": "allowed"},
}


def run(env: dict[str, str]) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    return float(result.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = {**os.environ, "ANALYTICS_KIT_REGEX_CACHE": str(Path(folder) / "regex")}
        base.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a machine that does not set it
        first = run({**base, "BENCH_NUMPY": "refused"})
        print(f"recording run (empty regex cache): {first:.3f} s")
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.rounds):
            for name, extra in VARIANTS.items():
                times[name].append(run({**base, **extra}))
    for name, values in times.items():
        print(f"{name:<26} median {statistics.median(values):.3f} s  ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
