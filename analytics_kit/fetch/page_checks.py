"""Checks of a page's records that stop a load: cursors of a kind the start value cannot be compared with,
records without their primary key, and the error for a value the config's columns refuse."""

from __future__ import annotations

import traceback
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import requests

from analytics_kit import seam
from analytics_kit.errors import LoadError
from analytics_kit.fetch import cursors
from analytics_kit.fetch.coercion import COERCE_ERRORS, BadValue, coerced_value, shown
from analytics_kit.fetch.key_fields import missing_key


# a stored cursor of earlier loads keeps its kind until a full refresh starts it over (helper-117)
FRESH_START = ("where earlier loads stored a cursor of the other kind, run the first load after the change as a full "
               "refresh (analytics-kit load --full-refresh).")
MILLISECONDS_FROM = 100_000_000_000  # as Unix seconds the year 5138: a cursor this large counts finer units


def check_cursor_kind(page: list, field: str, request: str, resource: str, incremental: Any) -> bool:
    """Numbers from the API against a text start value (or the other way round) cannot be
    compared: dlt failed with "'>' not supported between instances of 'str' and 'int'".
    Returns whether the page had a value to look at."""
    value = next((r.get(field) for r in page if isinstance(r, dict) and r.get(field) is not None), None)
    if value is None:
        return False
    start = cursor_start(resource, field, incremental)
    if start is not None and cursors.is_number(value) != cursors.is_number(start):
        said = cursors.kind_word
        if cursors.is_number(value) and abs(value) >= MILLISECONDS_FROM:
            # Unix seconds from text are read as instants; these are not: the advice to write the start as numbers
            # read as already followed by a start written as a timestamp (helper-116)
            raise LoadError(
                f"Resource '{resource}': the API's {field!r} values are numbers too large for Unix seconds ({value!r} "
                f"on {request}): milliseconds or finer, which the kit does not read as instants, so they cannot be "
                f"compared with the cursor's start ({start!r}). Nothing from this run was committed.",
                guidance=f"Keep the cursor as numbers: declare the column {field!r} as bigint (not timestamp) and "
                "write incremental.initial_value in the API's unit (1735689600000 is 2025-01-01 in milliseconds); "
                f"{FRESH_START}", resource=resource)
        raise LoadError(
            f"Resource '{resource}': the API's {field!r} values are {said(value)} ({value!r} on {request}), "
            f"but the cursor starts from {said(start)} ({start!r}, the incremental initial_value or the stored "
            "cursor); they cannot be compared. Nothing from this run was committed.",
            guidance=f"Write incremental.initial_value as {said(value)}, like the API's values ("
            + ("Unix seconds: 1735689600 is 2025-01-01" if cursors.is_number(value) else
               f"in their form: {value!r}") + f"); {FRESH_START}", resource=resource)
    return True


def cursor_failure(error: Exception, where: str, resource: str | None, *, missing: bool) -> LoadError:
    """The error for dlt's incremental failing on a record: the cursor field ``missing`` from it, or a value that
    cannot be compared with the cursor's start (dlt's IncrementalCursorInvalidCoercion: "Fix the cause", helper-117)."""
    where = where[0].upper() + where[1:]
    if missing:  # dlt's text for arrow tables (the kit's fast path) speaks of columns and nested paths
        return LoadError(
            f"{where}: the API's records have no field {getattr(error, 'json_path', '?')!r}, which the incremental's "
            "cursor_path names; nothing from this run was committed.",
            guidance="Name the field as the API sends it in its records (it may differ from the column name in the "
            "database); if only some records lack it, set incremental.on_cursor_value_missing to 'include' or "
            "'exclude'.", resource=resource)
    start, value = getattr(error, "cursor_value", None), getattr(error, "item", None)
    return LoadError(
        f"{where}: the API's {getattr(error, 'cursor_path', 'cursor')!r} values cannot be compared with the cursor's "
        f"start ({str(start)[:60]!r}, the stored cursor of earlier loads or the incremental's initial_value): "
        f"{type(start).__name__} against {type(value).__name__}. Nothing from this run was committed.",
        guidance="Write incremental.initial_value like the API's values, and declare the cursor's column to match "
        f"them; {FRESH_START}", resource=resource)


def cursor_start(resource: str, field: str | None, incremental: Any) -> Any:
    """Where the cursor starts: the stored value, else the incremental's initial_value (None: neither)."""
    start = seam.running_cursor(resource, field) if field else None
    return getattr(incremental, "initial_value", None) if start is None else start


def page_cap(resource: str, limit: int, short: Any, page: Any, hooked: bool = False) -> LoadError:
    """The error for a short page (``short``) followed by one that holds records: the API serves fewer per page;
    ``hooked``: the endpoint's response_actions had the page before the kit, and may have taken records out of it (a
    hook dropping records read as "the API serves at most 3 per page", and limit 3 failed again: helper-145)."""
    served = len(short)
    if hooked:
        return LoadError(
            f"Resource '{resource}': {served} record(s) of a page for limit={limit} on {short.request} were left by "
            f"the endpoint's response_actions, and more records came after it ({page.request}): the kit pages by the "
            "records it is given, so a short page there says the listing's pages are short, and records would be "
            "skipped. Nothing from this run was committed.", guidance="If a response_actions function removes records "
            "from the page, drop them with a processing_steps filter instead ({'filter': lambda r: ...}), which runs "
            "after the pages are counted; if the API itself serves fewer, set the paginator's limit to its page "
            "size.", resource=resource)
    if getattr(short, "one_object", False):  # "set limit to 1" was no advice for a listing that is not a list
        return one_object(resource, short, f"more records came after it ({page.request})")
    if getattr(short, "said", None):  # the API said why the page was short (helper-138)
        return LoadError(
            f"Resource '{resource}': the API returned {served} record(s) for limit={limit} on {short.request} with "
            f"an error beside them ({short.said}), and more records after it ({page.request}): a partial answer, "
            "which leaves records out. Nothing from this run was committed.", guidance="Run the load again later; "
            "if the API answers so every time, ask its provider how to fetch the listing whole.", resource=resource)
    return LoadError(
        f"Resource '{resource}': the API returned {served} record(s) for limit={limit} on {short.request}, and more "
        f"records after it ({page.request}): it serves at most {served} per page, so offsets {short.offset + served} "
        f"to {short.offset + limit - 1} would be skipped. Nothing from this run was committed.",
        guidance=f"Set the paginator's limit to {served} (or to the API's documented maximum page size). "
        "If the API instead filters records out of each page after paging (so short pages are expected), "
        "select the records with a filter data_selector such as \"data[*]\": pages are then stepped by "
        "limit, as dlt's own paginator does.", resource=resource)


def uneven_pages(resource: str, short: Any, held: int, again: Any) -> LoadError:
    """The error for a short page that held another number of records asked again, fewer than it must for a listing
    that grew: pages cut short at random, read as "it serves at most 1 per page" (helper-144)."""
    return LoadError(
        f"Resource '{resource}': the API returned {held} record(s) on {short.request}, then {len(again)} asked again, "
        "with more records after it: it cuts its pages short, not by the same measure each time, which leaves "
        "records out. Nothing from this run was committed.", guidance="Run the load again later; if the API answers "
        "so every time, ask its provider about the page size it serves, and set the paginator's limit to it.",
        resource=resource)


def nothing_but_a_total(resource: str, total: Any, request: str) -> LoadError:
    """The error for a listing whose pages held no record at all while its total said some: an API answering with
    an empty page while it is down. A full refresh replaced the table with nothing, and a warning (helper-123)."""
    return LoadError(
        f"Resource '{resource}': the API said total={total} but returned no records at all (the last request: "
        f"{request}); the kit does not take that for an empty listing. Nothing from this run was committed.",
        guidance="Run the load again later. If the API's total counts records it does not list, set the paginator's "
        "total_path to null.", resource=resource)


def listing_gap(resource: str, page: Any, after: Any) -> LoadError:
    """The error for an empty page, asked twice, before one that holds records."""
    return LoadError(
        f"Resource '{resource}': the API returned no records on {page.request}, twice, but records after it on "
        f"{after.request}; stopping there would skip them, and the listing cannot be read past the gap. Nothing from "
        "this run was committed.", resource=resource,
        guidance="Run the load again; if it keeps failing at the same offset, the API's listing has a gap there.")


def one_object(resource: str, page: Any, more: str) -> LoadError:
    """The error for an offset listing's page that was one object where the data_selector points, not a list, where
    more records were due: dlt reads it as one record, and the others of that page would be skipped (helper-111)."""
    return LoadError(
        f"Resource '{resource}': the API answered {page.request} with one object where the data_selector points, "
        f"not a list of records, though {more}: this offset listing's pages should hold lists. Nothing from this run "
        "was committed.",
        guidance="Check the endpoint's path (one that returns a single record, e.g. /things/{id}, takes no "
        "paginator: set \"paginator\": \"single_page\") and its data_selector (the field that holds the list of "
        "records).", resource=resource)


@contextmanager
def links_requestable(resource: str, paginator: Any) -> Iterator[None]:
    """Within the block (dlt paging by the API's links), a link that requests cannot send or urllib cannot parse
    is the API's: dlt let requests' or urllib's error through, and the load failed as "InvalidCodepoint" or "Invalid
    IPv6 URL", naming neither the link nor the API (helper-113)."""
    try:
        yield
    except requests.exceptions.InvalidURL as error:
        raise _unrequestable(resource, paginator, error) from None
    except ValueError as error:  # urllib's parse of the next link, in dlt's paginator
        if not any(frame.filename.endswith(("urllib/parse.py", "ipaddress.py"))
                   for frame in traceback.extract_tb(error.__traceback__)[-2:]):
            raise
        raise _unrequestable(resource, paginator, error) from None


def _unrequestable(resource: str, paginator: Any, error: Exception) -> LoadError:
    link = getattr(paginator, "_next_reference", None)
    shown = f" ({ascii(link)[:200]})" if isinstance(link, str) else ""
    return LoadError(
        f"Resource '{resource}': the API sent a link to its next page that cannot be requested{shown}: "
        f"{type(error).__name__}: {str(error)[:200]}. Nothing from this run was committed.",
        guidance="The API wrote a malformed URL (a host or port no URL can hold): report it to its provider. If the "
        "API also pages by offset or page number, configure that paginator instead of its links.", resource=resource)


def endless(resource: str, pages: int, request: str, beyond: str | None = None) -> LoadError:
    """The error for a listing that kept returning pages past the kit's bound: paged by dlt's paginators, or (with
    ``beyond``, "past its first total, N,") an offset listing past its total."""
    return LoadError(
        f"Resource '{resource}': the API kept returning "
        + (f"records for {pages:,} pages {beyond} up to {request}" if beyond else f"pages, {pages:,} of them up to "
           f"{request}") + "; stopping, so that the load cannot run forever. Nothing from this run was committed.",
        guidance="If the API's total is not the number of records, set the paginator's total_path to null and "
        "stop_after_empty_page to true; or cap the listing with maximum_offset." if beyond else "Check the "
        "paginator's settings against the API's documentation; load such a listing in parts with params or "
        "incremental.end_value.", resource=resource)


def repeating(resource: str, pages: int, request: str) -> LoadError:
    """The error for pages in a row holding the same records: the API ignores the paging parameter."""
    return LoadError(
        f"Resource '{resource}': the API returned the same records again on {request} ({pages} pages in a row): "
        "it seems to ignore the paging parameter, and paging would never end. Nothing from this run was committed.",
        guidance="Check the paginator's parameter names (offset_param, limit_param, page_param, cursor_param) "
        "against the API's documentation.", resource=resource)


# Floats hold every integer up to 2**53 exactly; past it, 9007199254740993.0 is read as 9007199254740992.0
_EXACT = float(2**53)


_PLAIN_KEYS = {int, str, bool}


def _inexact(key: Any) -> bool:
    return type(key) is float and not -_EXACT < key < _EXACT


def odd_number(key: str, kind: str) -> bool:
    """Whether text a numeric key column reads as a number is written as no plain number is: other digits than
    ASCII ("٣", "４"), an underscore ("1_0"), a base prefix ("0x10"): Python's int() reads each, as dlt's coercion."""
    if key.isascii() and "_" not in key and key.strip()[:2].lower() not in ("0x", "0o", "0b"):
        return False
    try:
        coerced_value(key, kind)
    except COERCE_ERRORS:
        return False
    return True


def check_key_forms(keys: list, request: str, resource: str, primary_key: Any, kind: Callable[[], str | None],
                    types: set | None = None) -> None:
    """Stops a load whose text key a numeric key column would read as another key: "1_0" and 10 (or "٣" and 3) were
    one row, without a word (helper-138). ``kind``: the key column's type, asked only of a page holding text keys;
    ``types``: the keys' types, where the caller has them."""
    types = set(map(type, keys)) if types is None else types  # in C: a page of integers costs a microsecond
    if tuple in types:  # a key of several fields: each field holding integers on the page, as one key (helper-139)
        fields = list(primary_key) if isinstance(primary_key, (list, tuple)) else []
        for i, parts in enumerate(zip(*(key for key in keys if type(key) is tuple))):
            check_key_forms(list(parts), request, resource, fields[i] if i < len(fields) else primary_key, lambda: None)
        return
    if str not in types:
        return
    # untyped yet: the first key types the column, as dlt types it ("abc", 7, "1_000" is a text column: helper-139)
    column = kind() or ("bigint" if type(keys[0]) is int else None)
    if column not in ("bigint", "double"):
        return  # a text column keeps them apart
    at = next((i for i, key in enumerate(keys) if type(key) is str and odd_number(key, column)), None)
    if at is not None:
        raise LoadError(
            f"Resource '{resource}': the primary key {primary_key!r} is {shown(keys[at])} in record {at + 1} on "
            f"{request}, text the key's {column} column reads as the number {coerced_value(keys[at], column)!r}, "
            "though it is written as none is (other digits than 0-9, an underscore or a base prefix): it would be "
            "one row with the record of that number. Nothing from this run was committed.",
            guidance=f"Declare the key as text (\"columns\": {{\"{primary_key}\": {{\"data_type\": \"text\"}}}}) to "
            "keep such keys apart, and run a full refresh once where the table holds the key already. If the API "
            "sends such keys only by mistake, this is a problem of its data.", resource=resource, request=request)


def check_keys(keys: list, request: str, resource: str, primary_key: Any, kind: Callable[[], str | None]) -> None:
    """A record without its primary key cannot be merged (nor counted): it stops the load. So does a key written as a
    float past 2**53, which a JSON reader holds only roughly: the update of 9007199254740993, written with ".0", was
    merged into a row 9007199254740992 the API never had, beside the old row (helper-138); and text the key column
    reads as another key (``check_key_forms``)."""
    types = set(map(type, keys))  # once a page, for both checks
    if types <= _PLAIN_KEYS:  # no None, float or tuple: nothing to look at key by key
        return check_key_forms(keys, request, resource, primary_key, kind, types)
    at = next((i for i, k in enumerate(keys) if k is None or _inexact(k)
               or (isinstance(k, tuple) and (None in k or any(map(_inexact, k))))), None)
    if at is None:
        return check_key_forms(keys, request, resource, primary_key, kind, types)
    if keys[at] is not None and not (isinstance(keys[at], tuple) and None in keys[at]):
        raise LoadError(
            f"Resource '{resource}': the primary key {primary_key!r} is {shown(keys[at])} in record {at + 1} on "
            f"{request}: a number written with a fraction or an exponent past 2**53, which JSON readers hold only "
            "roughly, so keys next to it read as one number and a row could be merged into another's. Nothing from "
            "this run was committed.", guidance="Ask the API's provider to send such ids as integers (without \".0\" "
            "or an exponent) or as text. If the API writes them so only by mistake, this is a problem of its data.",
            resource=resource, request=request)
    raise missing_key(at, request, resource, primary_key, keys[at])


class KeysKept:
    """A step behind a resource's filter steps: the records the pages held without their key were left out of the
    key count (a filter dropping an API's summary rows, as dlt loads it, was refused: helper-145); one that passed
    the steps still stops the load, as the pager stops it for a resource without a filter."""

    def __init__(self, resource: str, primary_key: Any, keys_of: Callable[[list], list],
                 requests: PageRequests) -> None:
        self.resource, self.primary_key, self.keys_of, self.requests = resource, primary_key, keys_of, requests

    def __call__(self, item: Any) -> Any:
        rows = item if isinstance(item, list) else [item]
        if isinstance(item, (list, dict)):
            keys = self.keys_of(rows)
            at = next((i for i, key in enumerate(keys) if not key_present(key)), None)
            if at is not None:
                raise missing_key(at, self.requests.of(rows, at)[0][1] or "a page", self.resource, self.primary_key,
                                  keys[at])
        return item


def key_present(key: Any) -> bool:
    """Whether a key, as ``Tally.keys_of`` gives it, holds a value in every part."""
    return key is not None and not (isinstance(key, tuple) and None in key)


def unhashable_key(keys: list, request: str, resource: str, primary_key: Any) -> LoadError | None:
    """The error for a key sent as an object or a list (no set holds it: the tally's ``TypeError``), or None."""
    at = next((i for i, k in enumerate(keys)
               if any(isinstance(p, (dict, list)) for p in (k if isinstance(k, tuple) else (k,)))), None)
    if at is None:
        return None
    return LoadError(
        f"Resource '{resource}': the primary key {primary_key!r} is {keys[at]!r} in record {at + 1} on "
        f"{request}, an object or a list, which cannot identify a row. Nothing from this run was committed.",
        guidance="Set primary_key to the API's field that holds each record's id as a number or text (a field "
        "inside the object, say). If the API sends ids this way only sometimes, this is a problem of its data.",
        resource=resource, request=request)


def _key_values(record: Any, primary_key: Any) -> str:
    """``id=350`` (``a=1, b=2`` for a key of several fields) as the record holds its key, found in the API's
    naming too (``userId`` for a key declared ``user_id``); empty where the record lacks a part."""
    if not isinstance(record, dict):
        return ""
    wanted = [primary_key] if isinstance(primary_key, str) else list(primary_key or ["id"])
    plain = {"".join(filter(str.isalnum, str(field))).lower(): field for field in record}
    fields = [key if key in record else plain.get("".join(filter(str.isalnum, str(key))).lower()) for key in wanted]
    return "" if None in fields else ", ".join(f"{field}={shown(record[field])}" for field in fields)


def not_a_timestamp(page: list, at: int, field: str, request: str, resource: str, primary_key: Any) -> LoadError:
    """The ``LoadError`` for a cursor value in a column declared a timestamp that is none."""
    return bad_value(BadValue(field, at, "a timestamp", f"has {page[at].get(field)!r}",
                              f"Declare {field!r} as text if the API sends such values."),
                     page, [(len(page), request)], resource, primary_key)


def bad_value(bad: BadValue, rows: list, sources: list[tuple[int, str]], resource: str, primary_key: Any) -> LoadError:
    """The ``LoadError`` for a value the config's columns refuse, naming record, column and request."""
    request, start = "", 0
    for size, request in sources:
        if bad.index < start + size:
            break
        start += size
    record = rows[bad.index] if 0 <= bad.index < len(rows) else {}
    named = _key_values(record, primary_key)
    which = f"the record with {named}" if named else f"record {bad.index - start + 1} of the page"
    return LoadError(
        f"Resource '{resource}': {which}{f' on {request}' if request else ''} {bad.problem} in column {bad.column!r}, "
        f"{bad.because}.",
        guidance=bad.guidance, resource=resource, column=bad.column, **({"request": request} if request else {}))


class PageRequests:
    """The request each record of the latest pages came from: dlt's steps see records, not requests, and a
    step's error (a declared column refusing a value) names the request with it. Recording a page costs one
    append on every page's path; the record is looked for among the kept pages only when an error names it."""

    # records, and at least KEPT pages: more than stand between the pager and the steps, a group of CONVERT_ROWS
    # records included (8 pages named the request of a record in the last 8 pages of a group of 20 only: helper-130)
    KEPT, KEPT_ROWS = 8, 2_500

    def __init__(self) -> None:
        self._pages: deque[tuple[list, str]] = deque()
        self._rows = 0

    def saw(self, rows: list, request: str) -> None:
        self._pages.append((rows, request))
        self._rows += len(rows)
        while len(self._pages) > self.KEPT and self._rows - len(self._pages[0][0]) >= self.KEPT_ROWS:
            self._rows -= len(self._pages.popleft()[0])

    def of(self, rows: list, index: int) -> list[tuple[int, str]]:
        """``bad_value``'s sources for the record at ``index`` of ``rows`` (a step's item): the same dict object
        as the page held, else an equal one: a map step that copies its record (``{**r}``) made a new dict, whose
        refusal named no request (helper-133). A record a step changed is not found."""
        row = rows[index] if 0 <= index < len(rows) else None
        request = next((sent for page, sent in reversed(self._pages) if any(r is row for r in page)), "")
        if not request and row is not None:
            request = next((sent for page, sent in reversed(self._pages) if any(r == row for r in page)), "")
        return [(len(rows), request if row is not None else "")]


def keyed(page: list, keys_of: Callable[[list], list]) -> list:
    """The records of ``page`` that hold their key (all of them, usually: the page itself)."""
    keys = keys_of(page)
    if all(map(key_present, keys)):
        return page
    return [r for r, key in zip((r for r in page if isinstance(r, dict)), keys) if key_present(key)]
