"""A page of cursors rewritten at once gives exactly what the per-value path gives.

``canonical_rows`` checks a whole page in a few C calls when every value is in the common
API form (2026-01-03T10:15:07Z). Each case here is rewritten both ways, that path and the
per-value one alone, and the records and the reported bad index must be equal.
"""

from __future__ import annotations

import copy
import itertools

import pytest

from analytics_kit.fetch import cursors

COMMON = "2026-01-03T10:15:07Z"


def _per_value(rows: list, field: str, required: bool, monkeypatch: pytest.MonkeyPatch) -> int | None:
    with monkeypatch.context() as m:
        m.setattr(cursors, "_all_plain_utc", lambda rows, field: False)
        return cursors.canonical_rows(rows, field, required)


def _both(rows: list, required: bool, monkeypatch: pytest.MonkeyPatch) -> tuple:
    fast, slow = copy.deepcopy(rows), copy.deepcopy(rows)
    return (fast, cursors.canonical_rows(fast, "u", required)), (slow, _per_value(slow, "u", required, monkeypatch))


def _days() -> list[str]:
    """Every day number 00-32 of every month 00-13, in years that test the calendar's edges."""
    years = ("0000", "0001", "1900", "2000", "2023", "2024", "2100", "9999")
    return [f"{y}-{m:02d}-{d:02d}T12:34:56Z" for y in years for m in range(14) for d in range(33)]


def _times() -> list[str]:
    hours = ("00", "09", "19", "20", "23", "24", "25", "29", "99")
    minutes = ("00", "05", "59", "60", "99")
    return [f"2024-06-15T{h}:{m}:{s}Z" for h, m, s in itertools.product(hours, minutes, minutes)]


ODD = [
    "2026-01-03T10:15:07z", "2026-01-03t10:15:07Z", "2026-01-03 10:15:07Z", "2026-01-03T10:15:07+00:00",
    "2026-01-03T10:15:07.5Z", "2026-01-03T10:15:07", "2026-01-03T10:15:07Z ", " 2026-01-03T10:15:07Z",
    "2026-01-03T10:15Z", "2026-W01-6T10:15:07Z", "2026-01-03T10:15:07+05:00", "2026/01/03T10:15:07Z",
    "\u0662\u0660\u0662\u0666-01-03T10:15:07Z", "\uff12026-01-03T10:15:07Z", "2026-01-03T1\u0660:15:07Z",
    "2026-01-03T10:15:07Z\n2026-01-03T10:15:07Z", "2026-01-03T10:15:07ZZ", "+2026-01-03T10:15:07Z",
    "2026-01-03T10-15-07Z", "2026-01-03T10:15:07\u00a0", "", "Z", "not a date", "0000-00-00T00:00:00Z",
    None, 1767435307, 1767435307.5, True, {"at": COMMON}, [COMMON],
]


@pytest.mark.parametrize("required", [True, False])
def test_each_value_alone_is_rewritten_as_the_per_value_path_does(required, monkeypatch):
    for value in _days() + _times() + ODD:
        for rows in ([{"u": value}], [{"u": COMMON}, {"u": value}, {"u": COMMON}]):
            fast, slow = _both(rows, required, monkeypatch)
            assert fast == slow, value


def test_a_page_of_every_real_day_takes_the_page_path_with_the_same_result(monkeypatch):
    days = [v for v in _days() if cursors.plain_utc(v) is not None]
    assert len(days) > 2500  # leap days of 2000 and 2024 among them, not of 1900, 2023, 2100
    assert "2024-02-29T12:34:56Z" in days and "2023-02-29T12:34:56Z" not in days
    rows = [{"u": v, "id": i} for i, v in enumerate(days)]
    fast, slow = _both(rows, True, monkeypatch)
    assert fast == slow and fast[1] is None
    taken = copy.deepcopy(rows)
    assert cursors._all_plain_utc(taken, "u") and taken == fast[0]
    assert taken[0]["u"].endswith("+00:00")


@pytest.mark.parametrize("page", [
    [{"u": COMMON}, {"v": 1}],  # a record without the cursor
    [{"u": COMMON}, [COMMON]],  # a record that is not a dict
    [{"u": COMMON}, {"u": None}],
    [{"u": COMMON}, "text"],
    [],
])
def test_pages_the_page_path_declines_are_left_whole_for_the_per_value_path(page, monkeypatch):
    untouched = copy.deepcopy(page)
    assert not cursors._all_plain_utc(untouched, "u") or not page
    assert untouched == page
    fast, slow = _both(page, True, monkeypatch)
    assert fast == slow
