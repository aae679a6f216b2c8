"""Declared column types on records that stay dicts: a value its column cannot hold stops the load,
and a declared decimal is rounded to its scale.

On Arrow pages the converter refuses such a value (``BadValue``). Records that stay dicts (nested
lists, map and filter steps, hints only dlt's normaliser reads) reach dlt's normaliser, which puts
it in a variant column (``value__v_text``) without a word. The load stops instead, on either path,
as the README promises. A value fails where dlt's own coercion fails: where dlt makes the variant.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, Callable, Mapping

import pyarrow as pa

from analytics_kit.fetch.arrow_tables import COERCE_ERRORS, BadValue, coerced_value, refused
from analytics_kit.fetch.page_checks import bad_value

# The Python types each declared type takes as they are (a bool is no int here: dlt decides it).
_AS_THEY_ARE: dict[str, tuple[type, ...]] = {"bigint": (int,), "double": (float, int), "bool": (bool,),
                                              "text": (str,)}
# Types that take any value: dlt stores it as JSON.
_ANY = ("json", "complex")
# dlt's precision for a decimal column that gives none (DEFAULT_NUMERIC_PRECISION)
DEFAULT_PRECISION = 38
# Rounding a value of any size to its scale: the default context's 28 digits raised for larger ones
_WIDE = Context(prec=1000)


class DeclaredTypes:
    """A step behind the config's own steps and dlt's incremental one (what dlt will load): checks the
    declared columns of records that stay dicts; Arrow pages pass, the converter checked them.

    A field counts for the column dlt's naming makes of it (``isDeleted`` fills ``is_deleted``). A dict or
    a list is left to dlt, which flattens it into columns or a nested table rather than coercing it."""

    def __init__(self, resource: str, kinds: dict[str, str], primary_key: Any, field_naming: Callable[[str], str] = str,
                 flattened: Callable[[tuple], str] | None = None, whole: frozenset[str] = frozenset()) -> None:
        self.resource, self.primary_key, self.field_naming = resource, primary_key, field_naming
        # the declared names as dlt names its columns: a path stays one (meta__score is not meta_score)
        self.kinds = {field_naming(name): kind for name, kind in kinds.items()}
        self.columns: dict[Any, str | None] = {}  # a record's field -> the declared column it fills, or None
        # dlt flattens a dict field into columns named by the path (meta -> meta__score); only where a declared
        # column lies under it is the dict read, and never one declared json, which dlt keeps whole
        self.flattened = flattened
        self.whole = frozenset(field_naming(name) for name in whole)
        self.paths: dict[tuple, str | None] = {}  # a path of fields -> its column, or None where nothing is declared

    @classmethod
    def of(cls, resource: str, columns: Any, primary_key: Any, field_naming: Callable[[str], str] = str,
           flattened: Callable[[tuple], str] | None = None) -> "DeclaredTypes | None":
        """For a resource's ``columns`` given as a dict (lists, models and callables are left to dlt)."""
        if not isinstance(columns, dict):
            return None
        kinds = {name: hint["data_type"] for name, hint in columns.items()
                 if isinstance(hint, dict) and isinstance(hint.get("data_type"), str) and hint["data_type"] not in _ANY}
        whole = frozenset(name for name, hint in columns.items() if isinstance(hint, dict) and hint.get("data_type")
                          in _ANY)
        return cls(resource, kinds, primary_key, field_naming, flattened, whole) if kinds else None

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
                if type(value) is dict and self.flattened is not None:
                    self._nested((field,), value, rows, index)
                    continue
                column = self.columns[field] if field in self.columns else self._column(field)
                if column is not None:
                    self._check(column, value, rows, index, field)
        return item

    def _check(self, column: str, value: Any, rows: list, index: int, shown: Any = None) -> None:
        """Raises the load's error where ``value`` cannot go into the declared ``column`` (named as ``shown``)."""
        if value is None or isinstance(value, (dict, list)):
            return
        kind = self.kinds[column]
        if type(value) in _AS_THEY_ARE.get(kind, ()):
            return
        try:
            coerced_value(value, kind)
        except COERCE_ERRORS:
            bad = refused(column if shown is None else shown, index, kind, value)
            raise bad_value(bad, rows, [(len(rows), "")], self.resource, self.primary_key) from None

    def _nested(self, path: tuple, value: dict, rows: list, index: int) -> None:
        """The declared columns dlt flattens ``value`` (the record's dict at ``path``) into."""
        column = self._path_column(path)
        if column is None or column in self.whole:
            return
        for field, inner in value.items():
            inner_path = path + (field,)
            if type(inner) is dict:
                self._nested(inner_path, inner, rows, index)
            elif (inner_column := self._path_column(inner_path)) in self.kinds:
                self._check(inner_column, inner, rows, index)

    def _path_column(self, path: tuple) -> str | None:
        """The column of a path of fields, or None where no declared column is it or lies under it."""
        if path in self.paths:
            return self.paths[path]
        try:
            column = self.flattened(path)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - a field dlt's naming refuses: its normaliser says so
            column = None
        under = column is not None and any(name == column or name.startswith(column) for name in self.kinds)
        self.paths[path] = column if under else None
        return self.paths[path]


class DecimalScale:
    """Rounds values of declared ``decimal`` columns to their scale, as the database would, and refuses
    those the column cannot hold.

    dlt's parquet writer refuses a value with more places than the column's scale ("Rescaling
    Decimal value would cause data loss"), where an INSERT into DuckDB or PostgreSQL rounds it
    (0.125 into decimal(10,2) is 0.13). The kit loads parquet, so it rounds first: half away
    from zero, from the value's shortest text (1.005 -> 1.01), as a SQL literal is rounded.
    A value with more digits than the precision, or NaN or an infinity (which dlt's coercion takes),
    failed in the parquet writer with Arrow's words, naming no record: it stops the load here instead.
    """

    def __init__(self, resource: str, shapes: dict[str, tuple[int, int]], primary_key: Any = None) -> None:
        self.resource, self.primary_key = resource, primary_key
        self.shapes = {name: (precision, scale, Decimal(1).scaleb(-scale))
                       for name, (precision, scale) in shapes.items()}

    @classmethod
    def of(cls, resource: str, columns: Any, primary_key: Any = None) -> "DecimalScale | None":
        if not isinstance(columns, Mapping):
            return None
        shapes = {name: (column.get("precision") or DEFAULT_PRECISION, column["scale"])
                  for name, column in columns.items()
                  if isinstance(column, Mapping) and column.get("data_type") == "decimal"
                  and isinstance(column.get("scale"), int) and isinstance(column.get("precision") or 0, int)}
        return cls(resource, shapes, primary_key) if shapes else None

    def __call__(self, item: Any) -> Any:
        rows = item if isinstance(item, list) else [item]
        for index, record in enumerate(rows):
            if not isinstance(record, dict):
                continue
            for name, (precision, scale, quantum) in self.shapes.items():
                value = record.get(name)
                if not isinstance(value, (int, float, str, Decimal)) or isinstance(value, bool):
                    continue
                try:
                    number = Decimal(str(value))
                except (InvalidOperation, ValueError):
                    continue  # not a number: the declared-type check says so
                problem = None
                if not number.is_finite():
                    problem = "not a number"
                else:
                    rounded = number.quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE)
                    if len(rounded.as_tuple().digits) > precision:
                        problem = f"more digits than decimal({precision},{scale}) holds"
                    else:
                        record[name] = rounded
                if problem is not None:
                    bad = BadValue(name, index, "of type decimal", f"has {value!r}, {problem},",
                                   f"Declare {name!r} with a larger precision, or as double or text, if the API "
                                   "sends such values.")
                    raise bad_value(bad, rows, [(len(rows), "")], self.resource, self.primary_key) from None
        return item
