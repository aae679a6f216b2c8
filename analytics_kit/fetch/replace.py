"""A full refresh as a replace: which rows go in, and when it must be a merge instead."""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from analytics_kit import seam
from analytics_kit.fetch.coercion import COERCE_ERRORS, coerced_value


class MergeNeeded(Exception):
    """A full refresh cannot be loaded as a replace: a key came twice (or the listing shifted
    while paged), or records pass between resources. It needs dlt's dedup, so the run is
    extracted again as a merge (see ``run.load``)."""

    def __init__(self, resource: str, why: str = "the listing returned a key more than once") -> None:
        super().__init__(f"{resource}: {why}")
        self.resource = resource


class Replace:
    """How a resource's rows go into a replace: each key once, soft-deleted rows left out.

    ``hard_delete`` is the column carrying dlt's ``hard_delete`` hint. A merge deletes the
    rows it flags; a replace has nothing to delete from, so they are not loaded (``kept``, a
    step after dlt's incremental one: the cursor still moves past them, as in a merge). That
    equals the merge only when no key comes twice (a newer flagged version must win over an
    older live one), which ``KitPaginate`` proves per pass, else raises ``MergeNeeded``.

    ``switchable``: the staged rows are what dlt's merge would stage (a delete-insert merge's, flagged
    rows kept: ``counted`` instead of ``kept``, and the swap deletes them, see ``seam.delete_flagged``).
    Keys not proven distinct then make the table dlt's merge in place, rather than the whole run
    extracted again.
    """

    def __init__(self, hard_delete: str | None, naming: Callable[[str], str] = str, *, switchable: bool = False,
                 flag_type: str | None = None, on_flagged: Callable[[int], None] | None = None,
                 on_dropped: Callable[[int, int], None] | None = None) -> None:
        self.hard_delete = hard_delete
        self.naming = naming  # dlt's column names: a hint may name the API's isDeleted is_deleted
        self.switchable = switchable
        self.flag_type = flag_type  # the flag's declared data_type: a bool column takes 0/1 and "false" as dlt coerces
        self.on_flagged = on_flagged
        self.on_dropped = on_dropped

    @classmethod
    def of(cls, columns: Any, naming: Callable[[str], str], **options: Any) -> "Replace":
        """For a resource's ``columns`` hint: its flag is the column with dlt's ``hard_delete`` hint."""
        flag = next(((name, hint) for name, hint in declared_columns(columns, naming).items()
                     if hint.get("hard_delete")), (None, {}))
        return cls(flag[0], naming, flag_type=flag[1].get("data_type"), **options)

    def field(self, names: Iterable[Any]) -> str | None:
        """The flag's name among a record's (or a table's) field names, as dlt's naming matches them."""
        if self.hard_delete is None:
            return None
        names = list(names)
        if self.hard_delete in names:
            return self.hard_delete
        wanted = self.naming(self.hard_delete)
        return next((n for n in names if isinstance(n, str) and self.naming(n) == wanted), None)

    def counted(self, page: Any) -> Any:
        """``page`` for a replace that may become a merge: an arrow table as it is, its flagged rows counted
        (``on_flagged``; the swap deletes them). Records that stay dicts lose theirs, as in ``kept``: staged,
        their nested rows would be counted as loaded. ``on_dropped`` hears of every page, as (rows staged, rows
        left out): where all were left out, dlt had nothing to make the table of (see run.load)."""
        if self.hard_delete is None:
            return page
        if isinstance(page, pa.Table):
            deleted = self._deleted(page)
            flagged = 0 if deleted is None else pc.sum(deleted).as_py() or 0
            if flagged and self.on_flagged is not None:
                self.on_flagged(flagged)
            if self.on_dropped is not None:
                self.on_dropped(page.num_rows, 0)
            return page
        kept = self.kept(page)
        if self.on_dropped is not None:
            staged = len(_as_list(kept))
            self.on_dropped(staged, len(_as_list(page)) - staged)
        return kept

    def _deleted(self, page: pa.Table) -> Any:
        column = self.field(page.column_names)
        if column is None:
            return None
        flags = page.column(column)
        # dlt's rule: a bool flag deletes when true, any other type when not null
        return pc.fill_null(flags, False) if pa.types.is_boolean(flags.type) else pc.is_valid(flags)

    def kept(self, page: Any) -> Any:
        """``page`` (an arrow table, a list of records or one record) without its flagged rows."""
        if self.hard_delete is None:
            return page
        if isinstance(page, pa.Table):
            deleted = self._deleted(page)
            if deleted is None:
                return page
            return page.filter(pc.invert(deleted)) if pc.any(deleted).as_py() else page
        if isinstance(page, list):
            return [r for r in page if not (isinstance(r, dict) and self._flagged(r))]
        if isinstance(page, dict) and self._flagged(page):
            return None
        return page

    def _flagged(self, record: dict) -> bool:
        return _flagged(record.get(self.field(record)), self.flag_type)


def _as_list(kept: Any) -> list:
    return kept if isinstance(kept, list) else [] if kept is None else [kept]


def _flagged(value: Any, kind: str | None = None) -> bool:
    """dlt's rule: a bool flag deletes when true, any other type when not null. In a bool column dlt coerces
    first (0 and "false" keep the row); a value it cannot coerce goes to a variant column, leaving the flag null."""
    if value is not None and kind == "bool" and not isinstance(value, bool):
        try:
            value = coerced_value(value, "bool")
        except COERCE_ERRORS:
            return False
    return value is True if isinstance(value, bool) else value is not None


def unprovable(resource: Any, shared: set[str], naming: Callable[[str], str]) -> str | None:
    """Why a replace cannot prove ``resource``'s keys distinct before its pages are fetched, or None."""
    key = seam.primary_key(resource)
    if key and naming(table_of(resource)) in shared:
        return "another resource loads into its table, and only dlt's merge keeps one row per key across them"
    if isinstance(key, (list, tuple)) and len(key) > 1:
        return "its primary key has several fields, whose copies only dlt's merge tells apart"
    if key and seam.processing_steps(resource, filters=False):
        # the kit counts the keys of the pages as fetched; a map step may change them afterwards
        return "its processing_steps may change the keys the kit counted"
    flag = next((hint for hint in declared_columns(resource.columns, str).values() if hint.get("hard_delete")), None)
    if flag is not None and flag.get("data_type") != "bool" and merge_strategy(resource) == "delete-insert":
        # the kit reads a flag as dlt does only where its column is declared bool; any other dlt types by the data
        return "its soft-delete flag is not declared bool, and only dlt's merge reads it as dlt types its column"
    return None


def stale_columns(schema: Any, source: Any, linked: Collection[str] = ()) -> str | None:
    """Why a replace would leave the tables unlike a fresh load, or None.

    A replace keeps each table and its columns; a fresh load (dlt's refresh) builds them from
    this run's hints. They differ where a column's declared type, nullability, precision, scale
    or timezone is not the table's, where a column was split out of one the config now declares
    (the guide's way of typing a table: declare the columns, run a full refresh), and where a
    nested table of a ``linked`` root table has no ``_dlt_root_id`` (made by an older replace):
    those need the tables rebuilt. A column the config leaves undeclared
    stays as the data made it, as in a fresh load.
    """
    if schema is None:
        return None
    naming = schema.naming
    for resource in source.selected_resources.values():
        table = schema.tables.get(naming.normalize_table_identifier(table_of(resource)))
        if table is None:
            continue
        declared = declared_columns(_fresh_columns(resource), naming.normalize_path)  # meta__price stays one
        if table["name"] in linked:
            root_id = naming.normalize_identifier("_dlt_root_id")
            unlinked = [name for name, _ in seam.nested_tables(schema, table["name"])
                        if root_id not in schema.tables[name].get("columns", {})]
            if unlinked:
                return f"nested table {unlinked[0]} has no {root_id} linking its rows to their root rows"
        for column, stored in table.get("columns", {}).items():
            if column.startswith("_dlt"):
                continue
            hint = declared.get(column)
            if hint is None:
                # undeclared, inferred from the data: a replace keeps it as a fresh load would,
                # unless it was split out of a column the config now declares (properties__browser
                # from a dict, before properties was declared json)
                parent = next((d for d in declared if column.startswith(d + "__")), None)
                if parent is not None:
                    return f"column {table['name']}.{column} came from {parent}, which the config now declares"
                kept = (stored["data_type"] if stored.get("data_type") in ("decimal", "wei") else "NOT NULL"
                        if stored.get("nullable") is False else "without a time zone"
                        if stored.get("timezone") is False else None)
                if kept is not None:
                    # no data makes one (JSON numbers are doubles, a column of data takes nulls): an earlier config
                    # declared it, and a replace kept DECIMAL(10,2) and its rounding, then failed on 1.125 with
                    # Arrow's words, or kept NOT NULL and failed on a null (helper-91, helper-92)
                    return f"column {table['name']}.{column} is {kept}, as an earlier config declared it"
                continue
            for prop, default in COLUMN_PROPERTIES.items():
                # a fresh load gives a property the hint leaves out dlt's default, not the table's: dropped from
                # decimal(10,2), a table kept (10,2) and rounded 5.125 to 5.13 (helper-91). Without a type the
                # data types the column, in a fresh load as here: only its nullability is the hint's.
                if prop != "nullable" and hint.get("data_type") is None:
                    continue
                fresh, kept = hint.get(prop, default), stored.get(prop, default)
                if fresh != kept:
                    return f"column {table['name']}.{column} has {prop} {kept!r}, where the config makes {fresh!r}"
    return None


def _fresh_columns(resource: Any) -> Any:
    """The resource's columns as dlt makes them in a fresh table: its hints, with what dlt derives from them (a
    primary key is NOT NULL)."""
    try:
        return resource.compute_table_schema().get("columns", {})
    except Exception:  # noqa: BLE001 - hints that need an item to resolve (a callable): as declared
        return resource.columns


def merge_strategy(resource: Any) -> str | None:
    """The resource's merge strategy (dlt's default: delete-insert), or None if it is no merge.

    Only a delete-insert merge keeps one row per key of rows staged twice and links nested rows
    to their root row (``_dlt_root_id``) by the root's random ``_dlt_id``; scd2's versions and
    upsert's key-derived ``_dlt_id`` are written by dlt's merge alone."""
    hint = resource.write_disposition
    kind, strategy = (hint.get("disposition"), hint.get("strategy")) if isinstance(hint, dict) else (hint, None)
    return (strategy or "delete-insert") if kind == "merge" else None


def is_append(resource: Any) -> bool:
    """Whether dlt loads the resource with its append write disposition."""
    hint = resource.write_disposition
    return (hint.get("disposition") if isinstance(hint, dict) else hint) == "append"


def merges_by_key(resource: Any) -> bool:
    """Whether dlt loads the resource with its default merge: delete-insert on a primary key."""
    return merge_strategy(resource) == "delete-insert" and bool(seam.primary_key(resource))


def table_of(resource: Any) -> str:
    """The resource's table name, as the config gives it."""
    return resource.table_name if isinstance(resource.table_name, str) else resource.name


# What a table keeps of each column, and dlt's value when its schema has none.
COLUMN_PROPERTIES = {"data_type": None, "nullable": True, "precision": None, "scale": None, "timezone": None}


def declared_columns(columns: Any, naming: Any) -> dict[str, dict]:
    if isinstance(columns, dict):
        return {naming(name): hint for name, hint in columns.items() if isinstance(hint, dict)}
    if isinstance(columns, (list, tuple)):
        return {naming(c["name"]): c for c in columns if isinstance(c, dict) and "name" in c}
    return {}
