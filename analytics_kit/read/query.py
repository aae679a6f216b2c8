"""Reading loaded tables back: ``query``, ``tables``, ``describe``.

On the DuckDB file every call opens a read-only connection and closes it before
returning, so a load can run right after, from this kernel or another process. On
a warehouse destination the same calls go through dlt's SQL client for it.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import duckdb
import pyarrow as pa

from analytics_kit.errors import KitError
from analytics_kit.store.database import DEFAULT_DATABASE, LOCK_WAIT_SECONDS, connect_waiting
from analytics_kit.store.sql import qualified
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
def connect(database: str | Path = DEFAULT_DATABASE) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection to the DuckDB file, in UTC."""
    path = Target.of(database=database, dataset="main").database
    if not path.exists():
        raise KitError(
            f"There is no DuckDB file at {path}.",
            guidance="Run analytics_kit.load(...) (or `analytics-kit load`) first, or pass database=...",
        )
    con = connect_waiting(path, True, LOCK_WAIT_SECONDS, None, KitError,
                          "Run the query again when the load has finished, or close the program holding the file.")
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def _arrow(target: Target, sql: str, params: Sequence[Any] | None) -> pa.Table:
    if target.is_file:
        with connect(target.database) as con:
            return con.sql(sql, params=params).to_arrow_table()
    try:
        with target.pipeline().sql_client() as client:
            with client.execute_query(sql, *(params or ())) as cursor:
                return cursor.arrow()
    except Exception as error:  # noqa: BLE001 - the driver's own error, explained
        raise KitError(
            f"The query failed on {target.label}: {type(error).__name__}: {str(error).strip()[:300]}",
            guidance=f"SQL runs in {target.destination}'s own dialect there. Queries written for DuckDB may "
            "need changes (functions, JSON operators, ? vs %s parameters); tables are in schema "
            f"{target.dataset}.",
        ) from None


def query(sql: str, database: str | Path = DEFAULT_DATABASE, params: Sequence[Any] | None = None, *,
          destination: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """Runs ``sql`` and returns a DataFrame with nullable, tz-aware dtypes.

    ``destination`` (default: the DuckDB file ``database``) names a dlt destination
    such as ``postgres``; its credentials come from dlt secrets.
    """
    table = _arrow(Target.of(destination, database, dataset), sql, params)
    return table.to_pandas(types_mapper=_nullable())


def tables(database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, *,
           destination: str | None = None) -> pd.DataFrame:
    """The loaded tables with their row counts (dlt's and the kit's bookkeeping tables left out)."""
    target = Target.of(destination, database, dataset)
    p = target.placeholder
    names = _arrow(
        target,
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = {p} ORDER BY table_name",
        [target.dataset],
    ).column(0).to_pylist()
    names = [name for name in names if not name.startswith(("_dlt", "_analytics_kit"))]
    counts = [
        _arrow(target, f"SELECT count(*) FROM {qualified(target.dataset, name)}", None).column(0)[0].as_py()
        for name in names
    ]
    return pa.table({"table": pa.array(names, pa.string()), "rows": pa.array(counts, pa.int64())}).to_pandas(
        types_mapper=_nullable())


def describe(table: str, database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, *,
             destination: str | None = None) -> pd.DataFrame:
    """Each column of ``table``: its type in the destination and whether it may be NULL."""
    target = Target.of(destination, database, dataset)
    p = target.placeholder
    frame = _arrow(
        target,
        "SELECT column_name AS column, data_type AS type, is_nullable = 'YES' AS nullable "
        f"FROM information_schema.columns WHERE table_schema = {p} AND table_name = {p} ORDER BY ordinal_position",
        [target.dataset, table],
    ).to_pandas(types_mapper=_nullable())
    if frame.empty:
        raise KitError(
            f"There is no table {target.dataset}.{table} in {target.label}.",
            guidance="analytics_kit.tables() lists the loaded tables.",
        )
    return frame
