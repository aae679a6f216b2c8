"""Records whose field names dlt would put into one column: refused, not silently merged.

dlt names columns with its naming convention (``Deleted`` and ``deleted`` are both
``deleted``, ``userId`` and ``user_id`` both ``user_id``) and, for a record holding two
such fields, keeps whichever comes last: a soft-delete flag, a value or even the primary key
is then overwritten without a word. A field named as one of dlt's own row columns
(``_dlt_id``, ``_dlt_load_id``) would take that column's place. Fields of different
records that share a column (an API that renamed a field) are merged as dlt merges them.
A field dlt names as no column at all (``__``, ``_ _``: its path normaliser strips every separator) loses its value
in the kit's parquet files, and fails dlt's own load with the message ``''`` (helper-152): refused too, named.
Top-level fields only: dlt also flattens nested objects into ``a__b`` columns and list items
into child tables, where the same can happen; those are not checked yet.
"""

from __future__ import annotations

from typing import Any, Callable

from analytics_kit import seam
from analytics_kit.errors import LoadError


class FieldNames:
    """Checks a resource's pages for fields that one record holds twice under one column name."""

    def __init__(self, resource: str, naming: Callable[[str], str]) -> None:
        self.resource = resource
        self.naming = naming
        (load_id, _), (row_id, _), _ = seam.dlt_row_columns(naming)
        self.reserved = {load_id, row_id}
        self.known: set = set()
        self.columns: dict[str, set] = {}  # column name -> the fields seen that dlt names so
        self.shared: list[tuple[str, set]] = []  # the columns more than one field goes to

    def __call__(self, item: Any) -> Any:
        """As a step behind the resource's processing_steps, which may rename the fields."""
        if isinstance(item, (list, dict)):
            self.check(item if isinstance(item, list) else [item])
        return item

    def check(self, page: list, request: str | None = None) -> None:
        """Raises ``LoadError`` for a record with two fields of one column, or one of dlt's own."""
        records = [r for r in page if type(r) is dict]
        fields = set().union(*records) if records else set()
        new = fields - self.known
        if new:
            for field in new:
                if not isinstance(field, str):
                    continue
                column = self.naming(field)
                if column in self.reserved or not column:
                    raise self._clash(field, column, request, reserved=True)
                names = self.columns.setdefault(column, set())
                names.add(field)
                if len(names) == 2:
                    self.shared.append((column, names))
            self.known |= new
        for column, names in self.shared:  # usually none: the check per record is for those only
            if len(names & fields) > 1:
                for record in records:
                    both = sorted(names & record.keys())
                    if len(both) > 1:
                        raise self._clash(" and ".join(map(repr, both)), column, request)

    def _clash(self, fields: str, column: str, request: str | None, *, reserved: bool = False) -> LoadError:
        if reserved and not column:
            problem = f"has a field {fields!r}, which dlt names as no column at all: its value would be lost"
        elif reserved:
            problem = (f"has a field {fields!r}, which is the name of dlt's own column {column!r}: it would "
                       "replace the row ids dlt keeps there")
        else:
            problem = (f"has the fields {fields}, which dlt loads into one column, {column!r}: one would overwrite "
                       "the other")
        where = f" on {request}" if request else ""
        return LoadError(
            f"Resource '{self.resource}': a record{where} {problem}. Nothing from this run was committed.",
            guidance=f"Rename or drop {'the field' if reserved else 'one of the fields'} before it is loaded: add a "
            "processing step to the resource "
            "(processing_steps: [{'map': a function that renames the field}]).",
            resource=self.resource, column=column, request=request)
