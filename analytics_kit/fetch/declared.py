"""Declared column types on records that stay dicts: a value its column cannot hold stops the load,
and a declared decimal is rounded to its scale.

On Arrow pages the converter refuses such a value (``BadValue``). Records that stay dicts (nested
lists, map and filter steps, hints only dlt's normaliser reads) reach dlt's normaliser, which puts
it in a variant column (``value__v_text``) without a word. The load stops instead, on either path,
as the README promises. A value fails where dlt's own coercion fails: where dlt makes the variant.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Callable, Mapping

import pyarrow as pa

from analytics_kit.fetch.arrow_tables import COERCE_ERRORS, coerced_value, refused
from analytics_kit.fetch.page_checks import bad_value

# The Python types each declared type takes as they are (a bool is no int here: dlt decides it).
_AS_THEY_ARE: dict[str, tuple[type, ...]] = {"bigint": (int,), "double": (float, int), "bool": (bool,),
                                              "text": (str,)}
# Types that take any value: dlt stores it as JSON.
_ANY = ("json", "complex")


class DeclaredTypes:
    """A step behind the config's own steps and dlt's incremental one (what dlt will load): checks the
    declared columns of records that stay dicts; Arrow pages pass, the converter checked them.

    A field counts for the column dlt's naming makes of it (``isDeleted`` fills ``is_deleted``). A dict or
    a list is left to dlt, which flattens it into columns or a nested table rather than coercing it."""

    def __init__(self, resource: str, kinds: dict[str, str], primary_key: Any,
                 naming: Callable[[str], str] = str, field_naming: Callable[[str], str] = str) -> None:
        self.resource, self.primary_key, self.field_naming = resource, primary_key, field_naming
        self.kinds = {naming(name): kind for name, kind in kinds.items()}
        self.columns: dict[Any, str | None] = {}  # a record's field -> the declared column it fills, or None

    @classmethod
    def of(cls, resource: str, columns: Any, primary_key: Any, naming: Callable[[str], str] = str,
           field_naming: Callable[[str], str] = str) -> "DeclaredTypes | None":
        """For a resource's ``columns`` given as a dict (lists, models and callables are left to dlt)."""
        if not isinstance(columns, dict):
            return None
        kinds = {name: hint["data_type"] for name, hint in columns.items()
                 if isinstance(hint, dict) and isinstance(hint.get("data_type"), str) and hint["data_type"] not in _ANY}
        return cls(resource, kinds, primary_key, naming, field_naming) if kinds else None

    def _column(self, field: Any) -> str | None:
        try:
            column = self.field_naming(field)
        except Exception:  # noqa: BLE001 - a field dlt's naming refuses: its normaliser says so
            column = None
        self.columns[field] = column if column in self.kinds else None
        return self.columns[field]

    def __call__(self, item: Any) -> Any:
        if isinstance(item, pa.Table) or not item:
            return item
        rows = item if isinstance(item, list) else [item]
        for index, row in enumerate(rows):
            for field, value in row.items() if isinstance(row, dict) else ():
                column = self.columns[field] if field in self.columns else self._column(field)
                if column is None or value is None or isinstance(value, (dict, list)):
                    continue
                kind = self.kinds[column]
                if type(value) in _AS_THEY_ARE.get(kind, ()):
                    continue
                try:
                    coerced_value(value, kind)
                except COERCE_ERRORS:
                    raise bad_value(refused(field, index, kind, value), rows, [(len(rows), "")], self.resource,
                                    self.primary_key) from None
        return item


class DecimalScale:
    """Rounds values of declared ``decimal`` columns to their scale, as the database would.

    dlt's parquet writer refuses a value with more places than the column's scale ("Rescaling
    Decimal value would cause data loss"), where an INSERT into DuckDB or PostgreSQL rounds it
    (0.125 into decimal(10,2) is 0.13). The kit loads parquet, so it rounds first: half away
    from zero, from the value's shortest text (1.005 -> 1.01), as a SQL literal is rounded.
    """

    def __init__(self, scales: dict[str, int]) -> None:
        self.scales = {name: Decimal(1).scaleb(-scale) for name, scale in scales.items()}

    @classmethod
    def of(cls, columns: Any) -> "DecimalScale | None":
        if not isinstance(columns, Mapping):
            return None
        scales = {name: column["scale"] for name, column in columns.items()
                  if isinstance(column, Mapping) and column.get("data_type") == "decimal"
                  and isinstance(column.get("scale"), int)}
        return cls(scales) if scales else None

    def __call__(self, item: Any) -> Any:
        for record in item if isinstance(item, list) else [item]:
            if not isinstance(record, dict):
                continue
            for name, quantum in self.scales.items():
                value = record.get(name)
                if isinstance(value, (int, float, str, Decimal)) and not isinstance(value, bool):
                    try:
                        record[name] = Decimal(str(value)).quantize(quantum, rounding=ROUND_HALF_UP)
                    except (InvalidOperation, ValueError):
                        pass  # not a number: dlt's normaliser says so
        return item
