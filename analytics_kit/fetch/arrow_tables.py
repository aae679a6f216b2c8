"""Pages of records as Arrow tables with the declared column types: the kit's fast path.

dlt normalises pages of dicts row by row (~2.4 s per 100k rows). An Arrow table instead goes
through dlt's arrow extractor straight into parquet. Column types follow the resource's
``columns`` hints; undeclared columns are typed the way dlt's normaliser types them (bool,
int -> bigint, float -> double, ISO string -> timestamp, other string -> text), fixed by
the first non-null value seen, as dlt does.
"""

from __future__ import annotations

import logging
import threading
from operator import methodcaller
from typing import Any, Callable, Iterable, Mapping

import dlt
import orjson
import pyarrow as pa

from analytics_kit.errors import ConfigError
from analytics_kit.fetch.cursors import render
from analytics_kit.fetch.records import as_json
from analytics_kit.fetch.coercion import COERCE_ERRORS, BadValue, bools_mixed, coerced_value, json_value, kind_of

logger = logging.getLogger(__name__)

TIMESTAMP = pa.timestamp("us", tz="UTC")
ARROW_TYPES = {"bigint": pa.int64(), "text": pa.string(), "double": pa.float64(), "bool": pa.bool_(),
               "timestamp": TIMESTAMP, "json": pa.string()}


class TypeChanged(Exception):
    """A value of another type in an undeclared column, or one a declared column refuses (``DeclaredTypes``
    refuses it after dlt's steps, unless its incremental step drops the record): dlt's normaliser takes the group."""

    def __init__(self, column: str, why: str = "changes type") -> None:
        super().__init__(f"column {column!r} {why}")
        self.column = column


class _Uncoercible(Exception):
    def __init__(self, index: int, value: Any) -> None:
        super().__init__(index)
        self.index, self.value = index, value


def unsupported_columns(columns: Any) -> str | None:
    """Why these ``columns`` hints keep a resource on the slow path, or None."""
    if columns is None:
        return None
    if not isinstance(columns, Mapping):
        return "columns given as a list, model or callable"
    for name, column in columns.items():
        if not isinstance(column, Mapping):
            return f"column {name!r} is not a dict"
        kind = column.get("data_type")
        if kind is not None and kind not in ARROW_TYPES:
            return f"column {name!r} has data_type {kind!r}"
        if kind == "timestamp" and (column.get("precision") not in (None, 6) or column.get("timezone") is False):
            return f"column {name!r} has a timestamp precision or timezone hint"
    return None


def _json(values: list, name: str) -> pa.Array:
    """A json column's values as JSON text: text is parsed as dlt's coercion parses it (the object, not a string
    holding it); any other value, which dlt would put in a variant column, sends the group to its normaliser."""
    if not all(v is None or type(v) in (dict, list) for v in values):
        try:
            values = [json_value(v) for v in values]
        except COERCE_ERRORS:
            raise TypeChanged(name, "holds a value its declared type refuses") from None
    try:
        return pa.array([None if v is None else orjson.dumps(v).decode() for v in values], pa.string())
    except TypeError:  # an integer beyond 64 bits, which JSON text holds whole
        return pa.array([None if v is None else as_json(v).decode() for v in values], pa.string())


class TableKinds:
    """The column types the fast path gave one table, shared by every resource that loads into it.

    dlt writes the Arrow pages of one table into one parquet file whatever resource they came
    from, and its writer refuses a page whose column has another type than the file's ("Schema
    at index 1 was different"), where its normaliser would have made a variant column. So a
    column one resource typed is typed so for the others, and a value of another type sends
    their page to dlt's normaliser (``TypeChanged``), as within one resource.
    """

    def __init__(self, name: str | None = None) -> None:
        self.kinds: dict[str, str] = {}
        self.declared: dict[str, tuple[str, str]] = {}  # column -> (declared type, the resource declaring it)
        self.lock = threading.Lock()
        self.name = name  # the table as dlt names it, until its stored columns are read (``stored``)

    def stored(self) -> None:
        """Takes the types dlt's schema holds for the table's columns, once, before a page types any: dlt types a
        column by its first value only while the table lacks it, and coerces later values into it. Typed from a
        later run's first value, "abc" into a DOUBLE column failed in the load step with DuckDB's conversion error,
        and 7.5 into a BIGINT one was rounded, where dlt makes a variant column (helper-93). Called under ``lock``."""
        name, self.name = self.name, None
        try:
            columns = dlt.current.source_schema().get_table_columns(name) if name else {}
        except Exception:  # noqa: BLE001 - outside a pipeline (a source iterated by hand), or no such table yet
            return
        for column, hint in columns.items():
            if hint.get("data_type") in ARROW_TYPES and not column.startswith("_dlt"):
                self.kinds.setdefault(column, hint["data_type"])

    def declare(self, resource: str, kinds: Mapping[str, str]) -> None:
        """A resource's declared column types become the table's; two resources declaring one column two ways
        are refused (``config.shared_tables`` refuses most such configs; this catches table names that differ
        only until dlt's naming makes them one)."""
        for name, kind in kinds.items():
            kind_before, by = self.declared.setdefault(name, (kind, resource))
            if kind_before != kind:
                raise ConfigError(
                    f"resources '{by}' and '{resource}' load into one table and declare its column {name!r} as "
                    f"{kind_before!r} and {kind!r}", guidance="Declare the column alike in every resource that loads "
                    "into that table, or give the resources tables of their own (table_name).")
            self.kinds.setdefault(name, kind)


class PageConverter:
    """Turns one page (a list of dicts) into a ``pa.Table``; thread-safe.

    ``deferred`` timestamp columns (the incremental cursor) stay ISO strings here and are cast
    by ``CastDeferred`` after dlt's incremental step, so the stored cursor keeps the slow
    path's string form and existing state keeps working.
    """

    def __init__(self, columns: Mapping[str, Mapping[str, Any]] | None, deferred: Iterable[str] = (),
                 *, resource: str = "", required: Iterable[str] = (), table: TableKinds | None = None) -> None:
        columns = columns or {}
        self.resource = resource
        self.kinds: dict[str, str] = {n: c["data_type"] for n, c in columns.items() if c.get("data_type")}
        self.declared = frozenset(self.kinds)
        self.nullable = {n: c.get("nullable", True) is not False for n, c in columns.items()}
        for name in required:  # the primary key is NOT NULL whether declared or not
            self.nullable[name] = False
        self.deferred = frozenset(deferred)
        self.keys = frozenset(required) - self.declared  # undeclared key columns: typed by their first value
        self.table = table or TableKinds()
        self.table.declare(resource, self.kinds)
        self._warned: set[str] = set()

    def nested_undeclared(self, rows: list[dict]) -> list[str]:
        """Undeclared columns holding dicts or lists: dlt would make tables or columns of them."""
        keys = set().union(*rows) - set(self.kinds) if rows else set()
        return sorted(k for k in keys if any(isinstance(r.get(k), (dict, list)) for r in rows))

    def _learn(self, rows: list[dict], present: set) -> None:
        """Fixes the type of undeclared columns by their first non-null value, as dlt does;
        ``present``: the fields of ``rows``."""
        new = present - set(self.kinds)
        if not new:
            return
        with self.table.lock:
            self.table.stored()
            # the table's columns in dlt's order: declared, then as the records first hold them (sorted, a first load
            # made a table of alpha, id, zeta where dlt makes id, zeta, alpha: helper-134)
            fresh = new - set(self.kinds)
            for name in [field for field in dict.fromkeys(field for row in rows for field in row) if field in fresh]:
                if name in self.table.kinds:  # typed by another resource of the table
                    self.kinds[name] = self.table.kinds[name]
                    continue
                value = next((r[name] for r in rows if r.get(name) is not None), None)
                if value is None:
                    continue  # dlt adds no column for nulls only
                kind = kind_of(value)
                if kind is None:
                    # nested data after the first page: the slow path would have made child
                    # tables; the kit keeps it as one JSON column, and says so once.
                    kind = "json"
                    if name not in self._warned:
                        self._warned.add(name)
                        logger.warning("column %r holds nested data that was not declared: it is "
                                       "loaded as JSON. Declare it in 'columns' to be sure.", name)
                self.kinds[name] = self.table.kinds[name] = kind

    def __call__(self, rows: list[dict]) -> pa.Table:
        present = set().union(*rows) if rows else set()
        self._learn(rows, present)
        kinds = dict(self.kinds)  # a snapshot: other threads may add columns
        arrays, fields = [], []
        plain = [n for n, k in kinds.items() if k not in ("json", "timestamp")]
        texts = [n for n, k in kinds.items() if k == "timestamp"]
        schema = pa.schema([(n, ARROW_TYPES[kinds[n]]) for n in plain] + [(n, pa.string()) for n in texts])
        try:
            table = pa.Table.from_pylist(rows, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            table = None  # a value of another type: coerce as dlt would, column by column
        for name, kind in kinds.items():
            if name not in present and name not in self.nullable:
                continue  # undeclared and absent from this page
            if kind == "json":
                array = _json([r.get(name) for r in rows], name)
            else:
                array = self._column(table, rows, name, kind)
            nullable = self.nullable.get(name, True)
            if not nullable and array.null_count:
                self._refuse_nulls(name, array, rows)
            arrays.append(array)
            fields.append(pa.field(name, array.type, nullable=nullable))
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _column(self, table: pa.Table | None, rows: list[dict], name: str, kind: str) -> pa.Array:
        """One column of the group; a value it cannot hold stops a declared column, and sends
        an undeclared one's group to dlt's normaliser (``TypeChanged``)."""
        try:
            loose = name not in self.declared  # a declared double takes an integer beyond 64 bits (README)
            if kind in ("double", "bigint") and _may_bend(rows, name, kind, loose):
                # Arrow reads True as 1.0 into a double column, and truncates 19.99 to 19 in a
                # bigint one, without a word; dlt's normaliser refuses both, and dlt's extract an
                # integer beyond 64 bits in a column the table has as double (helper-94)
                index = next((i for i, r in enumerate(rows) if _arrow_would_bend(r.get(name), kind, loose)), None)
                if index is not None:
                    raise _Uncoercible(index, rows[index][name])
            if name in self.keys and bools_mixed(rows, name, kind):
                raise TypeChanged(name)  # dlt would make 2 true, or true 1: the key step names the record
            if table is not None:
                array = table.column(name).combine_chunks()
                if kind == "timestamp" and name not in self.deferred:
                    array = _to_timestamp(array, rows, name)
                return array
            values = [r.get(name) for r in rows]
            if any(isinstance(v, (dict, list)) for v in values):
                # dlt's normaliser flattens these (name__a, a nested table) rather than coerce them
                raise TypeChanged(name)
            array = _coerced(values, kind)
        except _Uncoercible:
            raise TypeChanged(name, "holds a value its declared type refuses" if name in self.declared else
                              "changes type") from None
        if kind == "timestamp" and name in self.deferred:
            # the cursor stays text until dlt's incremental step has seen it (CastDeferred)
            array = pa.array([None if v is None else render(v) for v in array.to_pylist()], pa.string())
        return array

    def _refuse_nulls(self, name: str, array: pa.Array, rows: list[dict]) -> None:
        """A NULL where the config says NOT NULL. Arrow would carry it silently (and dlt's
        incremental step drops rows whose non-nullable cursor is NULL), so it stops the load."""
        raise BadValue(
            name, array.to_pylist().index(None), "NOT NULL", "has no value",
            f"If the API may omit {name!r}, declare it nullable in the resource's columns; "
            "for a missing cursor set incremental.on_cursor_value_missing to 'include' or 'exclude'. "
            "A missing primary key is a problem of the API's data.")


class PageFormat:
    """Arrow tables for a resource's pages, unless its first page has undeclared nested data
    or a cursor sent as numbers.

    dlt's normaliser turns undeclared lists into child tables and dicts into ``a__b`` columns,
    which an arrow table cannot say; a cursor of Unix seconds must reach dlt's incremental
    step as the numbers its stored value compares with, where the fast path keeps a cursor
    as text. Such a resource stays on dicts for the whole run, decided on the first records
    it is given.
    """

    def __init__(self, converter: PageConverter, resource: str, naming: Callable[[str], str] = str) -> None:
        self.converter = converter
        self.resource = resource
        self.naming = naming
        self.arrow: bool | None = None
        self.named: set[str] = set()  # fields seen whose names dlt keeps as they are

    def as_named(self, page: list) -> bool:
        """Whether every record is a dict whose fields dlt's naming keeps as they are.

        Plain values, lists, and fields dlt renames (``userId``, ``a b`` beside ``a_b``, ``""``)
        are dlt's normaliser's to place: it renames, merges variants and reports collisions its
        own way; an arrow table would carry the raw names.
        """
        named = self.named
        for record in page:
            if type(record) is not dict:
                return False
            if named.issuperset(record):
                continue  # the common case, without building a set per record
            for name in record.keys() - named:
                # a blank name is dlt's "_empty" (its naming refuses to name it at all)
                if not isinstance(name, str) or not name or name.isspace() or self.naming(name) != name:
                    return False
                named.add(name)
        return True

    def __call__(self, page: list) -> Any:
        if not page:
            return None
        if not self.as_named(page):
            if self.arrow is not False:
                logger.info("%s: records that are not dicts, or fields dlt renames; pages stay dicts", self.resource)
            self.arrow = False
            return page
        if self.arrow is None:
            nested = self.converter.nested_undeclared(page)
            numbers = [n for n in sorted(self.converter.deferred)
                       if any(isinstance(r.get(n), (int, float)) and not isinstance(r.get(n), bool) for r in page)]
            self.arrow = not nested and not numbers
            if nested or numbers:
                logger.info("%s: undeclared nested columns %s, numeric cursors %s; pages stay dicts",
                            self.resource, nested, numbers)
        return self.converter(page) if self.arrow else page


def _may_bend(rows: list[dict], name: str, kind: str, loose: bool = False) -> bool:
    """Whether the column holds a value of a type Arrow would bend (the types collected in C:
    a tenth of the time of asking ``_arrow_would_bend`` of every value); ``loose``: undeclared,
    where an integer beyond 64 bits bends too (whole numbers in a double column are common, so
    their range is looked at with min and max, not value by value)."""
    values = list(map(methodcaller("get", name), rows))
    types = set(map(type, values))
    if kind != "double":
        return float in types
    if bool in types:
        return True
    ints = [v for v in values if type(v) is int] if loose and int in types else ()
    return bool(ints) and (min(ints) < -(2**63) or max(ints) >= 2**63)


def _arrow_would_bend(value: Any, kind: str, loose: bool = False) -> bool:
    if kind == "double":
        return type(value) is bool or loose and type(value) is int and not -(2**63) <= value < 2**63
    return type(value) is float and not value.is_integer()


def _coerced(values: list, kind: str) -> pa.Array:
    """``values`` as an array of ``kind``, each coerced as dlt's normaliser does."""
    out = []
    for index, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(coerced_value(value, kind))
        except COERCE_ERRORS:
            raise _Uncoercible(index, value) from None
    try:
        return pa.array(out, ARROW_TYPES[kind])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # coerced, yet out of the type's range (an integer beyond 64 bits)
        index = next((i for i, v in enumerate(out) if v is not None and not _fits(v, kind)), 0)
        raise _Uncoercible(index, values[index]) from None


def _fits(value: Any, kind: str) -> bool:
    try:
        pa.array([value], ARROW_TYPES[kind])
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return False


def _to_timestamp(array: pa.Array, rows: list[dict], name: str) -> pa.Array:
    try:
        return array.cast(TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # not ISO with a zone (e.g. '2026-01-03 10:15:07'): parse each value as dlt does
        return _coerced([r.get(name) for r in rows], "timestamp")


class CastDeferred:
    """Casts the deferred ISO-string timestamp columns of arrow pages; runs after dlt's
    incremental step (``seam.add_step(..., after_incremental=True)``), which compares the
    cursor as the API's text."""

    def __init__(self, converter: PageConverter) -> None:
        self.converter = converter

    def __call__(self, item: Any) -> Any:
        if not isinstance(item, pa.Table):
            return item
        for name in self.converter.deferred:
            index = item.schema.get_field_index(name)
            if (index < 0 or item.schema.field(index).type != pa.string()
                    or self.converter.kinds.get(name) != "timestamp"):
                continue
            field = item.schema.field(index)
            try:
                array = item.column(index).cast(TIMESTAMP)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                try:
                    array = _coerced(item.column(index).to_pylist(), "timestamp")
                except _Uncoercible:
                    # an undeclared cursor holding something else too (a declared one was
                    # checked before dlt's incremental step): dlt's normaliser takes the batch
                    return item.to_pylist()
            item = item.set_column(index, field.with_type(TIMESTAMP), array)
        return item
