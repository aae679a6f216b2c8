"""The columns each resource will get, as dlt's rest_api merges resource_defaults' into its own: the kit checks
and shapes declared columns as dlt's merged ones will have them."""

from __future__ import annotations

import copy
from typing import Any, Iterable, Iterator

from analytics_kit.config.checks import fail


def merged_columns(config: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    """(resource, a copy of the columns dlt will give it) for each resource, in order, merged as rest_api's
    ``_merge_resource_endpoints`` merges them. That merge updates the defaults' own column dicts (its copy is
    shallow), so one resource's hints reach the next resources'; here it happens on a copy of the defaults, and
    the config is not changed (helper-89: merged in place, an earlier resource's hints won over a later one's)."""
    from analytics_kit import seam

    defaults = config.get("resource_defaults")
    shared = copy.deepcopy(defaults.get("columns")) if isinstance(defaults, dict) else None
    for resource in config.get("resources") or []:
        own = resource.get("columns") if isinstance(resource, dict) else None
        if not (shared and own and isinstance(shared, (dict, list)) and isinstance(own, (dict, list))):
            yield resource, copy.deepcopy(own or shared)  # dlt merges only both given, in its own formats
            continue
        try:
            merged = seam.merged_columns(shared, own)
        except Exception:  # noqa: BLE001 - malformed columns: dlt's validation names them, after this
            return
        yield resource, copy.deepcopy(merged)


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
