"""A query's frame as the command line prints it: every value as the DuckDB CLI would show it.

pandas prints a double to 6 decimals (4e-07 showed as 0.0 beside ``positive = True``, 1.23456789 as
1.234568) and fails on a timestamp past the year 9999, which DuckDB stores and reads (a traceback of
63 lines for ``SELECT *``: helper-142).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def frame_text(frame: pd.DataFrame, width: int | None) -> str:
    """``frame`` as text, rows on lines of ``width`` (None: one line each); an empty one keeps its column names."""
    if not len(frame):  # "(no rows)" alone did not say what was asked (helper-118)
        return "  ".join(map(str, frame.columns)) + "\n(no rows)"
    frame = _singles(frame)
    with pd.option_context("display.max_rows", 200, "display.width", 200, "display.max_columns", 50):
        try:
            return frame.to_string(index=False, line_width=width, float_format=_shortest)
        except (NotImplementedError, OverflowError, ValueError):  # a timestamp pandas cannot format
            shown = frame.copy()
            for index, kind in enumerate(frame.dtypes):  # by position, as _singles: two columns may share a name
                if pd.api.types.is_datetime64_any_dtype(kind):
                    shown.isetitem(index, pd.Series(_times_text(frame.iloc[:, index]), index=frame.index, dtype=object))
            return shown.to_string(index=False, line_width=width, float_format=_shortest)


def _shortest(value: Any) -> str:
    """The shortest text that reads back as the same double, as DuckDB's CLI shows it."""
    return repr(float(value))


def _singles(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its FLOAT columns as text of their own width: 1.1, not the double 1.100000023841858 pandas
    hands the formatter (helper-143)."""
    singles = [i for i, kind in enumerate(frame.dtypes) if kind in (np.float32, pd.Float32Dtype())]
    if not singles:
        return frame
    frame = frame.copy()
    for index in singles:
        column = frame.iloc[:, index]
        frame.isetitem(index, pd.Series([str(np.float32(v)) if pd.notna(v) else "<NA>" for v in column],
                                        index=frame.index, dtype=object))
    return frame


def _times_text(column: pd.Series) -> list[str]:
    """Timestamps as text whatever their year, in pandas' own form (``2024-01-01 00:00:00+00:00``)."""
    zone = getattr(column.dtype, "tz", None)
    values = column.dt.tz_convert("UTC").dt.tz_localize(None) if zone is not None else column
    times = values.to_numpy().astype("datetime64[us]")
    micros = times[~np.isnat(times)].astype(np.int64)
    # one unit for the whole column, as pandas prints it: seconds, unless a value has a fraction
    unit = "s" if not (micros % 1_000_000).any() else "ms" if not (micros % 1000).any() else "us"
    texts = np.datetime_as_string(times, unit=unit)
    suffix = "+00:00" if zone is not None else ""
    # DuckDB's infinities reach pandas as the ends of 64-bit microseconds: 294247-01-10 read as a date (helper-144)
    ends = {_LAST: "infinity", -_LAST: "-infinity"}
    return ["NaT" if text == "NaT" else ends.get(int(micro)) or text.replace("T", " ") + suffix
            for text, micro in zip(texts, times.astype(np.int64))]


_LAST = 2**63 - 1
