"""``history``: one row per committed load, read from the database.

dlt's ``_dlt_loads`` lists the loads that committed and when; the kit's
``_analytics_kit_loads`` (see ``store.load_log``) says what each did. A load is listed only
once dlt marked it complete, so a run that failed or was killed never shows. Loads made
before the kit kept its record (or by another program) show with their time only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analytics_kit.display import missing
from analytics_kit.errors import ConfigError, QueryError, arguments_safe
from analytics_kit.read.connection import require_loaded
from analytics_kit.read.query import query
from analytics_kit.store.database import DEFAULT_DATABASE
from analytics_kit.store.load_log import LOADS_TABLE, TABLE
from analytics_kit.store.sql import qualified
from analytics_kit.store.target import Target

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class LoadRecord:
    """One committed load: dlt's row, and the kit's facts about it when it kept them."""

    load_id: str
    loaded_at: Any  # a tz-aware pandas Timestamp (UTC)
    mode: str | None = None
    started_at: datetime | None = None
    facts: dict | None = None

    def get(self, key: str) -> dict:
        return dict((self.facts or {}).get(key) or {})

    @property
    def duration(self) -> float | None:
        """Seconds from the run's start to its commit."""
        if self.started_at is None:
            return None
        return round((self.loaded_at.to_pydatetime() - self.started_at).total_seconds(), 3)


def committed_loads(database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, *,
                    destination: str | None = None) -> list[LoadRecord]:
    """Every committed load, oldest first; a ``QueryError`` saying what to run when there is none."""
    target = Target.of(destination, database, dataset)
    require_loaded(database, dataset, destination)  # a missing or empty file: what to run
    where = dict(database=database, dataset=dataset, destination=destination)
    p = target.placeholder
    found = set(query(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = {p} AND table_name IN ({p}, {p})",
        params=[target.dataset, LOADS_TABLE, TABLE], **where,
    )["table_name"])
    if LOADS_TABLE not in found:  # tables of one's own (require_loaded found some), no load's record
        raise QueryError(
            f"{target.label} holds tables but no record of a load by dlt or the kit: state, history and schema "
            "describe the kit's loads.", guidance="Its tables are read as they are: ak.tables(), ak.describe() and "
            "ak.query() (analytics-kit tables, describe, query).", database=target.label)
    loads = qualified(target.dataset, LOADS_TABLE)
    order = "WHERE l.status = 0 ORDER BY l.inserted_at, l.load_id"
    frame = None
    if TABLE in found:
        try:
            frame = query(f"SELECT l.load_id, l.inserted_at, k.mode, k.started_at, k.facts FROM {loads} AS l LEFT JOIN "
                          f"{qualified(target.dataset, TABLE)} AS k ON k.load_id = l.load_id {order}", **where)
        except QueryError:  # the kit's record altered by hand (a column dropped): dlt's alone (helper-143)
            frame = None
    if frame is None:
        frame = query(f"SELECT l.load_id, l.inserted_at FROM {loads} AS l {order}", **where)
    records = []
    for row in frame.to_dict("records"):
        facts, started = row.get("facts"), row.get("started_at")
        records.append(LoadRecord(
            load_id=str(row["load_id"]), loaded_at=row["inserted_at"],
            mode=None if missing(row.get("mode")) else str(row["mode"]),
            started_at=None if missing(started) else _instant(started),
            facts=None if missing(facts) else _facts(facts),
        ))
    return records


def _facts(text: str) -> dict | None:
    """A load's facts as the kit recorded them, each count a whole number; None, or a count left out, where the
    record is damaged (the load itself is committed; helper-142, helper-143: "rows": "many" raised a ValueError)."""
    try:
        facts = json.loads(text)
    except ValueError:
        return None
    if not isinstance(facts, dict):
        return None
    for name in ("rows", "fetched", "requests"):
        counts = facts.get(name)
        facts[name] = {table: n for table, n in counts.items() if _count(n)} if isinstance(counts, dict) else {}
    for name in ("cursor_before", "cursor_after", "declared"):
        if not isinstance(facts.get(name, {}), dict):
            facts.pop(name)
    if not _count(facts.get("retries", 0)):
        facts.pop("retries")
    return facts


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _instant(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


@arguments_safe
def history(database: str | Path = DEFAULT_DATABASE, dataset: str | None = None, *,
            destination: str | None = None, last: int | None = None) -> pd.DataFrame:
    """One row per committed load, oldest first: when, mode, rows (in all and per table),
    requests, retries, duration and each cursor before and after.

    ``loaded_at`` is when dlt marked the load complete (UTC); ``duration`` the seconds from
    the run's start to then. ``last`` keeps only the newest loads. Columns:
    ``loaded_at, mode, rows, rows_<table>..., requests, retries, duration,
    cursor_<table>_before, cursor_<table>_after..., load_id``.
    """
    import pandas as pd

    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 0):
        # -1 read as "none" without a word (helper-118)
        raise ConfigError(f"got {last!r}; expected a whole number of loads, 0 or more", path="last",
                          guidance="Pass how many of the newest loads to show, e.g. last=5 (--last 5), or leave it "
                          "out for all of them.")
    records = committed_loads(database, dataset, destination=destination)
    if last is not None:
        records = records[-last:] if last > 0 else []
    # the tables loaded: a resource that loads none (selected: False) made its requests only (helper-155)
    tables = sorted({t for r in records for t in r.get("rows")})
    cursors = sorted({t for r in records for t in (*r.get("cursor_before"), *r.get("cursor_after"))})
    columns: dict[str, list] = {"loaded_at": [r.loaded_at for r in records], "mode": [r.mode for r in records]}
    known = [r.facts is not None for r in records]
    columns["rows"] = [sum(r.get("rows").values()) if k else None for r, k in zip(records, known)]
    for table in tables:
        columns[f"rows_{table}"] = [r.get("rows").get(table, 0) if k else None for r, k in zip(records, known)]
    columns["requests"] = [sum(r.get("requests").values()) if k else None for r, k in zip(records, known)]
    columns["retries"] = [_retries(r) for r in records]
    columns["duration"] = [r.duration for r in records]
    for table in cursors:
        for when in ("before", "after"):
            columns[f"cursor_{table}_{when}"] = [r.get(f"cursor_{when}").get(table) for r in records]
    columns["load_id"] = [r.load_id for r in records]

    frame = pd.DataFrame({name: pd.Series(values, dtype=_dtype(name, values)) for name, values in columns.items()})
    frame["loaded_at"] = pd.to_datetime(frame["loaded_at"], utc=True)
    return frame


def _retries(record: LoadRecord) -> int | None:
    return None if record.facts is None else int(record.facts.get("retries", 0))


def _dtype(name: str, values: list) -> Any:
    """Nullable dtypes, as ``query`` gives: counts Int64, seconds Float64, text string."""
    if name == "loaded_at":
        return None
    if name in ("rows", "requests", "retries") or name.startswith("rows_"):
        return "Int64"
    if name == "duration":
        return "Float64"
    if all(v is None or isinstance(v, str) for v in values):
        return "string"
    return object  # cursors that are numbers
