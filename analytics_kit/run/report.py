"""``LoadReport``: what one load did, as text for a terminal and a table for a notebook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analytics_kit.display import block, esc, html_list, html_table, plural, text_table
from analytics_kit.fetch.stats import LoadStats, RetryEvent


@dataclass(frozen=True)
class LoadReport:
    """Mode, rows per table, requests and retries, cursors before and after.

    The repr leaves out what changes from run to run (duration, load id, paths), so a
    notebook can print it and keep a stable output; in JupyterLab it shows as a table.
    ``fetched`` is how many records the API sent per table; where more were fetched than
    loaded, the report says why (an incremental load fetches the records at its stored
    cursor again, and dlt leaves out the ones it already loaded).
    """

    mode: str
    rows: dict[str, int]
    requests: dict[str, int]
    retries: tuple[RetryEvent, ...]
    cursor_before: dict[str, Any]
    cursor_after: dict[str, Any]
    recovered_packages: int = 0
    # What the run noticed and worked around: an API total the pages contradicted, a
    # cursor from the future. Each names its resource.
    warnings: tuple[str, ...] = ()
    duration: float = field(default=0.0, repr=False, compare=False)
    load_id: str | None = field(default=None, repr=False, compare=False)
    database: str = field(default="", repr=False, compare=False)
    # what the load made where it loaded: "a new file" (and a folder for it), or None
    created: str | None = field(default=None, repr=False, compare=False)
    fetched: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    # Wall seconds per step: setup (lock, state), extract (fetch, parse, write files),
    # normalize, load (into the tables); page_wait is the part of extract spent waiting
    # for offset pages fetched ahead, the time the machine had to spare for other work.
    steps: dict[str, float] = field(default_factory=dict, repr=False, compare=False)
    # How often a table's listing was paged, where more than once (it shifted while paged, or
    # held a key twice): its records were fetched again, and each key loaded once.
    passes: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    # Tables of resources asked once per parent record: one record may be in several parents' listings.
    children: tuple[str, ...] = field(default=(), repr=False, compare=False)
    # {resource: the table it loads into}, where that has another name (table_name): its requests and cursor show
    # under the resource's name, its rows under the table's
    into: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # resources that load no table (selected: False), whose records only feed the resources that depend on them: their
    # requests show, not "0 rows (3 filtered out)" (helper-155)
    feeding: tuple[str, ...] = field(default=(), repr=False, compare=False)
    # Set by a notebook's progress display, which ends as this report's table: called as the report shows its own,
    # so that a cell ending with the report shows one table, not two (helper-129).
    on_shown: Any = field(default=None, repr=False, compare=False)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_retries(self) -> int:
        return len(self.retries)

    def timing(self) -> str:
        """Where the time went, e.g. "4.3 s: setup 0.1, extract 3.9 (2.0 waiting for the API), ..."."""
        steps = dict(self.steps)
        wait = steps.pop("page_wait", 0.0)
        waiting = f" ({wait:.1f} waiting for the API)" if wait >= 0.05 else ""
        parts = [f"{name} {seconds:.1f}" + (waiting if name == "extract" else "") for name, seconds in steps.items()]
        return f"{self.duration:.1f} s" + (": " + ", ".join(parts) if parts else "")

    def table_names(self) -> list[str]:
        """The tables the report speaks of: loaded, requested, or with a cursor."""
        return sorted(set(self.rows) | set(self.requests) | set(self.cursor_after))

    def not_loaded(self, table: str) -> str | None:
        """Why fewer rows of ``table`` were loaded than fetched ("1 already loaded"), or None."""
        fetched, loaded = self.fetched.get(table), self.rows.get(table, 0)
        if fetched is None or fetched <= loaded or self.loads_elsewhere(table) or table in self.feeding:
            return None  # a resource's records counted in its table's rows: "250 filtered out" (helper-142)
        if table in self.children:
            return f"{fetched - loaded:,} repeated across the parent records' listings"
        if self.passes.get(table, 1) > 1:
            return f"{fetched - loaded:,} fetched again: the listing was paged {self.passes[table]} times"
        if self.mode == "incremental" and self.cursor_before.get(table) is not None:
            return f"{fetched - loaded:,} already loaded"
        return f"{fetched - loaded:,} filtered out"

    def summary(self) -> "Summary":
        """One flat row for a side-by-side table of runs (``pd.DataFrame([r.summary() ...])``).

        A dict, as before; in a notebook it shows as a two-column table.
        """
        row = Summary(mode=self.mode)
        # A resource that brought no rows this run still gets its column, with 0.
        for table in sorted(set(self.rows) | set(self.requests) - set(self.feeding)):
            row[f"rows_{table}"] = self.rows.get(table, 0)
        row["requests"] = self.total_requests
        row["retries"] = self.total_retries
        for resource in sorted(set(self.cursor_before) | set(self.cursor_after)):
            row[f"cursor_{resource}_before"] = self.cursor_before.get(resource)
            row[f"cursor_{resource}_after"] = self.cursor_after.get(resource)
        return row

    def loads_elsewhere(self, name: str) -> bool:
        """Whether ``name`` is a resource whose rows are its table's, under another name."""
        return name in self.into and name not in self.rows

    def _headline(self) -> str:
        return (f"LoadReport(mode={self.mode!r}, rows={self.total_rows:,}, "
                f"requests={self.total_requests:,}, retries={self.total_retries})")

    def __repr__(self) -> str:
        lines = [self._headline()]
        names = self.table_names()
        width = max((len(n) for n in names), default=0)
        for name in names:
            rows, requests = self.rows.get(name, 0), self.requests.get(name, 0)
            # the unit agrees with its number ("1 requests", helper-129) and keeps its column's width
            shown = (f"{'into ' + self.into[name]:>14}" if self.loads_elsewhere(name) else
                     f"{'not selected':>14}" if name in self.feeding else f"{rows:>9,} {'row ' if rows == 1 else 'rows'}")
            line = f"  {name:<{width}}  {shown}  {requests:>6,} {'request ' if requests == 1 else 'requests'}"
            if name in self.cursor_after or name in self.cursor_before:
                line += f"  cursor {self.cursor_before.get(name)} -> {self.cursor_after.get(name)}"
            why = self.not_loaded(name)
            if why:
                line += f"  ({why})"
            lines.append(line.rstrip())
        if self.recovered_packages:
            lines.append(f"  dropped {self.recovered_packages} unfinished package(s) from an earlier failed run")
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        shown = self.on_shown
        if shown is not None:  # once: the display's end is a line of totals from then on
            object.__setattr__(self, "on_shown", None)
            shown()
        cursors = bool(self.cursor_before or self.cursor_after)
        headers = ["table", "rows", "requests"] + (["cursor before", "cursor after"] if cursors else []) + [""]
        rows = [
            (name, f"into {self.into[name]}" if self.loads_elsewhere(name) else "not selected" if name in self.feeding
             else self.rows.get(name, 0), self.requests.get(name, 0))
            + ((self.cursor_before.get(name), self.cursor_after.get(name)) if cursors else ())
            + (self.not_loaded(name) or "",)
            for name in self.table_names()
        ]
        counts = (plural(self.total_rows, "row"), plural(self.total_requests, "request"),
                  plural(self.total_retries, "retry", "retries"))
        caption = f"<b>Load report</b> · {esc(self.mode)} · " + " · ".join(esc(c) for c in counts)
        recovered = (f"<p>Dropped {self.recovered_packages} unfinished package(s) from an earlier failed run; "
                     "their data was fetched again.</p>" if self.recovered_packages else "")
        return block(
            html_table(headers, rows, right=(1, 2), caption=caption),
            html_list("Retries:", self.retries),
            html_list("Warnings:", self.warnings),
            recovered,
        )


class Summary(dict):
    """``LoadReport.summary()``: a plain dict for ``pd.DataFrame([...])``, shown as a table."""

    def _lines(self) -> list[str]:
        return text_table(None, self.items(), indent="")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("\n".join(self._lines()) if not cycle else "Summary(...)")

    def _repr_html_(self) -> str:
        return block(html_table(["", "value"], self.items()))


def row_counts(staged: dict[str, int], stats: LoadStats, pipeline: Any, merged: frozenset) -> dict[str, int]:
    """Rows per table: those staged, but each key once where the pages (of two passes, a change feed's versions,
    several resources' of one table) held keys more than once, as dlt's merge loads them."""
    if not (stats.distinct or stats.flagged or stats.shared) or not pipeline.default_schema_name:
        return dict(staged)
    table = pipeline.default_schema.naming.normalize_table_identifier
    distinct = {**{table(resource): n for resource, n in stats.distinct.items()}, **stats.shared_keys()}
    # a replace's swap deletes the soft-deleted rows it staged; a merge counts them as its own staged rows
    flagged = {name: n for name, n in stats.flagged.items() if name not in merged}
    return {name: min(count, distinct.get(name, count)) - flagged.get(name, 0) for name, count in staged.items()}
