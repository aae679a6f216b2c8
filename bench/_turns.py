"""Variants of one measurement, each run in a fresh process, the order alternating by round."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Callable


def in_turns(script: str, flag: str, variants: tuple[str, ...], rounds: int, base_url: str, env: dict,
             shown: Callable[[int, str, dict], None] | None = None) -> dict[str, list[dict]]:
    """{variant: results}: ``script flag VARIANT URL`` prints its result as a JSON line last."""
    results: dict[str, list[dict]] = {variant: [] for variant in variants}
    for round_ in range(rounds):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            done = subprocess.run([sys.executable, script, flag, variant, base_url], env=env,
                                  capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results[variant].append(result)
            if shown is not None:
                shown(round_, variant, result)
    return results
