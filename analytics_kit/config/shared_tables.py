"""The hints of resources that load into one table must agree."""

from __future__ import annotations

from typing import Any, Callable, Iterable

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


def check_loading_alike(resources: Iterable[Any], naming: Callable[[str], str]) -> None:
    """Resources of one table, as dlt names it ("T" and "t", "my-t" and "my_t" are one), must load it alike: one write
    disposition and merge strategy, one primary key and one merge key, each as dlt's naming makes its columns ("id"
    and ["id"], "userId" and "user_id" are one). A merging resource beside an appending or upserting one made a key
    grow a row every run (plain dlt merges the table), and one without the key beside one with it failed every run
    with Arrow's "Schema at index 1 was different" (helper-134, helper-135). Judged on the built resources:
    resource_defaults merged in, keys marked in ``columns`` counted."""
    from analytics_kit import seam
    from analytics_kit.fetch.replace import table_of

    seen: dict[str, tuple[int, tuple]] = {}
    for index, resource in enumerate(resources):
        if not isinstance(resource.table_name, str) and resource.table_name is not None:
            continue  # a table per record (a callable): dlt's to name
        hint = resource.write_disposition
        disposition, strategy = (hint.get("disposition"), hint.get("strategy")) if isinstance(hint, dict) else (
            hint, None)
        keys = [seam.primary_key(resource, kind) for kind in ("primary_key", "merge_key")]
        said = ((disposition, strategy or ("delete-insert" if disposition == "merge" else None)),
                *(frozenset(naming(name) for name in ([key] if isinstance(key, str) else key or ())) for key in keys))
        first, theirs = seen.setdefault(naming(table_of(resource)), (index, said))
        for what, unit, mine, other, given in (
                ("write_disposition", "write disposition", said[0], theirs[0], hint),
                ("primary_key", "primary key", said[1], theirs[1], keys[0]),
                ("merge_key", "merge key", said[2], theirs[2], keys[1])):
            if mine != other:
                raise fail(f"resources[{index}].{what}",
                           f"{_said(given, mine)}, where resources[{first}] has {_said(None, other)}, and both load "
                           f"into table '{naming(table_of(resource))}'", f"one {unit} for every resource of a table",
                           f"Give the resources that load into that table the same {what} (in resource_defaults, "
                           "say), or give them tables of their own (table_name).")


def _said(given: Any, held: Any) -> str:
    """A hint as a message quotes it: as the config gave it, else as the check held it."""
    if given is not None:
        return repr(given)
    if isinstance(held, frozenset):
        return repr(sorted(held)) if held else "none"
    kind, strategy = held
    return repr(kind) + (f" ({strategy})" if strategy and strategy != "delete-insert" else "") if kind else "none"
