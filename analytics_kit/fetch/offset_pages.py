"""A page of an offset listing, and what the pager reads off the paginator and the API's total."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from dlt.sources.helpers.rest_client.paginators import OffsetPaginator

from analytics_kit.fetch.records import OneObject, ends_of

# A larger total is not a plausible record count for a listing paged through a REST API
# (10,000,000 requests at limit 100): it is treated as no total at all.
MAX_TOTAL = 10**9


class Page(list):
    """One page's records, with where they came from.

    ``ends`` is its first and last record as the API sent them (later steps rewrite records
    in place), to tell a page that repeats the one before.
    """

    __slots__ = ("offset", "request", "total", "ignored", "ends", "sent", "received", "one_object", "said", "slot")

    def __init__(self, rows: list, *, offset: int, request: str, total: Any = None, ignored: bool = False,
                 sent: float = 0.0, said: str | None = None, slot: int | None = None) -> None:
        super().__init__(rows)
        self.slot = offset if slot is None else slot  # the offset asked for: the tail of a page asked again (``_grown``)
        self.said = said  # an error the answer held beside its records (see ``records.error_beside``)
        self.one_object = isinstance(rows, OneObject)  # the API answered with an object, not a list
        self.offset, self.request, self.total, self.ignored = offset, request, total, ignored
        # pages in flight together are answered in any order: the API answered one before
        # another for certain only if it came back before the other was asked for
        self.sent = sent
        self.received = time.monotonic()
        self.ends = ends_of(rows)


def done(page: Page) -> Future:
    """A future holding ``page`` already: a page fetched ahead, handed back to the pass's queue."""
    future: Future = Future()
    future.set_result(page)
    return future


def offsets_ok(paginator: Any) -> bool:
    """An offset listing with offsets in the query string, ended by its total or an empty page."""
    return (
        type(paginator) is OffsetPaginator
        and (paginator.total_path is not None or paginator.stop_after_empty_page)
        and paginator.has_more_path is None
        and not paginator.param_body_path
        and not getattr(paginator, "limit_body_path", None)
    )


def usable_total(value: Any) -> int | None:
    """``value`` as a record count, or None if it is not one (negative, fractional, text, absurd)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_TOTAL:
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 10:
        value = int(value)
    return value if isinstance(value, int) and 0 <= value <= MAX_TOTAL else None
