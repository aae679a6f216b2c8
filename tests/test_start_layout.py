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


STORED = "2026-01-03T10:15:07+00:00"


def test_the_start_takes_the_layout_wherever_a_placeholder_or_the_start_param_put_it():
    """Placeholders in the path, inside a longer param and in a JSON body were sent in the canonical form, as
    was a start_param holding a lagged start value (helper-54)."""
    layout = StartLayout("2025-01-01T00:00:00Z", "since", None, {}, {
        "path": "/v1/{incremental.start_value}", "json": {"where": [{"after": "{incremental.last_value}"}]},
        "params": {"filter": "updated_at>={incremental.start_value}", "n": 5}})
    path, params, body = layout.request(f"/v1/{STORED}", {"since": "2026-01-03T09:15:07+00:00",
                                                          "filter": f"updated_at>={STORED}", "n": 5},
                                        {"where": [{"after": STORED}]})
    assert path == "/v1/2026-01-03T10:15:07Z" and body == {"where": [{"after": "2026-01-03T10:15:07Z"}]}
    assert params == {"since": "2026-01-03T09:15:07Z", "filter": "updated_at>=2026-01-03T10:15:07Z", "n": 5}


def test_values_the_config_wrote_out_go_as_written_beside_a_placeholder():
    """A static value equal to the stored cursor was rewritten where the same path, param or JSON body also held a
    placeholder (helper-54, helper-55)."""
    layout = StartLayout("2025-01-01T00:00:00Z", None, None, {}, {
        "path": "/c/{incremental.start_value}/" + STORED, "json": {"since": "{incremental.start_value}",
                                                                 "static": STORED},
        "params": {"as_of": STORED, "f": "u>{incremental.last_value} and v<" + STORED}})
    path, params, body = layout.request(f"/c/{STORED}/{STORED}", {"as_of": STORED, "f": f"u>{STORED} and v<{STORED}"},
                                        {"since": STORED, "static": STORED})
    assert path == f"/c/2026-01-03T10:15:07Z/{STORED}" and body == {"since": "2026-01-03T10:15:07Z", "static": STORED}
    assert params == {"as_of": STORED, "f": f"u>2026-01-03T10:15:07Z and v<{STORED}"}


def test_the_end_and_the_initial_value_go_out_as_the_config_wrote_them():
    """An end value cut to the initial_value's layout (2026-03-01T00:20:30Z to 2026-03-01, or to 00:20Z) asked the
    API for less than the config's range, and the records past the cut were never loaded (helper-55)."""
    end, end_canonical = "2026-03-01T00:20:30.900Z", "2026-03-01T00:20:30.9+00:00"
    layout = StartLayout("2026-03-01", "since", "until", {end_canonical: end, "2026-03-01": "2026-03-01"},
                         {"path": "/e/{incremental.end_value}/{incremental.initial_value}", "params": {}})
    path, params, _ = layout.request(f"/e/{end_canonical}/2026-03-01", {"since": STORED, "until": end_canonical},
                                     None)
    assert path == f"/e/{end}/2026-03-01" and params == {"since": "2026-01-03", "until": end}


def test_a_template_with_doubled_braces_or_text_that_cannot_be_told_apart_is_left_as_filled():
    layout = StartLayout("2025-01-01T00:00:00Z", None, None, {}, {"params": {
        "q": "{{literal}} after {incremental.start_value}", "odd": "{incremental.start_value}x"}})
    _, params, _ = layout.request("", {"q": f"{{literal}} after {STORED}", "odd": "something else"}, None)
    assert params == {"q": "{literal} after 2026-01-03T10:15:07Z", "odd": "something else"}
