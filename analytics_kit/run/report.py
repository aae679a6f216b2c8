"""``LoadReport``: what one load did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analytics_kit.fetch.stats import RetryEvent


@dataclass(frozen=True)
class LoadReport:
    """Mode, rows per table, requests and retries, cursors before and after.

    The repr leaves out what changes from run to run (duration, load id, paths), so a
    notebook can print it and keep a stable output.
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

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_retries(self) -> int:
        return len(self.retries)

    def summary(self) -> dict[str, Any]:
        """One flat row for a side-by-side table of runs (``pd.DataFrame([r.summary() ...])``)."""
        row: dict[str, Any] = {"mode": self.mode}
        # A resource that brought no rows this run still gets its column, with 0.
        for table in sorted(set(self.rows) | set(self.requests)):
            row[f"rows_{table}"] = self.rows.get(table, 0)
        row["requests"] = self.total_requests
        row["retries"] = self.total_retries
        for resource in sorted(set(self.cursor_before) | set(self.cursor_after)):
            row[f"cursor_{resource}_before"] = self.cursor_before.get(resource)
            row[f"cursor_{resource}_after"] = self.cursor_after.get(resource)
        return row

    def __repr__(self) -> str:
        lines = [
            f"LoadReport(mode={self.mode!r}, rows={self.total_rows:,}, "
            f"requests={self.total_requests:,}, retries={self.total_retries})"
        ]
        names = sorted(set(self.rows) | set(self.requests) | set(self.cursor_after))
        width = max((len(n) for n in names), default=0)
        for name in names:
            line = f"  {name:<{width}}  {self.rows.get(name, 0):>9,} rows  {self.requests.get(name, 0):>6,} requests"
            if name in self.cursor_after or name in self.cursor_before:
                line += f"  cursor {self.cursor_before.get(name)} -> {self.cursor_after.get(name)}"
            lines.append(line)
        if self.recovered_packages:
            lines.append(f"  dropped {self.recovered_packages} unfinished package(s) from an earlier failed run")
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)
