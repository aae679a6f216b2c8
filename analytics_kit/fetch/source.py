"""``build_source``: the integration guide's config as a dlt source."""

from __future__ import annotations

import functools
import logging
import weakref
from collections import Counter
from typing import Any, Callable, Mapping

import pyarrow as pa
from dlt.sources import DltResource, DltSource
from requests.cookies import RequestsCookieJar

from analytics_kit import seam
from analytics_kit.config.columns import check_built, drop_ignored_precision
from analytics_kit.config.decimals import shape_decimals
from analytics_kit.config.prepared import DEFAULT_CONCURRENCY, SOURCE_NAME, PreparedConfig, pages_changed, prepare
from analytics_kit.config.refusals import built_source
from analytics_kit.errors import secret_safe
from analytics_kit.fetch import cursors
from analytics_kit.fetch.arrow_tables import CastDeferred, PageConverter, PageFormat, TableKinds, unsupported_columns
from analytics_kit.fetch.declared import DeclaredTypes
from analytics_kit.fetch.key_types import KeyTypes
from analytics_kit.fetch.field_names import FieldNames
from analytics_kit.fetch.key_fields import DedupKey
from analytics_kit.fetch.page_checks import KeysKept, PageRequests
from analytics_kit.interrupts import raise_if_dropped
from analytics_kit.fetch.paging import KitPaginate
from analytics_kit.fetch.replace import MergeNeeded, Replace, is_append, merge_strategy, merges_by_key, table_of, unprovable
from analytics_kit.fetch.retry import Gate, retry_session
from analytics_kit.fetch.row_columns import RowColumns
from analytics_kit.fetch.stats import LoadStats
from analytics_kit.fetch.tally import Tally, key_column_kind
from analytics_kit.redact import Redactor, guard_logs

logger = logging.getLogger(__name__)

# Pages as Arrow tables where the config allows (see slow_path_reason); tests switch it off to compare the two paths.
FAST_PATH = True


class PageStep:
    """Sees every page a resource yields: counts it and reports progress."""

    def __init__(self, resource: str, stats: LoadStats, on_page: Callable[[str], None] | None) -> None:
        self.resource, self.stats, self.on_page = resource, stats, on_page

    def __call__(self, item: Any) -> Any:
        if isinstance(item, pa.Table):
            return item  # arrow batches: their pages were counted as they arrived (page_seen)
        rows = len(item) if isinstance(item, list) else 1
        self.page_seen(rows)
        return item

    def page_seen(self, rows: int) -> None:
        raise_if_dropped()
        self.stats.page(self.resource, rows)
        if self.on_page is not None:
            self.on_page(self.resource)


@secret_safe
def build_source(
    config: Mapping[str, Any],
    *,
    stats: LoadStats | None = None,
    on_page: Callable[[str], None] | None = None,
    name: str = SOURCE_NAME,
) -> DltSource:
    """The validated dlt source for ``config``, the integration guide's dict.

    Example, against the embedded demo API::

        import analytics_kit as ak
        with ak.demo.serve() as api:
            source = ak.build_source({
                "client": {"base_url": api.base_url,
                           "auth": {"type": "api_key", "name": "api_key", "api_key": api.api_key, "location": "query"}},
                "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
                "resources": [{"name": "events", "endpoint": {
                    "path": "/v1/events", "data_selector": "data", "paginator": {"type": "offset", "limit": 100},
                    "error_handler": {"retry_on_status_codes": [429, 500, 502, 503, 504],
                                      "max_retries": 3, "backoff_factor": 2}}}]})

    ``error_handler`` becomes a retrying session for its resource; everything else goes to dlt's ``rest_api_source``
    as it is. Raises ``ConfigError`` or ``MissingSecretError`` before any request is made; the caller's dict is not
    changed. ``client.session`` is refused (a ConfigError saying what to set instead, e.g. ``error_handler.timeout``):
    every request goes through the kit's own session.
    """
    return _build(prepare(config, name=name), stats=stats, on_page=on_page, name=name)


def _build(
    prepared: PreparedConfig,
    *,
    stats: LoadStats | None,
    on_page: Callable[[str], None] | None,
    name: str,
    concurrency: int | None = None,
    fast_path: bool | None = None,
    redactor: Redactor | None = None,
    replace: bool = False,
    first_load: bool = False,
    stored: Mapping[str, dict] | None = None,
) -> DltSource:
    """The source; ``redactor`` is the load's one redactor (its secrets include the destination's).

    ``replace``: a full refresh loaded with dlt's replace write disposition (see ``paging.Replace``);
    ``first_load``: one that must be able to become dlt's merge in place, else ``MergeNeeded``;
    ``stored``: the undeclared decimals the tables hold, declared as held (see ``stored_types``)."""
    stats = stats if stats is not None else LoadStats()
    redactor = redactor if redactor is not None else Redactor(prepared.secrets)
    guard_logs(redactor)  # also when the source is iterated outside load()
    # dlt's workarounds, here because every source is built by this function (see each in the seam)
    seam.skip_half_imported_frame_libraries()  # dlt checks for frames while it builds
    seam.index_arrow_increments_by_position()  # the fast path's pages go through dlt's arrow incremental
    seam.count_csv_rows_as_rows()  # the report counts rows of records that stay dicts from dlt's csv writer
    fast_path = FAST_PATH if fast_path is None else fast_path
    source = built_source(prepared.rest_api, prepared.secrets, name)
    for resource in (r for r in source.resources.values() if r.name in (stored or {})):  # see stored_types
        resource.apply_hints(columns=stored[resource.name])  # type: ignore[index]
    shape_decimals(source.resources.values(), prepared.loads_to, prepared.rest_api)
    drop_ignored_precision(source.resources.values(), prepared.loads_to)
    related = seam.related_resources(source)
    stats.children.update(r.name for r in source.resources.values() if r.is_transformer)
    naming = seam.identifier_naming(source)
    check_built(source.resources.values(), naming)
    field_naming = seam.identifier_naming(source, fields=True)  # as dlt's normaliser names fields
    flattened = seam.identifier_naming(source, nested=True)  # the column of a path of fields
    # tables several resources load into, where only dlt's merge keeps one row per key; any, beside a table_name
    # function (keys proven distinct per resource were twice in one: helper-136), and none then counted so
    every = Counter(naming(table_of(r)) for r in source.resources.values())
    routed = len(every) > 1 and any(callable(r.table_name) for r in source.resources.values())
    shared = {t for t, n in every.items() if n > 1 or routed}
    # their keys counted as the pages hold them, unless a map step may change them (250 of 500 rows: helper-142)
    counted = shared - {naming(table_of(r)) for r in source.resources.values() if seam.processing_steps(r)}
    linked: frozenset[str] = frozenset()
    if replace:
        # one key may come from several parents, and only the kit's pager proves keys distinct
        unpaged = [r.name for r in source.resources.values() if seam.resource_client(r) is None]
        if related or unpaged:
            raise MergeNeeded(sorted(related or unpaged)[0], "its records pass between resources")
        for resource in source.resources.values():
            if merge_strategy(resource) not in (None, "delete-insert"):
                raise MergeNeeded(resource.name, f"its merge strategy {merge_strategy(resource)!r} keeps what only "
                                  "dlt's merge writes")
        # the next incremental merge finds nested rows by their root's _dlt_id, as its own link them
        linked = _LINKED[source] = frozenset(naming(table_of(r)) for r in source.resources.values()
                                              if merge_strategy(r) == "delete-insert")
        _APPENDED[source] = frozenset(naming(table_of(r)) for r in source.resources.values() if is_append(r))
        unproven = next(((r.name, why) for r in source.resources.values() if (why := unprovable(r, shared, naming))),
                        None)
        if unproven is not None:
            _UNPROVEN[source] = MergeNeeded(*unproven)
        seam.link_nested_rows(source, sorted(linked))
    tables: dict[str, TableKinds] = {}  # the fast path's column types, one table's for all its resources
    for resource in source.resources.values():
        table = naming(table_of(resource))
        # a listing paged twice stages keys twice: only this merge (or a replace, which becomes it) keeps one
        one_row_per_key = replace or merge_strategy(resource) == "delete-insert"
        _keep_latest_copy(resource, naming, flattened)
        _dedup_by_records_fields(resource, naming)
        seam.reset_deduplicated(resource)  # set by KitPaginate's last batch once the run proved its keys distinct
        if replace:
            resource.apply_hints(write_disposition="replace")
        policy = prepared.policies.get(resource.name, prepared.default_policy)
        renames = bool(seam.processing_steps(resource))  # the config's map/filter steps, before the kit adds any
        # dlt gives each resource its own RESTClient but takes the session from the one
        # client config, so per-endpoint policies are set on each resource's client here.
        client = seam.resource_client(resource)
        if client is not None:
            # every session of the resource (one per worker) pauses when one of them gets a 429,
            # and sends the cookies the API set on any of them, as dlt's one session would
            new_session = functools.partial(retry_session, policy, resource=resource.name, stats=stats,
                                            redactor=redactor, origins=prepared.origins, gate=Gate(policy.max_delay),
                                            cookies=RequestsCookieJar())
            seam.install_session(client, new_session())
            reason = slow_path_reason(resource, related) if fast_path else "fast path switched off"
            convert: Callable[[list], Any] | None = None
            learned: Callable[[str], str | None] = lambda name: None
            cursor, incremental = instant_cursor(resource, field_naming), seam.resource_incremental(resource)
            if rewrites_cursor(resource, field_naming):  # its start and end compare as its records do
                seam.set_cursor_bounds(incremental, *map(cursors.canonical, (incremental.initial_value,
                                                                             incremental.end_value)))
            if reason is None:
                key, kinds = seam.primary_key(resource) or (), tables.setdefault(table, TableKinds(table))
                # named as the pages' fields (dlt's): a declared "Value" beside "value" made 2 columns (helper-137)
                converter = PageConverter({field_naming(n): c for n, c in (resource.columns or {}).items()},
                                          () if incremental is None else (incremental.cursor_path,), table=kinds,
                                          required=tuple(map(field_naming, (key,) if isinstance(key, str) else key)),
                                          resource=resource.name)
                convert = PageFormat(converter, resource.name, naming)
                learned = converter.kinds.get
                seam.add_step(resource, CastDeferred(converter), after_incremental=True)
                seam.mute_json_override(resource.name)
            else:
                logger.debug("resource %s loads pages as dicts: %s", resource.name, reason)
            requests = PageRequests()  # where the steps' errors name the request
            nesting = resource.max_table_nesting if resource.max_table_nesting is not None else source.max_table_nesting
            # what dlt's normaliser would put in a variant column stops the load: a declared column's, or a key's
            for check in (DeclaredTypes.of(resource.name, resource.columns, seam.primary_key(resource), field_naming,
                                           flattened, requests, nesting, prepared.wei, table,
                                           (stored or {}).get(resource.name)),
                          KeyTypes.of(resource.name, seam.primary_key(resource), field_naming, resource.columns,
                                      requests, table, learned)):
                if check is not None:
                    seam.add_step(resource, check, after_incremental=True)
            workers = concurrency or prepared.concurrency.get(resource.name) or DEFAULT_CONCURRENCY
            step = PageStep(resource.name, stats, on_page)
            rows = None
            if replace:
                rows = Replace.of(resource.columns, naming,
                                  on_flagged=functools.partial(stats.flagged_rows, table),
                                  on_dropped=functools.partial(stats.dropped, resource.name))
                # a delete-insert merge's replace can become that merge in place (see Replace); pages that
                # stay dicts leave flagged rows out, which the merge must see, so only without a flag
                rows.switchable = table in linked and (convert is not None or rows.hard_delete is None)
                if first_load and seam.primary_key(resource) and not rows.switchable:
                    raise MergeNeeded(resource.name, "its records stay dicts and carry a soft-delete flag, which a "
                                      "replace leaves out: a key it found twice would mean paging it again")
            fields = FieldNames(resource.name, field_naming)
            if renames:  # checked behind the steps, which may rename a field (as its error suggests)
                seam.add_step(resource, fields)
            paged = _key_in_pages(key := seam.primary_key(resource), seam.fields_from_parent(resource), field_naming)
            # a key counted once over every parent's listing where the pages hold all of it, and no step changes it
            once = resource.is_transformer and one_row_per_key and not renames and paged == _key_in_pages(key, set())
            KitPaginate(client, resource=resource.name, redactor=redactor, primary_key=paged,
                        concurrency=workers, new_session=new_session, convert=convert, on_arrow_page=step.page_seen,
                        cursor=cursor, stats=stats, incremental=seam.resource_incremental(resource),
                        naming=naming, rewrite_cursor=seam.cursor_convert(resource) is None,
                        replace=rows, fields=None if renames else fields, repage=one_row_per_key,
                        key_kind=key_column_kind(paged, resource.columns, naming, learned, table),
                        newest_field=_newest_field(resource, one_row_per_key), start=seam.start_param(resource),
                        # routed: a tally by a name no table has, which the report leaves out (it counts the rows)
                        shares=table + " (routed)" * routed if table in counted or once and paged is not None else None,
                        requests=requests, filtered=(filtered := renames and _filters(resource)),
                        hooked=pages_changed(prepared.rest_api, resource.name)).install()
            if filtered and paged is not None:
                seam.add_step(resource, KeysKept(resource.name, paged, Tally(paged, naming).keys_of, requests))
            if rows is not None and table in linked:  # dlt's append keeps flagged rows
                seam.add_step(resource, rows.counted if rows.switchable else rows.kept, after_incremental=True)
            seam.add_step(resource, step)
            if convert is not None:
                seam.add_step(resource, RowColumns(naming), last=True)
        else:
            seam.add_step(resource, PageStep(resource.name, stats, on_page))
    return source


# The root tables a replace source links its nested rows to (see ``linked_roots``), and those it
# replaces that its incremental runs append to (``appended_roots``).
_LINKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_APPENDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Why a replace source's keys cannot be proven distinct before its pages are fetched (``unproven``).
_UNPROVEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def linked_roots(source: DltSource) -> frozenset[str]:
    """The root tables whose nested rows this replace source links by ``_dlt_root_id``: those of
    its delete-insert merges (their write disposition reads ``replace`` once it is built)."""
    return _LINKED.get(source, frozenset())


def unproven(source: DltSource) -> MergeNeeded | None:
    """Why this replace source's pages cannot prove each key comes once, known before they are
    fetched: its full refresh is dlt's merge from the start rather than after a wasted pass."""
    return _UNPROVEN.get(source)


def appended_roots(source: DltSource) -> frozenset[str]:
    """The tables this replace source swaps in that an incremental run appends to.

    Swapped in, such a table holds rows of a load not yet marked complete, behind the old
    cursor: a run killed before the mark would leave the next incremental run appending
    them again, and a later one deleting them as uncommitted. So their full refresh is
    recorded as pending until it completes (see ``recovery.mark_full_refresh``).
    """
    return _APPENDED.get(source, frozenset())


def _keep_latest_copy(resource: DltResource, naming: Callable[[str], str], flattened: Callable[[list], str]) -> None:
    """Sorts a delete-insert merge's copies of one key by its incremental cursor (``dedup_sort``), where the config
    sorts them by nothing. A record updated while its listing is paged is staged in both versions, and the listing is
    paged again; without a sort dlt keeps either copy, and kept the older one. The cursor has moved past the newer
    version then, so no later incremental run repairs the row."""
    incremental = seam.resource_incremental(resource)
    columns = resource.columns
    if (not merges_by_key(resource) or incremental is None or incremental.last_value_func not in (max, min)
            or not isinstance(columns, dict)):
        return
    # a field or a path of fields (meta.updated_at, $.updated_at), which dlt flattens into a column;
    # a custom last_value_func, or a path with wildcards or indexes, has no order to tell
    path = incremental.cursor_path
    parts = path.removeprefix("$.").split(".") if isinstance(path, str) else []
    if not parts or not all(p.isidentifier() for p in parts):
        return
    if any(isinstance(c, Mapping) and c.get("dedup_sort") for c in columns.values()):
        return  # the config's own order
    column = flattened(parts)
    # an undeclared field keeps the API's name, as the config would write it (dlt names it)
    name = next((k for k in columns if naming(k) == column), column if len(parts) > 1 else parts[0])
    order = "desc" if incremental.last_value_func is max else "asc"
    resource.apply_hints(columns={**columns, name: {**columns.get(name, {}), "name": name, "dedup_sort": order}})


def _dedup_by_records_fields(resource: DltResource, naming: Callable[[str], str]) -> None:
    """Gives the incremental, where it has no key of its own, the resource's primary key as the
    records name its fields (``DedupKey``)."""
    incremental, key = seam.resource_incremental(resource), seam.primary_key(resource)
    if incremental is not None and key and isinstance(key, (str, tuple, list)) and incremental.primary_key is None:
        seam.set_dedup_key(incremental, DedupKey(key if isinstance(key, str) else tuple(key), naming))


def _filters(resource: DltResource) -> bool:
    """Whether rest_api's processing_steps include a filter: records the pages hold may be dropped."""
    return len(seam.processing_steps(resource)) > len(seam.processing_steps(resource, filters=False))


def _key_in_pages(key: Any, added: set[str], naming: Callable[[str], str] = str) -> Any:
    """The primary key without the fields dlt adds from a parent after the pages are read (None if only those), named
    either way (a key "_users_id" over the added "_Users_id": helper-137)."""
    added = {naming(name) for name in added}
    kept = [name for name in ([key] if isinstance(key, str) else key or ()) if naming(name) not in added]
    return (kept[0] if len(kept) == 1 or isinstance(key, str) else kept) if kept else None


def instant_cursor(resource: DltResource, naming: Callable[[str], str] = str) -> tuple[str, bool] | None:
    """(field, declared a timestamp) of a cursor that may hold timestamps, to compare as instants (see ``cursors``);
    None for a cursor declared as another type, or nested in the record, which is left as the API sends it. Declared
    under dlt's name for it too ("updated_at" for the field "updatedAt"; the later spelling wins, as in dlt)."""
    incremental = seam.resource_incremental(resource)
    if incremental is None or not isinstance(incremental.cursor_path, str) or not incremental.cursor_path.isidentifier():
        return None
    columns = resource.columns if isinstance(resource.columns, Mapping) else {}
    column = ([None] + [c for n, c in columns.items() if naming(n) == naming(incremental.cursor_path)])[-1]
    kind = column.get("data_type") if isinstance(column, Mapping) else None
    return None if kind not in (None, "timestamp") else (incremental.cursor_path, kind == "timestamp")


def rewrites_cursor(resource: DltResource, naming: Callable[[str], str] = str) -> bool:
    """Whether the pager rewrites the records' cursors to compare as instants (not for a config's ``convert``), so
    that the stored cursor is settled so too (``settle_cursors``): settled alone, "...Z" records were newer than a
    stored "...+00:00" (an append loaded its last record again each run), "-05:00" ones never loaded (helper-137)."""
    return (instant_cursor(resource, naming) is not None and seam.cursor_convert(resource) is None
            and seam.resource_client(resource) is not None)


def _newest_field(resource: DltResource, one_row_per_key: bool) -> str | None:
    """The cursor field of a resource whose run may store a cursor below the newest it saw (see
    ``newest``), or None: one that stores its newest (``max``, no ``end_value``), from a closed start
    (an open one would leave out the records at the lowered value), compared as the kit or dlt
    compares the values (no ``convert``), loaded one row per key (an append would store again what
    the next run fetches again), a plain field, and not one cursor for many parents' listings (a child)."""
    incremental = seam.resource_incremental(resource)
    if (incremental is None or not one_row_per_key or incremental.last_value_func is not max
            or incremental.end_value is not None or getattr(incremental, "range_start", "closed") != "closed"
            or seam.cursor_convert(resource) is not None or resource.is_transformer):
        return None
    path = incremental.cursor_path
    return path if isinstance(path, str) and path.isidentifier() else None


def slow_path_reason(resource: DltResource, related: set[str]) -> str | None:
    """Why ``resource``'s pages must stay dicts (dlt's row-by-row normaliser), or None.

    The fast path yields arrow tables, so anything in the pipe that expects dicts, or a hint
    dlt's arrow extractor handles differently, keeps the slow path.
    """
    if resource.name in related:
        return "a dependent resource (or its parent) passes records between resources"
    if seam.processing_steps(resource):
        return "processing_steps (map/filter) work on dicts"
    if callable(resource.table_name):
        return "table names computed per record"
    if resource.schema_contract:
        return "schema_contract filters rows of dicts"
    if merge_strategy(resource) not in (None, "delete-insert"):
        return f"dlt's {merge_strategy(resource)} merge derives _dlt_id from each record"
    reason = unsupported_columns(resource.columns)
    if reason:
        return reason
    incremental = seam.resource_incremental(resource)
    if incremental is not None:
        path = incremental.cursor_path
        if not isinstance(path, str) or not path.isidentifier():
            return "the incremental cursor_path is not a top-level field"
        if incremental.last_value_func not in (max, min):
            return "a custom last_value_func"
    return None
