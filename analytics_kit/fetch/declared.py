"""Declared column types on records that stay dicts: a value its column cannot hold stops the load,
and a declared decimal (or wei, whose shape is the destination's) is rounded to its scale.

On Arrow pages the converter refuses such a value (``BadValue``). Records that stay dicts (nested
lists, map and filter steps, hints only dlt's normaliser reads) reach dlt's normaliser, which puts
it in a variant column (``value__v_text``) without a word. The load stops instead, on either path,
as the README promises. A value fails where dlt's own coercion fails: where dlt makes the variant.

Decimals: dlt's parquet writer refuses a value with more places than the column's scale ("Rescaling
Decimal value would cause data loss"), where an INSERT into DuckDB or PostgreSQL rounds it (0.125
into decimal(10,2) is 0.13). The kit loads parquet, so it rounds first: half away from zero, from
the value's shortest text (1.005 -> 1.01), as a SQL literal is rounded. A value with more digits
than the precision, NaN or an infinity (which dlt's coercion takes) failed in the parquet writer
with Arrow's words, naming no record: it stops the load here, naming it.

Timestamps with a declared precision below microseconds: dlt's parquet writer cuts them (.9996 at precision 3 was .999),
where an INSERT into DuckDB rounds (1.000, as dlt's own load stores it: helper-152). The kit rounds them first, half
away from 1970, as DuckDB's cast does.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, Callable, Iterable

import dlt
import pyarrow as pa

from analytics_kit.config.decimals import exact_shape
from analytics_kit.fetch.coercion import COERCE_ERRORS, INT64, BadValue, coerced_value, json_value, refused, shown
from analytics_kit.fetch.page_checks import PageRequests, bad_value

# The Python types each declared type takes as they are (a bool is no int here: dlt decides it).
_AS_THEY_ARE: dict[str, tuple[type, ...]] = {"bigint": (int,), "double": (float, int), "bool": (bool,),
                                              "text": (str,)}
# Types dlt keeps a dict or a list in whole, as JSON (text only where it parses as JSON, as dlt's coercion reads it)
_ANY = ("json", "complex")
# dlt's max_table_nesting where neither the resource nor the source sets one (its relational normaliser's)
DEFAULT_NESTING = 1000
# Rounding a value of any size to its scale: the default context's 28 digits raised for larger ones
_WIDE = Context(prec=1000)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class FieldColumns(dict):
    """A record's field -> the column of ``wanted`` that dlt's naming makes of it, or None; each field named once."""

    def __init__(self, field_naming: Callable[[str], str], wanted: Any) -> None:
        super().__init__()
        self.field_naming, self.wanted = field_naming, wanted

    def __call__(self, field: Any) -> str | None:
        if field in self:
            return self[field]
        try:
            column = self.field_naming(field)
        except Exception:  # noqa: BLE001 - a field dlt's naming refuses: its normaliser says so
            column = None
        self[field] = column if column in self.wanted else None
        return self[field]


def stored_type(table: str | None, column: str) -> str | None:
    """The type dlt's schema holds for ``table``'s ``column``: None outside a pipeline, or where it has none yet."""
    try:
        return dlt.current.source_schema().get_table_columns(table).get(column, {}).get("data_type")
    except Exception:  # noqa: BLE001 - outside a pipeline (a source iterated by hand), or no such table yet
        return None


def each_field(step: Any, item: Any) -> Any:
    """Runs ``step.field`` on every field of the records of ``item`` that stay dicts (Arrow pages pass: the converter
    checked them), after ``step._settle()`` on the first; returns ``item``."""
    if isinstance(item, pa.Table) or not item:
        return item
    if not step.settled:
        step._settle()
    rows = item if isinstance(item, list) else [item]
    for index, row in enumerate(rows):
        for field, value in row.items() if isinstance(row, dict) else ():
            step.field(rows, index, row, field, value)
    return item


class DeclaredTypes:
    """A step behind the config's own steps and dlt's incremental one (what dlt will load): checks the
    declared columns of records that stay dicts, and rounds declared decimals; Arrow pages pass, the
    converter checked them (a declared decimal keeps a resource on dicts).

    A field counts for the column dlt's naming makes of it (``isDeleted`` fills ``is_deleted``), and a
    field inside a dict for the column dlt flattens it into (``meta.score`` fills ``meta__score``) down
    to the table's ``max_table_nesting``, below which dlt keeps the dict whole, as it keeps one declared
    json. A dict or a list in a declared column is left to dlt, which flattens it rather than coerce it."""

    def __init__(self, resource: str, hints: dict[str, dict], primary_key: Any,
                 field_naming: Callable[[str], str] = str, flattened: Callable[[tuple], str] | None = None,
                 requests: PageRequests | None = None, nesting: int | None = None,
                 wei: tuple[int, int] | None = None, table: str | None = None, loose: Iterable[str] = ()) -> None:
        self.resource, self.primary_key, self.field_naming, self.table = resource, primary_key, field_naming, table
        keys = [primary_key] if isinstance(primary_key, str) else primary_key or ()
        self.keys = frozenset(field_naming(k) for k in keys)  # a key's value cannot go to a variant column
        # columns the table holds as decimals that the config does not declare: their numbers are rounded as the
        # table rounds them, anything else is dlt's to put in a variant column, as for any undeclared column
        self.loose = frozenset(field_naming(name) for name in loose)
        self.settled = table is None  # the table's stored column types are looked at on the first page
        # declared decimals the table holds otherwise (see _settle): column -> (its type as the table has it, the
        # scale it rounds to, None where it keeps a value as it is)
        self.stored: dict[str, tuple[str, int | None]] = {}
        self.wei = wei
        self.requests = requests or PageRequests()  # to name the request in an error
        # the declared names as dlt names its columns: a path stays one (meta__score is not meta_score)
        named = {field_naming(name): hint for name, hint in hints.items()}
        self.kinds = {name: "json" if hint["data_type"] in _ANY else hint["data_type"] for name, hint in named.items()}
        self.whole = frozenset(name for name, hint in named.items() if hint["data_type"] in _ANY)
        shapes = {name: exact_shape(hint, wei) for name, hint in named.items()}
        self.decimals = {name: (shape[0], shape[1], Decimal(1).scaleb(-shape[1]))
                         for name, shape in shapes.items() if shape is not None}
        # timestamps rounded to their column's unit, as DuckDB's TIMESTAMP_S (precision 0) and TIMESTAMP_MS (1 to 3)
        # round them: column -> microseconds a step; from 4 on the column keeps microseconds (helper-157)
        self.steps = {name: 1_000_000 if hint["precision"] == 0 else 1000 for name, hint in named.items()
                      if hint["data_type"] == "timestamp" and type(hint.get("precision")) is int
                      and 0 <= hint["precision"] <= 3}
        self.nesting = DEFAULT_NESTING if nesting is None else nesting
        self.columns = FieldColumns(field_naming, self.kinds)  # a record's field -> the declared column it fills
        self.flattened = flattened
        self.paths: dict[tuple, str | None] = {}  # a path of fields -> its column, or None where nothing is declared

    @classmethod
    def of(cls, resource: str, columns: Any, primary_key: Any, field_naming: Callable[[str], str] = str,
           flattened: Callable[[tuple], str] | None = None, requests: PageRequests | None = None,
           nesting: int | None = None, wei: tuple[int, int] | None = None, table: str | None = None,
           loose: Iterable[str] | None = None) -> "DeclaredTypes | None":
        """For a resource's ``columns`` given as a dict (lists, models and callables are left to dlt)."""
        if not isinstance(columns, dict):
            return None
        hints = {name: hint for name, hint in columns.items()
                 if isinstance(hint, dict) and isinstance(hint.get("data_type"), str)}
        if not hints:
            return None
        return cls(resource, hints, primary_key, field_naming, flattened, requests, nesting, wei, table, loose or ())

    def __call__(self, item: Any) -> Any:
        return each_field(self, item)

    def field(self, rows: list, index: int, row: dict, field: Any, value: Any) -> None:
        if type(value) is dict and self.flattened is not None:
            self._nested((field,), value, self.nesting, rows, index)
            return
        column = self.columns(field)
        if column is not None:
            self._check(row, field, column, rows, index)

    def _settle(self) -> None:
        """Notes the declared decimals the table already holds otherwise. dlt keeps the database's column whatever
        the hint says: 7.5, declared decimal(10,0) or wei where the column was first loaded as DOUBLE, stays 7.5
        with dlt, and the kit's files carry the declared decimal, so it rounded 7.5 to 8.0 (helper-86); into a
        decimal(10,2) or a bigint, the kit rounded to the declared scale and the database again (helper-87)."""
        self.settled = True
        try:
            stored = dlt.current.source_schema().get_table_columns(self.table)
        except Exception:  # noqa: BLE001 - outside a pipeline (a source iterated by hand), or no such table yet
            return
        for name, column in stored.items():
            kind = column.get("data_type")
            if name not in self.decimals or kind is None:
                continue
            shape = exact_shape(column, self.wei) or ((19, 0) if kind == "bigint" else (None, None))
            if kind == self.kinds[name] and shape[1] == self.decimals[name][1]:
                continue
            label = f"decimal({shape[0]},{shape[1]})" if kind == "decimal" else kind
            self.stored[name] = (label, shape[1])

    def _check(self, holder: dict, field: Any, column: str, rows: list, index: int) -> None:
        """Raises the load's error where ``holder[field]`` cannot go into the declared ``column``; rounds a decimal."""
        value = holder[field]
        if value is None or isinstance(value, (dict, list)):
            return
        kind = self.kinds[column]
        if column in self.decimals and self._decimal(holder, field, column, rows, index) or column in self.loose:
            return
        if type(value) is int and value not in INT64 and kind in ("double", "text"):
            # orjson, which writes dlt's extract files, refuses an integer beyond 64 bits; the Arrow pages hold it as
            # the declared type does (a double, or its digits as text), and so these do
            holder[field] = coerced_value(value, kind)
            return
        if type(value) in _AS_THEY_ARE.get(kind, ()):
            return
        try:
            held = json_value(value) if kind == "json" else coerced_value(value, kind)
        except COERCE_ERRORS:
            self._refuse(refused(column, index, kind, value, field, column in self.keys), rows, index)
        if column in self.steps:  # half away from 1970, as DuckDB rounds its microseconds (before 1970 too: helper-156)
            # from 1970 in UTC, not in the value's own zone: 23:33 at -11:00 is 1970 already (helper-158)
            step, epoch = self.steps[column], _EPOCH if held.tzinfo is not None else _EPOCH.replace(tzinfo=None)
            at = datetime.__sub__(held, epoch)  # a timedelta: pendulum's own subtraction gives years and months
            count = (at.days * 86_400 + at.seconds) * 1_000_000 + at.microseconds
            rounded = (abs(count) + step // 2) // step * step
            try:
                holder[field] = epoch + timedelta(microseconds=-rounded if count < 0 else rounded)
            except OverflowError:  # rounded past 9999-12-31: left to dlt's writer as it came (helper-158)
                holder[field] = held

    def _decimal(self, holder: dict, field: Any, column: str, rows: list, index: int) -> bool:
        """Rounds a number to the column's scale, or refuses it; False for a value that is no number here."""
        value = holder[field]
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            return False
        try:
            number = Decimal(str(value))
        except (InvalidOperation, ValueError):
            return False  # not a number as written: dlt's coercion decides
        precision, scale, quantum = self.decimals[column]
        shape = "wei" if self.kinds[column] == "wei" else f"decimal({precision},{scale})"
        if not number.is_finite():
            self._refuse(BadValue(column, index, f"of type {shape}",
                                  f"has {shown(value)}, which no decimal holds,",
                                  f"Declare {column!r} as double if the API sends NaN or infinities, or as text."),
                         rows, index)
        stored, stored_scale = self.stored.get(column, (None, None))
        try:
            if stored_scale is not None and stored_scale < scale:
                quantum = Decimal(1).scaleb(-stored_scale)  # rounded once, as the table's own column rounds it
            rounded = number.quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE)
            kept = number if stored_scale is None else number.quantize(Decimal(1).scaleb(-stored_scale),
                                                                      rounding=ROUND_HALF_UP, context=_WIDE)
        except InvalidOperation:  # more than _WIDE's 1,000 digits once rounded ("1e2000"): more than any column holds
            rounded = kept = None
        if stored is not None and rounded is not None and rounded != kept:
            self._refuse(BadValue(column, index, f"of type {shape}", f"has {shown(value)}, which {shape} rounds to "
                                  f"{shown(rounded, 40)} where the table stores {stored} and keeps {shown(kept, 40)},",
                                  f"Declare {column!r} as {stored}, as the table holds it (dlt keeps a column's "
                                  "first type whatever the hint says later), or run a full refresh, which rebuilds "
                                  "the table with the declared types."), rows, index)
        # the file carries the declared scale: 100.0, rounded as a table's decimal(6,1) keeps 99.96, is 100.00 in
        # decimal(4,2), five digits, and Arrow's "precision 4 does not fit" stopped the load (helper-92)
        if rounded is None or max(rounded.adjusted() + 1, 0) + scale > precision:
            wider = (f" as {stored}, as the table holds it, or" if stored else "" if shape == "wei" else
                     " with a larger precision (up to 38), or")
            self._refuse(BadValue(column, index, f"of type {shape}",
                                  f"has {shown(value)}, more digits than decimal({precision},{scale}) holds,",
                                  f"Declare {column!r}{wider} as double or text."),
                         rows, index)
        holder[field] = rounded
        return True

    def _refuse(self, bad: BadValue, rows: list, index: int) -> None:
        raise bad_value(bad, rows, self.requests.of(rows, index), self.resource, self.primary_key) from None

    def _nested(self, path: tuple, value: dict, level: int, rows: list, index: int) -> None:
        """The declared columns dlt flattens ``value`` (the record's dict at ``path``) into; ``level`` counts down
        dlt's nesting levels (none left: dlt keeps the dict whole, as JSON)."""
        column = self._path_column(path)
        if column is None or column in self.whole or level <= 0:
            return
        for field, inner in value.items():
            inner_path = path + (field,)
            if type(inner) is dict:
                self._nested(inner_path, inner, level - 1, rows, index)
            elif (inner_column := self._path_column(inner_path)) in self.kinds:
                self._check(value, field, inner_column, rows, index)  # type: ignore[arg-type]

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
