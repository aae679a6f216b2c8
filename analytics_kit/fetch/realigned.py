"""A listing that ends short of the API's total: records skipped at page boundaries, or a total too high.

An API whose offsets are off by one past its first page (``offset=50`` answering from the 52nd record) serves every
record but the ones at its page boundaries, and its pages end short of its total exactly as a total too high makes
them: the kit loaded 299 of 300 with a warning that blamed the total, a full refresh deleted the skipped record from
a table that held it, and the cursor moved past it (helper-153). The pages alone cannot tell the two apart. A second
pass whose pages start half a page later has its boundaries in the middle of the first pass's pages, so a record the
first skipped at a boundary is inside one of its pages: new keys in it are the sign, and the records themselves.

An API off by one at a single boundary serves a record twice there and skips another: its pages end where its total
says, short of a key, the same way in two passes, and the kit warned that up to one record was not loaded
(helper-153). The same pass half a page later finds it (``fill_gaps``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable, Iterator

from analytics_kit.errors import LoadError
from analytics_kit.fetch.offset_pages import Page
from analytics_kit.fetch.tally import Flag, Tally, joined

if TYPE_CHECKING:
    from analytics_kit.fetch.offsets import OffsetPass
    from analytics_kit.fetch.paging import KitPaginate


_SKIPS = ("The API's offset paging loses records (an offset off by one, or records moved while paged): run the load "
          "again later, and if it happens again, tell the API's provider; a load now would leave those records out "
          "and move the cursor past them.")


def second_look(owner: KitPaginate, first: Tally, attempt: int, paginator: Any, listing: Callable[..., OffsetPass],
                outcome: dict) -> Iterator[Any]:
    """Where the first pass over a whole listing ended short of its total (``first.short_of``), pages it again half a
    page later, yields the records of keys the first did not see to dlt, counted in ``first``; says what it found
    either way."""
    expected, end, request = first.short_of
    said = f"the API said total={expected} but returned no records after offset {end} ({request})"
    alone = f"{said}; loaded the {end:,} it returned"
    step = paginator.value_step
    if attempt > 1 and outcome.get("short"):  # the first pass's words, and its second look, stand for the listing
        return
    outcome["short"] = True
    if (attempt > 1 or first.key is None or step < 2 or paginator.maximum_value is not None
            or paginator.initial_value != paginator.base_index or end <= paginator.initial_value + step):
        # records may be missing: no key to tell them by, or a limit of 1, cannot be paged again (helper-156)
        owner.warn(f"{alone} (if the total is right, records the API's pages skipped are missing, and this listing "
                   "is not paged again to look for them)")
        return
    # only the records of keys the first pass did not see are loaded: each key once, in any write disposition (a
    # replace table lost a record to an API off by one, helper-157), and a full refresh stays a replace
    kind = owner.key_kind()
    before = first.distinct_as(kind)
    first.absorb((yield from _half_page_later(owner, paginator, listing, [first])))
    union = first.distinct_as(kind)
    if union == before:
        owner.warn(f"{alone}; a second pass with its pages half a page later found no more")
        return
    found = f"a second pass with its pages half a page later found {union - before:,} more record(s)"
    if union < expected:  # records skipped, more than that pass reached: a refresh would delete some (helper-156)
        raise LoadError(f"Resource '{owner.resource}': {said}; {found}, so its pages skip records at their boundaries, "
                        f"and {expected - union:,} of its total are still not served. Nothing from this run was "
                        "committed.", guidance=_SKIPS, resource=owner.resource)
    owner.warn(f"{said}; {found} (its pages skip records at their boundaries, an offset off by one, or records moved "
               f"while paged); loaded {union:,}")


def fill_gaps(owner: KitPaginate, passes: list[Tally], missing: int, paginator: Any,
              listing: Callable[..., OffsetPass]) -> Iterator[Any]:
    """Where two passes over a whole listing missed ``missing`` records its total counts the same way, pages it
    again half a page later and yields those pages to dlt; returns whether the passes together hold them all."""
    step = paginator.value_step
    if step < 2 or paginator.maximum_value is not None or paginator.initial_value != paginator.base_index:
        return False
    second = yield from _half_page_later(owner, paginator, listing, passes)
    kind = owner.key_kind()
    before = joined(passes, owner.primary_key, owner.naming).distinct_as(kind)
    union = joined([*passes, second], owner.primary_key, owner.naming).distinct_as(kind)
    owner._rows_are_keys(union)
    if union == before:
        return False
    if union - before < missing:  # some found: the pages skip records, and a load would leave the rest out
        raise LoadError(f"Resource '{owner.resource}': {missing:,} record(s) the API's total counts were missing the "
                        f"same way in two passes, and a pass with its pages half a page later found {union - before:,} "
                        "of them: its pages skip records at their boundaries. Nothing from this run was committed.",
                        guidance=_SKIPS, resource=owner.resource)
    owner.warn(f"{missing:,} record(s) the API's total counts were missing the same way in two passes; a pass with its "
               "pages half a page later found them (its pages skip records at a boundary: an offset off by one); "
               f"loaded {union:,}")
    return True


def _half_page_later(owner: KitPaginate, paginator: Any, listing: Callable[..., OffsetPass],
                     earlier: list[Tally]) -> Iterator[Any]:
    """Pages the listing from half a page after its first offset, checked and converted as every pass is; yields to
    dlt the records whose keys no pass of ``earlier`` saw, and returns their tally."""
    owner.stats.paged(owner.resource)
    tally, keys_of = Tally(owner.primary_key, owner.naming), earlier[0].keys_of
    ints = set().union(*(t.ints for t in earlier))
    others = set().union(*(t.others for t in earlier))

    def unseen(pages: Iterator[Page]) -> Iterator[tuple[Page, str]]:
        for page in pages:
            records = [r for r in page if isinstance(r, dict)]
            kept = [r for r, key in zip(records, keys_of(records)) if key is not None
                    and not (key in ints if type(key) is int else (Flag(key) if type(key) is bool else key) in others)]
            yield Page(kept, offset=page.offset, request=page.request, total=page.total, sent=page.sent,
                       said=page.said, slot=page.slot), page.request

    pass_ = listing(paginator=copy.deepcopy(paginator), offset=paginator.initial_value + paginator.value_step // 2)
    checked = owner._checked(unseen(pass_.run()), tally)
    yield from owner._converted(checked) if owner.convert else (rows for rows, _ in checked)
    return tally
