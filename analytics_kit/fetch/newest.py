"""The cursor a run may store when its listing can change while it is paged.

An offset listing ordered by its cursor (``updated_at``, oldest first) moves a record to its
end when the record is updated. The records after its old place slide back one offset, and
a new version can slide into a page the pass already fetched: three updates just before the
last page is asked for left two new versions unseen while every key was seen once, as many
as the total. The run then stored the newest cursor it saw, past those versions, and no
later incremental run fetched them.

So before its pages the pass reads the listing's newest cursor (its last page, asked for
once the first page gave the total; then the first page again, so that every page is read
after it). Every record updated during the pass gets a cursor past that value. Where the
pass's cursors came in ascending order, the run stores no cursor later than it: the next
run starts there and fetches every version the shifts hid. The merge absorbs what it fetches
again. A listing in another order does not move its updated records behind the pages, so
its cursor stays dlt's, the newest seen.
"""

from __future__ import annotations

import logging
from operator import le
from typing import Any

from analytics_kit import seam
from analytics_kit.fetch import cursors

logger = logging.getLogger(__name__)


class Rising:
    """Whether one pass's cursor values came in ascending order, page after page.

    Records without a value (dlt's ``on_cursor_value_missing``) are left out; values of kinds
    that do not compare (text and numbers) are no order: the cursor is then left as dlt stores it.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        self.holds = True
        self._last: Any = None
        self.first: Any = None  # the lowest value of the page seen last, while the order holds

    def see(self, rows: list) -> None:
        self.first = None
        if not self.holds or not rows:
            return
        field = self.field
        try:
            values = [value for value in (row.get(field) for row in rows) if value is not None]
            if not values:
                return
            self.first = values[0]
            before = values[0] if self._last is None else self._last
            self.holds = before <= values[0] and all(map(le, values, values[1:]))
        except (AttributeError, TypeError):
            self.holds = False
            return
        self._last = values[-1]

    @property
    def last(self) -> Any:
        """The last (the highest) value seen, while the order holds."""
        return self._last

    def passed(self, newest: Any) -> bool:
        """Whether, in order, the pass went past ``newest`` (the listing's newest cursor read before its
        pages, or the value the pass before ended at): a record was updated or added meanwhile."""
        try:
            return self._last is not None and self._last > newest
        except TypeError:
            return False


def last_page_offset(paginator: Any, total: int) -> int:
    """The offset of the page that holds the last of ``total`` records, on the pass's own
    steps: the same request as that page's, which an API that takes the pages takes too."""
    first, step = paginator.initial_value, paginator.value_step
    last_record = total + paginator.base_index - 1
    return first + max(0, (last_record - first) // step) * step


def newest_of(rows: list, field: str, canonical: bool) -> Any:
    """The cursor of a listing's last record with one; ``canonical``: in the kit's form, as the kit
    rewrites the records' values of a cursor that may hold timestamps."""
    value = next((row.get(field) for row in reversed(rows) if isinstance(row, dict) and row.get(field) is not None),
                 None)
    return cursors.canonical(value) if canonical else value


def capped(newest: Any, start: Any, stored: Any) -> Any:
    """The cursor to store instead of ``stored`` (the newest the run saw), or None to keep it:
    the listing's newest from before the pages, never earlier than where the run started."""
    if newest is None or stored is None:
        return None
    try:
        value = newest if start is None or start <= newest else start
        return value if value < stored else None
    except TypeError:  # kinds that do not compare: dlt's value stays
        return None


def store_newest(resource: str, field: str, start: Any, newest: Any) -> None:
    """Lowers the cursor dlt stores for ``resource`` to ``newest``, where it saw a later one."""
    value = capped(newest, start, seam.running_cursor(resource, field))
    if value is not None:
        logger.info("%s: the listing changed while it was paged; the cursor stored is its newest from before "
                    "the pages, %r, so that the next run fetches every record updated meanwhile", resource, value)
        seam.lower_running_cursor(resource, field, value)
