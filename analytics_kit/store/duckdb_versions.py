"""DuckDB's differences between the supported versions (pyproject.toml): duckdb 1.4.3 to 2.0.

Each entry says what differs and when it can go. Nothing here concerns dlt: the seam
(``seam.py``) holds the differences between dlt versions.
"""

from __future__ import annotations

import duckdb


def new_file_config() -> dict[str, str]:
    """The DuckDB config a new file is created with, so that the ``duckdb`` CLI from PyPI
    (1.5.x) can open it for ad-hoc SQL.

    duckdb 2.x writes storage version 69 by default, which the 1.5 CLI cannot read; a file
    created with ``storage_compatibility_version`` v1.5.0 keeps that format. duckdb 1.4
    rejects that version string (it does not know it) and writes a format every later
    reader opens, so it gets no setting. Drop that branch when the oldest duckdb is 1.5.
    """
    if tuple(int(part) for part in duckdb.__version__.split(".")[:2]) < (1, 5):
        return {}
    return {"storage_compatibility_version": "v1.5.0"}


def duckdb_in_use_errors() -> tuple[type[Exception], ...]:
    """The exception types ``duckdb.connect`` raises when another connection of this process
    holds the file (``database.in_use_here`` reads their text): ConnectionException ("different
    configuration") everywhere; ResourceInUseException from duckdb 1.5 on, which duckdb 1.4
    lacks; BinderException ("Unique file handle conflict") in duckdb 1.4.3 and 1.4.4 while that
    connection opens or closes in another thread. Drop the 1.4 case when the oldest is 1.5."""
    names = ("ConnectionException", "ResourceInUseException", "BinderException")
    return tuple(getattr(duckdb, name) for name in names if hasattr(duckdb, name))
