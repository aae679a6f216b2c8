"""The benchmarks anyone can run still run: small sizes of bench/load_speed.py and bench/memory_profile.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow
def test_load_speed_runs_every_loader_and_prints_the_ratios() -> None:
    out = _run("load_speed.py", "--events", "2000", "--dlt-default", "yes")
    rows = re.findall(r"^\s+(\d\.|   ) ?(.+?)\s+([\d.]+) s .*?([\d,]+) rows", out, re.M)
    assert len(rows) == 5, out
    # all loaders loaded every record; the incremental runs the 1% changed
    assert [r[3] for r in rows] == ["2,050", "2,050", "2,050", "20", "20"], out
    # the command as the shell runs it, with its own peak memory
    assert re.search(r"^  1b\. analytics-kit load --full-refresh\s+[\d.]+ s\s+\d+ MB\s+2,050 rows", out, re.M), out
    warm, fresh = re.search(r"incremental requests to /v1/events: (\d+) warm, (\d+) fresh \(target <= 2\)", out).groups()
    assert int(warm) <= 2 and int(fresh) <= 2, out
    for line in ("kit / dlt-default", "kit / hand-written", "incremental time, warm:", "incremental time, fresh:"):
        assert line in out, out
    # where the kit's load spent its time, and what overlapping the steps could save at most
    assert re.search(r"steps: [\d.]+ s: setup [\d.]+, extract [\d.]+.*, normalize [\d.]+, load [\d.]+\n", out), out
    after, wait, bound = map(float, re.search(
        r"overlap: normalize \+ load ([\d.]+) s ran after extract; extract waited ([\d.]+) s for pages; "
        r"overlapping them could save at most ([\d.]+) s", out).groups())
    assert bound == min(after, wait), out


@pytest.mark.slow
def test_memory_profile_draws_both_loaders(tmp_path: Path) -> None:
    chart = tmp_path / "memory.png"
    out = _run("memory_profile.py", "--events", "2000", "--out", str(chart))
    peaks = dict(re.findall(r"2,000 events\s+(kit|hand)\s+peak\s+(\d+) MB", out))
    assert set(peaks) == {"kit", "hand"}, out
    assert "by step: setup" in out and "load" in out, out
    assert chart.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_load_speed_rounds_take_turns_and_quote_the_median_of_each_rounds_ratio() -> None:
    out = _run("load_speed.py", "--events", "2000", "--rounds", "3")
    rounds = re.findall(r"^  round (\d): ak\.load, load only ([\d.]+) s \(([\d.]+) s wall\), analytics-kit load [\d.]+ s "
                        r"\(([\d.]+) s wall\), floor one page after another ([\d.]+) s \(([\d.]+) s wall\), "
                        r"floor in the kit's workers ([\d.]+) s .*; ak\.load's CPU in its load ([\d.]+) s, "
                        r"the API's ([\d.]+) s \(for the sequential floor [\d.]+ s\)$", out, re.M)
    assert [r[0] for r in rounds] == ["1", "2", "3"], out
    kit_seq = sorted(float(r[1]) / float(r[4]) for r in rounds)
    command_seq = sorted(float(r[3]) / float(r[5]) for r in rounds)
    cpu_seq = sorted(float(r[7]) / float(r[4]) for r in rounds)
    # the least the kit's and the API's CPU allow, spread over the machine's cores
    least_seq = sorted((float(r[7]) + float(r[8])) / os.cpu_count() / float(r[4]) for r in rounds)
    medians = dict(re.findall(r"^  median of 3: (\S+ / \S+), [A-Za-z /]+?\s+([\d.]+)", out, re.M))
    assert set(medians) == {"kit / floor-seq", "kit / floor-threads", "command / floor-seq", "command / floor-threads",
                            "kit-cpu / floor-seq", "kit-least / floor-seq"}, out
    assert abs(float(medians["kit-least / floor-seq"]) - least_seq[1]) <= 0.03 * least_seq[1], out
    # each round's ratio from its own figures (printed to the millisecond), the median of the three
    assert abs(float(medians["kit / floor-seq"]) - kit_seq[1]) <= 0.03 * kit_seq[1], out
    assert abs(float(medians["command / floor-seq"]) - command_seq[1]) <= 0.03 * command_seq[1], out
    assert abs(float(medians["kit-cpu / floor-seq"]) - cpu_seq[1]) <= 0.03 * cpu_seq[1], out


@pytest.mark.slow
def test_load_speed_rounds_take_the_hand_written_loop_in_turns_when_asked_by_name() -> None:
    out = _run("load_speed.py", "--events", "2000", "--rounds", "3", "--only", "kit,hand,floor")
    rounds = re.findall(r"^  round \d: ak\.load, load only ([\d.]+) s .*, hand-written ([\d.]+) s \([\d.]+ s wall\);", out,
                        re.M)
    assert len(rounds) == 3, out
    ratios = sorted(float(kit) / float(hand) for kit, hand in rounds)
    median = re.search(r"^  median of 3: kit / hand, load only\s+([\d.]+)\s+\(rounds: .*target <= 0\.9", out, re.M)
    assert median and abs(float(median.group(1)) - ratios[1]) <= 0.03 * ratios[1], out


@pytest.mark.slow
def test_against_runs_this_tree_and_another_commit_in_turns() -> None:
    out = _run("against.py", "--ref", "HEAD", "--events", "2000", "--pairs", "2", "--loaders", "kit")
    pairs = re.findall(r"^  pair (\d): (this|HEAD) kit ([\d.]+) s, (this|HEAD) kit ([\d.]+) s, floor ([\d.]+) s$", out, re.M)
    assert [(p[0], p[1], p[3]) for p in pairs] == [("1", "this", "HEAD"), ("2", "HEAD", "this")], out
    this = sorted(float(p[2] if p[1] == "this" else p[4]) for p in pairs)
    median = float(re.search(r"^  median this\s+kit\s+([\d.]+) s", out, re.M).group(1))
    assert abs(median - sum(this) / 2) < 0.01, out
    assert re.search(r"^  median HEAD\s+kit\s+[\d.]+ s   / floor [\d.]+$", out, re.M), out


def test_against_takes_the_incremental_run_in_turns() -> None:
    out = _run("against.py", "--ref", "HEAD", "--incremental", "--events", "2000", "--pairs", "2")
    assert out.startswith("2,000 events, 20 changed, 2 pairs"), out
    pairs = re.findall(r"^  pair (\d): (this|HEAD) ([\d.]+) s, (this|HEAD) ([\d.]+) s$", out, re.M)
    assert [(p[0], p[1], p[3]) for p in pairs] == [("1", "this", "HEAD"), ("2", "HEAD", "this")], out
    this = [float(p[2] if p[1] == "this" else p[4]) for p in pairs]
    median = float(re.search(r"^  median this\s+([\d.]+) s   \(fastest ([\d.]+) s\)$", out, re.M).group(1))
    assert abs(median - sum(this) / 2) < 0.01, out  # each run loaded the 20 changed rows, or the script exits 1


def test_startup_takes_each_variant_in_turns() -> None:
    lines = _run("startup.py", "--rounds", "1").splitlines()
    assert lines[0].startswith("recording run (empty regex cache): ")
    for name in ("as the command starts", "without the regex cache", "with numpy"):
        assert any(line.startswith(name) and " median " in line for line in lines), lines


def test_split_process_runs_each_variant_on_every_record() -> None:
    out = _run("split_process.py", "--events", "2000", "--rounds", "1")
    seen = re.findall(r"^  round 1: (\S+)\s+[\d.]+ s wall, main process CPU\s+[\d.]+ s, ([\d,]+) records$", out, re.M)
    assert sorted(seen) == [("floor", "2,050"), ("http-apart", "2,050"), ("one", "2,050")], out
    assert re.search(r"^http-apart / one: [\d.]+$", out, re.M), out


@pytest.mark.slow
def test_overlap_times_a_full_refresh_and_the_swaps_three_ways() -> None:
    out = _run("overlap.py", "--events", "2000", "--loads", "1")
    steps = dict(re.findall(r"^   (\S[\w ()]*?)\s+([\d.]+)$", out, re.M))
    for step in ("total", "first request", "fetching", "after the last page", "normalize", "load step"):
        assert step in steps, out
    assert float(steps["first request"]) + float(steps["fetching"]) + float(steps["after the last page"]) == \
        pytest.approx(float(steps["total"]), abs=0.01), out
    assert re.search(r"^     swap statement\s+[\d.]+$", out, re.M) and re.search(r"^     COMMIT\s+[\d.]+$", out, re.M)
    ways = re.findall(r"^   (parquet \(the kit's swap\)|side file \(its swap\)|rename \(its swap; .*?\))\s+([\d.]+)$",
                      out, re.M)
    assert len(ways) == 3, out
    assert "an overlap could move at most normalize and the load step into the fetch" in out
