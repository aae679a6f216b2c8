"""Identifiers the kit writes into SQL, quoted so that no name can end the quote.

Table and schema names come from the database file and from the caller; a name holding a
double quote could otherwise close the identifier and append statements of its own (a crafted
table name made ``tables()`` run a ``COPY ... TO`` that wrote a file). DuckDB and PostgreSQL
both quote with double quotes and escape one by doubling it.
"""

from __future__ import annotations


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier: ``a"b`` becomes ``"a""b"``."""
    if not isinstance(name, str) or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``, each part quoted."""
    return f"{ident(schema)}.{ident(name)}"
