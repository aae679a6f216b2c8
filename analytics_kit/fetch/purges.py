"""The sign of a record purged while an offset listing is paged: the API's total falling.

A record removed mid-pass shifts the later ones back by one: the one sliding into a page
already fetched is never seen, no key comes twice to show it, and the total no longer counts
the removed one, so the keys seen match the final total. Only the totals tell, and they are
read with care: pages fetched at once are answered in an unknown order, and a total may lie.
"""

from __future__ import annotations

import bisect
import itertools
from typing import NamedTuple


class _Total(NamedTuple):
    received: float   # when its page came back
    sent: float       # when its page was asked for
    total: int
    empty_at: int | None  # the page's offset, if it was empty
    end: int          # where the page's records ended


class Totals:
    """The usable totals of one pass and where its pages ended, for ``fell``."""

    def __init__(self) -> None:
        self._totals: list[_Total] = []
        self._ends: list[tuple[float, int]] = []  # (when a page was asked for, where its records ended)

    def saw_total(self, received: float, sent: float, total: int, start: int, records: int) -> None:
        self._totals.append(_Total(received, sent, total, None if records else start, start + records))

    def values(self) -> set[int]:
        """Every total the pass's pages gave."""
        return {t.total for t in self._totals}

    def saw_page(self, sent: float, end: int) -> None:
        self._ends.append((sent, end))

    def fell(self, repeated: bool = False) -> tuple[int, int] | None:
        """(from, to) where the total fell: a page's total below that of a page the API answered
        before it (one that came back before the other was asked for). ``repeated``: the pass
        saw a key twice."""
        # A total that the listing went past is no count (a too-low or per-page figure), not a
        # purge sign. Pages fetched at once are answered in any order, though, and pages served
        # before a purge go past the lower total of pages served after it. Then a page served
        # after the purge also holds the first record of the page above it, served before: a
        # key comes twice. Only with that sign is a total contradicted by its own page and by
        # pages asked for after it came back alone (a wobbling total would be paged again).
        ends = sorted(self._ends)
        reach_from = [0] * (len(ends) + 1)  # reach_from[i]: the furthest end of pages i and later
        for i in range(len(ends) - 1, -1, -1):
            reach_from[i] = max(ends[i][1], reach_from[i + 1])

        def contradicted(t: _Total) -> bool:
            later = bisect.bisect_right(ends, (t.received, float("inf"))) if repeated else 0
            return max(t.end, reach_from[later]) > t.total

        # The empty page that ends the listing is not contradicted so: the pages before it
        # went past its total if a purge moved their records back (see below).
        counts = [t for t in sorted(self._totals) if t.empty_at is not None or not contradicted(t)]
        # a listing that grows while it is paged, with a late answer, is no fall
        highest_by = list(itertools.accumulate((t.total for t in counts), max))
        for t in counts:
            before = bisect.bisect_left(counts, (t.sent,))
            if not before:
                continue
            highest = highest_by[before - 1]
            # the empty page that ends the listing hides a record only if one was expected there
            if t.empty_at is not None and highest <= t.empty_at:
                continue
            if t.total < highest:
                return highest, t.total
        return None
