"""Every reach below dlt's public API, in one place.

dlt's public API here means: the ``dlt`` package's top-level names, ``dlt.sources``,
``dlt.sources.rest_api`` (with ``config_setup`` and ``typing``), ``dlt.sources.helpers.rest_client``
and ``dlt.sources.helpers.requests``, and ``dlt.destinations``. Anything else the kit needs
(private attributes, patched methods, subclasses of internal steps, filters matching dlt's log
text, undocumented state layouts and hints, internal modules) is reached from this module only,
so a dlt upgrade is checked here. Each entry says why it is needed and what public route would
replace it. ``tests/test_seam.py`` fails when another module reaches into dlt's internals.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import dlt
from dlt.sources import DltResource, DltSource

# -- internal modules, re-exported --------------------------------------------------------------
# No public route for any of these:
# - jsonpath: JSON paths as dlt evaluates them (data_selector, total_path), so the kit selects
#   exactly what dlt's paginators and extract_response select;
# - coerce_value, is_iso_timestamp: dlt's value coercion and ISO detection, so the Arrow fast
#   path types values as dlt's normaliser would;
# - DictValidationException ... validate_dict: dlt's own rest_api validator and the typing helpers
#   it reads TypedDicts with, so the config checks' rules are dlt's, not a copy;
# - get_nested_tables: a table's nested tables (Schema has no public method for it);
# - the retry conditions and Retry-After-aware wait, so the kit retries as dlt would;
# - Incremental, ItemTransform: dlt's incremental step, and the base of steps in a pipe.
from dlt.common import jsonpath  # noqa: E402
from dlt.common.data_types.type_helpers import coerce_value  # noqa: E402
from dlt.common.exceptions import DictValidationException  # noqa: E402
from dlt.common.schema.detections import is_iso_timestamp  # noqa: E402
from dlt.common.schema.typing import TColumnSchema  # noqa: E402
from dlt.common.schema.utils import get_nested_tables  # noqa: E402
from dlt.common.typing import (  # noqa: E402
    extract_union_types, get_literal_args, get_type_hints, get_type_name, is_literal_type, is_optional_type,
    is_typeddict, is_union_type,
)
from dlt.common.validation import validate_dict  # noqa: E402
from dlt.extract.incremental import Incremental, IncrementalResourceWrapper  # noqa: E402
from dlt.extract.items_transform import ItemTransform  # noqa: E402
from dlt.sources.helpers.requests.retry import (  # noqa: E402
    DEFAULT_RETRY_EXCEPTIONS, retry_if_status, wait_exponential_retry_after,
)

__all__ = [
    "DEFAULT_RETRY_EXCEPTIONS", "DictValidationException", "TColumnSchema", "coerce_value", "extract_union_types",
    "get_literal_args", "get_nested_tables", "get_type_hints", "get_type_name", "is_iso_timestamp", "is_literal_type",
    "is_optional_type", "is_typeddict", "is_union_type", "jsonpath", "retry_if_status", "validate_dict",
    "wait_exponential_retry_after",
]


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
    """The cursor value the running extraction of ``resource`` starts from, or None.

    Read through ``dlt.current.resource_state`` (public) in dlt's layout (see above): the
    ``Incremental`` a rest_api resource is given is not the bound copy that knows it.
    """
    try:
        state = dlt.current.resource_state(resource)
    except Exception:  # noqa: BLE001 - outside a pipeline there is no state
        return None
    return ((state.get("incremental") or {}).get(path) or {}).get("last_value")


# -- rest_api's resources ---------------------------------------------------------------------
# rest_api builds each endpoint's resource from its internal ``paginate_resource`` function,
# bound with arguments named ``client`` (the resource's RESTClient) and ``incremental_object``.
# ``DltResource.explicit_args`` is public; those argument names are not. A public way to give
# rest_api a paginate function or a session per endpoint would replace these.


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
    """The incremental's ``convert`` function (the value as the API wants it), or None."""
    try:
        return (resource.explicit_args or {}).get("incremental_cursor_transform")
    except TypeError:
        return None


def related_resources(source: DltSource) -> set[str]:
    """Names of resources that pass records between them: transformers and their parents.

    ``is_transformer`` is public; a transformer's parent is known only through ``_pipe``.
    """
    related: set[str] = set()
    for resource in source.resources.values():
        if resource.is_transformer:
            related |= {resource.name, resource._pipe.parent.name}
    return related


def primary_key(resource: DltResource) -> Any:
    """The primary_key hint as set (a name, names, or None). ``compute_table_schema()`` needs
    an item for callable hints and loses a compound key's order; ``_hints`` has it as given."""
    return resource._hints.get("primary_key")


def processing_steps(resource: DltResource) -> list:
    """The steps after the resource's generator other than dlt's incremental step: rest_api's
    processing_steps (map/filter). The pipe's steps are not public."""
    return [s for s in resource._pipe.steps[1:] if not isinstance(s, (Incremental, IncrementalResourceWrapper))]


# -- a resource's RESTClient ------------------------------------------------------------------
# The kit pages offset listings itself (concurrently, with the total as a hint) and selects
# records itself, so it replaces two methods of the resource's client. A paginate hook in
# rest_api's config would replace this.


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


# -- steps in a resource's pipe ---------------------------------------------------------------
# ``add_map`` is public, but its steps sit before dlt's incremental step, which dlt appends
# (affinity 1) when the resource is bound. A step that must see pages after the incremental
# filter needs ``ItemTransform.placement_affinity``, which is internal.


class _Step(ItemTransform[Any, Any]):
    def __init__(self, function: Callable[[Any], Any], affinity: float) -> None:
        super().__init__(lambda item: item)
        self.function = function
        self.placement_affinity = affinity  # type: ignore[misc]

    def __call__(self, item: Any, meta: Any = None) -> Any:
        return self.function(item)


def add_step(resource: DltResource, function: Callable[[Any], Any], *, after_incremental: bool = False) -> None:
    """Runs ``function`` on every item the resource yields (a page as a list or an Arrow
    table), at the pipe's end; with ``after_incremental``, also behind dlt's incremental step."""
    resource.add_step(_Step(function, 1.05 if after_incremental else 0))


# -- table hints ------------------------------------------------------------------------------
# dlt's merge skips its ROW_NUMBER() dedup of the staged rows for a table carrying this hint.
# The merge write_disposition's ``deduplicated`` key sets it for a whole resource; the kit sets
# it on one batch only, once the run proved the keys distinct, so it uses the hint itself.
_DEDUPLICATED = "x-stage-data-deduplicated"


def reset_deduplicated(resource: DltResource) -> None:
    """Stored with the schema, the hint would outlive the run that proved it: every run starts without it."""
    resource.apply_hints(additional_table_hints={_DEDUPLICATED: False})


def mark_deduplicated(batch: Any) -> Any:
    """``batch`` carrying the hint that the run's staged rows hold each key once."""
    return dlt.mark.with_hints(batch, dlt.mark.make_hints(additional_table_hints={_DEDUPLICATED: True}))


def deduplicated(table: dict) -> bool:
    """Whether a stored table schema carries the hint."""
    return bool(table.get(_DEDUPLICATED))


# -- dlt's log messages -----------------------------------------------------------------------
# Two warnings dlt logs are expected by design on the kit's fast path. They are matched on
# dlt's message text; if the text changes, the warning shows again (harmless, and
# tests/test_fast.py notices).


class _Muted(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.json_override: set[str] = set()
        self.dedup_notice = 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith("In resource: ") and "when merging arrow schema" in text:
            # a ``json`` hint overriding an arrow string column: JSON travels as serialized
            # strings, which DuckDB reads into its JSON type, as on the slow path
            return text[len("In resource: "):].split(",", 1)[0] not in self.json_override
        # dedup_sort is ignored when staged rows are declared deduplicated: the kit declares
        # that only after proving the keys distinct, so there is nothing to sort
        return not (self.dedup_notice and "declared as already deduplicated" in record.getMessage())


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
    import dlt.destinations  # noqa: F401 - registers dlt's own destinations
    from dlt.common.destination.reference import DestinationReference

    return sorted(ref.rsplit(".", 1)[-1] for ref in DestinationReference.DESTINATIONS)


def nested_tables(schema: Any, table: str) -> list[tuple[str, str]]:
    """(name, parent) of each nested table below ``table`` in ``schema``, parents first."""
    return [(t["name"], t["parent"]) for t in get_nested_tables(schema.tables, table, include_self=False)]


# -- auth resolution (credentials.py) -----------------------------------------------------------
# The kit resolves auth blocks with rest_api's own create_auth, in rest_api's config sections
# (public). What it needs to read back when dlt finds a field nowhere, and which fields dlt
# treats as secrets, is in dlt.common.configuration, which dlt's docs do not teach to import.


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
# register_paginator / register_auth (public) add to module-level maps in config_setup, which
# dlt does not document; the checks read them when a config is checked, so types registered
# with dlt are accepted. A public "registered types" listing would replace these.


def paginator_types() -> dict[str, type]:
    """Paginator type name -> class, as dlt knows them now (registered types included)."""
    from dlt.sources.rest_api import config_setup

    return dict(config_setup.PAGINATOR_MAP)


def auth_types() -> dict[str, type]:
    """Auth type name -> class, as dlt knows them now (registered types included)."""
    from dlt.sources.rest_api import config_setup

    return dict(config_setup.AUTH_MAP)


def is_missing_config(error: BaseException) -> bool:
    """Whether ``error`` is dlt's ``ConfigFieldMissingException`` (see ``missing_fields``)."""
    return missing_fields(error) is not None


def identifier_naming(source: DltSource) -> Callable[[str], str]:
    """How dlt names a record's field as a column (``userId`` -> ``user_id``): the source
    schema's naming convention. ``DltSource.schema`` is public; its ``naming`` is not documented."""
    return source.schema.naming.normalize_identifier


# -- differences between the supported versions (pyproject.toml) -------------------------------


def new_file_config() -> dict[str, str]:
    """The DuckDB config a new file is created with, so that the ``duckdb`` CLI from PyPI
    (1.5.x) can open it for ad-hoc SQL.

    duckdb 2.x writes storage version 69 by default, which the 1.5 CLI cannot read; a file
    created with ``storage_compatibility_version`` v1.5.0 keeps that format. duckdb 1.4
    rejects that version string (it does not know it) and writes a format every later
    reader opens, so it gets no setting. Drop that branch when the oldest duckdb is 1.5.
    """
    import duckdb

    if tuple(int(part) for part in duckdb.__version__.split(".")[:2]) < (1, 5):
        return {}
    return {"storage_compatibility_version": "v1.5.0"}


def duckdb_in_use_errors() -> tuple[type[Exception], ...]:
    """The exception types ``duckdb.connect`` raises when another connection of this process
    holds the file (``database.in_use_here`` reads their text): ConnectionException ("different
    configuration") everywhere; ResourceInUseException from duckdb 1.5 on, which duckdb 1.4
    lacks; BinderException ("Unique file handle conflict") in duckdb 1.4.3 and 1.4.4 while that
    connection opens or closes in another thread. Drop the 1.4 case when the oldest is 1.5."""
    import duckdb

    names = ("ConnectionException", "ResourceInUseException", "BinderException")
    return tuple(getattr(duckdb, name) for name in names if hasattr(duckdb, name))
