"""Reaches below dlt's public API that the kit cannot do without, in one place.

Each function says why it is needed and what public route would replace it, so that a
dlt upgrade is checked here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

import dlt
from dlt.pipeline.pipeline import Pipeline

from . import cursors


def incremental_states(state: dict, source: str) -> Iterator[tuple[str, str, dict, dict]]:
    """(resource, cursor path, resource state, cursor state) of each incremental cursor.

    dlt's pipeline state keeps cursors at ``sources.<source>.resources.<resource>.incremental.
    <cursor_path>`` (``last_value``, ``unique_hashes``, ...): a layout dlt does not document.
    A public reader of stored cursors would replace this.
    """
    resources = state.get("sources", {}).get(source, {}).get("resources", {})
    for name, resource in sorted(resources.items()):
        for path, cursor in (resource.get("incremental") or {}).items():
            if isinstance(cursor, dict):
                yield name, path, resource, cursor


def running_cursor(resource: str, path: str) -> Any:
    """The cursor value the running extraction of ``resource`` starts from, or None.

    Read through ``dlt.current.resource_state`` (public) in dlt's layout (see above): the
    ``Incremental`` a rest_api resource is given is not the bound copy that knows it.
    """
    try:
        state = dlt.current.resource_state(resource)
    except Exception:  # noqa: BLE001 - outside a pipeline there is no state
        return None
    return ((state.get("incremental") or {}).get(path) or {}).get("last_value")


def stored_cursors(pipeline: Pipeline, source: str) -> dict[str, Any]:
    """The incremental cursor value of each resource, from the pipeline's state."""
    return {name: cursor.get("last_value") for name, _, _, cursor in incremental_states(pipeline.state, source)}


def epoch_cursor(pipeline: Pipeline, resource: str, path: str) -> bool:
    """Whether the destination's schema types ``resource``'s cursor column as a timestamp,
    so that numbers in it are Unix seconds (``Schema.tables`` is public; the resource's
    table carries its name, as rest_api names it)."""
    schema = pipeline.default_schema if pipeline.default_schema_name else None
    column = schema.tables.get(resource, {}).get("columns", {}).get(path, {}) if schema else {}
    return column.get("data_type") == "timestamp"


def future_cursors(pipeline: Pipeline, source: str, started: datetime) -> Iterator[tuple[str, Any]]:
    """(resource, value) of each stored cursor more than ``cursors.FUTURE_SKEW`` after ``started``."""
    for name, path, _, cursor in incremental_states(pipeline.state, source):
        value = cursor.get("last_value")
        if cursors.beyond(value, started, epoch_cursor(pipeline, name, path)):
            yield name, value


def settle_cursors(pipeline: Pipeline, source: str) -> list[tuple[str, str]]:
    """Stored timestamp cursors in the form that compares as instants; one that ran ahead of
    the run that stored it moved back to that run's start. Returns (resource, what was moved).

    Written through ``Pipeline.managed_state`` (public) before extraction, so dlt's
    incremental step starts from the settled value; the layout is dlt's (see above).
    """
    moved: list[tuple[str, str]] = []
    with pipeline.managed_state() as state:
        for name, path, resource, cursor in incremental_states(state, source):
            value = cursor.get("last_value")
            settled = cursors.canonical(value)
            started = cursors.parse(resource.get(cursors.RUN_STARTED))
            if started is not None and cursors.beyond(settled, started, epoch_cursor(pipeline, name, path)):
                settled = cursors.restart_point(started, like=value)
                # the boundary records' hashes belong to the future value
                cursor["unique_hashes"] = []
                moved.append((name, f"the stored cursor {path}={cursors.canonical(value)} lies in the future of "
                                    f"the run that stored it (started {cursors.render(started)}); this run starts "
                                    f"from {settled} instead, so no change since then is missed"))
            if settled != value:
                cursor["last_value"] = settled
    return moved
