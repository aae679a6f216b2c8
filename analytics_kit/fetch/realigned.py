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
from analytics_kit.fetch.tally import Tally, joined

if TYPE_CHECKING:
    from analytics_kit.fetch.offsets import OffsetPass
    from analytics_kit.fetch.paging import KitPaginate


_SKIPS = ("The API's offset paging loses records (an offset off by one, or records moved while paged): run the load "
          "again later, and if it happens again, tell the API's provider; a load now would leave those records out "
          "and move the cursor past them.")

_MERGE = " A merge write disposition on the primary key lets the kit load what such a pass finds."


def second_look(owner: KitPaginate, first: Tally, attempt: int, paginator: Any, listing: Callable[..., OffsetPass],
                outcome: dict) -> Iterator[Any]:
    """Where the first pass over a whole listing ended short of its total (``first.short_of``), pages it again half a
    page later, yields those pages to dlt where the table keeps one row per key, returning their tally, and says what
    it found; records it finds that no later change explains stop the load where they cannot be loaded."""
    expected, end, request = first.short_of
    said = f"the API said total={expected} but returned no records after offset {end} ({request})"
    alone = f"{said}; loaded the {end:,} it returned"
    if attempt > 1 and outcome.get("short"):  # the first pass's words, and its second look, stand for the listing
        return None
    outcome["short"] = True
    step = paginator.value_step
    if (attempt > 1 or first.key is None or step < 2 or paginator.maximum_value is not None
            or paginator.initial_value != paginator.base_index or end <= paginator.initial_value + step):
        # records may be missing: no key to tell them by, or a limit of 1, cannot be paged again (helper-156)
        owner.warn(f"{alone} (if the total is right, records the API's pages skipped are missing, and this listing "
                   "is not paged again to look for them)")
        return None
    # a merge table keeps one row per key of both passes, the newer version of a record updated meanwhile too; another
    # write disposition would keep both, or a stale one while the cursor moved past the newer (helper-158): there the
    # pass only looks, and what it finds stops the load
    kind = owner.key_kind()
    before = first.distinct_as(kind)
    second = yield from _half_page_later(owner, paginator, listing, load=owner.repage, end=end)
    if owner.repage and owner.replace is not None:  # both passes' rows are staged: dlt's merge keeps one a key
        if not owner.replace.switchable:
            from analytics_kit.fetch.replace import MergeNeeded

            raise MergeNeeded(owner.resource, f"its pages ended short of the API's total ({end} of {expected})")
        outcome["merge"] = owner.stats.merge_instead(owner.resource, f"its pages ended short of the API's total ({end} "
                                                     f"of {expected}) and were paged again")
        owner.replace = None
    held = joined([first, second], owner.primary_key, owner.naming).distinct_as(kind)  # counted once: a sort of each
    found = held - before
    # past where the first pass ended: added meanwhile (helper-158); the first pass's keys as a set only where needed
    added = len(second.newer - set(_keys(first))) if found and second.newer else 0
    if found <= added:
        owner.warn(f"{alone}; a second pass with its pages half a page later found no more"
                   + (f" but {found:,} record(s) past where its pages ended (added while it was paged, or served at "
                      "other offsets only), loaded too" if found else ""))
        return second if owner.repage else None
    said_found = f"a second pass with its pages half a page later found {found:,} more record(s)"
    if not owner.repage or held < expected:  # a load would leave records out (helper-156, -158)
        still = f", and {expected - held:,} of its total are still not served" if held < expected else ""
        raise LoadError(f"Resource '{owner.resource}': {said}; {said_found}, so its pages skip records at their "
                        f"boundaries{still}. Nothing from this run was committed.",
                        guidance=_SKIPS if owner.repage else _SKIPS + _MERGE, resource=owner.resource)
    owner.warn(f"{said}; {said_found} (its pages skip records at their boundaries, an offset off by one, or records "
               f"moved while paged); loaded {held:,}")
    return second


def fill_gaps(owner: KitPaginate, passes: list[Tally], missing: int, paginator: Any,
              listing: Callable[..., OffsetPass], load: bool = True) -> Iterator[Any]:
    """Where passes over a whole listing missed ``missing`` records its total counts (two the same way, or one where
    the table cannot take a key twice: ``load`` False, the pass only looks), pages it again half a page later and
    yields those pages to dlt; returns whether the passes together hold them all."""
    if not passes[-1].by_offset or paginator.value_step < 2 or paginator.maximum_value is not None \
            or paginator.initial_value != paginator.base_index or (passes[-1].total or 0) <= paginator.value_step:
        return False  # dlt's own paginators page one after another; a listing of one page has no boundary
    second = yield from _half_page_later(owner, paginator, listing, load=load)
    kind = owner.key_kind()
    before = joined(passes, owner.primary_key, owner.naming).distinct_as(kind)
    union = joined([*passes, second], owner.primary_key, owner.naming).distinct_as(kind)
    if union == before:
        return False
    if union - before < missing or not load:  # the pages skip records, and a load would leave some out
        raise LoadError(f"Resource '{owner.resource}': {missing:,} record(s) the API's total counts were missing "
                        f"{'the same way in two passes' if load else 'from its pages'}, and a pass with its pages half "
                        f"a page later found {union - before:,} of them: its pages skip records at their boundaries. "
                        "Nothing from this run was committed.",
                        guidance=_SKIPS if load else _SKIPS + _MERGE, resource=owner.resource)
    owner._rows_are_keys(union)
    owner.warn(f"{missing:,} record(s) the API's total counts were missing the same way in two passes; a pass with its "
               "pages half a page later found them (its pages skip records at a boundary: an offset off by one); "
               f"loaded {union:,}")
    return True


def _half_page_later(owner: KitPaginate, paginator: Any, listing: Callable[..., OffsetPass], load: bool = True,
                     end: int | None = None) -> Iterator[Any]:
    """Pages the listing from half a page after its first offset, checked and converted as every pass is; yields the
    pages to dlt (``load``), or only counts them; returns their tally, with the keys of the records at ``end`` (where
    the first pass ended) or past it in its ``newer``: records added at the listing's end while it was paged, which
    the first pass could not see, are no records it skipped."""
    owner.stats.paged(owner.resource)
    tally = Tally(owner.primary_key, owner.naming)
    pass_ = listing(paginator=copy.deepcopy(paginator), offset=paginator.initial_value + paginator.value_step // 2)

    def noted(pages: Iterator[Any]) -> Iterator[tuple[Any, str]]:
        for page in pages:
            if end is not None and page.offset + len(page) > end:
                tail = [r for r in page[max(end - page.offset, 0):] if isinstance(r, dict)]
                tally.newer.update(key for key in tally.keys_of(tail) if key is not None)
            yield page, page.request

    checked = owner._checked(noted(pass_.run()), tally)
    if load:
        yield from owner._converted(checked) if owner.convert else (rows for rows, _ in checked)
    else:
        for _ in checked:
            pass
    return tally


def _keys(tally: Tally) -> Iterator[Any]:
    """The keys a tally counted, as it holds them."""
    yield from tally.ints
    yield from tally.others
