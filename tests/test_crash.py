"""Crash recovery: a small run of bench/crash.py (SIGKILL a load, rerun, compare with the API)."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "crash.py"


def _crash_module():
    spec = importlib.util.spec_from_file_location("bench_crash", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_killed_loads_recover_with_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    crash = _crash_module()
    out = io.StringIO()
    # One kill while the DuckDB file is being created, then one per target phase (setup,
    # extract, normalize, load, just after the commit); a small API keeps it fast. The full
    # 30-kill run is `python bench/crash.py`.
    result = crash.crash(kills=6, seed=3, events=3000, customers=50, create_kills=1, out=out, folder=tmp_path)
    log = out.getvalue() + "\n" + "\n".join(result.problems)
    assert result.kills == 6, log
    assert result.diff.counts() == {"lost": 0, "duplicated": 0, "stale": 0, "extra": 0}, log
    assert result.stuck == 0, log
    # Kills are classified by where they landed; most must land where they were aimed.
    assert len({"extract", "normalize", "load", "committed"} & set(result.phases)) >= 3, log
