"""Arrow pages joined into the tables a resource yields to dlt."""

from __future__ import annotations

from typing import Any, Iterator

import dlt
import pyarrow as pa

from analytics_kit import seam

# What a replace becomes where its pages held a key twice (see ``KitPaginate._pages``).
MERGE = {"disposition": "merge", "strategy": "delete-insert"}

# dlt spends ~10 ms on every item it extracts (schema hints, validation, incremental), whatever
# its size: 100-row pages cost more there than everything else together. Arrow pages are
# therefore yielded in batches of about this many rows (a few MB).
BATCH_ROWS = 10_000


def tables(pages: Iterator[Any], outcome: dict) -> Iterator[Any]:
    """Arrow pages joined into tables of about BATCH_ROWS rows; other pages as they come.

    The last table carries the hint that the run's rows have distinct keys, when one
    pass proved it (see ``KitPaginate._pages``); one full table is kept back for that.
    Where a replace found keys it could not prove distinct, the resource's last item (a
    table, or the last page of records that stay dicts, also kept back) carries the hint
    that makes its table dlt's merge: a hint on any item sets its table's write disposition.
    """
    held: list[pa.Table] = []
    rows = seen = 0
    ready = last = None
    for page in pages:
        if not isinstance(page, pa.Table):
            if not page:  # nothing a hint could ride on
                yield page
                continue
            if last is not None:
                yield last
            last = page
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
        merged = dlt.mark.make_hints(write_disposition=MERGE)
        if ready is not None:
            ready = dlt.mark.with_hints(ready, merged)
        elif last is not None:
            last = dlt.mark.with_hints(last, merged)
    elif ready is not None and seen and outcome.get("distinct") == seen:
        # dlt then merges the staged rows without its ROW_NUMBER() dedup, which made
        # DuckDB hold all 1,000,000 rows of a full load at once (+170 MB, 1 s).
        ready = seam.mark_deduplicated(ready)
    if last is not None:
        yield last
    if ready is not None:
        yield ready
