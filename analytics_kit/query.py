"""Reading loaded tables back: ``query``, ``tables``, ``describe``.

Every call opens a read-only connection and closes it before returning, so a load
can run right after, from this kernel or another process.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import duckdb
import pandas as pd
import pyarrow as pa

from .database import DEFAULT_DATABASE, DEFAULT_DATASET, Location
from .errors import KitError

# Arrow types to pandas' nullable dtypes: NULLs stay <NA> and integers stay integers.
_NULLABLE = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
    pa.float32(): pd.Float32Dtype(), pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype(),
}


@contextmanager
def connect(database: str | Path = DEFAULT_DATABASE) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection, in UTC."""
    path = Location.of(database).database
    if not path.exists():
        raise KitError(
            f"There is no DuckDB file at {path}.",
            guidance="Run analytics_kit.load(...) (or `analytics-kit load`) first, or pass database=...",
        )
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def query(sql: str, database: str | Path = DEFAULT_DATABASE, params: Sequence[Any] | None = None) -> pd.DataFrame:
    """Runs ``sql`` and returns a DataFrame with nullable, tz-aware dtypes."""
    with connect(database) as con:
        table = con.sql(sql, params=params).to_arrow_table()
    return table.to_pandas(types_mapper=_NULLABLE.get)


def tables(database: str | Path = DEFAULT_DATABASE, dataset: str = DEFAULT_DATASET) -> pd.DataFrame:
    """The loaded tables of ``dataset`` with their row counts (dlt's bookkeeping tables left out)."""
    with connect(database) as con:
        names = [
            row[0]
            for row in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY table_name",
                [dataset],
            ).fetchall()
        ]
        counts = [
            con.execute(f'SELECT count(*) FROM "{dataset}"."{name}"').fetchone()[0] for name in names
        ]
    return pd.DataFrame({"table": pd.array(names, dtype="string"), "rows": pd.array(counts, dtype="Int64")})


def describe(table: str, database: str | Path = DEFAULT_DATABASE, dataset: str = DEFAULT_DATASET) -> pd.DataFrame:
    """Each column of ``table``: its DuckDB type and whether it may be NULL."""
    frame = query(
        "SELECT column_name AS column, data_type AS type, is_nullable = 'YES' AS nullable "
        "FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        database,
        [dataset, table],
    )
    if frame.empty:
        raise KitError(
            f"There is no table {dataset}.{table} in {Location.of(database).database.name}.",
            guidance="analytics_kit.tables() lists the loaded tables.",
        )
    return frame
