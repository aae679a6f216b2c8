"""The error for a listing that changed in every pass the kit made over it, and what to do about it."""

from __future__ import annotations

from analytics_kit.errors import LoadError
from analytics_kit.fetch.tally import Tally


def kept_changing(resource: str, passes: list[Tally], most: int, moved: bool) -> LoadError:
    """``passes``: the tallies of the ``most`` passes, none complete. ``moved``: some pass went past the
    listing's newest cursor read before its pages, so records were updated or added while it was paged.

    Where the total stayed the same in every pass and nothing moved, the data did not change: the
    listing's order is not stable. Where records were updated all the time, waiting may not help.
    """
    totals = {tally.total for tally in passes}
    unstable = len(totals) == 1 and None not in totals and not any(t.shrank for t in passes) and not moved
    if unstable:
        advice = (f" If its data did not change (its total was {totals.pop():,} in every pass), its order is not "
                  "stable: records with the same value of the field it sorts by come back in another order on each "
                  "request, so pages overlap and skip records. Have the API sort by a unique field as well (e.g. "
                  "a sort parameter of updated_at,id), or page with a cursor paginator if it offers one.")
    else:
        advice = (" If it is always this busy, have it sort by a field that updates do not change (id or "
                  "created_at, where it offers such a sort): an update then moves no record between pages. The "
                  "cursor then no longer follows the order, so set the incremental's lag to more than a run takes.")
    return LoadError(
        f"Resource '{resource}': the API's data kept changing while it was paged, {most} passes in a row, so "
        "some records may have been skipped; nothing from this run was committed.",
        guidance="Run the load again when the API is quieter." + advice, resource=resource)
