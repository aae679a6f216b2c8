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
DELETED = ("Its total fell: records were deleted while it was paged, and each deletion shifts the records after "
           "it into pages already read, whatever the order. Load when it deletes less, or page with a cursor "
           "paginator if it offers one.")


def kept_changing(resource: str, passes: list[Tally], most: int, moved: list[bool | None]) -> LoadError:
    """``passes``: the tallies of the ``most`` passes, none complete. ``moved``, per pass: whether it went past the
    listing's newest cursor read before the pages (records updated or added meanwhile), None where it could not
    tell. The guidance names the cause where the passes show it, and both likely ones where they do not.
    """
    totals = [tally.total for tally in passes]
    fell = any(t.shrank for t in passes) or any(
        a is not None and b is not None and b < a for a, b in zip(totals, totals[1:]))
    steady = len(set(totals)) == 1 and None not in totals and not fell
    if fell:
        advice = DELETED
    elif steady and moved and all(m is False for m in moved):
        advice = f"Its total was {totals[0]:,} in every pass and no newer record came. " + UNSTABLE
    elif not steady or (moved and all(moved)):
        advice = BUSY
    else:  # a steady total the kit could not see behind, or quiet passes after busy ones
        advice = f"Its total was {totals[0]:,} in every pass. {BUSY} {UNSTABLE}"
    return LoadError(
        f"Resource '{resource}': the API's data kept changing while it was paged, {most} passes in a row, so "
        "some records may have been skipped; nothing from this run was committed.",
        guidance="Run the load again when the API is quieter. " + advice, resource=resource)
