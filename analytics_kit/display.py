"""Notebook and terminal displays: small HTML tables and aligned text, one style for all.

The kit's result objects (``LoadReport``, ``ak.state()``, ``ak.tables()``, ``ak.schema()``,
the progress display) show as HTML in JupyterLab and as plain text in a terminal. Stored
notebook outputs are compared on their plain text (nbval) and kept free of paths, load ids,
times and durations, so neither form shows those. Every value is escaped: cursor values
and warnings quote what an API sent.
"""

from __future__ import annotations

import html
import numbers
import sys
from typing import Any, Iterable, Sequence

# An empty cell: no value (a cursor before the first load, a table a load did not touch).
NONE = "–"
STYLE = "border-collapse:collapse;font-variant-numeric:tabular-nums"


def missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pd.NA refuses to be a bool
        return True
    except ValueError:  # an array
        return False


def cell(value: Any) -> str:
    """``value`` as shown in a table: thousands separators for integers, ``–`` for None."""
    if missing(value):
        return NONE
    if isinstance(value, (bool, _numpy_bool())):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    return str(value)


def _numpy_bool() -> type:
    numpy = sys.modules.get("numpy")
    return numpy.bool_ if numpy is not None else bool


def esc(value: Any) -> str:
    return html.escape(cell(value), quote=True)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Sequence[int] = (),
               caption: str | None = None) -> str:
    """An HTML table; columns whose index is in ``right`` are right-aligned (numbers).

    ``caption`` is HTML already (callers escape what they put in it).
    """
    def td(tag: str, i: int, value: Any) -> str:
        align = "right" if i in right else "left"
        return f'<{tag} style="text-align:{align}">{esc(value)}</{tag}>'

    head = "".join(td("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(td("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    # above the table, not its <caption>: a caption is as narrow as the table and wrapped (helper-129)
    top = f'<div style="text-align:left;margin:0.2em 0">{caption}</div>' if caption else ""
    return f'{top}<table style="{STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def text_table(headers: Sequence[str] | None, rows: Iterable[Sequence[Any]], *, right: Sequence[int] = (),
               indent: str = "  ") -> list[str]:
    """Aligned plain-text lines, one per row (and one for ``headers`` when given)."""
    table = [[cell(v) for v in row] for row in rows]
    if headers is not None:
        table.insert(0, list(headers))
    if not table:
        return []
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        parts = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))]
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines


def html_list(title: str, items: Iterable[Any]) -> str:
    items = list(items)
    if not items:
        return ""
    return f"<p>{html.escape(title)}</p><ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def block(*parts: str) -> str:
    """The pieces of one display in a ``div``."""
    return '<div class="analytics-kit">' + "".join(p for p in parts if p) + "</div>"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 row``, ``2 rows``; ``words`` where the plural is not ``word + "s"``."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"
