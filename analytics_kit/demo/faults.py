"""Scriptable faults for the demo API, so tests can say exactly which request fails and how.

A fault matches requests by path (None = any API path) and offset (None = any). It skips the
first ``skip`` matching requests and then fires on the next ``times`` (None = forever), or, with
``rate=p``, on each matching request after ``skip`` with probability p from an RNG seeded by the
server seed and the fault's injection number (reproducible; ``times`` is then ignored).

"latency", "callback" and "transform" modify a normal response and combine with others; of the
terminal kinds (status, reset, short_body, truncated_json, html, echo_401) the first firing fault
in injection order wins.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any, Callable

TERMINAL = ("status", "reset", "short_body", "truncated_json", "html", "echo_401")
MODIFIERS = ("latency", "transform", "callback")
KINDS = TERMINAL + MODIFIERS
FN_KINDS = ("transform", "callback")


def normalize_path(path: str | None) -> str | None:
    """'events' is shorthand for '/v1/events'."""
    if path is None:
        return None
    if not isinstance(path, str) or not path:
        raise ValueError("path must be a non-empty string such as '/v1/events' or None")
    return path if path.startswith("/") else "/v1/" + path


@dataclass
class Fault:
    kind: str
    path: str | None = None
    times: int | None = 1
    skip: int = 0
    offset: int | None = None
    status: int = 503
    retry_after: int | str | None = None
    rate: float | None = None
    seconds: float | None = None
    fn: Callable[..., Any] | None = None
    rng: random.Random | None = None
    seen: int = 0
    fired: int = 0

    def fires(self, path: str, offset: int | None) -> bool:
        if self.path is not None and self.path != path:
            return False
        if self.offset is not None and self.offset != offset:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.rate is not None:
            hit = self.rng.random() < self.rate
        else:
            hit = self.times is None or self.fired < self.times
        if hit:
            self.fired += 1
        return hit


def _check_int(name: str, v: Any, lo: int, hi: int | None = None, none_ok: bool = False) -> None:
    if v is None and none_ok:
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {bound}" + (" or None" if none_ok else ""))


def make_fault(kind: str, *, path: str | None = None, times: int | None = 1, skip: int = 0,
               offset: int | None = None, status: int = 503, retry_after: int | str | None = None,
               rate: float | None = None, seconds: float | None = None,
               fn: Callable[..., Any] | None = None) -> Fault:
    """Validate inject() arguments into a Fault (errors are ValueError with a plain message)."""
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(KINDS)}")
    _check_int("times", times, 0, none_ok=True)
    _check_int("skip", skip, 0)
    _check_int("offset", offset, 0, none_ok=True)
    _check_int("status", status, 100, 599)
    if retry_after is not None and not isinstance(retry_after, str):
        _check_int("retry_after", retry_after, 0)
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                             or not 0 <= rate <= 1):
        raise ValueError("rate must be a probability between 0 and 1 or None")
    if kind == "latency":
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError("a latency fault needs seconds >= 0")
    if kind in FN_KINDS and not callable(fn):
        raise ValueError(f"a {kind} fault needs fn=callable")
    return Fault(kind, normalize_path(path), times, skip, offset, status, retry_after, rate, seconds, fn)


class FaultPlan:
    """The injected faults of one server; thread-safe."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.injected = 0  # never reset, so RNG streams stay distinct after clear()
        self.faults: list[Fault] = []
        self.lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self.lock:
            self.injected += 1
            fault.rng = random.Random(f"{self.seed}:fault:{self.injected}")
            self.faults.append(fault)

    def clear(self) -> None:
        with self.lock:
            self.faults = []

    def pick(self, path: str, offset: int | None) -> tuple[list[Fault], Fault | None]:
        """The modifier faults and the (at most one) terminal fault for this request."""
        if not self.faults:
            return [], None
        mods: list[Fault] = []
        terminal = None
        with self.lock:
            for f in self.faults:
                if f.kind in TERMINAL and terminal is not None:
                    continue
                if f.fires(path, offset):
                    if f.kind in TERMINAL:
                        terminal = f
                    else:
                        mods.append(f)
            # forget spent faults so long runs don't rescan them
            self.faults = [f for f in self.faults
                           if f.rate is not None or f.times is None or f.fired < f.times]
        return mods, terminal
