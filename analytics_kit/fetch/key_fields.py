"""A primary key as the records name its fields.

A key hint may use dlt's column name (``user_id``) for the API's field (``userId``), as dlt's
merge accepts: dlt names the hint's columns as it names the fields. Code that reads the key
from raw records must look it up under the API's name.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pyarrow as pa


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
