"""Every reach below dlt's public API, in one place.

dlt's public API here means: the ``dlt`` package's top-level names, ``dlt.sources``, ``dlt.sources.rest_api`` (with
``config_setup`` and ``typing``), ``dlt.sources.helpers.rest_client`` and ``dlt.sources.helpers.requests``, and
``dlt.destinations``. Anything else the kit needs (private attributes, patched methods, subclasses of internal
steps, filters matching dlt's log text, undocumented state layouts and hints, internal modules) is reached from this
module only, so a dlt upgrade is checked here. Each entry says why it is needed and what public route would replace
it. ``tests/test_seam.py`` fails when another module reaches into dlt's internals.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import json
import logging
import os
import re
import weakref
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from analytics_kit.store.sql import qualified

if TYPE_CHECKING:
    from dlt.common.schema.typing import TColumnSchema
    from dlt.extract.incremental import Incremental
    from dlt.sources import DltResource, DltSource

# -- internal modules, re-exported; no public route for any of these ---------------------------
# - jsonpath: JSON paths as dlt evaluates them (data_selector, total_path), so the kit selects exactly what dlt's
#   paginators and extract_response select;
# - coerce_value, is_iso_timestamp, py_type_to_sc_type: dlt's value coercion, ISO detection and the type it reads a
#   Python value as, so the Arrow fast path types values as dlt's normaliser would, and refuses what it would not coerce;
# - DictValidationException ... validate_dict: dlt's own rest_api validator and the typing helpers it reads
#   TypedDicts with, so the config checks' rules are dlt's, not a copy;
# - get_nested_tables, get_root_table, is_complete_column: a table's nested tables, its root, and whether dlt's
#   DDL makes a column (Schema has no public method for them);
# - the retry conditions and Retry-After-aware wait, so the kit retries as dlt would.
# They are imported on first use (PEP 562), like every dlt module here: the readers of a DuckDB
# file, and ``import analytics_kit``, run without importing dlt.
__all__ = [
    "DEFAULT_RETRY_EXCEPTIONS", "DictValidationException", "TColumnSchema", "coerce_value", "extract_union_types",
    "get_literal_args", "get_nested_tables", "get_root_table", "get_type_hints", "get_type_name", "is_complete_column",
    "is_iso_timestamp", "is_literal_type", "is_optional_type", "is_typeddict", "is_union_type", "jsonpath",
    "py_type_to_sc_type",
    "retry_if_status", "validate_dict", "wait_exponential_retry_after",
]


def __getattr__(name: str) -> Any:
    """The names in ``__all__``, imported from dlt when one is first used."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from dlt.common import jsonpath  # noqa: F401
    from dlt.common.data_types.type_helpers import coerce_value, py_type_to_sc_type  # noqa: F401
    from dlt.common.exceptions import DictValidationException  # noqa: F401
    from dlt.common.schema.detections import is_iso_timestamp  # noqa: F401
    from dlt.common.schema.typing import TColumnSchema  # noqa: F401, F811
    from dlt.common.schema.utils import get_nested_tables, get_root_table, is_complete_column  # noqa: F401
    from dlt.common.typing import (  # noqa: F401
        extract_union_types, get_literal_args, get_type_hints, get_type_name, is_literal_type, is_optional_type,
        is_typeddict, is_union_type,
    )
    from dlt.common.validation import validate_dict  # noqa: F401
    from dlt.sources.helpers.requests.retry import (  # noqa: F401
        DEFAULT_RETRY_EXCEPTIONS, retry_if_status, wait_exponential_retry_after,
    )

    found = {key: value for key, value in locals().items() if key in __all__}
    globals().update(found)
    return found[name]


class StoredCursor:
    """One incremental cursor in dlt's pipeline state: its resource, path and value.

    dlt keeps cursors at ``sources.<source>.resources.<resource>.incremental.<cursor_path>``
    (``last_value``, ``unique_hashes``, ...): a layout dlt does not document. The kit's own
    keys (``cursors.RUN_STARTED``) sit in the resource's state, which is public
    (``dlt.current.resource_state``). A public reader of stored cursors would replace this.
    """

    def __init__(self, resource: str, path: str, resource_state: dict, cursor: dict) -> None:
        self.resource, self.path, self.resource_state, self._cursor = resource, path, resource_state, cursor

    @property
    def value(self) -> Any:
        return self._cursor.get("last_value")

    def move_to(self, value: Any, *, forget_boundary: bool = False) -> None:
        """Stores ``value``; ``forget_boundary`` drops the hashes of the records at the old value."""
        self._cursor["last_value"] = value
        if forget_boundary:
            self._cursor["unique_hashes"] = []


def incremental_states(state: dict, source: str) -> Iterator[StoredCursor]:
    """Each incremental cursor stored in a pipeline's ``state`` for ``source``."""
    resources = state.get("sources", {}).get(source, {}).get("resources", {})
    for name, resource in sorted(resources.items()):
        for path, cursor in (resource.get("incremental") or {}).items():
            if isinstance(cursor, dict):
                yield StoredCursor(name, path, resource, cursor)


def running_cursor(resource: str, path: str) -> Any:
    """The cursor value the running extraction of ``resource`` starts from, or None. Read through
    ``dlt.current.resource_state`` (public) in dlt's layout (see above): the ``Incremental`` a
    rest_api resource is given is not the bound copy that knows it."""
    import dlt

    try:
        state = dlt.current.resource_state(resource)
    except Exception:  # noqa: BLE001 - outside a pipeline there is no state
        return None
    return ((state.get("incremental") or {}).get(path) or {}).get("last_value")


def lower_running_cursor(resource: str, path: str, value: Any) -> None:
    """Makes the running extraction of ``resource`` store ``value`` as its cursor, once its
    incremental step has taken every item. ``unique_hashes`` are dlt's of the rows at the old
    value, the boundary no longer: the next run takes the rows at ``value`` again."""
    import dlt

    cursor = dlt.current.resource_state(resource)["incremental"][path]
    cursor.update(last_value=value, unique_hashes=[])


# -- the destination's stored state and schema, read without dlt --------------------------------
# What ``Pipeline.sync_destination`` (public) restores, read from a DuckDB file with plain SQL: the state row dlt's
# ``get_stored_state`` picks (the pipeline's, of a load committed in _dlt_loads with status 0, the highest load id
# first), decoded as ``decompress_state`` does (base64 of zlib of JSON; plain JSON where it is not base64), and the
# default schema's newest row in _dlt_version, as ``get_stored_schema`` picks it. The tables, their columns and the
# encoding are undocumented. A state holding values dlt's JSON tags with its own types (a datetime, a Decimal: a
# character from Unicode's private use area first), or from another engine version than these, is decoded and
# upgraded by dlt itself, imported then. A public reader of stored state would replace this.
STATE_ENGINE, SCHEMA_ENGINE = 4, 11


def _committed_state_row(column: str, state: str, loads: str, mark: str) -> str:
    """The SELECT of ``column`` from the state row ``get_stored_state`` picks: the pipeline's
    (``mark``: the driver's parameter), of the newest load committed in _dlt_loads."""
    return (f"SELECT s.{column} FROM {state} AS s JOIN {loads} AS l ON l.load_id = s._dlt_load_id "
            f"WHERE s.pipeline_name = {mark} AND l.status = 0 ORDER BY l.load_id DESC LIMIT 1")


def stored_state(con: Any, dataset: str, pipeline_name: str) -> dict | None:
    """The pipeline state dlt would restore from ``dataset`` over the DuckDB connection ``con``
    (None where no committed load stored one), as ``Pipeline.state`` has it. dlt's engine-4
    tidying of ``destination_name`` is left out: no reader uses it."""
    found = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
                        "AND table_schema = ? AND table_name IN ('_dlt_pipeline_state', '_dlt_loads')", [dataset])
    if found.fetchone()[0] < 2:  # what dlt meets as DestinationUndefinedEntity: nothing to restore
        return None
    row = con.execute(_committed_state_row("state", qualified(dataset, "_dlt_pipeline_state"),
                                           qualified(dataset, "_dlt_loads"), "?"), [pipeline_name]).fetchone()
    if row is None:
        return None
    try:
        text = zlib.decompress(base64.b64decode(row[0], validate=True)).decode()
    except binascii.Error:
        text = row[0]
    start = int(os.environ.get("DLT_JSON_TYPED_PUA_START", "0xf026"), 16)  # as dlt.common.json reads it
    typed = re.search(f"[{re.escape(chr(start))}-{re.escape(chr(start + 8))}]", text)
    state = json.loads(text)
    if typed or state.get("_state_engine_version") != STATE_ENGINE:
        from dlt.common.versioned_state import decompress_state
        from dlt.pipeline.state_sync import PIPELINE_STATE_ENGINE_VERSION, migrate_pipeline_state

        state = decompress_state(row[0])
        engine = state["_state_engine_version"]
        state = migrate_pipeline_state(pipeline_name, state, engine, PIPELINE_STATE_ENGINE_VERSION)
    return state


def stored_schema(con: Any, dataset: str, state: dict | None) -> dict | None:
    """The default schema of a pipeline restored with ``state``, as ``Schema.to_dict()`` gives it
    (``tables``, each with its ``columns``): None when the state names none, an empty one when
    _dlt_version lacks it (dlt then starts a new schema)."""
    names = (state or {}).get("schema_names") or []
    name = (state or {}).get("default_schema_name")
    if name and name not in names:  # dlt's choice for an inconsistent state: its first schema
        name = names[0] if names else None
    if not name:
        return None
    row = con.execute(f"SELECT schema FROM {qualified(dataset, '_dlt_version')} WHERE schema_name = ? "
                      "ORDER BY inserted_at DESC", [name]).fetchone()
    stored = json.loads(row[0]) if row else {"name": name, "tables": {}}
    if row and stored.get("engine_version") != SCHEMA_ENGINE:
        from dlt.common.schema import Schema

        return Schema.from_dict(stored).to_dict()
    for table_name, table in stored["tables"].items():  # as ``Schema.from_dict`` names them
        table["name"] = table_name
        for column_name, column in table.get("columns", {}).items():
            column["name"] = column_name
    return stored


# -- rest_api's resources ---------------------------------------------------------------------
# rest_api builds each endpoint's resource from its internal ``paginate_resource`` function, bound with arguments
# named ``client`` (the resource's RESTClient) and ``incremental_object``. ``DltResource.explicit_args`` is public;
# those argument names are not. A public way to give rest_api a paginate function or a session per endpoint would
# replace these.


def resource_client(resource: DltResource) -> Any:
    """The RESTClient a rest_api resource pages with, or None (e.g. a transformer)."""
    try:
        return (resource.explicit_args or {}).get("client")
    except TypeError:  # not yet parametrized
        return None


def resource_incremental(resource: DltResource) -> Incremental | None:
    """The ``Incremental`` rest_api gave the resource, which holds cursor_path and the values."""
    try:
        return (resource.explicit_args or {}).get("incremental_object")
    except TypeError:
        return None


def cursor_convert(resource: DltResource) -> Any:
    """The config's own incremental ``convert`` function (the value as the API wants it), or None; the kit's
    (``cursors.AsWritten``, marked ``kit_layout``) is none of the config's."""
    convert = _rest_api_arg(resource, "incremental_cursor_transform")
    return None if getattr(convert, "kit_layout", False) else convert


def start_param(resource: DltResource) -> tuple[str, Callable[[Any], Any]] | None:
    """The query parameter rest_api writes the cursor's start value into, and the function that writes it."""
    name = getattr(_rest_api_arg(resource, "incremental_param"), "start", None)
    convert = _rest_api_arg(resource, "incremental_cursor_transform") or (lambda value: value)
    return (name, convert) if isinstance(name, str) and name else None


def fields_from_parent(resource: DltResource) -> set[str]:
    """The fields rest_api adds to a child's records from its parent's (``include_from_parent``, named by its
    ``make_parent_key_name``): the pages the child's paginate sees do not have them yet."""
    from dlt.sources.rest_api.config_setup import make_parent_key_name

    resolved = _rest_api_arg(resource, "resolved_params") or []
    parent = resolved[0].resolve_config["resource"] if resolved else None
    return {make_parent_key_name(parent, name) for name in _rest_api_arg(resource, "include_from_parent") or []
            } if parent else set()


def _rest_api_arg(resource: DltResource, name: str) -> Any:
    """An argument rest_api bound to a resource's paging function (``explicit_args`` is undocumented), or None."""
    try:
        return (resource.explicit_args or {}).get(name)
    except TypeError:
        return None


def related_resources(source: DltSource) -> set[str]:
    """Names of resources that pass records between them: transformers and their parents
    (``is_transformer`` is public; a transformer's parent is known only through ``_pipe``)."""
    related: set[str] = set()
    for resource in source.resources.values():
        if resource.is_transformer:
            related |= {resource.name, resource._pipe.parent.name}
    return related


def primary_key(resource: DltResource, kind: str = "primary_key") -> Any:
    """The primary_key hint (or ``kind``: merge_key) as set (a name, names, or None), else the columns its ``columns``
    hint marks so, as dlt's merge reads them (a full refresh loaded such keys twice: helper-74). From ``_hints``:
    ``compute_table_schema()`` needs an item for callable hints and loses a compound key's order."""
    key, columns = resource._hints.get(kind), resource._hints.get("columns")
    if key or not isinstance(columns, dict):
        return key
    marked = [hint.get("name") or name for name, hint in columns.items()
              if isinstance(hint, dict) and hint.get(kind)]
    return marked[0] if len(marked) == 1 else marked or None


def processing_steps(resource: DltResource, filters: bool = True) -> list:
    """The steps after the resource's generator other than dlt's incremental step: rest_api's processing_steps
    (map/filter; without ``filters``, those that may change a record). The pipe's steps are not public."""
    from dlt.extract.incremental import Incremental, IncrementalResourceWrapper
    from dlt.extract.items_transform import FilterItem

    kept = (Incremental, IncrementalResourceWrapper) + (() if filters else (FilterItem,))
    return [s for s in resource._pipe.steps[1:] if not isinstance(s, kept)]


# -- a resource's RESTClient ------------------------------------------------------------------
# The kit pages offset listings itself (concurrently, with the total as a hint) and selects records itself, so it
# replaces two methods of the resource's client. A paginate hook in rest_api's config would replace this.


def replace_paginate(client: Any, paginate: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Makes ``client.paginate`` (which rest_api's paginate_resource calls once its incremental
    params are set) ``paginate``; returns the client's own, for listings the kit leaves to dlt."""
    own = client.paginate
    client.paginate = paginate
    return own


def replace_extract_response(client: Any, extract: Callable[[Any, Any], list]) -> None:
    """Makes dlt's sequential paginate select records with ``extract`` (the kit's checks)."""
    client.extract_response = extract


def install_session(client: Any, session: Any) -> None:
    """Gives the client the kit's session: rest_api takes one session from the client config
    for all resources, and the kit's retry policy is per endpoint."""
    client.session = session


def create_request(client: Any, **kwargs: Any) -> Any:
    """The ``requests.Request`` dlt would send: path joined to base_url, auth, headers."""
    return client._create_request(**kwargs)


def response_handler(client: Any) -> Callable[..., None]:
    """dlt's response hook: raises its HTTP errors, with the body as its config shows it."""
    return client._create_response_handler()


def missing_total(paginator: Any, body: Any) -> None:
    """Raises dlt's own error for a response without the paginator's total."""
    paginator._handle_missing_total(body)


def set_cursor_bounds(incremental: Incremental, initial: Any, end: Any) -> None:
    """Rewrites an ``Incremental``'s initial and end values after rest_api built it (to the
    form that compares as instants); ``Incremental`` has no public setter for bound values."""
    incremental.initial_value = initial
    incremental.end_value = end


def set_dedup_key(incremental: Incremental, key: Callable[[Any], Any]) -> None:
    """The incremental's deduplication key, a hint template of the item (``primary_key`` is its
    public setter; here because the scan counts every write to a dlt attribute)."""
    incremental.primary_key = key  # type: ignore[assignment]


# -- steps in a resource's pipe ---------------------------------------------------------------
# ``add_map`` is public, but its steps sit before dlt's incremental step, which dlt appends (affinity 1) when the
# resource is bound. A step that must see pages after the incremental filter needs
# ``ItemTransform.placement_affinity``, which is internal.


@functools.cache
def _step_type() -> type:
    from dlt.extract.items_transform import ItemTransform

    class _Step(ItemTransform[Any, Any]):
        def __init__(self, function: Callable[[Any], Any], affinity: float) -> None:
            super().__init__(lambda item: item)
            self.function = function
            self.placement_affinity = affinity  # type: ignore[misc]

        def __call__(self, item: Any, meta: Any = None) -> Any:
            return self.function(item)

    return _Step


def add_step(resource: DltResource, function: Callable[[Any], Any], *, after_incremental: bool = False,
             last: bool = False) -> None:
    """Runs ``function`` on every item the resource yields (a page as a list or an Arrow
    table), at the pipe's end; with ``after_incremental``, also behind dlt's incremental step;
    with ``last``, behind every step but dlt's fork to dependent resources (affinity 2)."""
    resource.add_step(_step_type()(function, 1.9 if last else 1.05 if after_incremental else 0))


# -- dlt's row columns on arrow items -----------------------------------------------------------
# dlt adds _dlt_load_id (in extract) and _dlt_id (in normalize) to arrow items only when
# normalize.parquet_normalizer says so, and adding _dlt_id rewrites every extracted file. The kit adds both as its
# arrow pages are made (see fetch/row_columns.py); these tell it dlt's names, its column hints and id length,
# whether dlt's config will add either itself, and the load id. Public route: none (the normaliser's config class
# and the column helpers are internal).


def dlt_row_columns(naming: Callable[[str], str]) -> tuple[tuple[str, dict], tuple[str, dict], int]:
    """((load id name, its column hints), (row id name, its hints), bytes of randomness in a row id),
    named by ``naming`` (``identifier_naming``)."""
    from dlt.common.normalizers.utils import DLT_ID_LENGTH_BYTES
    from dlt.common.schema.typing import C_DLT_ID, C_DLT_LOAD_ID
    from dlt.common.schema.utils import dlt_id_column, dlt_load_id_column

    load_id, row_id = naming(C_DLT_LOAD_ID), naming(C_DLT_ID)
    return ((load_id, {**dlt_load_id_column(), "name": load_id}), (row_id, {**dlt_id_column(), "name": row_id}),
            DLT_ID_LENGTH_BYTES)


def complete_row_columns(pipeline: Any) -> None:
    """Gives the ``_dlt_load_id`` and ``_dlt_id`` columns the kit's arrow pages brought into a root
    table of the schema the hints dlt's parquet normaliser gives them (``_dlt_id``: unique, row_key;
    both: precision 64). Arrow fields carry only a type and nullability; dlt's extractor and
    parquet normaliser add their hints as they add the columns, which here they do not.
    ``Schema.update_table`` is public; the column definitions come from ``dlt_row_columns``."""
    if not pipeline.default_schema_name:
        return
    schema = pipeline.default_schema
    (load_id, load_hints), (row_id, row_hints), _ = dlt_row_columns(schema.naming.normalize_identifier)
    changed = False
    for table in schema.data_tables():
        columns = table.get("columns", {})
        # dlt's normalisers give every _dlt_id they add row_key: one without it came from an arrow page
        if table.get("parent") or row_id not in columns or columns[row_id].get("row_key"):
            continue
        partial = {name: dict(hints) for name, hints in ((load_id, load_hints), (row_id, row_hints)) if name in columns}
        if partial:
            schema.update_table({"name": table["name"], "columns": partial}, normalize_identifiers=False)
            changed = True
    if changed:
        pipeline.schemas.save_schema(schema)
        # and in the extracted packages, whose copy dlt's normaliser compares with the stored one
        # (it warned that they differ); ``_get_normalize_storage`` is private
        packages = pipeline._get_normalize_storage().extracted_packages
        for package in pipeline.list_extracted_load_packages():
            if packages.schema_name(package) == schema.name:
                packages.save_schema(package, schema)


def current_load_id() -> str | None:
    """The load id of the package being extracted, or None outside an extract."""
    import dlt
    from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable

    try:
        return dlt.current.load_package_state()["load_id"]
    except CurrentLoadPackageStateNotAvailable:
        return None


def dlt_adds_row_columns() -> tuple[bool, bool]:
    """(adds _dlt_load_id, adds _dlt_id) to arrow items, as dlt's extractor resolves its config."""
    from dlt.common.configuration import known_sections, resolve_configuration
    from dlt.normalize.configuration import ItemsNormalizerConfiguration

    config = resolve_configuration(ItemsNormalizerConfiguration(),
                                   sections=(known_sections.NORMALIZE, "parquet_normalizer"))
    return bool(config.add_dlt_load_id), bool(config.add_dlt_id)


# -- table hints ------------------------------------------------------------------------------
# dlt's merge skips its ROW_NUMBER() dedup of the staged rows for a table carrying this hint. The merge
# write_disposition's ``deduplicated`` key sets it for a whole resource; the kit sets it on one batch only, once the
# run proved the keys distinct, so it uses the hint itself.
_DEDUPLICATED = "x-stage-data-deduplicated"


def reset_deduplicated(resource: DltResource) -> None:
    """Stored with the schema, the hint would outlive the run that proved it: every run starts without it."""
    resource.apply_hints(additional_table_hints={_DEDUPLICATED: False})


def link_nested_rows(source: Any, tables: list[str]) -> None:
    """Nested rows of these root tables get ``_dlt_root_id`` in a replace too (dlt: merges only)."""
    n = source.schema.data_item_normalizer
    n.update_normalizer_config(source.schema, {"propagation": {"tables": {t: {n.c_dlt_id: n.c_dlt_root_id} for t in tables}}})


def mark_deduplicated(batch: Any) -> Any:
    """``batch`` carrying the hint that the run's staged rows hold each key once."""
    import dlt

    return dlt.mark.with_hints(batch, dlt.mark.make_hints(additional_table_hints={_DEDUPLICATED: True}))


def deduplicated(table: dict) -> bool:
    """Whether a stored table schema carries the hint."""
    return bool(table.get(_DEDUPLICATED))


# -- a merge into tables emptied in its own transaction ---------------------------------------
# A full refresh whose pages held a key twice needs dlt's merge (its dedup picks the newest version, a newer
# soft-deleted one removes the row). dlt's refresh drops the tables first, in a commit of its own: killed before the
# merge committed, the tables stayed empty. The kit instead puts the emptying into the merge's own SQL job, which dlt
# runs in one transaction. The job classes and the client's factory method are internal; a "truncate before merge"
# option in dlt would replace this.
_EMPTIED_FIRST: contextvars.ContextVar[frozenset] = contextvars.ContextVar("kit_emptied_first", default=frozenset())


@contextmanager
def merge_into_emptied(tables: Iterable[str]) -> Iterator[None]:
    """Within the block, dlt's merge into each of ``tables`` (root tables) first empties it and its nested tables."""
    _install_emptied_first()
    token = _EMPTIED_FIRST.set(frozenset(tables))
    try:
        yield
    finally:
        _EMPTIED_FIRST.reset(token)


@functools.cache
def _install_emptied_first() -> None:
    from dlt.destinations.job_client_impl import SqlJobClientBase
    from dlt.destinations.sql_jobs import SqlMergeFollowupJob

    class EmptiedFirst(SqlMergeFollowupJob):
        @classmethod
        def generate_sql(cls, table_chain: Any, sql_client: Any, *args: Any, **kwargs: Any) -> list[str]:
            names = (sql_client.make_qualified_table_name(table["name"]) for table in table_chain)
            return [f"DELETE FROM {name}" for name in names] + super().generate_sql(table_chain, sql_client, *args,
                                                                                        **kwargs)

    merge_jobs = SqlJobClientBase._create_merge_followup_jobs

    def create(self: Any, table_chain: Any) -> list:
        if table_chain[0]["name"] in _EMPTIED_FIRST.get():
            return [EmptiedFirst.from_table_chain(table_chain, self.sql_client)]
        return merge_jobs(self, table_chain)

    SqlJobClientBase._create_merge_followup_jobs = create


# -- a replace that reads its files in the swap -----------------------------------------------
# dlt's insert-from-staging copies each file into main_staging, then main_staging into the table: every row written
# twice. At 1,000,000 rows under the kit's 96 MB cap the second copy took 1.5 s of a 2.9 s load step, and its buffers
# set the load's peak. On a DuckDB file the kit skips the copy into staging for a replaced table and reads the files in
# the swap's own statements, in the same transaction (a failure still leaves the old table whole). dlt's statements
# stay, so rows of any file not skipped still come from staging. Copy jobs and followup creation are internal.
_FROM_FILES: set[str] = set()  # load ids; a set, not a context variable: dlt runs copy jobs in its worker threads


@contextmanager
def _registered(registry: set[str], names: Iterable[str]) -> Iterator[None]:
    """``names`` in ``registry`` for the block; those already there stay after it (a block within a block)."""
    added = set(names) - registry
    registry.update(added)
    try:
        yield
    finally:
        registry.difference_update(added)


def replace_from_files(load_ids: Iterable[str]) -> Any:
    """Within the block, the replaced tables of these packages (on a DuckDB file) are filled from their files."""
    _install_from_files()
    return _registered(_FROM_FILES, load_ids)


def _from_files(table: Any, load_id: str | None, path: str) -> bool:
    return (load_id in _FROM_FILES and table.get("write_disposition") == "replace"
            and table.get("x-replace-strategy") == "insert-from-staging" and _carried(path))


def _carried(path: str) -> bool:
    """Whether dlt's SQL job carries ``path`` as it is. It joins a statement's lines, splits the job at ';', and
    runs a job naming ALTER SCHEMA anywhere without a transaction: a folder named so made the swap commit statement by
    statement (helper-69). Such a file is copied into staging as dlt does."""
    from dlt.destinations.job_client_impl import UNLOGGED_COMMANDS

    try:
        path.encode()
    except UnicodeEncodeError:  # a name that is not UTF-8: the job's file could not hold it
        return False
    return (path.splitlines() == [path] and ";" not in path and "'" not in path
            and not any(re.search(command, path, re.IGNORECASE) for command in UNLOGGED_COMMANDS))


# -- soft-deleted rows deleted in a replace's swap ----------------------------------------------
# A replace that may turn into dlt's merge (its pages may hold a key twice) stages the rows flagged deleted, as the
# merge must see them. Its swap deletes them, and their nested rows, in its own transaction, which dlt's replace (a
# copy of staging as it is) does not. dlt's replace SQL class and its hard delete condition are internal.
_FLAGGED: set[str] = set()  # root tables; a set for dlt's worker threads, as _FROM_FILES


def delete_flagged(tables: Iterable[str]) -> Any:
    """Within the block, a replace of one of these root tables deletes its rows flagged by ``hard_delete``."""
    _install_flagged_deletes()
    return _registered(_FLAGGED, tables)


def _flagged_deletes(chain: Any, sql_client: Any) -> list[str]:
    from dlt.common.destination.capabilities import DestinationCapabilitiesContext
    from dlt.common.schema.utils import get_first_column_name_with_prop as column_with
    from dlt.destinations.sql_jobs import SqlMergeFollowupJob

    root, name, quote = chain[0], sql_client.make_qualified_table_name, sql_client.escape_column_name
    if root["name"] not in _FLAGGED:
        return []
    escape = (sql_client.capabilities.escape_literal
              or DestinationCapabilitiesContext.generic_capabilities().escape_literal)
    try:
        flag, deleted = SqlMergeFollowupJob._get_hard_delete_col_and_cond(root, quote, escape)
    except KeyError:  # a declared flag no record has had: a column without a type, no row to delete
        return []
    if flag is None:
        return []
    row_key = column_with(root, "row_key")
    flagged_rows = f"(SELECT {quote(row_key)} FROM {name(root['name'])} WHERE {deleted})" if row_key else ""
    # nested rows first: they are found through their flagged root rows
    nested = [t for t in chain[1:] if row_key and column_with(t, "root_key")]
    return ([f"DELETE FROM {name(t['name'])} WHERE {quote(column_with(t, 'root_key'))} IN {flagged_rows}" for t in nested]
            + [f"DELETE FROM {name(root['name'])} WHERE {deleted}"])


@functools.cache
def _install_flagged_deletes() -> Callable[..., list[str]]:
    """Returns dlt's own replace SQL, for ``_install_from_files``."""
    from dlt.destinations.sql_jobs import SqlStagingReplaceFollowupJob

    stock = SqlStagingReplaceFollowupJob.generate_sql.__func__  # type: ignore[attr-defined]

    def generate_sql(cls: Any, table_chain: Any, sql_client: Any) -> list[str]:
        return stock(cls, table_chain, sql_client) + _flagged_deletes(table_chain, sql_client)

    SqlStagingReplaceFollowupJob.generate_sql = classmethod(generate_sql)  # type: ignore[assignment]
    return stock  # type: ignore[no-any-return]


@functools.cache
def _install_from_files() -> None:
    from dlt.destinations.impl.duckdb.duck import DuckDbClient, DuckDbCopyJob
    from dlt.destinations.sql_jobs import SqlStagingReplaceFollowupJob

    copy_job = DuckDbCopyJob.run

    def run(self: Any) -> None:
        path = self._file_path
        if not (path.endswith(".parquet") and _from_files(self._load_table, self._load_id, path)):
            copy_job(self)

    followups = DuckDbClient.create_table_chain_completed_followup_jobs

    def create(self: Any, table_chain: Any, jobs: Any = None) -> list:
        # dlt names the chain's jobs by their paths in the package: <load id>/completed_jobs/<file>
        load_id = Path(jobs[0].file_path).parents[1].name if jobs else None
        tables = {table["name"]: table for table in table_chain}
        reads = [f"INSERT INTO {self.sql_client.make_qualified_table_name(job.job_file_info.table_name)} BY NAME "
                 f"SELECT * FROM read_parquet('{job.file_path}', union_by_name=true)"
                 for job in jobs or () if job.file_path.endswith(".parquet")
                 and _from_files(tables.get(job.job_file_info.table_name, {}), load_id, job.file_path)]
        if not reads:
            return followups(self, table_chain, jobs)
        stock = _install_flagged_deletes()

        class FromFiles(SqlStagingReplaceFollowupJob):
            @classmethod
            def generate_sql(cls, chain: Any, sql_client: Any) -> list[str]:
                return stock(cls, chain, sql_client) + reads + _flagged_deletes(chain, sql_client)

        return [FromFiles.from_table_chain(table_chain, self.sql_client)]

    DuckDbCopyJob.run = run
    DuckDbClient.create_table_chain_completed_followup_jobs = create


# -- dlt's log messages -----------------------------------------------------------------------
# Two warnings dlt logs are expected by design on the kit's fast path, matched on dlt's text (if it changes, the warning
# shows again: harmless, and tests/test_fast.py notices). A traceback dlt logs (a load job's failure, its trace dump on
# a full disk) is one line unless the log is at DEBUG: 26 to 373 lines of them came before the kit's own error saying
# the disk is full (helper-50, helper-51).


class _Muted(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.json_override: set[str] = set()
        self.dedup_notice = 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and not _debugging():
            reason = error.strerror if isinstance(error, OSError) and error.strerror else \
                (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            record.msg, record.args, record.exc_info, record.exc_text = f"{record.getMessage()}: {reason}", (), None, None
            return True
        logged = record.getMessage() if record.levelno >= logging.WARNING else ""
        if _TRACEBACK in logged and not _debugging():
            # a job's failure message as dlt logs it: "Job for ... retried in load ... with message Traceback ...",
            # 38 lines a retry, 382 lines for one swap on a full disk (helper-69). The error's first line, which
            # follows the last frame's indented lines, replaces the traceback (its last line may be a hint only)
            head, _, trace = logged.partition(_TRACEBACK)
            lines = trace.splitlines()
            frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
            after = lines[frames[-1] + 1:] if frames else lines
            error = next((line for line in after if line.strip() and not line.startswith(" ")), "")
            record.msg, record.args = head + error.strip()[:300], ()
            return True
        if text.startswith("In resource: ") and "when merging arrow schema" in text:
            # a ``json`` hint overriding an arrow string column: JSON travels as serialized
            # strings, which DuckDB reads into its JSON type, as on the slow path
            return text[len("In resource: "):].split(",", 1)[0] not in self.json_override
        # dedup_sort is ignored when staged rows are declared deduplicated, and merge hints
        # (dedup_sort, hard_delete) in a replace: the kit declares the one and loads the other
        # only after proving the keys distinct (soft-deleted rows left out), so nothing is lost
        message = record.getMessage() if self.dedup_notice else ""
        return not ("declared as already deduplicated" in message
                    or 'is only applied when using the "merge" write disposition' in message)


_TRACEBACK = "Traceback (most recent call last):"


def _debugging() -> bool:
    return logging.getLogger("dlt").isEnabledFor(logging.DEBUG) or logging.getLogger().isEnabledFor(logging.DEBUG)


_MUTED = _Muted()


def _install_muting() -> None:
    if _MUTED not in logging.getLogger("dlt").filters:
        logging.getLogger("dlt").addFilter(_MUTED)


def mute_json_override(resource: str) -> None:
    """Silences dlt's per-page warning that a ``json`` hint overrides ``resource``'s arrow string column."""
    _MUTED.json_override.add(resource)
    _install_muting()


class mute_dedup_notice:
    """While the block runs, dlt's warning that dedup_sort is ignored is silenced."""
    def __enter__(self) -> None:
        _install_muting()
        _MUTED.dedup_notice += 1

    def __exit__(self, *exc: object) -> None:
        _MUTED.dedup_notice -= 1


# -- destinations -----------------------------------------------------------------------------


def known_destinations() -> list[str]:
    """The destination names dlt knows (duckdb, postgres, bigquery, ...): dlt's registry of
    destination references is internal; there is no public list."""
    import dlt.destinations
    from dlt.common.destination.reference import DestinationReference

    dlt.destinations.__all__  # noqa: B018 - imports every factory, which registers it (see defer_destination_factories)

    return sorted(ref.rsplit(".", 1)[-1] for ref in DestinationReference.DESTINATIONS)


def duckdb_destination(**options: Any) -> Any:
    """``dlt.destinations.duckdb(**options)``, from its own module: asking the package for it would import every
    factory (see ``defer_destination_factories``)."""
    try:
        from dlt.destinations.impl.duckdb.factory import duckdb
    except ImportError:  # another layout of dlt's package
        import dlt

        duckdb = dlt.destinations.duckdb
    return duckdb(**options)


def defer_destination_factories() -> None:
    """``import dlt`` imports all 22 of dlt's destination factories (``dlt.destinations``), ~35 ms of a 1-s
    incremental run from the shell, where a load into the DuckDB file needs one. Called before dlt is imported, this
    puts the package in ``sys.modules`` with its body not yet run: its submodules import as usual, and the first name
    asked of it (``dlt.destinations.postgres``, or dlt finding a destination by name) runs the body. For the load
    command's process only (``run/lean.py``); a caller's process imports dlt as it always does."""
    import importlib.util
    import sys
    import threading

    if "dlt" in sys.modules or "dlt.destinations" in sys.modules:
        return
    found = importlib.util.find_spec("dlt")  # finds the package without running it
    folder = os.path.join(found.submodule_search_locations[0], "destinations") if found else ""
    if not os.path.isfile(os.path.join(folder, "__init__.py")):
        return  # another layout of dlt's package: imported as usual
    spec = importlib.util.spec_from_file_location("dlt.destinations", os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    package = importlib.util.module_from_spec(spec)
    state: dict[str, Any] = {}

    def fresh() -> None:  # also in a forked child: a lock held by a thread the fork left behind is not inherited
        state.update(lock=threading.RLock(), running=False)

    fresh()
    os.register_at_fork(after_in_child=fresh)

    def run_body(name: str) -> None:
        """Runs the package's body once; a thread asking meanwhile waits for it."""
        with state["lock"]:
            if "__getattr__" not in vars(package):
                return
            if state["running"]:  # the body itself, in this thread, asking for a name it has not defined yet
                raise AttributeError(f"module 'dlt.destinations' has no attribute {name!r}")
            state["running"] = True
            try:
                spec.loader.exec_module(package)
            finally:
                state["running"] = False
            del package.__getattr__, package.__dir__

    def __getattr__(name: str) -> Any:
        run_body(name)
        return getattr(package, name)

    def __dir__() -> list[str]:
        run_body("__dir__")
        return sorted(vars(package))

    package.__getattr__ = __getattr__  # type: ignore[attr-defined]
    package.__dir__ = __dir__  # type: ignore[attr-defined]
    sys.modules["dlt.destinations"] = package


def nested_tables(schema: Any, table: str) -> list[tuple[str, str]]:
    """(name, parent) of each nested table below ``table`` in ``schema``, parents first."""
    from dlt.common.schema.utils import get_nested_tables

    return [(t["name"], t["parent"]) for t in get_nested_tables(schema.tables, table, include_self=False)]


# -- auth resolution (credentials.py) -----------------------------------------------------------
# The kit resolves auth blocks with rest_api's own create_auth, in rest_api's config sections (public). What it
# needs to read back when dlt finds a field nowhere, and which fields dlt treats as secrets, is in
# dlt.common.configuration, which dlt's docs do not teach to import.


def missing_fields(error: BaseException) -> tuple[Any, list[str], dict[str, list]] | None:
    """(the partly resolved spec, its missing fields, dlt's lookup traces per field) when
    ``error`` is dlt's ``ConfigFieldMissingException``, else None.

    create_auth raises it for a credential set nowhere dlt looks; its spec keeps the fields dlt
    did find (a ``name`` from secrets), which the API_KEY fallback must keep. A public "resolve
    partially and report what is missing" would replace this."""
    from dlt.common.configuration.exceptions import ConfigFieldMissingException

    if not isinstance(error, ConfigFieldMissingException):
        return None
    return error.config, list(error.fields), dict(error.traces)


def secret_fields(spec: type) -> list[str]:
    """Fields of a dlt config spec (an auth class) typed as secrets (``TSecretStrValue``...), so
    values dlt resolved into them are masked. dlt's ``is_secret_hint`` is the only reader of
    that marking; a public "secret fields of a spec" would replace this."""
    from dlt.common.configuration import is_secret_hint

    fields = getattr(spec, "get_resolvable_fields", None)
    return [name for name, hint in fields().items() if is_secret_hint(hint)] if fields else []


# -- rest_api's registries --------------------------------------------------------------------
# register_paginator / register_auth (public) add to module-level maps in config_setup, which dlt does not document;
# the checks read them when a config is checked, so types registered with dlt are accepted. A public "registered
# types" listing would replace these.


def paginator_types() -> dict[str, type]:
    """Paginator type name -> class, as dlt knows them now (registered types included)."""
    from dlt.sources.rest_api import config_setup

    return dict(config_setup.PAGINATOR_MAP)


def auth_types() -> dict[str, type]:
    """Auth type name -> class, as dlt knows them now (registered types included)."""
    from dlt.sources.rest_api import config_setup

    return dict(config_setup.AUTH_MAP)


def unreadable_config_file(error: BaseException) -> tuple[str, str] | None:
    """(the file's paths, dlt's words) where ``error`` is dlt's refusal of a config or secrets file it cannot parse
    (``TomlProviderReadException``, not exported from a public module); else None."""
    from dlt.common.configuration.providers.toml import TomlProviderReadException

    if not isinstance(error, TomlProviderReadException):
        return None
    words = str(error).partition(":\n")[2].strip().splitlines()
    return ", ".join(error.full_paths), (words[0] if words else str(error))[:200]


def is_missing_config(error: BaseException) -> bool:
    """Whether ``error`` is dlt's ``ConfigFieldMissingException`` (see ``missing_fields``)."""
    return missing_fields(error) is not None


def identifier_naming(source: DltSource, *, fields: bool = False, nested: bool = False) -> Callable[[Any], str]:
    """How dlt names a record's field as a column (``userId`` -> ``user_id``): the source schema's naming convention
    (``DltSource.schema`` is public, its ``naming`` is not). With ``fields``, as dlt's normaliser names a top-level
    field: ``a__b`` apart from ``a_b``, a blank one ``_empty`` (internal settings). With ``nested``, the column its
    normaliser flattens a path of such fields into (``_flatten``): (``meta``, ``a__b``) -> ``meta__a__b``."""
    naming = source.schema.naming
    if not fields and not nested:
        return naming.normalize_identifier
    from dlt.common.normalizers.json.relational import DataItemNormalizer as Normalizer
    split = source.schema._normalizers_config.get("use_break_path_on_normalize", True)
    normalize = naming.normalize_path if split else naming.normalize_identifier

    def field(name: Any) -> str:
        return normalize(name) if name and not name.isspace() else Normalizer.EMPTY_KEY_IDENTIFIER
    return (lambda parts: naming.shorten_fragments(*map(field, parts))) if nested else field


# -- the pipeline's local state against the destination's ------------------------------------
# A run may keep its local pipeline folder only when it holds what the destination committed (see
# ``recovery.begin``); else ``Pipeline.drop()`` and ``sync_destination()`` (public) restore it. Comparing needs the
# state's ``_version_hash`` and the version_hash columns of dlt's _dlt_pipeline_state and _dlt_version, none
# documented; the committed state row is the one ``get_stored_state`` picks. A public "is the local state current"
# check would replace these.


def local_state_hash(pipeline: Any) -> str | None:
    """The local state's version hash (its key is not public); None if its content no longer hashes to it: a
    cursor edited by hand kept the stored hash, and a run trusted the folder and skipped records (helper-49)."""
    from dlt.pipeline.state_sync import generate_pipeline_state_version_hash as content_hash

    stored = pipeline.state.get("_version_hash")
    return stored if stored and content_hash(pipeline.state) == stored else None


def committed_state_hash(client: Any, pipeline_name: str) -> str | None:
    """The version hash of the state of the newest committed load, over a dlt sql client."""
    rows = client.execute_sql(_committed_state_row(
        "version_hash", client.make_qualified_table_name("_dlt_pipeline_state"),
        client.make_qualified_table_name("_dlt_loads"), "%s"), pipeline_name)
    return rows[0][0] if rows else None


def schema_stored(client: Any, schema_name: str, version_hash: str) -> bool:
    """Whether the destination stored this version of a schema, as dlt's ``get_stored_schema_by_hash``
    asks (not only the newest row: a schema that went back to an earlier version is not stored again)."""
    versions = client.make_qualified_table_name("_dlt_version")
    rows = client.execute_sql(
        f"SELECT 1 FROM {versions} WHERE schema_name = %s AND version_hash = %s LIMIT 1", schema_name, version_hash)
    return bool(rows)


def reset_resource_states(pipeline: Any, source: str, resources: list[str]) -> None:
    """Drops the resources' state (their cursors) as ``refresh="drop_data"`` does, without its
    emptying of the tables at the start of the load step: a full refresh loaded as a replace
    swaps each table in one transaction instead. ``Pipeline.managed_state`` is undocumented."""
    with pipeline.managed_state() as state:
        states = state.get("sources", {}).get(source, {}).get("resources", {})
        for name in resources:
            states.pop(name, None)


def drop_extracted(pipeline: Any) -> None:
    """Deletes the pending packages of an extraction the kit abandons (dlt 1.31 renamed the method)."""
    if hasattr(pipeline, "abort_packages"):
        pipeline.abort_packages()  # also restores the local state and schemas from before the package
    else:
        pipeline.drop_pending_packages()


def delete_loaded_packages(pipeline: Any) -> None:
    """Deletes the local copies of committed load packages: a run that keeps the pipeline folder
    (see ``recovery.begin``) would otherwise keep every run's files. dlt has no public call for it."""
    storage = pipeline._get_load_storage()
    for load_id in pipeline.list_completed_load_packages():
        storage.delete_loaded_package(load_id)


def storage_columns(pipeline: Any, tables: list[str]) -> dict[str, dict]:
    """The columns each of ``tables`` has in the destination, typed by dlt's own reflection (its type mapper's
    ``from_destination_type``); tables not there are left out. Public route: none (the SQL job client's
    ``get_storage_tables``; a destination without it gives none)."""
    with pipeline.destination_client() as client:
        reflect = getattr(client, "get_storage_tables", None)
        return {name: columns for name, columns in reflect(tables) if columns} if reflect else {}


def retype_columns(pipeline: Any, retyped: dict[str, dict[str, dict]]) -> None:
    """Gives columns of the pipeline's schema the data_type, precision, scale and nullable in ``retyped`` (table ->
    column -> those), and saves the schema. Public route: none (a schema's column types change only by dlt's merge
    of hints, which never narrows one back)."""
    schema = pipeline.default_schema
    for table, columns in retyped.items():
        for name, stored in columns.items():
            column = schema.tables[table]["columns"][name]
            for key in ("data_type", "precision", "scale", "nullable"):
                if stored.get(key) is None:
                    column.pop(key, None)  # type: ignore[misc]
                else:
                    column[key] = stored[key]  # type: ignore[literal-required]
    pipeline.schemas.save_schema(schema)


# -- repeated keys at an incremental's start --
# dlt's arrow incremental drops the rows already loaded at its start value by their row index, and with a single-column
# primary key it takes the key column for that index: every row of such a key went, a newer version later in the same
# run too (a change feed's "a" at the stored cursor and again changed: the table kept the old one; helper-51). Its dict
# path drops only the rows at the start value. The positional index it otherwise builds keeps that meaning. A fix in
# dlt's ``ArrowIncremental`` would replace this.


def index_arrow_increments_by_position() -> None:
    """dlt's arrow incremental keeps its own row index, never the primary key column, as the index of rows to drop."""
    from dlt.extract.incremental.transform import ArrowIncremental

    if not isinstance(ArrowIncremental.__dict__.get("_dlt_index"), property):
        ArrowIncremental._dlt_index = property(lambda self: "_dlt_index", lambda self, value: None)


# -- rows of csv files --
# dlt's csv writer adds each dict row's number of values to its row count (``sum(len(row) for row in items)``): the
# normaliser's row counts said 125 rows for 25 rows of 5 columns, and the kit's report and history with them, on
# PostgreSQL, whose files are csv, for records that stay dicts (helper-78; dlt-hub/dlt#4461, open). Its fix in
# dlt's ``CsvWriter`` would replace this; the count below stays right with it.


def count_csv_rows_as_rows() -> None:
    """dlt's csv writer counts a dict row once."""
    from dlt.common.data_writers.writers import CsvWriter

    write_data = CsvWriter.write_data
    if getattr(write_data, "counts_rows", False):
        return

    def counted(self: Any, items: Any) -> None:
        before = self.items_count
        write_data(self, items)
        self.items_count = before + len(items)

    counted.counts_rows = True  # type: ignore[attr-defined]
    CsvWriter.write_data = counted


def incremental_errors() -> tuple[type, ...]:
    """dlt's incremental's exceptions (they explain a cursor better than the KeyError they were raised from),
    the one for a cursor field the records lack first."""
    from dlt.extract.incremental import exceptions as e

    return (e.IncrementalCursorPathMissing, e.IncrementalCursorPathHasValueNone, e.IncrementalCursorInvalidCoercion,
            e.IncrementalPrimaryKeyMissing)


# -- frame libraries half imported --
# dlt tells pandas and polars frames apart by the module in ``sys.modules``, which is there from the moment
# its import starts: while another thread imported pandas, dlt's checks of each item read ``pandas.DataFrame``
# from the half-run module, and the load failed (AttributeError, reported as a refused config or a failed
# extract). A module still initialising counts as not imported: none of its objects can exist yet.
# ``__spec__._initializing`` is importlib's own mark for it. A check in dlt that skips such modules would
# replace this.


def skip_half_imported_frame_libraries() -> None:
    """dlt's ``get_pandas_module``/``get_polars_module``, everywhere dlt has them, answer None for a
    module whose import has not finished."""
    import sys

    from dlt.common import libs

    for name, module_name in (("get_pandas_module", "pandas"), ("get_polars_module", "polars")):
        old = getattr(libs, name)
        if getattr(old, "kit_kept", False):
            continue

        def imported(module_name: str = module_name) -> Any:
            module = sys.modules.get(module_name)
            return None if getattr(getattr(module, "__spec__", None), "_initializing", False) else module

        imported.kit_kept = True  # type: ignore[attr-defined]
        setattr(libs, name, imported)
        _rebind(name, old, imported)


# -- four of dlt's repeated costs, kept (installed by every load; the schema's for its pipeline, the capabilities' for
# the kit's destinations) --
# A 1,000-row incremental run from the shell spends ~0.4 s in dlt's work after its imports; these four were ~0.15 s
# of it. None changes what dlt computes for the kit's loads, only how often; a caller's own pipelines and destinations
# in the same process keep dlt's schema reads and resolutions. Memoised ``is_secret_hint`` and TypedDict hints
# upstream (dlt's validation has a TODO for the latter), a schema storage that parses a file again only when it
# changed, and ``capabilities()`` resolving a configuration only for an ``adjust_capabilities`` that reads one, would
# replace them.


def memoise_secret_hints() -> None:
    """dlt asks ``is_secret_hint`` of a config field's type hint at every lookup in the environment (~3,300 a run),
    walking the hint each time (~35 ms). The answer is kept per hint object, not per equal hint: ``Union[a, b]``
    equals ``Union[b, a]``, and dlt reads a union's members in order. A kept answer holds only while no class has
    been registered with an ABC since its walk began (``issubclass`` may answer differently). Every dlt module that
    imported the function by name gets the keeping one."""
    import abc

    from dlt.common.configuration.specs import base_configuration

    walk = base_configuration.is_secret_hint
    if getattr(walk, "kit_kept", False):
        return
    kept: dict[int, tuple[Any, bool, object]] = {}  # id(hint) -> (hint, answer, ABC token); the hint held

    @functools.wraps(walk)
    def is_secret_hint(hint: Any) -> bool:
        token = abc.get_cache_token()  # before the walk: a class registered during it leaves nothing kept
        entry = kept.get(id(hint))
        if entry is not None and entry[0] is hint and entry[2] == token:
            return entry[1]
        answer = walk(hint)
        if abc.get_cache_token() == token:
            if len(kept) > 10_000:  # hints built anew per call stay bounded
                kept.clear()
            kept[id(hint)] = (hint, answer, token)
        return answer

    is_secret_hint.kit_kept = True  # type: ignore[attr-defined]
    _rebind("is_secret_hint", walk, is_secret_hint)


def memoise_typeddict_hints() -> None:
    """dlt's ``validate_dict`` asks ``get_type_hints`` of every TypedDict it meets, at every call (~200 a run, ~50
    ms): the kit's config checks (through this module's name, ~40 more) and rest_api_source's. The hints of dlt's
    own TypedDicts (modules that do not change under a run), asked in their module's namespace, are kept, each
    caller getting a copy; every other call (a caller's classes, which a notebook may redefine; other arguments)
    goes to dlt's function (helper-44)."""
    import sys

    from dlt.common import typing as dlt_typing

    hints = dlt_typing.get_type_hints
    if getattr(hints, "kit_kept", False):
        return
    kept: dict[type, dict[str, Any]] = {}

    def get_type_hints(obj: Any, globalns: Any = None, localns: Any = None, include_extras: bool = False) -> Any:
        name = getattr(obj, "__module__", None)
        module = sys.modules.get(name) if isinstance(name, str) and name.startswith("dlt.") else None
        # a class itself: dlt's is_typeddict also sees one through Annotated[..., meta], whose meta may not hash
        if module is None or localns is not None or include_extras or globalns is not vars(module) \
                or not isinstance(obj, type) or not dlt_typing.is_typeddict(obj):
            return hints(obj, globalns, localns, include_extras)
        if obj not in kept:
            kept[obj] = hints(obj, globalns)
        return dict(kept[obj])

    get_type_hints.__wrapped__ = hints  # type: ignore[attr-defined]
    get_type_hints.kit_kept = True  # type: ignore[attr-defined]
    _rebind("get_type_hints", hints, get_type_hints)
    globals()["get_type_hints"] = get_type_hints  # the kit's own config checks ask through this module


def capabilities_without_resolving(destination: Any) -> Any:
    """Returns ``destination``, whose ``capabilities()`` no longer resolves a configuration it does not use.

    Asked without a configuration, dlt's ``capabilities()`` resolves a partial one (every field looked up in every
    provider) only to hand it to ``adjust_capabilities``: 9 resolutions, ~40 ms of a 1,000-row incremental run.
    The base ``adjust_capabilities``, which DuckDB, MotherDuck and PostgreSQL keep, reads the naming convention
    alone, so for those the answer is the same without the resolution: it is handed the spec's defaults instead.
    Only for the instances passed here (the kit's own, whose class is checked here); others go dlt's way."""
    from dlt.common.destination.reference import Destination

    own = getattr(type(destination).adjust_capabilities, "__func__", None)  # a staticmethod has none
    if own is not Destination.adjust_capabilities.__func__:
        return destination
    ask = Destination.capabilities
    if not getattr(ask, "kit_kept", False):
        @functools.wraps(ask)
        def capabilities(self: Any, config: Any = None, naming: Any = None) -> Any:
            # by id: a caller's destination class may define __eq__ and be unhashable (helper-45)
            if config is None and _unresolved.get(id(self)) is self:
                config = self.spec()
            return ask(self, config, naming)

        capabilities.kit_kept = True  # type: ignore[attr-defined]
        Destination.capabilities = capabilities
    _unresolved[id(destination)] = destination
    return destination


_unresolved: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> the kit's destinations (see above)


def _rebind(name: str, old: Any, new: Any) -> None:
    """``new`` in every dlt module that imported ``old`` by ``name``."""
    import sys

    for module_name, module in list(sys.modules.items()):
        if (module_name == "dlt" or module_name.startswith("dlt.")) and vars(module).get(name) is old:
            setattr(module, name, new)


def keep_traces_in_memory() -> None:
    """dlt pickles each run's trace into the pipeline folder, with the endpoints as written (a key copied into a path
    included, helper-125); the kit reads the run's own trace only, in memory. Public route: none (no setting)."""
    from dlt.pipeline import trace

    if not getattr(trace.save_trace, "kit_unsaved", False):
        unsaved = functools.wraps(trace.save_trace)(lambda trace_dir, trace_: None)
        unsaved.kit_unsaved = True
        _rebind("save_trace", trace.save_trace, unsaved)


def read_schemas_only_when_changed(pipeline: Any) -> None:
    """dlt's ``LiveSchemaStorage`` parses a committed schema from its file again on every access (``default_schema``:
    ~25 a run, ~30 ms), so that a file another process changed is seen. For this pipeline only, the live schema is
    returned as it is while the file's bytes are those read before the last parse and the live schema is what that
    parse left: object, content hash, version, previous hashes, table order (the last three are outside dlt's hash).
    dlt putting another schema's content in it (``set_live_schema``, as its extract does) forgets the parse. Unsaved
    changes, ``import_schema_path`` or an unreadable file go dlt's way. dlt's fresh objects on every read also drop
    edits made through a dict held from an earlier read: a caller's own pipelines keep exactly that (helper-29)."""
    _install_schema_reads()
    vars(pipeline._schema_storage).setdefault("_kit_parsed", {})


def _install_schema_reads() -> None:
    from dlt.common.storages.live_schema_storage import LiveSchemaStorage

    read = LiveSchemaStorage.__getitem__
    if getattr(read, "kit_kept", False):
        return
    replace = LiveSchemaStorage.set_live_schema

    def content(storage: Any, name: str) -> bytes | None:
        try:
            with open(storage.storage.make_full_path(storage._file_name_in_store(name, "json")), "rb") as file:
                return file.read()
        except OSError:
            return None

    def left(schema: Any) -> tuple:
        return (id(schema), schema.stored_version_hash, schema.version, tuple(schema.previous_hashes),
                tuple(schema.tables))

    @functools.wraps(read)
    def __getitem__(self: Any, name: str) -> Any:
        parsed = vars(self).get("_kit_parsed")
        live = self.live_schemas.get(name)
        if parsed is None or live is None or live.is_modified or self.config.import_schema_path:
            return read(self, name)
        before = content(self, name)  # read before dlt reads: a write in between is seen next time
        if before is not None and parsed.get(name) == (before, left(live)):
            return live
        schema = read(self, name)
        parsed[name] = (before, left(schema))
        return schema

    @functools.wraps(replace)
    def set_live_schema(self: Any, schema: Any) -> Any:
        live = self.live_schemas.get(schema.name)
        if live is not None and live is not schema:
            vars(self).get("_kit_parsed", {}).pop(schema.name, None)
        return replace(self, schema)

    __getitem__.kit_kept = True  # type: ignore[attr-defined]
    LiveSchemaStorage.__getitem__ = __getitem__
    LiveSchemaStorage.set_live_schema = set_live_schema
