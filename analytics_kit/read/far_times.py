"""Timestamps and dates pandas holds but cannot show: outside the years 1 to 9999, and DuckDB's infinities.

A load stores 9999-12-31T23:30:00-01:00 as the year 10000; DuckDB's ``infinity`` reaches Arrow as the largest 64-bit
count of its unit (in nanoseconds that is 2262-04-11, a date like any). pandas took such values, and printing the frame,
or a notebook displaying it, raised "year 10000 is out of range" (helper-146); the command line printed a plain
TIMESTAMP's infinity as 294247-01-10 (helper-151). ``ak.query`` refuses them with the cast; ``analytics-kit query``
prints them as the DuckDB CLI does. A DATE out of that range failed both, as "year 10000 is out of range" (session 39's
note); a year before 1 prints as the DuckDB CLI prints it, ``0044-03-15 (BC)``.
"""

from __future__ import annotations

import re
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from analytics_kit.errors import QueryError

# the instants Python's datetime can hold, in seconds from 1970: from 0001-01-01 up to 10000-01-01 (not included)
_PYTHON_INSTANTS = (-62135596800, 253402300800)
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_END = 2**63 - 1  # DuckDB's infinity, in any unit of a timestamp
_DAYS_END = 2**31 - 1  # and of a DATE, in Arrow's days (date32)
_DAY = 86400


def _counts(field: pa.Field) -> tuple[str, int, int, int] | None:
    """A column's unit for numpy, the first and the last count Python can hold, and its infinity; None for a column
    of another type."""
    if pa.types.is_timestamp(field.type):
        per = _PER_SECOND[field.type.unit]
        return field.type.unit, _PYTHON_INSTANTS[0] * per, _PYTHON_INSTANTS[1] * per - 1, _END
    if pa.types.is_date32(field.type):
        return "D", _PYTHON_INSTANTS[0] // _DAY, _PYTHON_INSTANTS[1] // _DAY - 1, _DAYS_END
    return None


def _as_counts(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The counts of a timestamp or date column's unit (Arrow casts a date to int32 only)."""
    return column.cast(pa.int32()).cast(pa.int64()) if pa.types.is_date32(column.type) else column.cast(pa.int64())


def far_columns(table: pa.Table, nested: bool = False) -> list[int]:
    """The timestamp and date columns of ``table`` holding a value pandas cannot show; ``nested``: the lists, structs
    and maps holding one instead."""
    far = []
    for index, field in enumerate(table.schema):
        if not table.num_rows or pa.types.is_nested(field.type) is not nested:
            continue
        leaves = (leaf for chunk in table.column(index).chunks for leaf in _leaves(chunk)) if nested else \
            [table.column(index)]
        if any(_far(leaf) for leaf in leaves):
            far.append(index)
    return far


def _far(values: pa.Array | pa.ChunkedArray) -> bool:
    counts = _counts(pa.field("v", values.type))
    if counts is None or not len(values):
        return False
    _, low, high, end = counts
    least, most = pc.min_max(_as_counts(values)).values()
    # in nanoseconds the years' bounds lie past 64 bits: there only the infinities are far
    least, most = least.as_py(), most.as_py()
    return least is not None and (least < low or most > high or end in (-least, most))


def _leaves(values: pa.Array) -> Iterator[pa.Array]:
    """The values of a list, struct or map at any depth: a TIMESTAMP_NS infinity in a list read as 2262-04-11, which
    pandas shows as a date like any (helper-156)."""
    kind = values.type
    if pa.types.is_map(kind):
        yield from _leaves(values.keys)
        yield from _leaves(values.items)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        yield from _leaves(values.flatten())
    elif pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            yield from _leaves(values.field(i))
    else:
        yield values


def refuse_far_timestamps(table: pa.Table, database: str, nested_only: bool = False) -> pa.Table:
    """``table``, unless it holds such values: then the ``QueryError`` with the cast (``nested_only``: in lists,
    structs and maps only, which the command line cannot print as DuckDB does)."""
    inside = far_columns(table, nested=True)
    indices = sorted(inside + ([] if nested_only else far_columns(table)))
    if indices:
        names = [table.schema.field(i).name for i in indices]
        column = '"' + names[0].replace('"', '""') + '"'
        out = "" if indices[0] in inside else (f", or leave them out (WHERE {column} BETWEEN '0001-01-01' AND "
                                               "'9999-12-31 23:59:59.999999')")
        shown = "the DuckDB CLI shows them" if inside else "the DuckDB CLI and `analytics-kit query` show them"
        raise QueryError(f"The result has dates or timestamps outside the years 1 to 9999, which pandas holds but "
                         f"cannot show: {', '.join(names)}.", guidance=f"Cast them in the SQL, e.g. {column}::VARCHAR"
                         f"{out}; {shown} as they are.", database=database)
    return table


def far_as_text(table: pa.Table) -> pa.Table:
    """``table`` with each column holding such values as text, ``infinity`` and ``-infinity`` as DuckDB's CLI shows
    them, others in pandas' own form (``10000-01-01 00:30:00+00:00``), a year before 1 as DuckDB's CLI has it."""
    import numpy as np  # not at import: `analytics-kit load` imports pyarrow without numpy (see run/lean.py)

    for index in far_columns(table):
        field = table.schema.field(index)
        unit, _, _, end = _counts(field)
        times = _as_counts(table.column(index)).to_pylist()
        counts = np.array([0 if t is None else t for t in times], dtype=np.int64).astype(f"datetime64[{unit}]")
        # one precision for the column, as pandas prints it: seconds, unless a value has a fraction
        per = _PER_SECOND.get(unit, 1)
        parts = {t % per for t in times if t is not None and abs(t) != end}
        milli = per >= 1000 and all(p % (per // 1000) == 0 for p in parts)
        shape = "D" if unit == "D" else "s" if parts <= {0} else "ms" if milli else unit
        suffix = "+00:00" if unit != "D" and field.type.tz is not None else ""
        shown = ["NaT" if t is None else "infinity" if t == end else "-infinity" if t == -end
                 else _era(str(text).replace("T", " ")) + suffix
                 for t, text in zip(times, np.datetime_as_string(counts, unit=shape))]
        table = table.set_column(index, field.name, pa.array(shown, pa.string()))
    return table


def _era(text: str) -> str:
    """numpy's year before 1 (``-0043``, the year 0 counted) as DuckDB's CLI shows it: ``0044-03-15 (BC) 12:00:00``."""
    sign, year, day, rest = _NUMPY_DAY.match(text).groups()
    return text if not sign and int(year) > 0 else f"{int(year) + 1 if sign else 1:04d}{day} (BC){rest}"


_NUMPY_DAY = re.compile(r"(-?)(\d+)(-\d\d-\d\d)(.*)", re.DOTALL)
