"""Arrow pages joined into the tables a resource yields to dlt."""

from __future__ import annotations

from typing import Any, Iterator

import dlt
import pyarrow as pa

from analytics_kit import seam
from analytics_kit.fetch.replace import MergeNeeded

# What a replace becomes where its pages held a key twice (see ``KitPaginate._pages``).
MERGE = {"disposition": "merge", "strategy": "delete-insert"}

# dlt spends ~10 ms on every item it extracts (schema hints, validation, incremental), whatever
# its size: 100-row pages cost more there than everything else together. Arrow pages are
# therefore yielded in batches of about this many rows (a few MB).
BATCH_ROWS = 10_000


def tables(pages: Iterator[Any], outcome: dict) -> Iterator[Any]:
    """Arrow pages joined into tables of about BATCH_ROWS rows; other pages as they come.

    The last table carries the hint that the run's rows have distinct keys, when one
    pass proved it (see ``KitPaginate._pages``), or, where a replace found keys it could not
    prove distinct, the hint that makes its table dlt's merge; one full table is kept back for that.
    """
    held: list[pa.Table] = []
    rows = seen = 0
    ready = None
    other = False
    for page in pages:
        if not isinstance(page, pa.Table):
            other = True
            yield page
            continue
        held.append(page)
        rows += page.num_rows
        seen += page.num_rows
        if rows >= BATCH_ROWS:
            if ready is not None:
                yield ready
            ready, held, rows = pa.concat_tables(held, promote_options="default"), [], 0
    if held:
        if ready is not None:
            yield ready
        ready = pa.concat_tables(held, promote_options="default")
    if outcome.get("merge"):
        if ready is None:
            if other:  # dict pages the hint cannot follow: extracted again as dlt's merge (see run.load)
                raise MergeNeeded(*outcome["merge"])
            return
        # a hint on the resource's last item still sets its table's write disposition in the package
        yield dlt.mark.with_hints(ready, dlt.mark.make_hints(write_disposition=MERGE))
        return
    if ready is None:
        return
    if seen and outcome.get("distinct") == seen:
        # dlt then merges the staged rows without its ROW_NUMBER() dedup, which made
        # DuckDB hold all 1,000,000 rows of a full load at once (+170 MB, 1 s).
        ready = seam.mark_deduplicated(ready)
    yield ready
