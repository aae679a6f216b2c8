"""Identifiers and strings the kit writes into SQL, quoted so that no name can end the quote.

Table and schema names come from the database file and from the caller; a name holding a
double quote could otherwise close the identifier and append statements of its own (a crafted
table name made ``tables()`` run a ``COPY ... TO`` that wrote a file). DuckDB and PostgreSQL
both quote with double quotes and escape one by doubling it.
"""

from __future__ import annotations

from typing import Any


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier: ``a"b`` becomes ``"a""b"``."""
    if not isinstance(name, str) or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """``text`` as a quoted SQL string: ``bob's`` becomes ``'bob''s'``."""
    return "'" + text.replace("'", "''") + "'"


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``, each part quoted."""
    return f"{ident(schema)}.{ident(name)}"


def tables_of(client: Any, *datasets: str) -> set[tuple[str, str]]:
    """(schema, table) of every table in ``datasets``, in one query."""
    marks = ", ".join(["%s"] * len(datasets))
    rows = client.execute_sql(
        f"SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ({marks})", *datasets)
    return {(schema, name) for schema, name in rows or ()}


class ViewColumns(set):
    """The columns of a view (``columns_of``): no table a load made."""


def columns_of(client: Any, dataset: str) -> dict[str, set[str]]:
    """Each table and view of ``dataset`` with its columns' names (a view's as ``ViewColumns``), in one query."""
    columns: dict[str, set[str]] = {}
    rows = client.execute_sql(
        "SELECT c.table_name, c.column_name, t.table_type FROM information_schema.columns c JOIN "
        "information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = %s", dataset)
    for table, column, kind in rows or ():
        columns.setdefault(table, ViewColumns() if "VIEW" in str(kind).upper() else set()).add(column)
    return columns
