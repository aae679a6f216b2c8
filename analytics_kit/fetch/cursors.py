"""Timestamp cursors compared as instants, and cursors from the future.

**Instants, not text.** dlt keeps an incremental cursor as the API sent it and takes the
newest with ``max()``: for ISO strings that compares text. With mixed zone offsets
(``+05:00``, ``+01:00``, ``Z``) the stored cursor was not the newest instant, and the next
run skipped changed records. The kit therefore rewrites every timestamp cursor value, before
dlt's incremental step sees it, into one form whose text order is its time order::

    2026-01-03T10:15:07+00:00       whole seconds
    2026-01-03T10:15:07.5+00:00     a fraction, trailing zeros dropped

The date and time parts have fixed widths, and the suffix ``+`` sorts before ``.`` and
the digits, so ``07+00:00`` < ``07.25+00:00`` < ``07.5+00:00`` < ``08+00:00``; equal
instants are equal strings. (With ``Z`` instead, ``07Z`` would sort after ``07.5Z``.)
The loaded column is a timestamp either way; only the stored cursor and the value sent
as the API's start parameter take this form.

**The future.** A cursor beyond the clock (a record stamped 2030 by mistake, or an API
whose clock runs ahead) would be stored, and every later run would ask only for records
updated after it: all real changes missed, silently. Policy: the record is loaded as it
is and the run says so (``LoadReport.warnings`` and the log). Each run records when it
started (``RUN_STARTED`` in each resource's state, committed with its cursor); a run that
finds a stored cursor more than ``FUTURE_SKEW`` after the start of the run that stored
it starts instead from that start minus ``FUTURE_SKEW``. Changes since then are fetched
again (the merge absorbs the repeats), and later changes are not missed.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
# Clocks of the API and of this machine may differ by this much without a warning.
FUTURE_SKEW = timedelta(minutes=5)
# Key in a resource's dlt state: when the run that stored its cursor started.
RUN_STARTED = "analytics_kit_run_started"
# A page of cursors all in the common API form, 2026-01-03T10:15:07Z, has this layout once its
# ASCII digits are mapped to 0 (see ``canonical_rows``).
_DIGITS_TO_ZERO = str.maketrans("1234567890", "0000000000")
_PLAIN_UTC_LAYOUT = "0000-00-00T00:00:00Z"


def parse(value: Any) -> datetime | None:
    """``value`` as an aware UTC datetime if it is an ISO timestamp with a time part, else None.

    A value without a zone is UTC, as dlt reads it.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str) or len(value) < 13 or value[10] not in "Tt ":  # an hour alone is one too
        return None
    text = value.strip()
    if text[-1] == "z":  # RFC 3339 allows a lowercase z; fromisoformat does not
        text = text[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # an offset that takes the instant past year 1 or 9999
        return None


def render(instant: datetime) -> str:
    """The canonical text of an aware datetime (see the module docstring)."""
    text = instant.astimezone(UTC).isoformat()
    if instant.microsecond:
        head, _, zone = text.rpartition("+")
        text = head.rstrip("0") + "+" + zone
    return text


def plain_utc(value: Any) -> str | None:
    """The canonical form of ``value`` if it is the common API form, 2026-01-03T10:15:07Z, else None.

    Most values take this path: the layout is checked by position and the date and time by
    ``fromisoformat`` (C, no zone handling), so an ISO week date (2026-W01-6T10:15:07Z) or a
    day that does not exist (2026-02-30) is left to ``parse``, which reads or refuses it.
    """
    if (type(value) is str and len(value) == 20 and value[19] == "Z" and value[10] == "T" and value[4] == "-"
            and value[7] == "-" and value[13] == ":" and value[16] == ":"):
        try:
            datetime.fromisoformat(value[:19])
        except ValueError:
            return None
        return value[:19] + "+00:00"
    return None


def canonical(value: Any) -> Any:
    """``value`` in the canonical form if it is an ISO timestamp; anything else unchanged."""
    new = _canonical_or_none(value)
    return value if new is None else new


def _canonical_or_none(value: Any) -> str | None:
    """The canonical form of ``value``, or None where it is no ISO timestamp."""
    plain = plain_utc(value)
    if plain is not None:
        return plain
    instant = parse(value)
    return None if instant is None else render(instant)


def canonical_rows(rows: list, field: str, required: bool, epoch_text: bool = False) -> int | None:
    """Rewrites ``row[field]`` of every dict in ``rows`` to the canonical form, in place.

    Returns the index of the first row whose value is not a timestamp when ``required``
    (the column is declared a timestamp; numbers are Unix seconds there, as dlt reads
    them), else None. With ``epoch_text`` such numbers are rewritten too, into the canonical
    text of their instant: beside a cursor that starts from text, dlt could not compare them
    ("'>' not supported between instances of 'str' and 'int'", helper-102).
    """
    if _all_plain_utc(rows, field):
        return None
    bad = None
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            continue
        value = row.get(field)
        if value is None:
            continue
        new = _canonical_or_none(value)
        if new is None and epoch_text and is_number(value):
            at = instant(value, epoch=True)
            new = None if at is None else render(at)
        if new is not None:
            row[field] = new
        elif required and bad is None and not is_number(value):
            bad = i
    return bad


def _all_plain_utc(rows: list, field: str) -> bool:
    """Rewrites a page whose ``field`` values are all in the common API form, as ``plain_utc``
    would each, and says whether it did. The form is checked for the whole page by a few C
    calls: 0.05 ms for 100 records, where the per-value path takes 0.17 ms. Anything else
    (a missing value, another form, a day that does not exist) leaves the page untouched
    for the per-value path."""
    if not rows:
        return True
    try:
        values = [row[field] for row in rows]
        joined = "\n".join(values)
    except (KeyError, TypeError):  # a record without the field, a value not text, a record not a dict
        return False
    if joined.translate(_DIGITS_TO_ZERO) != _layout(len(values)):
        return False
    try:
        # the layout is plain_utc's, so the date and time are valid exactly when its check passes
        for _ in map(datetime.fromisoformat, values):
            pass
    except ValueError:
        return False
    for row, value in zip(rows, joined.replace("Z", "+00:00").split("\n"), strict=True):
        row[field] = value
    return True


@functools.lru_cache(maxsize=8)
def _layout(count: int) -> str:
    return "\n".join([_PLAIN_UTC_LAYOUT] * count)


def is_number(value: Any) -> bool:
    """A number, not a bool (which Python counts as one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def kind_word(value: Any) -> str:
    """How a message names a cursor value's kind."""
    return "numbers" if is_number(value) else "text"


def instant(value: Any, epoch: bool = False) -> datetime | None:
    """The UTC instant a cursor value stands for; numbers count as Unix seconds with ``epoch``
    (a cursor column typed timestamp that the API sends as numbers, as dlt reads them)."""
    if epoch and is_number(value):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return parse(value)


def beyond(value: Any, started: datetime, epoch: bool = False) -> bool:
    """Whether cursor ``value`` lies more than ``FUTURE_SKEW`` after ``started``."""
    at = instant(value, epoch)
    return at is not None and at > started + FUTURE_SKEW


def restart_point(started: datetime, like: Any = None) -> Any:
    """Where a run starts instead of a cursor that ran ahead of the run that stored it, in
    the cursor's own kind: Unix seconds for a number, else the canonical text."""
    point = started - FUTURE_SKEW
    if is_number(like):
        return int(point.timestamp())
    return render(point)


# an ISO timestamp's layout as written: day, then separator, hour, minutes, seconds, fraction mark and digits, zone
_WRITTEN = re.compile(r"(\d{4}-\d{2}-\d{2})(?:([Tt ])(\d{2})(?::(\d{2})(?::(\d{2})(?:([.,])(\d+))?)?)?)?(.*)")


def like_written(value: Any, written: Any) -> Any:
    """The instant ``value`` (a canonical cursor) in the layout of ``written``, the config's initial_value: its
    separator, the parts of the time it gives (hour, minutes, seconds, fraction digits and mark) and its zone
    (``Z``, an offset, or none for UTC); a date alone gives the UTC day. ``value`` itself where either is no
    ISO timestamp.

    The API's start parameter takes this form: an API that reads only the form its guide shows (``...Z``)
    would refuse the canonical ``+00:00``. What ``written`` leaves out is cut, never rounded up: the API is
    asked from the same or an earlier instant, and the merge absorbs what it sends twice.
    """
    at = parse(value)
    layout = _WRITTEN.fullmatch(written.strip()) if isinstance(written, str) else None
    if at is None or layout is None:
        return value
    day, separator, hour, minute, second, mark, fraction, zone = layout.groups()
    try:
        if separator is None:  # a date alone, read as a UTC day
            return value if zone else f"{at.year:04d}-{at.month:02d}-{at.day:02d}"
        shape = datetime.fromisoformat(written.strip().replace(",", ".").rstrip("z") + ("Z" if zone == "z" else ""))
        offset = None if zone.strip() in ("Z", "z", "") else shape.utcoffset()
        local = at if offset is None else at.astimezone(timezone(offset))
    except (ValueError, OverflowError):  # not a timestamp after all; an offset past year 1 or 9999
        return value
    text = f"{local.year:04d}-{local.month:02d}-{local.day:02d}{separator}{local.hour:02d}"
    text += f":{local.minute:02d}" if minute else ""
    text += f":{local.second:02d}" if second else ""
    text += (mark + f"{local.microsecond:06d}".ljust(len(fraction), "0")[:len(fraction)]) if fraction else ""
    return text + zone


class AsWritten:
    """rest_api's ``convert`` for the incremental's values in requests, set by the kit where the config has none
    (see ``config.layouts``): rest_api fills every placeholder (path, params, JSON and form bodies, headers, with
    any format spec) and the start and end params through it.

    The kit keeps cursors in its canonical form. ``as_written`` (canonical text -> text as the config wrote
    it) gives the initial and end values back as written, as dlt alone sends them: an end cut earlier would
    leave records out. Any other value is a start (the stored cursor, lagged or not) and takes the layout of
    ``written``, the config's initial_value, cut to it (``like_written``: a lower bound may only move earlier).
    """

    kit_layout = True  # not the config's own convert: the kit's cursors stay canonical (seam.cursor_convert)

    def __init__(self, written: Any, as_written: dict) -> None:
        self.written, self.as_written = written, as_written

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str) and value in self.as_written:
            return self.as_written[value]
        return like_written(value, self.written) if isinstance(self.written, str) else value

    def __repr__(self) -> str:
        return f"AsWritten({self.written!r})"
