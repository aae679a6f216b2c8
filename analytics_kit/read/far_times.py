"""Timestamps pandas holds but cannot show: outside the years 1 to 9999, and DuckDB's infinities.

A load stores 9999-12-31T23:30:00-01:00 as the year 10000; DuckDB's ``infinity`` reaches Arrow as the largest 64-bit
count of its unit (in nanoseconds that is 2262-04-11, a date like any). pandas took such values, and printing the frame,
or a notebook displaying it, raised "year 10000 is out of range" (helper-146); the command line printed a plain
TIMESTAMP's infinity as 294247-01-10 (helper-151). ``ak.query`` refuses them with the cast; ``analytics-kit query``
prints them as the DuckDB CLI does.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from analytics_kit.errors import QueryError

# the instants Python's datetime can hold, in seconds from 1970: from 0001-01-01 up to 10000-01-01 (not included)
_PYTHON_INSTANTS = (-62135596800, 253402300800)
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_END = 2**63 - 1  # DuckDB's infinity, in any unit


def far_columns(table: pa.Table) -> list[int]:
    """The timestamp columns of ``table`` holding a value pandas cannot show."""
    far = []
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and table.num_rows:
            low, high = (bound * _PER_SECOND[field.type.unit] for bound in _PYTHON_INSTANTS)
            least, most = pc.min_max(table.column(index).cast(pa.int64())).values()
            # in nanoseconds the years' bounds lie past 64 bits: there only the infinities are far
            least, most = least.as_py(), most.as_py()
            if least is not None and (least < low or most >= high or _END in (-least, most)):
                far.append(index)
    return far


def refuse_far_timestamps(table: pa.Table, database: str) -> pa.Table:
    """``table``, unless it holds such values: then the ``QueryError`` with the cast."""
    far = [table.schema.field(i).name for i in far_columns(table)]
    if far:
        column = '"' + far[0].replace('"', '""') + '"'
        raise QueryError(f"The result has timestamps outside the years 1 to 9999, which pandas holds but cannot show: "
                         f"{', '.join(far)}.", guidance=f"Cast them in the SQL, e.g. {column}::VARCHAR, or leave "
                         f"them out (WHERE {column} BETWEEN '0001-01-01' AND '9999-12-31 23:59:59.999999'); the DuckDB "
                         "CLI and `analytics-kit query` show them as they are.", database=database)
    return table


def far_as_text(table: pa.Table) -> pa.Table:
    """``table`` with each column holding such values as text, ``infinity`` and ``-infinity`` as DuckDB's CLI shows
    them, others in pandas' own form (``10000-01-01 00:30:00+00:00``)."""
    import numpy as np  # not at import: `analytics-kit load` imports pyarrow without numpy (see run/lean.py)

    for index in far_columns(table):
        field = table.schema.field(index)
        times = table.column(index).cast(pa.int64()).to_pylist()
        unit = field.type.unit
        counts = np.array([0 if t is None else t for t in times], dtype=np.int64).astype(f"datetime64[{unit}]")
        # one precision for the column, as pandas prints it: seconds, unless a value has a fraction
        per = _PER_SECOND[unit]
        parts = {t % per for t in times if t is not None and abs(t) != _END}
        milli = per >= 1000 and all(p % (per // 1000) == 0 for p in parts)
        texts = np.datetime_as_string(counts, unit="s" if parts <= {0} else "ms" if milli else unit)
        suffix = "+00:00" if field.type.tz is not None else ""
        shown = ["NaT" if t is None else "infinity" if t == _END else "-infinity" if t == -_END
                 else str(text).replace("T", " ") + suffix for t, text in zip(times, texts)]
        table = table.set_column(index, field.name, pa.array(shown, pa.string()))
    return table
