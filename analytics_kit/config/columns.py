"""Column hints judged as dlt's rest_api built each resource, resource_defaults' merged in."""

from __future__ import annotations

from typing import Any, Iterable

from analytics_kit.config.checks import fail


def check_built(resources: Iterable[Any], naming: Any) -> None:
    """The checks of hints as dlt's rest_api built the resources: typed columns, and tables loaded alike."""
    from analytics_kit.config.shared_tables import check_loading_alike

    resources = list(resources)
    check_typed(resources)
    check_upserts_keyed(resources)
    check_loading_alike(resources, naming)


def check_upserts_keyed(resources: list[Any]) -> None:
    """Refuses an upsert merge without a primary key, which dlt refused only in its load step, after every page was
    fetched, with SchemaCorruptedException and the advice to run the load again (helper-137)."""
    from analytics_kit.fetch.replace import merge_strategy
    from analytics_kit.seam import primary_key

    for index, resource in enumerate(resources):
        if merge_strategy(resource) == "upsert" and not primary_key(resource):
            raise fail(f"resources[{index}].primary_key", "missing, for an upsert merge", "the field(s) that "
                       "identify a record", "Set primary_key (on the resource or in resource_defaults): dlt's upsert "
                       "updates the row of each key, and inserts a row for a new one.")


def check_typed(resources: Iterable[Any]) -> None:
    """Refuses a column whose hint, as dlt's rest_api built the resource (resource_defaults' merged in), says
    ``"data_type": None``: the kit's fast path loaded the table without it, and dlt's normaliser failed on it with a
    KeyError (helper-88). Judged on the built resources: a None a later hint overrides is no column's (helper-90)."""
    for index, resource in enumerate(resources):
        columns = resource.columns
        for name, hint in columns.items() if isinstance(columns, dict) else ():
            if isinstance(hint, dict) and "data_type" in hint and hint["data_type"] is None:
                raise fail(f"resources[{index}].columns.{name}.data_type", "got None", "a dlt data type",
                           "Leave data_type out to let dlt type the column from the data, or name one: text, "
                           "bigint, double, bool, timestamp, date, decimal, json ...")


def unshare_hints(config: dict[str, Any]) -> None:
    """Gives every column of resource_defaults and of each resource a hint dict of its own. A config that names one
    dict for several columns (``MONEY = {"data_type": "decimal", ...}``, then ``{"price": MONEY, "tax": MONEY}``)
    meant each to have it, but dlt writes a column's name into its hint, in place: both became ``tax``'s, and dlt
    typed ``price`` from the data (helper-91)."""
    defaults = config.get("resource_defaults")
    for place in [defaults, *(config.get("resources") or [])]:
        columns = place.get("columns") if isinstance(place, dict) else None
        if isinstance(columns, dict):
            place["columns"] = {name: dict(hint) if isinstance(hint, dict) else hint for name, hint in columns.items()}
        elif isinstance(columns, list):
            place["columns"] = [dict(hint) if isinstance(hint, dict) else hint for hint in columns]


_INSTANTS = ("timestamp", "date")


def check_cursor_starts(config: dict[str, Any]) -> None:
    """Refuses an incremental's ``initial_value`` or ``end_value`` that is text but no date or timestamp, where the
    cursor's column is declared one: "yesterday" went out as ``updated_since=yesterday``, and the API's 400 said to
    check the endpoint's params, never naming the start (helper-115). Numbers pass: dlt reads them as Unix seconds."""
    from datetime import date

    from analytics_kit.fetch.cursors import parse

    defaults = config.get("resource_defaults") if isinstance(config.get("resource_defaults"), dict) else {}
    for index, resource in enumerate(config.get("resources") or []):
        if not isinstance(resource, dict):
            continue
        columns = {**_named(defaults.get("columns")), **_named(resource.get("columns"))}
        own, default = _dict(resource.get("endpoint")), _dict(defaults.get("endpoint"))
        here, there = f"resources[{index}].endpoint", "resource_defaults.endpoint"  # as dlt merges them: own first
        blocks = [(f"{here if 'incremental' in own else there}.incremental",
                   own.get("incremental", default.get("incremental")))]
        params = {**{k: (there, v) for k, v in _dict(default.get("params")).items()},
                  **{k: (here, v) for k, v in _dict(own.get("params")).items()}}
        blocks += [(f"{at}.params.{name}", block) for name, (at, block) in params.items()
                   if isinstance(block, dict) and block.get("type") == "incremental"]
        for where, block in blocks:
            if not isinstance(block, dict) or not isinstance(block.get("cursor_path"), str):
                continue
            hint = columns.get(block["cursor_path"])
            kind = hint.get("data_type") if isinstance(hint, dict) else None
            if kind not in _INSTANTS:
                continue
            for key in ("initial_value", "end_value"):
                value = block.get(key)
                if not isinstance(value, str) or parse(value) is not None:
                    continue
                try:
                    date.fromisoformat(value.strip())
                    continue
                except ValueError:
                    pass
                bound = "from this value on" if key == "initial_value" else "up to this value"
                raise fail(f"{where}.{key}", f"got {value!r}, which is no {kind}",
                           "an ISO 8601 timestamp such as '2025-01-01T00:00:00Z'",
                           f"The column {block['cursor_path']!r} is declared a {kind}, and the load takes the records "
                           f"{bound}: write it as the API's timestamps are written.")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _named(columns: Any) -> dict[str, Any]:
    if isinstance(columns, dict):
        return columns
    if isinstance(columns, list):
        return {c["name"]: c for c in columns if isinstance(c, dict) and isinstance(c.get("name"), str)}
    return {}


def drop_ignored_precision(resources: Iterable[Any], destination: Any) -> None:
    """A timestamp's ``precision`` beside its time zone, in a DuckDB file: dlt's DuckDB table ignores it (it logs that
    DuckDB "does not support both timezone and precision" and makes a TIMESTAMPTZ of microseconds), and dlt's own
    loads keep every digit, but the parquet writer of the kit's files cut the values to the precision: .123456 was
    stored .123 or .000 (helper-145). A ``time``'s precision the same: DuckDB's TIME has none, and .9996 was stored
    .999 (helper-152). The hint goes, so the writer keeps what the table keeps."""
    if destination not in (None, "duckdb"):
        return  # PostgreSQL makes timestamptz(p) and rounds itself
    for resource in resources:
        columns = resource.columns
        for hint in columns.values() if isinstance(columns, dict) else ():
            # the hints dlt built from prepare's copy of the config; apply_hints merges a hint, it cannot drop one
            if isinstance(hint, dict) and (hint.get("data_type") == "time" or hint.get("data_type") == "timestamp"
                                           and hint.get("timezone") is not False):
                hint.pop("precision", None)
