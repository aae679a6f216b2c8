"""The incremental's values in requests, in the layout the config wrote its initial_value in (``cursors``)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from analytics_kit.fetch.cursors import StartLayout, like_written, parse

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


def test_the_request_gets_the_layout_where_the_incrementals_values_are():
    """Placeholders in the path, inside a longer param and in a JSON body were sent in the canonical form, as
    was a start_param holding a lagged start value (helper-54)."""
    stored = "2026-01-03T10:15:07+00:00"
    layout = StartLayout("2025-01-01T00:00:00Z", ("since",))
    path, params, body = layout.request(
        f"/v1/events/{stored}", {"since": "2026-01-03T09:15:07+00:00", "filter": f"updated_at>={stored}",
                                 "static": "2024-01-01T00:00:00+00:00", "n": 5},
        {"where": [{"after": stored}]}, (stored, "2025-01-01T00:00:00+00:00", None))
    assert path == "/v1/events/2026-01-03T10:15:07Z"
    assert params == {"since": "2026-01-03T09:15:07Z", "filter": "updated_at>=2026-01-03T10:15:07Z",
                      "static": "2024-01-01T00:00:00+00:00", "n": 5}
    assert body == {"where": [{"after": "2026-01-03T10:15:07Z"}]}


def test_a_lagged_start_value_takes_the_layout_and_one_before_year_one_is_left_alone():
    layout = StartLayout("2025-01-01T00:00:00Z")
    _, params, _ = layout.request("", {"a": "2026-01-03T09:15:07+00:00", "b": "0001-01-01T00:00:00+00:00"}, None,
                                  ("2026-01-03T10:15:07+00:00", "0001-01-01T00:30:00+00:00"), lag=3600)
    assert params == {"a": "2026-01-03T09:15:07Z", "b": "0001-01-01T00:00:00+00:00"}


def test_values_the_config_wrote_out_go_as_written_where_templates_show_them():
    """A static param equal to the stored cursor, or to the end value, was rewritten too (helper-54)."""
    stored = "2026-01-03T10:15:07+00:00"
    layout = StartLayout("2025-01-01T00:00:00Z", (), {"path": "/v1/{incremental.start_value}", "json": None,
                                                       "params": {"as_of": stored, "f": "u>{incremental.last_value}"}})
    path, params, body = layout.request(f"/v1/{stored}", {"as_of": stored, "f": f"u>{stored}"}, {"x": stored},
                                        (stored, None, None))
    assert path == "/v1/2026-01-03T10:15:07Z" and body == {"x": stored}
    assert params == {"as_of": stored, "f": "u>2026-01-03T10:15:07Z"}
