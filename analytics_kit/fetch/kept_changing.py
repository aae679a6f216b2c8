"""What the kit says of a listing that changed in every pass it made over it, or the same way in two."""

from __future__ import annotations

from analytics_kit.errors import LoadError
from analytics_kit.fetch.tally import Tally

BUSY = ("If records change while it is paged, and it is always this busy, have the API sort by a field that "
        "updates do not change (id or created_at, where it offers such a sort): an update then moves no record "
        "between pages. The cursor then no longer follows the order, so set the incremental's lag to more than a "
        "run takes.")
UNSTABLE = ("If its data did not change, its order is not stable: records with the same value of the field it "
            "sorts by come back in another order on each request, so pages overlap and skip records. Have the API "
            "sort by a unique field as well (e.g. a sort parameter of updated_at,id), or page with a cursor "
            "paginator if it offers one.")
DELETED = ("Records were deleted while it was paged (its total fell, or the passes saw more keys than it holds), "
           "and each deletion shifts the records after it into pages already read, whatever the order. Load when "
           "it deletes less, or page with a cursor paginator if it offers one.")


def kept_changing(resource: str, passes: list[Tally], moved: list[bool | None], seen: int) -> LoadError:
    """``passes``: the tallies of the passes made, none complete; ``seen``: the keys they saw together.
    ``moved``, per pass: whether it went past the listing's newest cursor read before the pages (the first
    pass) or the value the pass before it ended at (records updated or added meanwhile), None where it could
    not tell. The guidance names the cause the passes show, and each likely one where they do not.
    """
    totals = [tally.total for tally in passes]
    fell = any(t.shrank for t in passes) or any(
        a is not None and b is not None and b < a for a, b in zip(totals, totals[1:]))
    if fell:
        advice = DELETED
    else:
        steady = len(set(totals)) == 1 and None not in totals
        if steady and moved and all(m is False for m in moved):
            advice = f"Its total was {totals[0]:,} in every pass and no newer record came. " + UNSTABLE
        elif steady and moved and all(moved):
            advice = BUSY  # newer records and no more of them: updates
        else:  # records added, or passes the kit could not see behind: either cause
            advice = (f"Its total was {totals[0]:,} in every pass. " if steady else "") + f"{BUSY} {UNSTABLE}"
        if totals[-1] is not None and seen > totals[-1]:
            # more keys than the listing holds: some were deleted, which a total with inserts may not show
            advice = f"{DELETED} {advice}"
    return LoadError(
        f"Resource '{resource}': the API's data kept changing while it was paged, {len(passes)} passes in a row, so "
        "some records may have been skipped; nothing from this run was committed.",
        guidance="Run the load again when the API is quieter. " + advice, resource=resource)


def same_twice(missing: int, shrank: tuple[int, int] | None, distinct: int) -> str:
    """The warning for a listing two passes saw the same way, though it looked short of records (``missing``)
    or shrinking (``shrank``): a pass is never made again for that."""
    if missing:
        return (f"the listing returned {missing:,} key(s) more than once, the same way in two passes: loaded one row "
                "per key, as for a listing that repeats keys (a change feed's versions). If the API does not repeat "
                "records, its pages overlap (an offset off by one) or one was served stale (from a cache), and the "
                f"records they hid, up to {missing:,}, were not loaded; a full refresh loads them only once the API "
                "pages its listing without repeats: report it to the API's provider")
    # no key came twice: the fall, not repeats, had the listing paged again (it said "0 key(s)": helper-102)
    fell, to = shrank or (0, 0)
    return (f"the API's total fell from {fell:,} to {to:,} the same way in two passes, so no record was purged "
            f"meanwhile and the total is no count of the listing: loaded the {distinct:,} record(s) it returned")


def unsettled(repeated: int) -> str:
    """The warning for a listing without a total whose two passes each saw keys twice, in another way each time: with
    no count to be short of, a third pass would be weighed the same way, and a busy feed never settles (helper-113)."""
    return (f"the listing returned {repeated:,} key(s) more than once, in another way in each of two passes, and it "
            "has no total to count its records by: loaded what the two passes saw together, one row per key. Records "
            "that slid between pages while it was paged may be missing, and incremental runs do not fetch them "
            "again: run a full refresh when the API is quieter")


def served_again(resource: str, copies: list[tuple[str, str]]) -> LoadError:
    """The error for a listing two passes saw short the same way, where the API answered a request with a page it
    had sent for another: a stale page, not a change feed's repeated keys."""
    earlier, later = copies[0]
    more = f" (and {len(copies) - 1:,} more such page(s))" if len(copies) > 1 else ""
    return LoadError(
        f"Resource '{resource}': the API answered {later} with the page it sent for {earlier} (the same keys, and the "
        f"same first and last record){more}, in two passes over the listing: a page served stale (from a cache, or "
        "an offset the API ignored) hides the records that belong there. Nothing from this run was committed, so "
        "the table keeps what it held.",
        guidance="Run the load again later. If it goes on, check the paginator's offset_param and limit_param "
        "against the API's documentation, or ask its provider about cached pages.", resource=resource)


def why_again(missing: int, shrank: tuple[int, int] | None, copied: list, counted: bool = True) -> str:
    """Why a listing is paged again, for the log."""
    if copied:
        return (f"the API answered {copied[0][1]} with the same page as {copied[0][0]}: served stale, it hid the "
                "records that belong there")
    if shrank:
        return (f"the API's total fell from {shrank[0]} to {shrank[1]} while it was paged: a record removed meanwhile "
                "shifts the later ones into pages already fetched")
    return (f"fewer distinct keys than the API's total ({missing} short): the data changed while it was paged, or "
            "the listing repeats keys") if counted else (
            f"{missing} key(s) seen more than once: the data changed while it was paged, or the listing repeats keys")


def keys_again(echoed: list) -> str:
    """The warning for a listing without a total that sent a page's keys again in other records."""
    earlier, later = echoed[0]
    return (f"the API answered {later} with the keys of {earlier}, in other records: loaded one row per key, as for "
            "a change feed's versions. If the API does not repeat records, a page served stale hid the records that "
            "belong there, and with no total to count them the load cannot tell; a later full refresh loads them")


def not_paged_again(missing: int, shrank: tuple[int, int] | None, copied: list) -> str:
    """The warning for a listing that looked short, where the load does not page again."""
    sign = (f"the API answered {copied[0][1]} with the same page as {copied[0][0]}" if copied else
            f"the API's total fell from {shrank[0]:,} to {shrank[1]:,}" if shrank else
            f"{missing:,} fewer distinct keys than the API's total")
    return (f"{sign} while the listing was paged: some records may have been skipped. The kit pages again only "
            "where the load keeps one row per key (a delete-insert merge on a primary key), which then loads what "
            "a later pass finds")


def purged_meanwhile(fell: tuple[int, int], passes: int) -> str:
    """The warning for a listing whose total fell during a pass, paged again until a pass held still."""
    return (f"the API's total fell from {fell[0]:,} to {fell[1]:,} while it was paged (records were purged), so it was "
            f"paged {passes} times; the rows of records purged during the load may remain in the table (their keys "
            "were staged by an earlier pass) until the next full refresh")
