"""Declared column types on records that stay dicts: a value its column cannot hold stops the load,
and a declared decimal is rounded to its scale.

On Arrow pages the converter refuses such a value (``BadValue``). Records that stay dicts (nested
lists, map and filter steps, hints only dlt's normaliser reads) reach dlt's normaliser, which puts
it in a variant column (``value__v_text``) without a word. The load stops instead, on either path,
as the README promises. A value fails where dlt's own coercion fails: where dlt makes the variant.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Mapping

import pyarrow as pa

from analytics_kit import seam
from analytics_kit.fetch.arrow_tables import refused
from analytics_kit.fetch.page_checks import bad_value

# The Python types each declared type takes as they are (a bool is no int here: dlt decides it).
_AS_THEY_ARE: dict[str, tuple[type, ...]] = {"bigint": (int,), "double": (float, int), "bool": (bool,),
                                              "text": (str,)}
# Types that take any value: dlt stores it as JSON.
_ANY = ("json", "complex")


class DeclaredTypes:
    """A step behind the config's own steps and dlt's incremental one (what dlt will load): checks the
    declared columns of records that stay dicts; Arrow pages pass, the converter checked them."""

    def __init__(self, resource: str, kinds: dict[str, str], primary_key: Any) -> None:
        self.resource, self.primary_key = resource, primary_key
        self.checks = [(name, kind, _AS_THEY_ARE.get(kind, ())) for name, kind in kinds.items()]

    @classmethod
    def of(cls, resource: str, columns: Any, primary_key: Any) -> "DeclaredTypes | None":
        """For a resource's ``columns`` given as a dict (lists, models and callables are left to dlt)."""
        if not isinstance(columns, dict):
            return None
        kinds = {name: hint["data_type"] for name, hint in columns.items()
                 if isinstance(hint, dict) and isinstance(hint.get("data_type"), str) and hint["data_type"] not in _ANY}
        return cls(resource, kinds, primary_key) if kinds else None

    def __call__(self, item: Any) -> Any:
        if isinstance(item, pa.Table) or not item:
            return item
        rows = item if isinstance(item, list) else [item]
        for name, kind, as_they_are in self.checks:
            for index, row in enumerate(rows):
                value = row.get(name) if isinstance(row, dict) else None
                if value is None or type(value) in as_they_are:
                    continue
                try:  # as dlt's normaliser reads and coerces it (items_normalizers/jsonl.py)
                    seam.coerce_value(kind, seam.py_type_to_sc_type(type(value)), value)
                except (ValueError, SyntaxError, TypeError, OverflowError):
                    raise bad_value(refused(name, index, kind, value), rows, [(len(rows), "")], self.resource,
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
