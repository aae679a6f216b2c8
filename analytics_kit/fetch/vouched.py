"""Keys the last pass over a busy listing missed, vouched for by the API itself.

A listing updated while it is paged moves each updated record to its end, and the record after
its old place slides into a page the pass has already read: the pass misses it. With an update a
second, every pass misses another record, and first loads of 10,000 records failed as "kept
changing" in 5 of 6 runs (``bench/busy_api.py``). The keys the passes saw together are no proof
that nothing is missing: a key purged between them made up the count for a record no pass saw,
and that record was lost (helper-61).

So a key an earlier pass saw, and the last pass did not, counts only once the API shows it is still
in the listing. Each pass records where its pages began: the row and the first cursor of each page.
One request from the first cursor of the page a key was last seen on (the start parameter set to it,
at the first offset) returns the listing from there, oldest first: records updated or added since
have later cursors, so fewer records than a page holds come before the key, if it is still there.
A key that is not found (its page began at a cursor many records share, the API ignores the start
parameter, or the key was deleted) is not counted, and the kit pages again or fails as before.

The keys the last pass saw count as they did: a key it saw and the API purged later makes up for a
record no pass saw. A purge shows as a falling total, unless a record added at the same moment keeps
the total level (helper-64: with one lookup, pass 2 counted a purged key for a record both passes
had missed). So there are no lookups unless every page of every pass gave the same total, and the last
pass saw no record added since the listing's newest cursor was read (a key at that cursor or past it,
in its second or day too, that no earlier pass saw): a purge hidden by an addition then leaves the
addition unseen, and the count one short. This is for listings whose records are updated, not added to
or purged, while they are paged. An addition with an earlier cursor (backdated), or one that brings
back a key an earlier pass saw, looks like a record the earlier passes missed or an update, and still
hides a purge from these checks, as it does from a single pass (helper-65; a strict expected failure).
"""

from __future__ import annotations

import logging
from itertools import chain
from typing import TYPE_CHECKING, Any, Callable, Iterator

import requests

from analytics_kit.fetch.tally import SMALL, Tally

if TYPE_CHECKING:
    from analytics_kit.fetch.offsets import OffsetPass
    from analytics_kit.fetch.paging import KitPaginate

logger = logging.getLogger("analytics_kit.fetch.paging")  # where these lines were logged before they moved here

# keys a pass may miss and still be vouched for, a request each at most: a busy run misses one to three
MAX_KEYS = 10


def lookups(passes: list[Tally], missing: int) -> dict[Any, list] | None:
    """{first cursor of a page: the keys to look for from it} for the keys earlier passes saw and the last
    did not, or None where they cannot make up the ``missing`` ones: too few, too many, or keys not placed
    (a pass whose cursors did not rise, or keys of mixed kinds)."""
    if not 0 < missing <= MAX_KEYS or len(passes) < 2 or len(set().union(*(t.totals for t in passes))) != 1:
        return None
    sequences = [tally.sequence() for tally in passes]
    if any(sequence is None for sequence in sequences) or _added(passes[-1].newer, sequences[:-1]):
        return None
    gone = _missed(sequences[:-1], sequences[-1])
    if not missing <= len(gone) <= MAX_KEYS:
        return None
    wanted: dict[Any, list] = {}
    for key in gone:
        # the pass that saw it last, at its last place there: the version nearest the listing's end
        for tally, sequence in zip(reversed(passes[:-1]), reversed(sequences[:-1])):
            index = _last_index(sequence, key)
            if index is not None:
                first = tally.first_cursor(index)
                if first is not None:
                    wanted.setdefault(first, []).append(key)
                break
    return wanted if sum(map(len, wanted.values())) >= missing else None


def found(wanted: dict[Any, list], answers: Tally) -> int:
    """How many of the ``wanted`` keys the lookups' answers hold."""
    have = set(answers.ints) | answers.others
    return sum(key in have for key in chain.from_iterable(wanted.values()))


def _int64(sequences: list) -> Any:
    """The ``array``s of 64-bit integer keys as one numpy array, without copying each."""
    import numpy as np  # here, as tally.py does: the load command imports pyarrow without numpy

    return np.concatenate([np.frombuffer(s, dtype=np.int64) for s in sequences])


def _large_ints(sequences: list) -> bool:
    """Whether the ``sequences`` are many integer keys, to be compared in numpy rather than in sets."""
    return sum(map(len, sequences)) > SMALL and all(hasattr(s, "typecode") for s in sequences)


def _added(newer: set, earlier: list) -> bool:
    """Whether a key of ``newer`` (the last pass's records at or past the newest cursor read before the first)
    is in none of the ``earlier`` sequences: a record added while the listing was paged, not one updated."""
    if not newer:
        return False
    if _large_ints(earlier) and all(type(k) is int and -(2**63) <= k < 2**63 for k in newer):
        import numpy as np

        return not bool(np.isin(np.fromiter(newer, dtype=np.int64, count=len(newer)), _int64(earlier)).all())
    known = set(chain.from_iterable(earlier))
    return any(key not in known for key in newer)


def _missed(earlier: list, last: Any) -> list:
    """Distinct keys of the ``earlier`` sequences that ``last`` does not hold."""
    if _large_ints([*earlier, last]):
        import numpy as np

        return np.setdiff1d(_int64(earlier), _int64([last])).tolist()
    have = set(last)
    return list({key: None for key in chain.from_iterable(earlier) if key not in have})


def _last_index(sequence: Any, key: Any) -> int | None:
    try:
        return len(sequence) - 1 - sequence[::-1].index(key)
    except (ValueError, TypeError, OverflowError):  # not there, or not a 64-bit integer in an array of them
        return None


def look_up(owner: KitPaginate, passes: list[Tally], missing: int, listing: Callable[..., OffsetPass]) -> Iterator[Any]:
    """Looks up the keys the last pass missed that earlier ones saw (``lookups``); yields the answers' pages to dlt,
    and returns their tally where they hold enough of those keys, else None."""
    wanted = lookups(passes, missing)
    if wanted is None:
        return None
    answers = Tally(owner.primary_key, owner.naming)
    for cursor in wanted:
        pass_ = listing(start_at=cursor)
        try:
            page = pass_.fetch(pass_.start, owner.client.session)
        except requests.RequestException as error:
            logger.info("%s: looking up the records the last pass missed failed (%s)", owner.resource, error)
            return None
        checked = owner._checked(iter([(page, page.request)]), answers)  # one by one: answers may repeat
        yield from owner._converted(checked) if owner.convert else (rows for rows, _ in checked)
    if found(wanted, answers) < missing:
        return None
    logger.info("%s: the last pass missed %d record(s) an earlier pass saw; %d request(s) found them still "
                "in the listing", owner.resource, missing, len(wanted))
    return answers
