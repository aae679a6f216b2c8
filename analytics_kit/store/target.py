"""Where a load goes: the local DuckDB file by default, or any dlt destination by name.

``Target`` is the one place that knows the difference: the file needs creating,
locking and a pipeline folder beside it; a warehouse (``postgres``, ``motherduck``,
``bigquery``, ``snowflake``, ...) takes its credentials from dlt secrets, never from
code, and keeps its pipeline folder in the project's ``.analytics-kit/`` folder.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from analytics_kit.errors import ConfigError
from analytics_kit.seam import capabilities_without_resolving, duckdb_destination, known_destinations
from analytics_kit.store.database import (DATABASE_ENV, DEFAULT_DATABASE, DEFAULT_DATASET, DefaultDatabase, check_dataset,
                                          file_paths)
from analytics_kit.store.file_faults import not_duckdb

if TYPE_CHECKING:
    from dlt import Pipeline

FILE_DESTINATION = "duckdb"
# dlt's replace strategy that stages the new rows and swaps each table in one transaction
# (with supports_transactions): a failed full refresh leaves the old table whole.
ATOMIC_REPLACE = "insert-from-staging"
# Destinations whose statements run in real transactions: the file, MotherDuck and PostgreSQL.
# Others load a full refresh as a merge into tables dlt drops first (see run.load).
TRANSACTIONAL = ("duckdb", "motherduck", "postgres")
# The file's tables go to its default schema (see database.DEFAULT_DATASET); a
# warehouse gets a schema of its own.
WAREHOUSE_DATASET = "analytics"
LOCAL_FOLDER = ".analytics-kit"
DUCKDB_MEMORY = "96MB"
MEMORY_ENV = "ANALYTICS_KIT_DUCKDB_MEMORY"
# What DuckDB's memory_limit takes: a positive amount with a unit, or a share of the RAM. A
# value it cannot parse failed deep in the load step; "-5MB" removed the cap without a word.
_MEMORY_AMOUNT = re.compile(r"\s*(\d+(\.\d+)?)\s*(b|bytes|kb|mb|gb|tb|kib|mib|gib|tib|%)\s*",
                            re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class Target:
    """A destination and dataset, resolved: what ``load`` writes to and the readers read."""

    destination: str
    dataset: str
    pipelines_dir: Path
    database: Path | None = None  # the DuckDB file, for the default destination

    @classmethod
    def of(cls, destination: str | None = None, database: str | Path = DEFAULT_DATABASE,
           dataset: str | None = None, *, loading: bool = False) -> "Target":
        """``loading``: for a load, which writes its working folder too (a reader reads the file alone: a file where
        that folder goes failed ``ak.state()`` as well, helper-116)."""
        _check_argument("destination", destination, "a dlt destination name such as 'duckdb' or 'postgres'")
        _check_argument("dataset", dataset, "a schema name such as 'analytics'")
        _check_dataset_name(dataset)
        # the default is $ANALYTICS_DATABASE's, which names a file as the argument does: a connection string there
        # loaded into a folder named after it, password and all (helper-149)
        named = os.environ.get(DATABASE_ENV, "").strip() if isinstance(database, DefaultDatabase) else None
        if not isinstance(database, (str, os.PathLike)) or not str(database).strip() or \
                credential_like(named or str(database), at=False):  # a file may be named data@2026.duckdb
            raise ConfigError(f"got {_described(named or database)}; expected the path of a DuckDB file",
                              path=f"database (${DATABASE_ENV})" if named else "database",
                              guidance=f"Pass a file name such as 'analytics.duckdb' (the default); for a database "
                              f"server, pass destination='postgres' instead. {CREDENTIALS}")
        name = (destination or FILE_DESTINATION).strip().lower()
        if name == FILE_DESTINATION:
            try:
                path, pipelines_dir = file_paths(database)
                _check_file_path(database, path, pipelines_dir if loading else None)
            except OSError as error:  # a name too long escaped load() as a raw OSError (helper-124)
                raise ConfigError(f"the database path cannot be used: {error.strerror or error}", path="database",
                                  guidance="Pass a shorter path, in a folder that exists or can be made, e.g. "
                                  "'analytics.duckdb'.") from None
            dataset = dataset or DEFAULT_DATASET
            check_dataset(path, dataset)
            return cls(name, dataset, pipelines_dir, path)
        _check_known(name)
        dataset = dataset or WAREHOUSE_DATASET
        # Resolved now, like the file's path: the current folder, whatever dlt remembers.
        return cls(name, dataset, Path.cwd().resolve() / LOCAL_FOLDER / f"{name}.{dataset}.state")

    @property
    def is_file(self) -> bool:
        return self.database is not None

    @property
    def label(self) -> str:
        return str(self.database) if self.database else f"{self.destination} (dataset {self.dataset})"

    @property
    def placeholder(self) -> str:
        """The query parameter marker of the destination's driver."""
        return "?" if self.destination in (FILE_DESTINATION, "motherduck") else "%s"

    @property
    def pipeline_name(self) -> str:
        """The name of the dlt pipeline that loads this target: its state rows carry it."""
        return f"analytics_kit_{self.dataset}"

    def secrets(self) -> tuple[str, ...]:
        """Passwords and tokens of the warehouse credentials in dlt secrets, to keep out of messages."""
        if self.is_file:
            return ()
        import dlt

        credentials = dlt.secrets.get(f"destination.{self.destination}.credentials")
        if isinstance(credentials, str):
            parsed = urlsplit(credentials)
            return tuple(s for s in (parsed.password, credentials) if s)
        if isinstance(credentials, Mapping):
            return tuple(
                str(v) for k, v in credentials.items()
                if v and any(word in k.lower() for word in ("password", "token", "secret", "key"))
            )
        return ()

    def pipeline(self) -> Pipeline:
        """The dlt pipeline for this target; credentials of a warehouse come from dlt secrets.

        dlt 1.31 leaves ``supports_transactions`` unset for DuckDB (and MotherDuck, which shares
        its capabilities), so a merge script without CREATE, ALTER or DROP in it ran in autocommit:
        its DELETE was committed before its INSERT, and when the INSERT failed (a full disk at
        the WAL write, out of memory, a kill between the two) the changed rows were gone while
        the cursor said they were loaded. With the capability set, each table's merge is one
        transaction.
        """
        import dlt

        pipeline = dlt.pipeline(
            pipeline_name=self.pipeline_name,
            pipelines_dir=str(self.pipelines_dir),
            destination=self.destination_factory(),
            dataset_name=self.dataset,
        )
        # dlt's own SIGINT handler in normalize and load drops a Ctrl-C it has not checked for when the step
        # ends: the load went on and succeeded (helper-98). Without it the interrupt is one at once, as in extract.
        pipeline.runtime_config.intercept_signals = False
        return pipeline

    def destination_factory(self) -> Any:
        """The dlt destination; a full refresh replaces with ``ATOMIC_REPLACE`` where it can."""
        import dlt

        if self.database:
            return capabilities_without_resolving(duckdb_destination(credentials={
                "database": str(self.database),
                # DuckDB takes up to 80% of RAM by default; merging 1,000,000 rows took it
                # past 300 MB on top of the loader. Bounded, it spills to disk instead:
                # with 96 MB, 1,000,000 rows load in ~2 s, deduplicated or not; with 64 MB
                # in ~3 s; with 32 MB the deduplicating merge ran out of memory.
                "global_config": {"memory_limit": duckdb_memory()},
            }, supports_transactions=True, replace_strategy=ATOMIC_REPLACE))
        factory = getattr(dlt.destinations, self.destination, None)
        if self.destination in TRANSACTIONAL and callable(factory):
            # PostgreSQL's capabilities leave supports_transactions unset too (see ``pipeline``)
            return capabilities_without_resolving(factory(supports_transactions=True, replace_strategy=ATOMIC_REPLACE))
        return self.destination

    def replaces_atomically(self) -> bool:
        """Whether a full refresh can be a replace swapped in per table (else it is a merge)."""
        return self.is_file or self.destination in TRANSACTIONAL


def _check_file_path(given: str | os.PathLike, path: Path, pipelines_dir: Path | None) -> None:
    """Refuses a database path that is, or can only become, something other than a DuckDB file."""
    if path.is_dir() or str(given).endswith(("/", os.sep)):
        named = str(path) if path.is_dir() else str(given)  # $ANALYTICS_DATABASE's folder, or "new/"
        raise ConfigError(f"{named!r} names a folder; expected the path of a DuckDB file", path="database",
                          guidance=f"Pass a file in it, e.g. {str(path / 'analytics.duckdb')!r}.")
    kernel = next((p.parts[1] for p in (*_hops(Path(os.path.abspath(os.path.expanduser(str(given))))), path)
                   if p.parts[1:2] in (("proc",), ("dev",), ("sys",))), None)
    if kernel is not None:  # /dev/stdout: a .state folder beside what it led to (helper-127)
        raise ConfigError(f"{str(given)!r} leads into /{kernel}, a file system of the kernel's, not a place for a "
                          "file", path="database",
                          guidance="Pass the path of a DuckDB file, e.g. 'analytics.duckdb'.")
    if path.exists() and not path.is_file():  # /dev/null: its .state folder was made in /dev (helper-124)
        raise ConfigError(f"{str(path)!r} is a device, pipe or socket, not a file", path="database",
                          guidance="Pass the path of a DuckDB file, e.g. 'analytics.duckdb'.")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"the DuckDB file {str(path)!r} cannot be made: {str(parent)!r} is a file, not a folder",
                          path="database", guidance="Pass a path in a folder, e.g. 'analytics.duckdb'.")
    if path.is_file() and (kind := not_duckdb(path)) is not None:
        raise ConfigError(f"{str(path)!r} is {kind}, not a DuckDB database: DuckDB would open it as data to read, "
                          "and what a load wrote into it would be lost", path="database",
                          guidance="Pass the DuckDB file a load wrote, or a new name such as 'analytics.duckdb'."
                          + (f" To read this file itself: duckdb.sql(\"SELECT * FROM '{path.name}'\").df()."
                             if kind in ("a CSV file", "a JSON file", "a Parquet file") else ""))
    if pipelines_dir is not None and pipelines_dir.exists() and not pipelines_dir.is_dir():
        raise ConfigError(f"{str(pipelines_dir)!r}, where the kit keeps the load's working files beside the "
                          "database, is a file", path="database",
                          guidance="Move that file away, or pass another name for the database.")


def _hops(path: Path) -> list[Path]:
    """``path``, and where each link on its way leads, one hop each: a link to /dev/stdout beside the file stdout went
    to passed as that file (helper-128)."""
    hops = [path]
    for end in range(2, len(path.parts) + 1):
        prefix = Path(*path.parts[:end])
        try:
            if prefix.is_symlink():
                hops.append(Path(os.path.abspath(prefix.parent / os.readlink(prefix))))
        except OSError:
            break
    return hops


def duckdb_memory() -> str:
    """DuckDB's memory cap for a load into the file: ``ANALYTICS_KIT_DUCKDB_MEMORY``, or 96MB."""
    value = os.environ.get(MEMORY_ENV, "").strip()
    if not value:
        return DUCKDB_MEMORY
    match = _MEMORY_AMOUNT.fullmatch(value)
    if match is None or not _plausible(float(match.group(1)), match.group(3).lower()) or not _duckdb_reads(value):
        raise ConfigError(f"got {value!r}; expected an amount of memory such as 96MB or 1GB", path=MEMORY_ENV,
                          guidance=f"Set {MEMORY_ENV} to a positive amount with a unit (KB, MB, GB, or a % of the "
                          f"RAM), or unset it for the default, {DUCKDB_MEMORY}.")
    return value


_UNIT_BYTES = {"b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _plausible(amount: float, unit: str) -> bool:
    """A positive share of the RAM up to all of it, or a positive amount DuckDB can count (DuckDB
    1.4 took "99999999999999999999GB" as 0 bytes, and every statement then ran out of memory)."""
    if unit == "%":
        return 0 < amount <= 100
    return 0 < amount * _UNIT_BYTES[unit] < 2**62


@functools.lru_cache(maxsize=8)
def _duckdb_reads(memory: str) -> bool:
    """Whether DuckDB takes ``memory`` as its cap ("150%" and "99999999999999999999GB" pass the
    pattern, not DuckDB); a cap too small to run anything still counts as read. Cached: a load
    asks at its start and again as it builds dlt's destination, each time opening a DuckDB."""
    import duckdb

    with duckdb.connect() as connection:
        try:
            connection.execute(f"SET memory_limit = '{memory}'")
        except (duckdb.InvalidInputException, duckdb.ParserException):
            return False
        except duckdb.Error:
            return True
    return True


# Where credentials go instead of an argument
CREDENTIALS = ("A database server's credentials go in dlt's secrets (e.g. DESTINATION__POSTGRES__CREDENTIALS, or "
               "[destination.postgres.credentials] in .dlt/secrets.toml), never in an argument.")


# Text that may hold a credential: a scheme or a user before a colon (postgresql://, md:, a path that collapsed
# postgresql:// to postgresql:/, u:pw@host; a Windows drive's one letter is not one), or a key of a key=value
# connection string; read as written and percent-decoded
# (a user of one letter too, u:pw@host, where a drive is followed by a slash: helper-149)
_CREDENTIAL_LIKE = re.compile(r"^\W*[A-Za-z](?:[\w+.\-]+:|:(?![\\/]))|://|(password|passwd|pwd|token|secret|key)\s*=",
                              re.IGNORECASE)


def credential_like(text: str, *, at: bool = True) -> bool:
    """Whether ``text`` may hold a credential (``at``: a ``@`` counts, as in ``user:pw@host``)."""
    return any(_CREDENTIAL_LIKE.search(t) or (at and "@" in t) for t in (text, unquote(text)))


def _described(value: object) -> str:
    """An argument as an error may show it: quoted, unless it may hold a credential. Text or a path is then named a
    connection string, and an object by its type (a dlt destination object's text holds its credentials)."""
    if isinstance(value, (str, os.PathLike)):
        return "a connection string" if credential_like(str(value)) else repr(value)
    return repr(value) if isinstance(value, (int, float, bool, type(None))) else f"a {type(value).__name__} object"


def _check_argument(name: str, value: object, expected: str) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip() or credential_like(value):
        raise ConfigError(f"got {_described(value)}; expected {expected}", path=name,
                          guidance=f"Pass {name} as a name, or leave it out for the default. {CREDENTIALS}")


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# dlt names the pipeline's schema after the pipeline, analytics_kit_<dataset>, and refuses one past 64 characters
MAX_DATASET = 64 - len("analytics_kit_")


def _check_dataset_name(dataset: str | None) -> None:
    """Refuses a dataset dlt would rename or refuse: "Raw" loaded into raw, where the readers given "Raw" did not
    look, with 35 of dlt's warnings a load; "My Data" failed as dlt's InvalidSchemaName (helper-125)."""
    # dlt's snake_case also ends a name's trailing "_" with "x" and joins "__" into one (helper-126: raw_ into rawx)
    if dataset is None or _PLAIN_NAME.fullmatch(dataset) and len(dataset) <= MAX_DATASET and not (
            dataset.endswith("_") or "__" in dataset):
        return
    plain = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]+", "_", dataset.strip().lower())).rstrip("_") or "analytics"
    plain = (f"_{plain}" if plain[0].isdigit() else plain)[:MAX_DATASET]
    from analytics_kit.redact import known_mask

    if known_mask().holds_part(plain):  # the advice echoed a key given as part of the name, lower-cased (helper-150)
        plain = "a plain name of your own"
    raise ConfigError(f"got {dataset!r}; expected a plain lower-case name (letters, digits and underscores, not "
                      f"starting with a digit, at most {MAX_DATASET} characters)", path="dataset",
                      guidance=(f"Pass dataset={plain!r}" if " " not in plain else f"Pass dataset as {plain}") +
                      ": dlt would otherwise rename the schema (or refuse it), and the readers would look for the name "
                      "as given.")


def _check_known(name: str) -> None:
    known = known_destinations()
    if name in known:
        return
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"unknown destination {name!r}{hint}; expected one of {', '.join(known)}",
        path="destination",
        guidance="Name a dlt destination; its credentials go in dlt secrets, e.g. "
        "DESTINATION__POSTGRES__CREDENTIALS or [destination.postgres.credentials] in .dlt/secrets.toml.",
    )
