"""A primary key as the records name its fields.

A key hint may use dlt's column name (``user_id``) for the API's field (``userId``), as dlt's
merge accepts: dlt names the hint's columns as it names the fields. Code that reads the key
from raw records must look it up under the API's name.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pyarrow as pa

from analytics_kit.errors import LoadError


def key_fields(key: str | tuple, names: Iterable[Any], naming: Callable[[str], str]) -> str | tuple:
    """``key`` (one name or a tuple) with each name the records lack replaced by their field that
    dlt names as it names the key ("userId" and "user_id", "ID" and "id": one column; a key "ID" over
    fields "id" was missing from every record: helper-135); a name no field matches stays as it is."""
    names = list(names)
    present = set(names)

    def field(name: str) -> str:
        if name in present:
            return name
        column = naming(name)
        return next((f for f in names if isinstance(f, str) and naming(f) == column), name)

    return field(key) if isinstance(key, str) else tuple(field(k) for k in key)


class DedupKey:
    """The incremental's deduplication key, given to dlt as a callable of the item (public:
    ``Incremental.primary_key`` takes a column hint template). With the plain hint, dlt's
    incremental step looked ``user_id`` up in each record holding ``userId`` and every
    incremental load of such a resource failed with KeyError: 'user_id'."""

    def __init__(self, key: str | tuple, naming: Callable[[str], str]) -> None:
        self.key = key
        self.naming = naming
        self._wanted = {key} if isinstance(key, str) else set(key)

    def __repr__(self) -> str:
        return repr(self.key)

    def __call__(self, item: Any) -> str | tuple:
        names = item.column_names if isinstance(item, pa.Table) else item.keys() if isinstance(item, dict) else ()
        if self._wanted.issubset(names):
            return self.key  # the common case: the records use the hint's names
        return key_fields(self.key, names, self.naming)


def missing_key(at: int, request: str, resource: str, primary_key: Any, key: Any = None) -> LoadError:
    """The ``LoadError`` for record ``at`` (from 0) of a page without its primary key (``key``: the record's, a tuple
    for a key of several fields, whose missing ones are named: helper-155)."""
    missing = [f for f, v in zip(primary_key, key) if v is None] if isinstance(key, tuple) else []
    parent = [f for f in missing or [primary_key] if isinstance(f, str) and f.startswith("_")]
    return LoadError(
        f"Resource '{resource}': the primary key {primary_key!r} is missing or null"
        f"{f' (its fields {missing})' if missing else ''} in record {at + 1} on {request}; a record without its key "
        "cannot be merged. Nothing from this run was committed.",
        guidance="The key is read in each record as the API sends it, before any processing_steps (a map cannot "
        "create or rename it; a filter may drop records without it): set primary_key to the API's own field, or a "
        "list of its fields for a key of several. If the API does send that field, this is a problem of its data."
        + (f" A field dlt adds from a parent resource (_<parent>_<field>, as {parent[0]!r}) is there only where the "
           "resource lists that field in include_from_parent (\"include_from_parent\": [\"id\"])." if parent else ""),
        resource=resource, request=request)
