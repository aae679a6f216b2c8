"""``Tables``: what ``tables()`` returns, a DataFrame that shows well in a notebook.

A plain pandas DataFrame of ``table`` and ``rows`` in every way (its text is pandas' own, so
stored notebook outputs keep it); in JupyterLab it also shows each table's share of the
rows as a bar, and the total. Imported on first use, with pandas.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analytics_kit.display import block, esc, html_table, plural

BAR = 24


class Tables(pd.DataFrame):
    """The loaded tables with their row counts."""

    @property
    def _constructor(self) -> Any:
        return Tables

    def _repr_html_(self) -> str | None:  # type: ignore[override]
        if list(self.columns) != ["table", "rows"]:
            return super()._repr_html_()  # a frame made from this one: pandas' own display
        counts = [int(n) for n in self["rows"].fillna(0)]
        largest = max(counts, default=0) or 1
        rows = [(name, n, "█" * max(1 if n else 0, n * BAR // largest))
                for name, n in zip(self["table"], counts)]
        caption = f"<b>{esc(plural(len(rows), 'table'))}</b> · {esc(plural(sum(counts), 'row'))}"
        note = ("<p>dlt's bookkeeping tables (<code>_dlt_*</code>) are left out; "
                "<code>ak.describe(table)</code> and <code>ak.schema()</code> show the columns.</p>")
        return block(html_table(["table", "rows", ""], rows, right=(1,), caption=caption), note)


def listing(frame: pd.DataFrame) -> Tables:
    """``frame`` (``table``, ``rows``) as ``Tables``."""
    return Tables(frame)
