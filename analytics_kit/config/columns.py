"""Column hints judged as dlt's rest_api built each resource, resource_defaults' merged in."""

from __future__ import annotations

from typing import Any, Iterable

from analytics_kit.config.checks import fail


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
