"""The overlay behind each demo resource: originals on demand, changes in memory.

Record ``i`` is a pure function of ``(seed, i)`` (a million events as dicts would need about a
gigabyte); only records changed by ``advance()`` are stored. Originals have non-decreasing
``updated_at`` below the initial clock and every change gets one at or after the clock, so the
served ``(updated_at, id)`` sequence is: unchanged originals in id order, then the changed records
sorted. Offsets are index arithmetic over the originals minus their "holes", and
``updated_since`` is a binary search whose result is always a suffix of the sequence.
"""

from __future__ import annotations

import bisect
import json
import random
import time
from typing import Any

EPOCH = 1767225600  # 2026-01-01T00:00:00Z
EVENT_SPAN = 90 * 86400  # initial events spread over ~90 days from EPOCH
CUSTOMER_SPAN = 365 * 86400  # initial customers sign up during the year before EPOCH
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread deterministic hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


_DAYS: dict[int, str] = {}
_HHMM = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SS = [f"{s:02d}Z" for s in range(60)]


def fmt_ts(ts: int) -> str:
    """Epoch seconds to '2026-01-03T10:15:07Z' (strftime per record was a hot spot)."""
    day, sec = divmod(ts, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    minute, sec = divmod(sec, 60)
    return prefix + _HHMM[minute] + _SS[sec]


class Table:
    """One resource: originals on demand plus an overlay of changed records."""

    span_start = EPOCH
    span = EVENT_SPAN

    def __init__(self, n: int, seed: int, tag: int) -> None:
        if n < 0:
            raise ValueError("sizes must be >= 0")
        self.n = n
        self.salt = _mix(seed * 7919 + tag)
        self.next_idx = n + 1
        self.changed: dict[int, dict] = {}  # idx -> record, for updated/deleted/new records
        self.changed_ts: dict[int, int] = {}
        self.order: list[int] = []  # changed idx in (updated_at, idx) order
        self.order_ts: list[int] = []
        self.holes: list[int] = []  # sorted original idx no longer in the originals region
        self.hole_keys: list[int] = []  # holes[j] - j, for position -> idx lookups
        self.hole_set: set[int] = set()
        self.purged: set[int] = set()
        self.deleted: set[int] = set()
        self.touched: set[int] = set()  # changed since the last reindex()

    # -- originals --------------------------------------------------------------------------
    def _hash(self, idx: int) -> tuple[int, int]:
        # two cheap multiply-xorshift rounds: plenty for fake data, and on the hot path
        x = (self.salt ^ (idx * 0x9E3779B97F4A7C15)) & _M64
        x ^= x >> 31
        x = (x * 0xBF58476D1CE4E5B9) & _M64
        x ^= x >> 29
        y = (x * 0x94D049BB133111EB) & _M64
        return x, y ^ (y >> 32)

    def original_ts(self, idx: int, h2: int | None = None) -> int:
        # ts lies inside idx's own slot of the span, so it never decreases with idx
        start = self.span_start + ((idx - 1) * self.span) // self.n
        width = self.span_start + (idx * self.span) // self.n - start
        if h2 is None:
            h2 = self._hash(idx)[1]
        return start + ((h2 >> 20) % width if width > 0 else 0)

    def make(self, idx: int, ts: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def mutate(self, rec: dict, rng: random.Random) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def rec_id(self, idx: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def copy(self, rec: dict) -> dict:
        return dict(rec)

    # -- sequence ---------------------------------------------------------------------------
    def remaining(self) -> int:
        return self.n - len(self.holes)

    def count(self) -> int:
        return self.remaining() + len(self.order)

    def since_position(self, t: float) -> int:
        """Index of the first served record with updated_at >= t."""
        lo, hi = 1, self.n + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.original_ts(mid) >= t:
                hi = mid
            else:
                lo = mid + 1
        if lo <= self.n:
            return (lo - 1) - bisect.bisect_left(self.holes, lo)
        return self.remaining() + bisect.bisect_left(self.order_ts, t)

    def render(self, idx: int) -> str:
        return json.dumps(self.make(idx, -1), separators=(",", ":"))

    def slice(self, start: int, stop: int, raw: bool = False) -> list:
        """Served records [start, stop) as dicts, or as JSON texts if raw."""
        out: list = []
        stop = min(stop, self.count())
        rem = self.remaining()
        if start < rem:
            # the (start+1)-th original that is not a hole
            idx = start + 1 + bisect.bisect_right(self.hole_keys, start + 1)
            need = min(stop, rem) - start
            holes = self.hole_set
            while need > 0:
                if idx not in holes:
                    out.append(self.render(idx) if raw else self.make(idx, -1))
                    need -= 1
                idx += 1
        for pos in range(max(start, rem), stop):
            rec = self.changed[self.order[pos - rem]]
            out.append(json.dumps(rec, separators=(",", ":")) if raw else self.copy(rec))
        return out

    # -- changes ----------------------------------------------------------------------------
    def pick(self, k: int, rng: random.Random) -> list[int]:
        """k distinct live, not soft-deleted records, in draw order."""
        live = self.next_idx - 1 - len(self.purged) - len(self.deleted)
        if k > live:
            raise ValueError(f"cannot pick {k} records: only {live} live records")
        if k == 0:
            return []
        if k * 3 < live:
            picked: dict[int, None] = {}
            while len(picked) < k:
                idx = rng.randrange(1, self.next_idx)
                if idx not in self.purged and idx not in self.deleted:
                    picked[idx] = None
            return list(picked)
        pool = [i for i in range(1, self.next_idx) if i not in self.purged and i not in self.deleted]
        return rng.sample(pool, k)

    def current(self, idx: int) -> dict:
        if idx in self.changed:
            return self.changed[idx]
        return self.make(idx, -1)

    def put(self, idx: int, rec: dict, ts: int) -> None:
        rec["updated_at"] = fmt_ts(ts)
        self.changed[idx] = rec
        self.changed_ts[idx] = ts
        self.touched.add(idx)

    def purge(self, idx: int) -> None:
        self.changed.pop(idx, None)
        self.changed_ts.pop(idx, None)
        self.purged.add(idx)
        self.touched.add(idx)

    def reindex(self) -> None:
        """Update holes and order after put()/purge(); incremental, as advances are frequent."""
        touched, self.touched = self.touched, set()
        new_holes = sorted(i for i in touched if i <= self.n and i not in self.hole_set)
        if new_holes:
            self.hole_set.update(new_holes)
            self.holes = sorted(self.holes + new_holes)  # two sorted runs: linear merge
            self.hole_keys = [h - j for j, h in enumerate(self.holes)]
        ts = self.changed_ts
        keep = [i for i in self.order if i not in touched]
        fresh = sorted((ts[i], i) for i in touched if i in ts)
        order = keep + [i for _, i in fresh]
        # changes are stamped at or after the clock, so they normally sort after the rest;
        # only ties at the clock (seconds=0 advances) need a full sort
        if keep and fresh and (ts[keep[-1]], keep[-1]) > fresh[0]:
            order.sort(key=lambda i: (ts[i], i))
        self.order = order
        self.order_ts = [ts[i] for i in order]


