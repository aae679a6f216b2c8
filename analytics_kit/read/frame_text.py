"""A query's frame as the command line prints it: every value as the DuckDB CLI would show it.

pandas prints a double to 6 decimals (4e-07 showed as 0.0 beside ``positive = True``, 1.23456789 as
1.234568: helper-142), and a FLOAT at a double's width. Timestamps it cannot print (past the year 9999,
infinity) reach it as text (``read/far_times.far_as_text``).
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
        # timestamps pandas cannot format (past the year 9999, infinity) came as text (read/far_times.py)
        return frame.to_string(index=False, line_width=width, float_format=_shortest)


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
