"""The incremental's values in requests, in the layout the config wrote its initial_value in (``cursors``)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from analytics_kit.fetch.cursors import AsWritten, like_written, parse

VALUE = "2026-01-03T10:15:07.5+00:00"


@pytest.mark.parametrize("written, sent", [
    ("2025-01-01T00:00:00Z", "2026-01-03T10:15:07Z"),
    ("2025-01-01t00:00:00z", "2026-01-03t10:15:07z"),
    ("2025-01-01T00:00:00.000Z", "2026-01-03T10:15:07.500Z"),
    ("2025-01-01T00:00:00,000Z", "2026-01-03T10:15:07,500Z"),
    ("2025-01-01T00:00:00.123456789Z", "2026-01-03T10:15:07.500000000Z"),
    ("2025-01-01T00:00:00+00:00", "2026-01-03T10:15:07+00:00"),
    ("2025-01-01T05:30:00+05:30", "2026-01-03T15:45:07+05:30"),
    ("2025-01-01T00:00:00-0800", "2026-01-03T02:15:07-0800"),
    ("2025-01-01 00:00:00", "2026-01-03 10:15:07"),
    ("2025-01-01T00:00Z", "2026-01-03T10:15Z"),
    ("2025-01-01T00Z", "2026-01-03T10Z"),
    ("2025-01-01", "2026-01-03"),
    ("not a timestamp", VALUE),
    ("2025-13-01T00:00:00Z", VALUE),
])
def test_the_value_takes_the_written_layout(written, sent):
    assert like_written(VALUE, written) == sent


def test_a_value_an_offset_would_take_past_year_one_is_sent_as_it_is():
    """An offset that moves the instant before year 1 (or after 9999) raised OverflowError (helper-54)."""
    assert like_written("0001-01-01T01:00:00+00:00", "2025-01-01T00:00:00-05:00") == "0001-01-01T01:00:00+00:00"
    assert like_written("9999-12-31T23:00:00+00:00", "2025-01-01T00:00:00+05:00") == "9999-12-31T23:00:00+00:00"
    assert parse("0001-01-01T03:00:00+05:00") is None  # was: OverflowError out of ak.load


def test_the_written_layout_never_asks_for_a_later_instant():
    chance = random.Random(7)
    layouts = ["2025-01-01T00:00:00Z", "2025-01-01T00:00:00.0Z", "2025-01-01T00:00Z", "2025-01-01T00Z",
               "2025-01-01", "2025-01-01T00:00:00-09:30", "2025-01-01T00:00:00.00+05:45"]
    for _ in range(500):
        instant = datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=chance.randrange(10**15))
        value = instant.isoformat()
        for written in layouts:
            sent = like_written(value, written)
            at = datetime.fromisoformat(sent)
            at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
            assert instant - timedelta(days=1) < at <= instant, (value, written, sent)


STORED = "2026-01-03T10:15:07+00:00"


def test_the_converter_gives_the_initial_and_end_values_as_written_and_the_start_in_their_layout():
    """An end value cut to the initial_value's layout (2026-03-01T00:20:30Z to 2026-03-01) asked the API for less
    than the config's range, and the records past the cut were never loaded (helper-55)."""
    end = "2026-03-01T00:20:30.900Z"
    convert = AsWritten("2026-03-01", {"2026-03-01T00:20:30.9+00:00": end, "2026-03-01": "2026-03-01"})
    assert convert("2026-03-01T00:20:30.9+00:00") == end and convert("2026-03-01") == "2026-03-01"
    assert convert(STORED) == "2026-01-03" and convert(None) is None
    assert AsWritten(None, {"2026-03-01T00:20:30.9+00:00": end})(STORED) == STORED  # no written layout


def test_the_converter_is_set_where_the_start_is_a_lower_bound_and_the_config_has_none():
    """A ``last_value_func: min`` cursor's start is an upper bound, which a cut narrowed: records were lost; and
    ``"convert": None`` counted as the config's own convert (helper-57)."""
    from analytics_kit.config.layouts import add_as_written

    def incremental(**more):
        return {"cursor_path": "updated_at", "initial_value": "2026-03-01T00:00:00Z", **more}

    cfg = {"resources": [{"name": name, "endpoint": {"incremental": block}} for name, block in (
        ("plain", incremental()), ("none", incremental(convert=None)), ("max", incremental(last_value_func="max")),
        ("min", incremental(last_value_func="min")), ("own", incremental(convert=str)))]}
    add_as_written(cfg)
    converts = {r["name"]: r["endpoint"]["incremental"].get("convert") for r in cfg["resources"]}
    assert {name for name, convert in converts.items() if isinstance(convert, AsWritten)} == {"plain", "none", "max"}
    assert converts["min"] is None and converts["own"] is str
