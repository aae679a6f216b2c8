"""The tables of a dlt schema as a mermaid ``erDiagram``, drawn as dlt's ``Schema.to_mermaid`` draws it.

``schema()`` shows this diagram. dlt draws the same one (``to_mermaid(remove_processing_hints=True,
hide_descriptions=True, include_dlt_tables=False)``), but only from a ``dlt.Schema``, which a
reader of a DuckDB file does without (``import dlt`` is most of its start-up time);
``tests/test_imports.py`` compares the two on schemas with nested tables, root keys and
references. Read from ``Schema.tables`` (table name -> table, each with its ``columns``):

- each table that has a typed column, in the schema's order, with its typed columns (type,
  name, and ``PK`` / ``UK`` for a primary key / unique column);
- then the links: each nested table to its parent (``_dlt_parent``), to its root table where it
  has a root key (``_dlt_root``), and the references a table declares (``references`` hint).

dlt's own tables (``_dlt_loads``, ...) and links to them are left out.
"""

from __future__ import annotations

from typing import Any, Iterator

INDENT = "    "
# dlt's arrow for each cardinality of a reference (many_to_one for nested tables).
ARROWS = {
    "one_to_many": "||--|{", "many_to_one": "}|--||", "zero_to_many": "|o--|{", "many_to_zero": "}|--o|",
    "one_to_one": "||--||", "many_to_many": "}|--|{", "zero_to_one": "|o--o|", "one_to_zero": "|o--o|",
}
BOOKKEEPING = "_dlt"


def mermaid(tables: dict[str, Any]) -> str:
    """The ``erDiagram`` source for ``tables`` (``Schema.tables``), ending in a newline."""
    lines = ["erDiagram"]
    for name, table in tables.items():
        columns = [c for c in table.get("columns", {}).values() if _typed(c)]
        if name.startswith(BOOKKEEPING) or not columns:
            continue
        lines.append(f"{INDENT}{table['name']}{{")
        for column in columns:
            keys = ",".join(mark for mark, hint in (("PK", "primary_key"), ("UK", "unique")) if column.get(hint))
            lines.append(f"{INDENT}{column['data_type']} {column['name']}" + (f" {keys}" if keys else ""))
        lines.append("}")
    for table, referenced, cardinality, label in _links(tables):
        if not (table.startswith(BOOKKEEPING) or referenced.startswith(BOOKKEEPING)):
            lines.append(f'{INDENT}{table} {ARROWS[cardinality]} {referenced} : "{label}"')
    return "\n".join(lines) + "\n"


def _typed(column: dict) -> bool:
    """A column dlt creates in the destination: named and typed (not only NULLs seen yet)."""
    return bool(column.get("name")) and bool(column.get("data_type"))


def _links(tables: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(table, referenced table, cardinality, label) of each link, in the order dlt lists them."""
    for name, table in tables.items():
        if table.get("parent") is not None:
            yield name, table["parent"], "many_to_one", "_dlt_parent"
        if table.get("parent") and any(_typed(c) and c.get("root_key") not in (False, None)
                                       for c in table["columns"].values()):
            yield name, _root(tables, name), "many_to_one", "_dlt_root"
        for ref in table.get("references") or ():
            yield (name if ref.get("table") is None else ref["table"], ref["referenced_table"],
                   ref.get("cardinality", "one_to_many"), ref.get("label", ""))


def _root(tables: dict[str, Any], name: str) -> str:
    """The table at the top of ``name``'s chain of parents."""
    while tables[name].get("parent"):
        name = tables[name]["parent"]
    return name
