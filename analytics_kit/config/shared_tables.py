"""The hints of resources that load into one table must agree."""

from __future__ import annotations

from typing import Any

from analytics_kit.config.checks import fail


def check_shared_tables(resources: list, defaults: Any) -> None:
    """Resources that load into one table must declare each of its columns with one data_type, and its
    soft-delete flag (``hard_delete``) alike: dlt keeps one resource's hints silently (the other's values
    coerced or split off, its rows deleted or kept by a flag it never declared), and the kit's Arrow
    pages of the two could not be written into one file."""
    def hints(columns: Any) -> dict[str, dict]:  # lists, models and callables are left to dlt
        return {n: h for n, h in columns.items() if isinstance(h, dict)} if isinstance(columns, dict) else {}

    default = hints(defaults.get("columns")) if isinstance(defaults, dict) else {}
    declared: dict[tuple[str, str], tuple[int, Any]] = {}
    flags: dict[str, dict[int, frozenset]] = {}  # table -> {resource: its hard_delete columns}
    for i, resource in enumerate(resources):
        table = resource.get("table_name", resource["name"]) if isinstance(resource, dict) else None
        if not isinstance(table, str) or not isinstance(resource.get("columns", {}), dict):
            continue
        given = {**default, **hints(resource.get("columns"))}
        own = {name: {**default.get(name, {}), **hint} for name, hint in given.items()}
        flags.setdefault(table, {})[i] = frozenset(name for name, hint in own.items() if hint.get("hard_delete"))
        for name, hint in own.items():
            kind = hint.get("data_type")
            first = declared.setdefault((table, name), (i, kind)) if kind else (i, kind)
            if first[1] != kind:
                raise fail(f"resources[{i}].columns.{name}",
                           f"declared {kind!r}, where resources[{first[0]}] declares {first[1]!r} for the same "
                           f"column of table '{table}'", "one data_type per column of a table",
                           "Declare the column alike in every resource that loads into that table, or give "
                           "the resources tables of their own (table_name).")
    _check_loading_alike(resources, defaults if isinstance(defaults, dict) else {})
    for table, by_resource in flags.items():
        (first, flag), *others = by_resource.items()
        other = next(((i, f) for i, f in others if f != flag), None)
        if other is not None:
            raise fail(f"resources[{other[0]}].columns",
                       f"soft-delete flag {sorted(other[1]) or 'none'}, where resources[{first}] has "
                       f"{sorted(flag) or 'none'}, and both load into table '{table}'",
                       "one soft-delete flag (hard_delete) for every resource of a table",
                       "Declare the same hard_delete column in every resource that loads into that table (in "
                       "resource_defaults.columns, say), or give the resources tables of their own (table_name).")


def _check_loading_alike(resources: list, defaults: dict) -> None:
    """Resources of one table must load it alike: one write disposition and one primary key. A merging resource
    and an appending one made a key grow a row every run (plain dlt merges the table), and a resource without the
    key beside one with it failed every run with Arrow's "Schema at index 1 was different" (helper-134)."""
    seen: dict[str, tuple[int, Any, Any]] = {}
    for i, resource in enumerate(resources):
        table = resource.get("table_name", resource["name"]) if isinstance(resource, dict) else None
        if not isinstance(table, str):
            continue
        disposition = resource.get("write_disposition", defaults.get("write_disposition", "append"))
        disposition = disposition.get("disposition") if isinstance(disposition, dict) else disposition
        key = resource.get("primary_key", defaults.get("primary_key"))
        key = tuple(key) if isinstance(key, (list, tuple)) else key
        first, first_disposition, first_key = seen.setdefault(table, (i, disposition, key))
        for what, mine, theirs, unit in (("write_disposition", disposition, first_disposition, "write disposition"),
                                         ("primary_key", key, first_key, "primary key")):
            if mine != theirs:
                raise fail(f"resources[{i}].{what}",
                           f"{_said(mine)}, where resources[{first}] has {_said(theirs)}, and both load into table "
                           f"'{table}'", f"one {unit} for every resource of a table",
                           f"Give the resources that load into that table the same {what} (in resource_defaults, "
                           "say), or give them tables of their own (table_name).")


def _said(value: Any) -> str:
    return "none" if value is None else repr(list(value) if isinstance(value, tuple) else value)
