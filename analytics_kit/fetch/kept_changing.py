"""The error for a listing that changed in every pass the kit made over it, and what to do about it."""

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
