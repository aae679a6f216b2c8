"""dlt's schema set to the column types the destination stores.

dlt's schema takes a declared type over a column the table already has, and no destination alters
that column: after one run declaring decimal(10,0) over a DOUBLE column, the schema said decimal
while the table kept DOUBLE. The kit judges declared types against the schema, so the next run
rounded 7.5 to 8.0 into that DOUBLE column without a word, and a full refresh kept the DOUBLE
column (its replace saw no type to rebuild). Read from the destination at the load's start, the
schema says what the table holds; dlt merges the run's hints over it as before.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

from analytics_kit import seam
from analytics_kit.config.decimals import exact_shape, wei_shape
from analytics_kit.errors import ConfigError
from analytics_kit.fetch.replace import table_of
from analytics_kit.interrupts import is_interrupt

logger = logging.getLogger(__name__)


def judged_as_stored(pipeline: Any, source: Any, build: Callable[..., Any], destination: str | None, mode: str,
                     replace: bool) -> tuple[Any, Callable[..., Any]]:
    """The run's source and builder, its declared types judged as the tables store them (called with the file
    held, before the pages): dlt's schema set to the stored types (see the module), and in an incremental run each
    decimal or wei column a table stores that its resource leaves undeclared declared as stored. dlt's parquet
    writer refused 1.125 for a DECIMAL(10,2) an earlier config declared ("Rescaling Decimal value would cause data
    loss"), where its INSERT rounds it to 1.13 (helper-91); declared, the kit rounds it so."""
    resources = list(source.resources.values())
    tables = _tables(pipeline, resources)
    if not tables or not (replace or _decimals(resources) or _stored_decimals(pipeline.default_schema, tables)):
        return source, build
    _align(pipeline, tables, destination)
    if mode != "incremental":
        return source, build  # a full refresh makes the columns a fresh load makes (see replace.stale_columns)
    schema = pipeline.default_schema
    stored = {}
    for resource in resources:
        table = schema.naming.normalize_table_identifier(table_of(resource))
        declared = _declared(resource, schema.naming.normalize_path)
        left_out = {name: hint for name, hint in _stored_decimals(schema, [table] if table in tables else []).items()
                    if name not in declared}
        if left_out:
            stored[resource.name] = left_out
    if not stored:
        return source, build
    logger.info("declared as stored, where the config does not declare them: %s", stored)
    build = functools.partial(build, stored=stored)
    return build(replace=replace), build


def refuse_retyped_columns(pipeline: Any, source: Any, destination: str | None) -> None:
    """Refuses an incremental run whose config declares a column of a table that exists as another type than the
    table stores it (called with the file held, after ``judged_as_stored``). No destination alters the column, so
    the values are converted twice: to the declared type in the pages, then to the stored one by the load. Keys
    distinct as declared ("5" and "05" as text) were one key held twice in a BIGINT merge table (plain dlt keeps one:
    its staging table keeps the old type); values failed with DuckDB's raw conversion error ('abc' to INT64), or
    changed without a word (1.5 declared double into BIGINT is 2); and dlt's schema, taking the declared type, said
    text where the table held BIGINT, which let a later run through (helper-133, helper-134). Only a full refresh
    rebuilds the table with the declared type. Decimals keep their own rule (``judged_as_stored``)."""
    resources = list(source.resources.values())
    tables = set(_tables(pipeline, resources))
    if not tables:
        return
    for resource in resources:
        table = pipeline.default_schema.naming.normalize_table_identifier(table_of(resource))
        retyped = _retyped(pipeline.default_schema, resource, table, destination) if table in tables else None
        if retyped is None:
            continue
        _align(pipeline, [table], destination)  # dlt's schema may say what an earlier run declared: ask the table
        retyped = _retyped(pipeline.default_schema, resource, table, destination)
        if retyped is None:
            continue
        column, declared, stored = retyped
        key = seam.primary_key(resource) or ()
        naming = pipeline.default_schema.naming.normalize_path
        is_key = column in {naming(name) for name in ([key] if isinstance(key, str) else key)}
        raise ConfigError(
            f"resource '{resource.name}' declares {'its primary key' if is_key else 'column'} {column!r} as "
            f"{declared!r}, and the table {table!r} holds that column as {stored!r}, a type an incremental load does "
            "not change: " + (f"keys distinct as {declared} could be one key as {stored}, held twice in the table"
                              if is_key else f"its values would be converted to {stored} as they are written (or "
                              f"fail there), not to {declared}"), path="mode",
            guidance=f"Run a full refresh once (mode=\"full_refresh\", or --full-refresh), which rebuilds the table "
            f"with the declared type; or declare {column!r} as {stored!r}, as the table holds it"
            + ("." if is_key else ", or leave it undeclared."))


def _retyped(schema: Any, resource: Any, table: str, destination: str | None) -> tuple[str, str, str] | None:
    """The first column ``resource`` declares as another type than ``schema`` has it in ``table``: (column, declared
    type, the schema's type); None where there is none. Decimals and wei are left out (see the caller). A timestamp's
    precision or time zone, or a bigint's precision, that makes another column type is another type: the kit's files
    carried the declared one, and a TIMESTAMPTZ column got values cut to milliseconds, a BIGINT column's 200 failed as
    too large for the TINYINT of a declared precision 8 (helper-152)."""
    stored_columns = schema.tables[table].get("columns", {})
    declared = resource.columns if isinstance(resource.columns, dict) else {}
    # a column declared in two spellings ("Value", "value") is the later one's, as dlt takes it (helper-140)
    for column, hint in {schema.naming.normalize_path(name): hint for name, hint in declared.items()}.items():
        kinds = (hint.get("data_type") if isinstance(hint, dict) else None,
                 stored_columns.get(column, {}).get("data_type"))
        if None in kinds or {"decimal", "wei"} & set(kinds):
            continue
        if kinds[0] != kinds[1]:
            return column, kinds[0], kinds[1]
        shapes = _shape(hint, destination), _shape(stored_columns[column], destination)
        if shapes[0] != shapes[1]:
            return column, *shapes
    return None


_UNITS = {0: "seconds", 3: "milliseconds", 9: "nanoseconds"}


def _shape(column: dict, destination: str | None) -> str:
    """A timestamp's or a bigint's column unit or width as the destination makes it, in words; other types' data_type.
    A time zone alone is no other shape: the values convert to the column's as the instants they are."""
    kind, precision = column.get("data_type"), column.get("precision")
    if kind == "timestamp":
        if column.get("timezone") is not False and destination in (None, "duckdb"):  # DuckDB's TIMESTAMPTZ: us
            precision = None
        unit = 6 if precision is None else 0 if precision == 0 else 3 if precision <= 3 else 6 if precision <= 6 else 9
        return "timestamp" if unit == 6 else f"timestamp of {_UNITS[unit]}"
    if kind == "bigint" and precision is not None:
        widths = (8, 16, 32, 64, 128) if destination in (None, "duckdb") else (16, 32, 64)
        width = next((w for w in widths if precision <= w), widths[-1])
        return "bigint" if width == 64 else f"bigint of precision {width}"
    return str(kind)


def _tables(pipeline: Any, resources: list) -> list[str]:
    """The resources' tables that dlt's schema has."""
    if not pipeline.default_schema_name:
        return []
    schema = pipeline.default_schema
    named = (schema.naming.normalize_table_identifier(table_of(resource)) for resource in resources)
    return [name for name in dict.fromkeys(named) if name in schema.tables]


def _decimals(resources: list) -> bool:
    """Whether a resource declares a decimal or wei column: the columns the kit rounds as the table stores them."""
    return any(isinstance(hint, dict) and hint.get("data_type") in ("decimal", "wei")
               for resource in resources if isinstance(resource.columns, dict)
               for hint in resource.columns.values())


def _stored_decimals(schema: Any, tables: list[str]) -> dict[str, dict]:
    """Each decimal or wei column of ``tables`` in ``schema``, as a hint of its type."""
    return {name: {key: column[key] for key in ("data_type", "precision", "scale") if column.get(key) is not None}
            for table in tables for name, column in schema.tables[table].get("columns", {}).items()
            if column.get("data_type") in ("decimal", "wei")}


def _declared(resource: Any, naming: Callable[[str], str]) -> set[str]:
    """The columns the resource declares, as dlt names them (``naming``: its path naming, meta__price stays one)."""
    columns = resource.columns
    named = columns if isinstance(columns, dict) else {}
    return {naming(name) for name in named}


def _align(pipeline: Any, known: list[str], destination: str | None) -> None:
    """Sets the schema's type of each column of the ``known`` tables the destination stores as another type. It
    costs a reflection of the tables (~10 ms on DuckDB), so only a replace (whose check of the tables' types decides
    whether to rebuild them) or a run with decimals to round pays it."""
    schema = pipeline.default_schema
    wei = wei_shape(destination)
    retyped: dict[str, dict[str, dict]] = {}
    try:
        stored_tables = seam.storage_columns(pipeline, known)
    except Exception as error:  # noqa: BLE001 - any destination's error: the load itself will meet it, or not
        if is_interrupt(error):
            raise
        logger.warning("The tables' column types could not be read (%s: %s); declared types are judged as dlt's "
                       "schema has them.", type(error).__name__, str(error)[:200])
        return
    for table, stored_columns in stored_tables.items():
        columns = schema.tables[table].get("columns", {})
        for name, stored in stored_columns.items():
            column = columns.get(name)
            if column and stored.get("data_type") and (_kind(column, wei), column.get("nullable", True)) != (
                    _kind(stored, wei), stored.get("nullable", True)):
                retyped.setdefault(table, {})[name] = _as_stored(stored)
                logger.info("%s.%s is stored as %s%s where dlt's schema says %s%s: judged as stored", table, name,
                            stored.get("data_type"), "" if stored.get("nullable", True) else " NOT NULL",
                            column.get("data_type"), "" if column.get("nullable", True) else " NOT NULL")
    if retyped:
        seam.retype_columns(pipeline, retyped)


def _as_stored(stored: dict) -> dict:
    """The type for dlt's schema of a column stored as ``stored``: a decimal's precision and scale, no other type's
    width. dlt reads a DOUBLE back as precision 53 and a BIGINT as 64, widths no hint gives them, and merged into a
    later hint of a decimal without its own they made decimal(53,0): DuckDB's "DECIMAL type width must be between
    1 and 38" (helper-91)."""
    decimal = stored["data_type"] == "decimal"
    return {"data_type": stored["data_type"], "precision": stored.get("precision") if decimal else None,
            "scale": stored.get("scale") if decimal else None, "nullable": stored.get("nullable", True)}


def _kind(column: dict, wei: tuple[int, int] | None) -> tuple:
    """What a column holds, as far as a load can tell: its type, and a decimal's (precision, scale). A wei of the
    destination's shape is that decimal (dlt reads DuckDB's DECIMAL(38,0) back as wei); other types' precisions are
    the destination's to round (a bigint's 64, a double's 53, dlt reads back where its schema says none)."""
    shape = exact_shape(column, wei)
    return ("decimal", *shape) if shape is not None else (column.get("data_type"),)
