"""Memory over a load, drawn: the kit stays flat as rows grow, a hand-written loop does not.

    .venv/bin/python bench/memory_profile.py                 # 100,000 and 1,000,000 events
    .venv/bin/python bench/memory_profile.py --events 100000 300000

For each size, a full-refresh ``analytics_kit.load`` and the hand-written loop of
``bench/load_speed.py`` run in child processes against the demo API (in its own process);
the parent samples each child's resident memory (VmRSS) every 50 ms. The kit's child prints
when dlt's extract, normalize and load steps start, and the chart shades them. Writes
``bench/memory_profile.png`` and prints each run's peak and its peak per step.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).with_name("memory_profile.png")
KEY_ENV = "BENCH_API_KEY"
STEPS = ("extract", "normalize", "load")

# The kit's child: announces dlt's steps on stdout, then loads.
KIT = """
import os, sys, time
import analytics_kit as ak
from dlt.pipeline.pipeline import Pipeline

def announced(name, step):
    def run(*args, **kwargs):
        print(f"STEP {{name}} {{time.time()}}", flush=True)
        return step(*args, **kwargs)
    return run

for name in {steps!r}:
    setattr(Pipeline, name, announced(name, getattr(Pipeline, name)))
print(f"STEP start {{time.time()}}", flush=True)
ak.load(ak.guide_config(sys.argv[1], os.environ[{key!r}]), "full_refresh", database="kit.duckdb", progress=False)
print(f"STEP end {{time.time()}}", flush=True)
""".format(steps=STEPS, key=KEY_ENV)

HAND = """
import sys, time
sys.path.insert(0, {bench!r})
from load_speed import run_hand_written
print(f"STEP start {{time.time()}}", flush=True)
run_hand_written(sys.argv[1], ".", "full_refresh", "")
print(f"STEP end {{time.time()}}", flush=True)
""".format(bench=str(Path(__file__).parent))


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def sample(code: str, base_url: str, folder: str) -> dict:
    """Runs ``code`` in a child, sampling its memory; returns samples and step times, from its start."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, base_url], cwd=folder, stdout=out,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        started, samples, steps = time.time(), [], {}
        while proc.poll() is None:
            mb = rss_mb(proc.pid)
            if mb is not None:
                samples.append((time.time() - started, mb))
            time.sleep(0.05)
        if proc.returncode != 0:
            sys.exit(f"the child failed with exit code {proc.returncode}")
        out.seek(0)
        pending = out.read()
    for line in pending.splitlines():
        if line.startswith("STEP "):
            _, name, when = line.split()
            steps[name] = float(when) - started
    return {"samples": samples, "steps": steps}


def peaks(run: dict) -> str:
    steps = run["steps"]
    order = [s for s in ("start", *STEPS, "end") if s in steps]
    parts = []
    for here, after in zip(order, order[1:]):
        inside = [mb for t, mb in run["samples"] if steps[here] <= t < steps[after]]
        if inside:
            parts.append(f"{'setup' if here == 'start' else here} {max(inside):.0f}")
    return ", ".join(parts)


def draw(runs: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({events for events, _ in runs})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4), sharey=True, squeeze=False)
    shades = {"extract": "#dbe9f6", "normalize": "#fde9c9", "load": "#e3f1dc"}
    for ax, events in zip(axes[0], sizes):
        kit, hand = runs[(events, "kit")], runs[(events, "hand")]
        steps = kit["steps"]
        bounds = [steps.get(s) for s in (*STEPS, "end")]
        for name, begin, end in zip(STEPS, bounds, bounds[1:]):
            if begin is not None and end is not None:
                ax.axvspan(begin, end, color=shades[name], label=f"kit: {name}")
        for label, run, color in (("analytics_kit.load", kit, "#1f5fa8"), ("hand-written loop", hand, "#c0392b")):
            t, mb = zip(*run["samples"])
            ax.plot(t, mb, color=color, label=f"{label} (peak {max(mb):.0f} MB)")
        ax.set_title(f"{events:,} events, full load")
        ax.set_xlabel("seconds since the process started")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    axes[0][0].set_ylabel("resident memory (MB)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=OUT, help=f"the chart (default: {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from analytics_kit import demo

    runs = {}
    for events in args.events:
        with tempfile.TemporaryDirectory(prefix="memory_profile_") as tmp, \
                demo.serve(events=events, customers=50, process=True) as api:
            os.environ[KEY_ENV] = api.api_key
            for kind, code in (("kit", KIT), ("hand", HAND)):
                folder = f"{tmp}/{kind}"
                os.makedirs(folder)
                run = runs[(events, kind)] = sample(code, api.base_url, folder)
                top = max(mb for _, mb in run["samples"])
                detail = f"; by step: {peaks(run)}" if kind == "kit" else ""
                print(f"{events:>9,} events  {kind:<4}  peak {top:5.0f} MB  "
                      f"{run['samples'][-1][0]:6.2f} s{detail}", flush=True)
    draw(runs, args.out)


if __name__ == "__main__":
    main()
