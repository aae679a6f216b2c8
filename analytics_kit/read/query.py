"""Reading loaded tables back: ``query``, ``tables``, ``describe``.

On the DuckDB file every call opens a read-only connection and closes it before
returning, so a load can run right after, from this kernel or another process; the file
is attached as ``analytics`` whatever it is called (``read.connection``). On a warehouse
destination the same calls go through dlt's SQL client for it. What fails is a
``QueryError``: the database's message, the tables there are, a "did you mean".
"""

from __future__ import annotations

import difflib
import functools
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import duckdb
import pyarrow as pa

from analytics_kit.errors import QueryError, arguments_safe, causes
from analytics_kit.read import connection
from analytics_kit.read.connection import BOOKKEEPING, empty_database, sql_error, user_tables
from analytics_kit.read.far_times import far_as_text, refuse_far_timestamps
from analytics_kit.read.statements import reads_only
from analytics_kit.store.database import DEFAULT_DATABASE
from analytics_kit.store.kept_aside import KEPT_TABLE, STOPPED, stopped_tables
from analytics_kit.store.server_faults import unreachable_server
from analytics_kit.store.sql import qualified
from analytics_kit.redact import Redactor, known_mask
from analytics_kit.store.target import Target

if TYPE_CHECKING:
    import pandas as pd


@functools.cache
def _nullable() -> Callable[[pa.DataType], Any]:
    """Arrow types to pandas' nullable dtypes: NULLs stay <NA> and integers stay integers.

    pandas is imported on first use: a quarter of a second that ``import analytics_kit``
    and a load from the command line need not pay (dlt itself does not import it).
    """
    import pandas as pd

    return {
        pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
        pa.float32(): pd.Float32Dtype(), pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype(),
    }.get


@contextmanager
def connect(database: str | Path = DEFAULT_DATABASE, dataset: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection to the DuckDB file, in UTC, the file attached as ``analytics``."""
    target = Target.of(database=database, dataset=dataset)
    with connection.connect(target.database, database, target.dataset) as con:
        yield con


def warn_if_stopped(stopped: list[tuple[str, str]], label: str) -> None:
    """Warns, as from the caller's line, where a killed full refresh left tables it was rebuilding (see
    store.kept_aside): a count of 0 would otherwise read as the API's. Once per stopped load in a process:
    a reader that calls others (``schema()`` reads the history) would say it twice."""
    if not stopped or (key := (label, frozenset(load_id for _, load_id in stopped))) in _WARNED:
        return
    _WARNED.add(key)
    import inspect  # only when there is something to say

    frame, level = inspect.currentframe().f_back, 2  # the level of the frame that called this one
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(_OWN_FRAMES):
        frame, level = frame.f_back, level + 1
    tables = ", ".join(sorted({table for table, _ in stopped}))
    warnings.warn(STOPPED.format(tables=tables, database=label), stacklevel=level)


_WARNED: set[tuple[str, frozenset]] = set()
# Frames a warning does not point at: the kit's, and the wrappers between its calls.
_OWN_FRAMES = ("analytics_kit", "contextlib", "functools")


def _stopped_on(client: Any, dataset: str) -> list[tuple[str, str]]:
    """``connection.stopped_rebuild`` on a warehouse, through dlt's client."""
    there = {name for (name,) in client.execute_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name IN (%s, %s)",
        dataset, KEPT_TABLE, "_dlt_loads") or ()}
    return stopped_tables(there, client.make_qualified_table_name, client.execute_sql)


def _arrow(target: Target, sql: str, params: Sequence[Any] | None, given: object = None,
           warn: bool = False) -> pa.Table:
    """``sql``'s result; with ``warn``, a warning where a killed rebuild left the tables (``warn_if_stopped``)."""
    if target.is_file:
        with connection.connect(target.database, given, target.dataset) as con:
            reads_only(con, sql, str(target.database))
            relation = _refused_as_query_error(lambda: con.sql(sql, params=params), con, target)
            if relation is None:  # empty SQL, a comment, or a statement with no result
                raise QueryError(f"The SQL {sql[:60]!r} returns no rows to read: it is empty, a comment, or a "
                                 "statement without a result.", guidance="Pass a SELECT (or another query that "
                                 "returns rows), e.g. SELECT count(*) FROM analytics.events.",
                                 database=str(target.database))
            # its types read off the file, which may be damaged: DuckDB's error as any
            _refuse_unsigned_128(relation, _refused_as_query_error(lambda: relation.types, con, target),
                                 str(target.database))
            table = _refused_as_query_error(relation.to_arrow_table, con, target)
            if warn:
                warn_if_stopped(connection.stopped_rebuild(con, target.dataset), str(target.database))
            return table
    try:
        with target.pipeline().sql_client() as client:
            with client.execute_query(sql, *(params or ())) as cursor:
                table = cursor.arrow()
            stopped = _stopped_on(client, target.dataset) if warn else []
    except Exception as error:  # noqa: BLE001 - the driver's own error, explained
        redact = Redactor(target.secrets())
        if server := unreachable_server(causes(error), target.destination, target.label, redact):
            raise QueryError(f"The query {server[0]}.", guidance=server[1], database=target.label) from None
        said = redact(str(error).strip())  # a driver quotes a DSN it cannot parse whole
        raise QueryError(
            f"The query failed on {target.label}: {type(error).__name__}: {said[:300]}",
            guidance=f"SQL runs in {target.destination}'s own dialect there. Queries written for DuckDB may "
            "need changes (functions, JSON operators, ? vs %s parameters); tables are in schema "
            f"{target.dataset}, on the search path where the database has one.",
            database=target.label,
        ) from None
    warn_if_stopped(stopped, target.label)
    return table


@arguments_safe
def query(sql: str, database: str | Path = DEFAULT_DATABASE, params: Sequence[Any] | None = None, *,
          destination: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """Runs ``sql`` and returns a DataFrame with nullable, tz-aware dtypes.

    ``analytics.events`` and plain ``events`` name the loaded table in any DuckDB file and
    on a warehouse. ``destination`` (default: the DuckDB file ``database``) names a dlt
    destination such as ``postgres``; its credentials come from dlt secrets. SQL the
    database refuses raises ``QueryError`` with its message and the tables there are.
    """
    return _query(sql, database, params, destination, dataset, printed=False)


@arguments_safe
def printed_query(sql: str, database: str | Path = DEFAULT_DATABASE, *, destination: str | None = None,
                  dataset: str | None = None) -> pd.DataFrame:
    """``query`` for ``analytics-kit query``, whose printing shows timestamps pandas cannot (past the year 9999,
    infinity), which ``query`` refuses (helper-150)."""
    return _query(sql, database, None, destination, dataset, printed=True)


def _query(sql: str, database: str | Path, params: Sequence[Any] | None, destination: str | None,
           dataset: str | None, *, printed: bool) -> pd.DataFrame:
    _text("sql", sql, "the SQL as text, e.g. ak.query('SELECT count(*) FROM events')")
    table = _arrow(Target.of(destination, database, dataset), sql, params, database, warn=True)
    table = far_as_text(refuse_far_timestamps(table, str(database), nested_only=True)) if printed else \
        refuse_far_timestamps(table, str(database))
    try:
        return _nested_exact(table, _timedeltas(table).to_pandas(types_mapper=_nullable()))
    except (pa.ArrowNotImplementedError, ValueError, NotImplementedError, OverflowError) as error:
        # a UNION column raised a raw Arrow error (helper-127); a date out of Python's range a ValueError (helper-128)
        kinds = ", ".join(f"{f.name} ({f.type})" for f in table.schema if not _pandas_takes(f.type))
        raise QueryError(f"The result has a column pandas cannot take: {kinds or f'{type(error).__name__}: {error}'}.",
                         guidance="Cast it in the SQL, e.g. CAST(col AS VARCHAR) or col::JSON, or select its parts.",
                         database=str(database)) from None


def _text(name: str, value: Any, expected: str) -> None:
    """An argument that must be text: None or 123 read as DuckDB's "incompatible function arguments" or "Could not
    convert string 'customers' to INT32" (helper-149)."""
    if not isinstance(value, str):
        raise QueryError(f"{name}: got {type(value).__name__}; expected {expected}",
                         guidance=f"Pass {name} as a string.")


def _refuse_unsigned_128(relation: Any, kinds: list, database: str) -> None:
    """UHUGEINT reaches Arrow as a signed 128-bit number: 2**128-1 read -1, 2**127 a negative number, also in a list
    or a struct (helper-144). DuckDB's own ``.df()`` refuses the type."""
    named = [name for name, kind in zip(relation.columns, kinds) if "UHUGEINT" in str(kind)]
    if named:
        raise QueryError(f"The result has UHUGEINT values, which pandas cannot take whole: {', '.join(named)}.",
                         guidance="Cast them in the SQL: col::HUGEINT where they are below 2**127, else col::VARCHAR.",
                         database=database)


def _refused_as_query_error(call: Callable[[], Any], con: duckdb.DuckDBPyConnection, target: Target) -> Any:
    """``call()``, or the ``QueryError`` for SQL DuckDB refused. DuckDB's own error is chained unless it quotes a
    secret the ``QueryError`` masks (the SQL a person typed): a traceback (``%tb``, ``--debug``) showed it (helper-143).
    Raised outside the ``except`` block, so that not even the suppressed context holds it."""
    try:
        return call()
    except duckdb.Error as error:
        failure = sql_error(error, con, str(target.database), target.database.stem, target.dataset)
        cause = error if known_mask()(str(error)) == str(error) else None
    raise failure from cause


def _nested_exact(table: pa.Table, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its lists, structs and maps as Python values: Arrow made an integer beside a NULL in them a
    float (9007199254740993 read 9007199254740992.0: helper-143), where DuckDB's own ``.df()`` keeps it."""
    import pandas as pd

    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):  # by position: a result may name two columns alike
            frame.isetitem(index, pd.Series(table.column(index).to_pylist(), index=frame.index, dtype=object))
    return frame


def _pandas_takes(kind: pa.DataType) -> bool:
    try:
        pa.array([], kind).to_pandas()
        return True
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return False


MAX_TIMEDELTA_DAYS = 100_000_000  # about 270,000 years: a timedelta of microseconds in 64 bits holds 106,751,991 days


def _timedeltas(table: pa.Table) -> pa.Table:
    """INTERVAL columns as durations: Arrow hands pandas an interval as one ``DateOffset`` object a value, with
    which no arithmetic or ``.dt`` works. A month counts 30 days, as in DuckDB's own ``.df()``."""
    import numpy as np

    for index, field in enumerate(table.schema):
        if field.type != pa.month_day_nano_interval():
            continue
        column = table.column(index).combine_chunks()
        # the Arrow layout of month_day_nano: int32 months, int32 days, int64 nanoseconds a value
        parts = np.frombuffer(column.buffers()[1], dtype=[("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")],
                              count=column.offset + len(column))[column.offset:]
        days = parts["months"].astype("int64") * 30 + parts["days"]
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        if len(days) and np.abs(days[~nulls]).max(initial=0) > MAX_TIMEDELTA_DAYS:
            continue  # beyond what a timedelta holds: left as DateOffsets, not wrapped around
        micros = days * 86_400_000_000 + parts["nanos"] // 1000  # DuckDB keeps microseconds
        durations = pa.array(micros, pa.duration("us"), mask=nulls)
        table = table.set_column(index, pa.field(field.name, durations.type), durations)
    return table


def _frame(names: list[str], counts: list[int]) -> pd.DataFrame:
    from analytics_kit.read.listing import listing  # a DataFrame that shows well in a notebook

    return listing(pa.table({"table": pa.array(names, pa.string()), "rows": pa.array(counts, pa.int64())}).to_pandas(
        types_mapper=_nullable()))


@arguments_safe
def tables(database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, *,
           destination: str | None = None) -> pd.DataFrame:
    """The loaded tables with their row counts (dlt's and the kit's bookkeeping tables left out).

    A database no load has completed into raises ``QueryError`` saying what to run.
    """
    target = Target.of(destination, database, dataset)
    if target.is_file:
        with connection.connect(target.database, database, target.dataset) as con:
            names = user_tables(con, target.dataset)
            if connection.never_loaded(con, target.dataset, names):
                raise connection.empty_file(con, str(target.database), target.dataset)
            counts = [con.execute(f"SELECT count(*) FROM {qualified(target.dataset, name)}").fetchone()[0]
                      for name in names]
            warn_if_stopped(connection.stopped_rebuild(con, target.dataset), str(target.database))
        return _frame(names, counts)
    p = target.placeholder
    names = _arrow(
        target,
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = {p} ORDER BY table_name",
        [target.dataset], warn=True,
    ).column(0).to_pylist()
    names = [name for name in names if not name.startswith(BOOKKEEPING)]
    if not names:
        raise empty_database(target.label)
    counts = [
        _arrow(target, f"SELECT count(*) FROM {qualified(target.dataset, name)}", None).column(0)[0].as_py()
        for name in names
    ]
    return _frame(names, counts)


@arguments_safe
def describe(table: str, database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, *,
             destination: str | None = None) -> pd.DataFrame:
    """Each column of ``table``: its type in the destination and whether it may be NULL.

    ``table`` may be written as in SQL: ``events``, ``analytics.events`` or ``<dataset>.events``;
    unquoted, in any case (``EVENTS``), quoted as it is named (``"events"``).
    """
    _text("table", table, "a table's name as text, e.g. ak.describe('events')")
    target = Target.of(destination, database, dataset)
    for prefix in {connection.READER_CATALOG, target.dataset}:
        if isinstance(table, str) and table.lower().startswith(prefix.lower() + "."):
            table = table[len(prefix) + 1:]
            break
    quoted = isinstance(table, str) and len(table) > 1 and table[0] == table[-1] == '"'
    if quoted:
        table = table[1:-1].replace('""', '"')
    p = target.placeholder
    where = f"table_schema = {p} AND table_name = {p}" + (" AND table_catalog = current_database()"
                                                           if target.is_file else "")

    def columns(name: str) -> pd.DataFrame:
        return _arrow(
            target,
            "SELECT column_name AS column, data_type AS type, is_nullable = 'YES' AS nullable "
            f"FROM information_schema.columns WHERE {where} ORDER BY ordinal_position",
            [target.dataset, name], database,
        ).to_pandas(types_mapper=_nullable())

    frame = columns(table)
    if frame.empty and not quoted and isinstance(table, str) and table != table.lower():
        frame = columns(table.lower())  # as SQL reads an unquoted name (dlt names tables in lower case)
    if frame.empty:
        names = tables(database, dataset, destination=destination)["table"].tolist()  # empty: says what to run
        close = difflib.get_close_matches(str(table).lower(), names, n=1)
        raise QueryError(
            f"There is no table {table!r} in {target.label}.",
            guidance=(f"Did you mean {close[0]!r}? " if close else "") + f"Tables there: {', '.join(names)}.",
            tables=tuple(names), database=target.label,
        )
    return frame
