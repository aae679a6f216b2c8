"""The stored cursors of a pipeline: read, checked against the clock, and settled before a run.

dlt's state layout is read through ``seam.incremental_states``; the policy (instants, and
cursors from the future) is ``cursors``'s.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Collection, Iterator

from analytics_kit.fetch import cursors
from analytics_kit.seam import incremental_states

if TYPE_CHECKING:
    from dlt import Pipeline


def stored_cursors(pipeline: Pipeline, source: str) -> dict[str, Any]:
    """The incremental cursor value of each resource, from the pipeline's state."""
    return cursor_values(pipeline.state, source)


def cursor_values(state: dict, source: str) -> dict[str, Any]:
    """The incremental cursor value of each resource in a pipeline ``state`` (a dict)."""
    return {stored.resource: stored.value for stored in incremental_states(state, source)}


def epoch_cursor(pipeline: Pipeline, resource: str, path: str) -> bool:
    """Whether the destination's schema types ``resource``'s cursor column as a timestamp,
    so that numbers in it are Unix seconds (``Schema.tables`` is public; the resource's
    table carries its name, as rest_api names it)."""
    schema = pipeline.default_schema if pipeline.default_schema_name else None
    column = schema.tables.get(resource, {}).get("columns", {}).get(path, {}) if schema else {}
    return column.get("data_type") == "timestamp"


def future_cursors(pipeline: Pipeline, source: str, started: datetime) -> Iterator[tuple[str, Any]]:
    """(resource, value) of each stored cursor more than ``cursors.FUTURE_SKEW`` after ``started``."""
    for stored in incremental_states(pipeline.state, source):
        if cursors.beyond(stored.value, started, epoch_cursor(pipeline, stored.resource, stored.path)):
            yield stored.resource, stored.value


# The form a resource's stored cursor is in: "instant" (the kit's, see ``cursors``) or "as written" (the API's)
FORM = "analytics_kit_cursor_form"
# The most a zone's local time lies behind UTC (UTC-12:00), and then some: the text of any later instant, in any zone
EARLIEST_ZONE = timedelta(hours=14)


def back_from_instant(value: Any) -> Any:
    """A cursor stored in the kit's instant form for records the kit now leaves as the API writes them (a config
    that dropped its timestamp declaration or gained a ``convert``, or a file an earlier version loaded: it settled
    every cursor so): dlt compares the API's text with it, and "...-05:00" records newer than it but earlier as text
    were never loaded (helper-140). Moved back by the widest zone offset, as text in its own form: every later record's
    text sorts after it, whatever its zone; the merge absorbs what comes again."""
    instant = cursors.parse(value)
    return value if instant is None else cursors.render(instant - EARLIEST_ZONE)


def settle_cursors(pipeline: Pipeline, source: str, as_written: Collection[str] = ()) -> list[tuple[str, str]]:
    """Stored timestamp cursors in the form that compares as instants; one that ran ahead of
    the run that stored it moved back to that run's start. Returns (resource, what was moved).

    The cursors of ``as_written`` resources (whose config's ``convert`` reads the value as the API
    wrote it) keep their form: rewritten, the second run's convert got "...+00:00" where it parsed
    the API's "...Z", and failed every run after the first (helper-53).

    Written through ``Pipeline.managed_state`` (public) before extraction, so dlt's
    incremental step starts from the settled value; the layout is dlt's (see above).
    """
    moved: list[tuple[str, str]] = []
    with pipeline.managed_state() as state:
        for stored in incremental_states(state, source):
            value, path = stored.value, stored.path
            settled = value if stored.resource in as_written else cursors.canonical(value)
            form, stored.resource_state[FORM] = stored.resource_state.get(FORM), (
                "as written" if stored.resource in as_written else "instant")
            if (stored.resource in as_written and form != "as written" and isinstance(value, str)
                    and cursors.parse(value) is not None and cursors.canonical(value) == value):
                settled = back_from_instant(value)
            started = cursors.parse(stored.resource_state.get(cursors.RUN_STARTED))
            if started is not None and cursors.beyond(cursors.canonical(value), started,
                                                      epoch_cursor(pipeline, stored.resource, path)):
                settled = cursors.restart_point(started, like=value)
                # the boundary records' hashes belong to the future value
                stored.move_to(settled, forget_boundary=True)
                moved.append((stored.resource, f"the stored cursor {path}={cursors.canonical(value)} lies in the future "
                                               f"of the run that stored it (started {cursors.render(started)}); this run "
                                               f"starts from {settled} instead, so no change since then is missed"))
            elif settled != value:
                stored.move_to(settled)
    return moved
