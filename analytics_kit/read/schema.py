"""``schema``: the data dictionary of the loaded tables, with a diagram of how they link.

Every table and column dlt's stored schema knows, with its type, nullability, primary key,
parent table (dlt puts a list inside a record in a nested table, ``events__tags``, linked
to its parent row) and where it came from: ``config`` (declared in the config's
``columns``, the guide's Schema section), ``inferred`` (typed by dlt from the data) or
``dlt`` (dlt's bookkeeping, such as ``_dlt_id``). Which columns the config declared is
what the newest committed load of each table recorded (see ``store.load_log``).

The diagram is a mermaid ``erDiagram``, drawn as dlt's ``Schema.to_mermaid`` draws it
(``read.diagram``): JupyterLab 4 draws it from the display's Markdown. From a DuckDB file the
schema is read as dlt would restore it (``seam.stored_schema``), without importing dlt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analytics_kit import seam
from analytics_kit.display import plural, text_table
from analytics_kit.errors import QueryError, arguments_safe
from analytics_kit.read import connection
from analytics_kit.read.diagram import mermaid
from analytics_kit.read.history import committed_loads
from analytics_kit.read.state import restored
from analytics_kit.store.database import DEFAULT_DATABASE
from analytics_kit.store.target import Target

if TYPE_CHECKING:
    import pandas as pd

SOURCES = {
    "config": "declared in the config's columns",
    "inferred": "typed by dlt from the data",
    "dlt": "dlt's bookkeeping",
    "unknown": "loaded before the kit recorded what the config declared",
}
# Column hints worth a reader's attention, as dlt names them.
HINTS = ("incremental", "hard_delete", "dedup_sort", "merge_key", "unique", "row_key", "parent_key", "root_key")
COLUMNS = ["table", "column", "type", "nullable", "primary_key", "parent", "source", "hints"]


@dataclass(frozen=True, eq=False)
class Diagram:
    """The tables and their parent-child links as a mermaid ``erDiagram``; JupyterLab draws it."""

    mermaid: str

    def __repr__(self) -> str:
        return self.mermaid

    def _repr_markdown_(self) -> str:
        return f"```mermaid\n{self.mermaid}\n```"


@dataclass(frozen=True, eq=False)
class DataDictionary:
    """What ``schema()`` returns: ``columns`` (a DataFrame, one row per column: ``table``,
    ``column``, ``type``, ``nullable``, ``primary_key``, ``parent``, ``source``, ``hints``),
    ``tables`` (one row per table), ``mermaid`` (the diagram's source) and ``diagram``.

    In a notebook it shows as the diagram and one table per loaded table; as text, the same
    tables.
    """

    columns: pd.DataFrame = field(repr=False)
    mermaid: str = field(repr=False)

    @property
    def diagram(self) -> Diagram:
        return Diagram(self.mermaid)

    @property
    def tables(self) -> pd.DataFrame:
        """One row per table: ``table``, ``parent``, ``columns`` (how many), ``primary_key``."""
        import pandas as pd

        rows = []
        for name, cols in self._by_table():
            keys = [c["column"] for c in cols if c["primary_key"]]
            rows.append({"table": name, "parent": cols[0]["parent"], "columns": len(cols),
                         "primary_key": ", ".join(keys) or None})
        return pd.DataFrame(rows, columns=["table", "parent", "columns", "primary_key"]).astype(
            {"table": "string", "parent": "string", "columns": "Int64", "primary_key": "string"})

    def _by_table(self) -> list[tuple[str, list[dict]]]:
        grouped: dict[str, list[dict]] = {}
        for row in self.columns.to_dict("records"):
            grouped.setdefault(row["table"], []).append(row)
        return list(grouped.items())

    @staticmethod
    def _cells(col: dict) -> tuple:
        return (col["column"], col["type"], "yes" if col["nullable"] else "no", "PK" if col["primary_key"] else "",
                col["source"], col["hints"] or "")

    def _heading(self, name: str, cols: list[dict]) -> str:
        parent = cols[0]["parent"]
        return name + (f" (nested in {parent})" if isinstance(parent, str) else "")

    def __repr__(self) -> str:
        grouped = self._by_table()
        used = dict.fromkeys(self.columns["source"]) if len(self.columns) else {}
        lines = [f"DataDictionary({plural(len(grouped), 'table')}, {plural(len(self.columns), 'column')})"]
        lines += [f"  source {name}: {SOURCES[name]}" for name in SOURCES if name in used]
        headers = ["column", "type", "nullable", "key", "source", "hints"]
        for name, cols in grouped:
            lines.append(self._heading(name, cols))
            lines += text_table(headers, [self._cells(c) for c in cols])
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        parts = [self.diagram._repr_markdown_()]
        headers = ["column", "type", "nullable", "key", "source", "hints"]
        for name, cols in self._by_table():
            rows = [headers, ["---"] * len(headers)] + [[_md(v) for v in self._cells(c)] for c in cols]
            parts.append(f"**{_md(self._heading(name, cols))}**\n\n" + "\n".join("| " + " | ".join(r) + " |"
                                                                               for r in rows))
        used = dict.fromkeys(self.columns["source"]) if len(self.columns) else {}
        parts.append("Source: " + "; ".join(f"*{n}*: {SOURCES[n]}" for n in SOURCES if n in used) + ".")
        return "\n\n".join(parts)


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


@arguments_safe
def schema(database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, *,
           destination: str | None = None) -> DataDictionary:
    """The data dictionary of the loaded tables: every table and column with its type,
    nullability, primary key, parent table and source (``config``, ``inferred`` or ``dlt``),
    and a diagram of the tables and their parent-child links (``.diagram``)."""
    import pandas as pd

    target = Target.of(destination, database, dataset)
    records = committed_loads(database, dataset, destination=destination)
    # each table as the newest load that recorded it declared it
    declared: dict[str, list[str]] | None = None
    for record in reversed(records):
        if record.facts and "declared" in record.facts:
            declared = {**record.facts["declared"], **(declared or {})}
    tables = _stored_tables(target, database)
    if tables is None:
        raise QueryError(f"{target.label} holds no schema of the kit's loads (a file dlt loaded outside the kit keeps "
                         "its schema under its own pipeline's name).", guidance="Run analytics_kit.load(config) (or "
                         "`analytics-kit load`) into it first; its tables are read as they are with ak.tables(), "
                         "ak.describe() and ak.query().", database=target.label)
    rows = []
    data_tables = (t for name, t in tables.items() if not name.startswith("_dlt"))  # as Schema.data_tables()
    for table in sorted(data_tables, key=lambda t: t["name"]):
        for column in table["columns"].values():
            if "data_type" not in column:
                continue  # only NULLs seen so far: no column in the database yet
            rows.append(_column_row(table, column, declared))
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({
        "table": "string", "column": "string", "type": "string", "nullable": "boolean",
        "primary_key": "boolean", "parent": "string", "source": "string", "hints": "string"})
    return DataDictionary(frame, mermaid(tables).rstrip())


def _stored_tables(target: Target, given: object) -> dict[str, dict] | None:
    """The tables of the default schema (``Schema.tables``) as dlt restores it, or None without one."""
    if not target.is_file:
        with restored(target) as pipeline:
            return pipeline.default_schema.tables if pipeline.default_schema_name else None
    with connection.connect(target.database, given, target.dataset) as con:
        stored = seam.stored_schema(con, target.dataset, seam.stored_state(con, target.dataset, target.pipeline_name))
    return None if stored is None else stored["tables"]


def _column_row(table: dict, column: dict, declared: dict[str, list[str]] | None) -> dict:
    name = column["name"]
    if name.startswith("_dlt"):
        source = "dlt"
    elif declared is None:
        source = "unknown"
    else:
        source = "config" if name in declared.get(table["name"], ()) else "inferred"
    return {
        "table": table["name"], "column": name, "type": column["data_type"],
        "nullable": bool(column.get("nullable", True)), "primary_key": bool(column.get("primary_key")),
        "parent": table.get("parent"), "source": source,
        "hints": ", ".join(h for h in HINTS if column.get(h)) or None,
    }
