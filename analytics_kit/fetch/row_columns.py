"""dlt's row columns, ``_dlt_load_id`` and ``_dlt_id``, on the fast path's arrow pages."""

from __future__ import annotations

import base64
import secrets
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from analytics_kit import seam


class RowColumns:
    """Adds dlt's ``_dlt_load_id`` and ``_dlt_id`` columns to a resource's arrow pages, last in the pipe.

    The slow path's tables have both (dlt's normaliser adds them to dicts), and the two paths
    must give the same tables. dlt's parquet normaliser can add them too, but then rewrites every
    extracted file to add ``_dlt_id``, with a Python list of ids per row group: 1.4-1.8 s and
    60 MB of a 1,000,000-row load. Here the ids come from one ``b64encode`` of random bytes per
    page, sliced into a string array without a Python string per row, and the normaliser imports
    the files as they are. A column dlt's own config says it adds (``normalize.parquet_normalizer``)
    is left to dlt; outside a pipeline (a source iterated by hand) there is no load id, and
    pages pass unchanged.
    """

    def __init__(self, naming: Callable[[str], str]) -> None:
        # (their hints reach the stored schema after extraction: seam.complete_row_columns)
        (self.load_id, _), (self.row_id, _), id_bytes = seam.dlt_row_columns(naming)
        # whole base64 groups (3 bytes -> 4 characters) keep every id the same width, with at
        # least dlt's randomness (10 bytes by default: 12 here, 16 characters)
        self.id_bytes = -(-id_bytes // 3) * 3
        self._adds: tuple[bool, bool] | None = None

    def __call__(self, item: Any) -> Any:
        if not isinstance(item, pa.Table):
            return item
        if self._adds is None:
            dlt_adds_load_id, dlt_adds_row_id = seam.dlt_adds_row_columns()
            self._adds = (not dlt_adds_load_id, not dlt_adds_row_id)
        add_load_id, add_row_id = self._adds
        if add_load_id and self.load_id not in item.column_names:
            load_id = seam.current_load_id()
            if load_id is None:
                return item
            item = item.append_column(pa.field(self.load_id, pa.string(), nullable=False),
                                      pa.repeat(pa.scalar(load_id, pa.string()), item.num_rows))
        if add_row_id and self.row_id not in item.column_names:
            item = item.append_column(pa.field(self.row_id, pa.string(), nullable=False),
                                      row_ids(item.num_rows, self.id_bytes))
        return item


def row_ids(n: int, width: int) -> pa.Array:
    """``n`` random ids of ``width`` bytes (a multiple of 3), base64, as one string array."""
    text = base64.b64encode(secrets.token_bytes(n * width))
    size = width // 3 * 4
    kind, offset_type = (pa.string(), pa.int32()) if len(text) < 2**31 else (pa.large_string(), pa.int64())
    # 0, size, 2 * size, ...: in Arrow, without numpy (the load command imports pyarrow without it)
    offsets = pc.cumulative_sum(pa.repeat(pa.scalar(size, offset_type), n + 1), start=pa.scalar(-size, offset_type))
    return pa.Array.from_buffers(kind, n, [None, offsets.buffers()[1], pa.py_buffer(text)])
