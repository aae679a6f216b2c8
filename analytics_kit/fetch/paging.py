"""A resource's pages: how they are fetched, checked and handed to dlt.

dlt's ``RESTClient.paginate`` is sequential: each request waits for the previous response,
so with 50 ms of latency 1,000 pages take over 50 s. For an offset listing with a total,
later offsets are known once the first page arrives, so the kit replaces the client's
``paginate`` (the call dlt's ``paginate_resource`` makes after it has filled in the
incremental parameters) with ``KitPaginate``, which pages such listings itself
(``offsets.OffsetPass``: a bounded pool, pages yielded in offset order, the total checked
against the pages) and leaves every other paginator to dlt.

On the way to dlt every page is checked and prepared: timestamp cursors are rewritten to
one form that compares as instants (``cursors``), a listing that repeats itself is
stopped, distinct keys are counted, and records are converted to Arrow in groups.

Each worker has its own retrying session (``requests`` sessions are not meant to be shared
between threads), built by the same factory as the resource's, so every request is retried and
counted; a 429 pauses all of them (``retry.Gate``).
"""

from __future__ import annotations

import copy
import functools
import logging
from typing import Any, Callable, Iterator

import pyarrow as pa
from dlt.sources.helpers.rest_client.client import RESTClient
from requests import Response, Session

from analytics_kit import seam
from analytics_kit.errors import tag_request
from analytics_kit.fetch import cursors, realigned, vouched
from analytics_kit.fetch.arrow_tables import TypeChanged
from analytics_kit.fetch.coercion import BadValue
from analytics_kit.fetch.cursor_origin import mark_run_start
from analytics_kit.fetch.batches import tables
from analytics_kit.fetch.field_names import FieldNames
from analytics_kit.fetch.kept_changing import (keys_again, kept_changing, not_paged_again, purged_meanwhile,
                                               same_twice, served_again, unsettled, why_again)
from analytics_kit.fetch.newest import Rising, store_newest
from analytics_kit.fetch.offset_pages import offsets_ok
from analytics_kit.fetch.offsets import OffsetPass
from analytics_kit.fetch.page_checks import (PageRequests, bad_value, check_cursor_kind, check_keys,
                                             cursor_start, endless, keyed, links_requestable, not_a_timestamp,
                                             repeating, unhashable_key)
from analytics_kit.fetch.records import ends_of, is_simple, parse_body, select_records
from analytics_kit.fetch.replace import MergeNeeded, Replace
from analytics_kit.fetch.stats import LoadStats
from analytics_kit.fetch.tally import Tally, joined
from analytics_kit.fetch.transport import request_text
from analytics_kit.redact import Redactor

# Converting records to Arrow costs ~0.24 ms a call on top of ~0.12 ms per 100 rows: one
# 100-row page at a time took three times as long as groups of this many rows.
CONVERT_ROWS = 2_000
# Passes over a listing that keeps shifting under the pager before the load gives up.
MAX_PASSES = 3
# Identical pages in a row (after the first) that mean the API ignores the paging parameter.
MAX_REPEATS = 2
# Pages of one pass through dlt's own paginators (cursor, link, page number), which have no total to check
# against: 10,000,000 records at 100 a page. Every run's requests are bounded.
MAX_PAGES = 100_000

logger = logging.getLogger(__name__)


class KitPaginate:
    """Stands in for one resource client's ``paginate``; pages come out as ``convert`` makes them.

    ``convert`` turns a list of records (several pages' worth) into what the resource yields:
    an arrow table, or the list itself; ``None`` from it drops them. Without ``convert``
    the pages go on as they come. Offset listings with a total are paged by ``OffsetPass``
    (``concurrency`` workers; 1 fetches one page at a time); other paginators by dlt.
    ``cursor`` is the incremental cursor field and whether it is declared a timestamp;
    with ``newest_field`` (the cursor field), an offset listing's newest cursor is read before
    its pages, and the run stores none later (see ``newest``).
    """

    def __init__(self, client: RESTClient, *, resource: str, redactor: Redactor, primary_key: Any, concurrency: int,
                 new_session: Callable[..., Session], convert: Callable[[list], Any] | None,
                 on_arrow_page: Callable[[int], None] | None = None, cursor: tuple[str, bool] | None = None,
                 stats: LoadStats | None = None, incremental: Any = None,
                 naming: Callable[[str], str] = str, rewrite_cursor: bool = True,
                 replace: Replace | None = None, fields: FieldNames | None = None, repage: bool = True,
                 key_kind: Callable[[], str | None] = lambda: None, newest_field: str | None = None,
                 start: tuple[str, Callable[[Any], Any]] | None = None, shares: str | None = None,
                 requests: PageRequests | None = None, filtered: bool = False, hooked: bool = False) -> None:
        self.client, self.requests = client, requests or PageRequests()  # where steps' errors find a record's request
        self.filtered = filtered  # a filter step may drop records: keyless ones uncounted (KeysKept), keys no rows
        self.hooked = hooked  # a response_actions function may take records out of a page (page_cap)
        self.shares = shares  # the table it loads with other resources: keys it proves distinct may not be so there
        self.start = start  # the start parameter's name, and how a cursor is written into it (see vouched)
        self.newest_field = newest_field
        self.replace = replace  # a full refresh loaded as a replace (see Replace)
        self.repage = repage  # whether the load keeps one row per key of a listing paged twice
        self.key_kind = key_kind  # the type the table stores the key in (tally.key_column_kind)
        # False when the config's incremental has a convert: it reads the API's own form
        self.rewrite_cursor = rewrite_cursor
        self.naming = naming  # dlt's column names for the API's fields
        self.resource = resource
        self.redactor = redactor
        self.primary_key = primary_key
        self.on_arrow_page, self.sequential, self.concurrency = on_arrow_page, client.paginate, concurrency
        self.new_session = new_session
        self.convert = convert
        self.fields = fields  # None where the resource's processing_steps may rename fields: checked behind them
        self.cursor = cursor
        self.stats = stats if stats is not None else LoadStats()
        self.incremental = incremental  # dlt's Incremental, for the cursor's start value

    def __call__(self, path: str = "", method: str = "GET", params: dict | None = None, json: Any = None,
                 auth: Any = None, paginator: Any = None, data_selector: Any = None, hooks: Any = None,
                 headers: dict | None = None, *, data: Any = None, **kwargs: Any) -> Iterator[Any]:
        outcome: dict = {}
        return self._batched(self._pages(path, method, params, json, auth, paginator, data_selector, hooks,
                                         headers, data, kwargs, outcome), outcome)

    def install(self) -> "KitPaginate":
        """Becomes the client's ``paginate``, which rest_api calls once its incremental params
        are set; dlt's own paginate, kept for other paginators, selects records through the kit."""
        self.sequential = seam.replace_paginate(self.client, self)
        seam.replace_extract_response(self.client, self._extract)
        return self

    def warn(self, text: str) -> None:
        """Something the run should report: logged, and listed in the ``LoadReport``."""
        self.stats.warn(self.resource, text)

    def _extract(self, response: Response, data_selector: Any) -> list:
        try:
            # as the offset pass reads its pages: strictly (requests' json() passed invalid UTF-8), big integers whole
            body = parse_body(response.content, response.status_code)
            return select_records(body, data_selector, response, self.resource, self.redactor)
        except Exception as error:
            tag_request(error, request_text(response.request, self.redactor))
            raise

    # -- records to what dlt gets -----------------------------------------------------------------

    def _converted(self, pages: Iterator[tuple[list, str]]) -> Iterator[Any]:
        """The pages' records, converted in groups of about CONVERT_ROWS rows."""
        waiting: list = []
        sources: list[tuple[int, str]] = []
        for page, request in pages:
            waiting.extend(page)
            sources.append((len(page), request))
            if len(waiting) >= CONVERT_ROWS:
                yield from self._convert(waiting, sources)
                waiting, sources = [], []
        if waiting:
            yield from self._convert(waiting, sources)

    def _convert(self, rows: list, sources: list[tuple[int, str]]) -> Iterator[Any]:
        try:
            out = self.convert(rows)  # type: ignore[misc]
        except TypeChanged as change:  # dlt's normaliser handles the group: a variant column for an undeclared one,
            # as without the kit; a declared one's value is refused behind dlt's steps (its incremental may drop it)
            logger.info("%s: %s; this group of records goes to dlt's normaliser", self.resource, change)
            self.stats.changed_types[self.resource].add(change.column)  # named if the normaliser fails on them
            out = rows
        except BadValue as bad:
            raise bad_value(bad, rows, sources, self.resource, self.primary_key) from None
        if isinstance(out, pa.Table):
            if self.on_arrow_page is not None:
                for size, _ in sources:
                    self.on_arrow_page(size)
            yield out
        elif out is not None:
            # records that stay dicts go on page by page, as dlt's own paginate yields them
            start = 0
            for size, _ in sources:
                if size:
                    yield out[start:start + size]
                start += size

    def _batched(self, pages: Iterator[Any], outcome: dict) -> Iterator[Any]:
        yield from tables(pages, outcome)
        if "newest" in outcome:  # dlt's incremental step has taken every item: its cursor is final
            store_newest(self.resource, *outcome["newest"])

    # -- passes ------------------------------------------------------------------------------------

    def _pages(self, path: str, method: str, params: dict | None, json: Any, auth: Any, paginator: Any,
               data_selector: Any, hooks: Any, headers: dict | None, data: Any, kwargs: dict,
               outcome: dict) -> Iterator[Any]:
        """All pages, in passes until one pass saw as many distinct records as the API's total.

        An offset listing ordered by ``updated_at`` shifts when a record is updated while it is paged: the record
        moves to the end and the one after its old place slides into a page already fetched, never seen, its cursor
        behind the run's. Fewer distinct keys than a total that matched the pages (without a total, a key seen twice)
        is the sign. The kit then pages again (the merge absorbs the repeats), and then looks up the keys the last
        pass missed that an earlier one saw (``vouched``). ``outcome["distinct"]``: the keys, where one saw each once.
        """
        if self.cursor is not None:  # when this run started, and from which API, kept with the cursor
            mark_run_start(self.resource, self.client.base_url, path, self.stats.started)
        field = self.newest_field
        start = seam.running_cursor(self.resource, field) if field else None
        newest = None  # the listing's newest cursor, read before the first pass's pages
        # per pass: whether it went past that cursor (records updated or added while paged), None where it
        # could not tell (no cursor read, or its values not in ascending order)
        moved: list[bool | None] = []
        reference: Any = None
        seen: set[str] = set()
        passes: list[Tally] = []  # every pass's keys: a key staged twice is one row in the table (the report's)
        # for a pass of another shape (realigned.py)
        listing = functools.partial(self._listing, path, method, params, json, auth, data_selector=data_selector,
                                    hooks=hooks, headers=headers, data=data, kwargs=kwargs)
        self.stats.keys(self.resource, None)  # an abandoned extraction's count is not this one's
        for attempt in range(1, MAX_PASSES + 1):
            tally = Tally(self.primary_key, self.naming)
            rising = Rising(field) if field else None
            if attempt > 1 or self.resource not in self.stats.children or not self.stats.passes[self.resource]:
                self.stats.paged(self.resource)  # a child's listing per parent record is not its listing paged again
            pages = self._checked(self._one_pass(path, method, params, json, auth, paginator, data_selector,
                                                 hooks, headers, data, kwargs, tally,
                                                 newest_field=field if attempt == 1 else None), tally, rising, newest)
            # converted within the pass: a record the converter refuses (a NULL key) is
            # reported as such, not as the missing record it makes the tally count
            yield from self._converted(pages) if self.convert else (page for page, _ in pages)
            passes.append(tally)
            if tally.short_of is not None:  # records skipped at page boundaries, or a total too high
                extra = yield from realigned.second_look(self, tally, attempt, paginator or self.client.paginator,
                                                         listing, outcome)
                if extra is not None:
                    passes.append(extra)
            if self.shares and self.repage and tally.key is not None:  # each key once across the table's resources
                self.stats.shared.setdefault(self.shares, Tally(self.primary_key, self.naming)).absorb(tally)
            union, kind = None, self.key_kind()
            if len(passes) > 1 or tally.distinct() < tally.rows:
                every = joined(passes, self.primary_key, self.naming)
                union = every.distinct_as(kind)  # as the table's key column holds them
                self._rows_are_keys(union)
            # a page served again at another offset hid the records it was to hold, with or without a total
            missing, shrank, copied = tally.missing(kind, shifts=self.repage), tally.shrank, tally.copies
            if (missing or shrank or copied) and not (self.repage and tally.key is not None):
                if missing and not shrank and not copied and tally.key is not None:  # looked at, not loaded (-158)
                    yield from realigned.fill_gaps(self, passes, missing, paginator or self.client.paginator, listing,
                                                   load=False)
                self.warn(not_paged_again(missing, shrank, copied))
                missing, shrank, copied = 0, None, []
            if tally.echoes and tally.total is None:  # no count to be short of: said, not paged again (helper-113)
                self.warn(keys_again(tally.echoes))
            proven = len(passes) == 1 and tally.distinct() == tally.rows and tally.one_kind(kind)
            if union is None and not proven and (held := tally.distinct_as(kind)) < tally.rows:
                self._rows_are_keys(held)
            if self.replace is not None and self.primary_key and not (proven and not missing and not shrank):
                why = (f"the API's total fell from {shrank[0]} to {shrank[1]} while the listing was paged" if shrank
                       else tally.unproven(bool(missing)))
                if not self.replace.switchable:
                    raise MergeNeeded(self.resource, why)
                # the staged rows are what dlt's merge takes: it dedups them, paged on as a merge pages
                outcome["merge"] = self.stats.merge_instead(self.resource, why)
                self.replace = None
            if attempt == 1:  # each pass is weighed against the newest read before the pages, then where the last ended
                newest = reference = tally.newest
            rose = rising is not None and rising.holds
            moved.append(rising.passed(reference) if rose and reference is not None else None)
            reference = rising.last if rose else None
            if rose and newest is not None:
                outcome["newest"] = (field, start, newest)
            else:
                outcome.pop("newest", None)
            if not missing and not shrank and not copied:
                if proven and not self.shares:
                    outcome["distinct"] = tally.rows
                if fell := next((p.shrank for p in passes[:-1] if p.shrank), None):  # said on stderr only (helper-147)
                    self.warn(purged_meanwhile(fell, attempt))
                return
            # not where the passes saw more keys than the listing holds: records were purged, and a purged key
            # seen by the last pass could make up the count for one that no pass saw
            if (attempt > 1 and missing and not shrank and not copied and "newest" in outcome and self.start is not None
                    and tally.total is not None and union <= tally.total):
                answers = yield from vouched.look_up(self, passes, missing, functools.partial(listing,
                                                                                          paginator=paginator))
                if answers is not None:
                    every = joined([*passes, answers], self.primary_key, self.naming)
                    self._rows_are_keys(every.distinct_as(kind))
                    return
            signature = tally.signature()
            if signature in seen:
                # The same keys in the same order twice: the listing repeats keys (a change feed's versions), dlt's
                # merge keeps one; unless a page came again at another offset, stale, hiding records (helper-102)
                if copied:
                    raise served_again(self.resource, copied)
                if missing and not shrank and (yield from realigned.fill_gaps(
                        self, passes, missing, paginator or self.client.paginator, listing)):
                    return  # an API skipping records at one page boundary (helper-153)
                self.warn(same_twice(missing, shrank, tally.distinct()))
                return
            seen.add(signature)
            if attempt > 1 and tally.total is None and not copied:  # no count: a busy feed never settles (helper-113)
                self.warn(unsettled(missing))
                return
            if attempt < MAX_PASSES:
                logger.warning("%s: %s; paging again, pass %d of %d", self.resource,
                               why_again(missing, shrank, copied, tally.total is not None), attempt + 1, MAX_PASSES)
        if passes[-1].copies:
            raise served_again(self.resource, passes[-1].copies)
        raise kept_changing(self.resource, passes, moved, union)  # union: set in every pass after the first

    def _rows_are_keys(self, distinct: int) -> None:
        """The report's rows are the distinct keys, unless a filter drops records (25 read, 13 kept: helper-150)."""
        if not self.filtered:
            self.stats.keys(self.resource, distinct)

    def _checked(self, pages: Iterator[tuple[list, str]], tally: Tally, rising: Rising | None = None,
                 newest: Any = None) -> Iterator[tuple[list, str]]:
        """The pages with canonical cursors, counted, and stopped if the listing repeats itself; with ``newest``
        (the listing's newest cursor read before the first pass), the keys of records past it are noted."""
        field, required = self.cursor if self.cursor else (None, False)
        kinds_checked = field is None or self.incremental is None
        epoch_text = required and isinstance(cursor_start(self.resource, field, self.incremental), str)
        previous: Any = None
        repeats = 0
        for count, (page, request) in enumerate(pages, 1):
            if count > MAX_PAGES:
                raise endless(self.resource, MAX_PAGES, request)
            ends = getattr(page, "ends", None)  # before the cursors are rewritten: as the API sent it
            ends = ends_of(page) if ends is None else ends  # a page of dlt's paginators (helper-112)
            if field is not None and self.rewrite_cursor:  # Unix seconds beside a text start: as text, instants
                bad = cursors.canonical_rows(page, field, required, epoch_text)
                if bad is not None:
                    raise not_a_timestamp(page, bad, field, request, self.resource, self.primary_key)
            if not kinds_checked:
                kinds_checked = check_cursor_kind(page, field, request, self.resource, self.incremental)
            if self.fields is not None:
                self.fields.check(page, request)
            if rising is not None:
                rising.see(page)
                if page:
                    tally.mark(rising.first if rising.holds else None)
            counted = keyed(page, tally.keys_of) if self.filtered and self.primary_key else page
            tally.keyless += len(page) - len(counted)
            try:
                keys = tally.see(counted)
            except TypeError as error:  # a key no set holds: named, here rather than in every page's check_keys
                raise unhashable_key(tally.keys_of(page), request, self.resource, self.primary_key) or error
            tally.served(ends, keys, request)
            if newest is not None and rising is not None:
                tally.note_newer(counted, keys, rising.field, newest)
            if self.primary_key and page:
                check_keys(keys, request, self.resource, self.primary_key, self.key_kind)
            if page and keys == previous:
                repeats += 1
                if repeats >= MAX_REPEATS:
                    raise repeating(self.resource, repeats + 1, request)
            else:
                repeats = 0
            previous = keys
            self.requests.saw(page, request)
            self.stats.arrive(self.resource, len(page))
            yield page, request

    def _listing(self, path: str, method: str, params: dict | None, json: Any, auth: Any, paginator: Any,
                 data_selector: Any, hooks: Any, headers: dict | None, data: Any, kwargs: dict, *,
                 newest_field: str | None = None, start_at: Any = None, offset: int | None = None) -> OffsetPass:
        """An offset pass over the listing; ``start_at``: from that cursor on (the start parameter set to it);
        ``offset``: from that offset on, not the paginator's first."""
        if start_at is not None and self.start is not None:
            params = {**(params or {}), self.start[0]: self.start[1](start_at)}
        return OffsetPass(self, paginator or copy.deepcopy(self.client.paginator), kwargs, dict(
            path_or_url=path, method=method, params=params, json=json, data=data, auth=auth or self.client.auth,
            headers=headers, hooks=hooks if hooks and "response" in hooks else {
                **(hooks or {}), "response": [seam.response_handler(self.client)]}),
            data_selector or self.client.data_selector, newest_field, offset)

    def _one_pass(self, path: str, method: str, params: dict | None, json: Any, auth: Any, paginator: Any,
                  data_selector: Any, hooks: Any, headers: dict | None, data: Any, kwargs: dict,
                  tally: Tally, newest_field: str | None = None) -> Iterator[tuple[list, str]]:
        paginator = paginator if paginator else copy.deepcopy(self.client.paginator)
        # a wildcard or filter selector may leave pages short or empty mid-listing: the kit's
        # offset pass would read that as the end or a hole; dlt's pager steps by limit
        if not offsets_ok(paginator) or not is_simple(data_selector or self.client.data_selector):
            with links_requestable(self.resource, paginator):
                for page in self.sequential(path=path, method=method, params=params, json=json, auth=auth,
                                            paginator=paginator, data_selector=data_selector, hooks=hooks,
                                            headers=headers, data=data, **kwargs):
                    yield page, request_text(page.response.request, self.redactor)
            return
        listing = self._listing(path, method, params, json, auth, paginator, data_selector, hooks, headers, data,
                                kwargs, newest_field=newest_field)
        for page in listing.run():
            yield page, page.request
        tally.newest = listing.newest
        # only a total that matched the pages can tell records that shifting offsets skipped;
        # a listing capped with maximum_offset, or started past its first record, is partial on purpose
        tally.total = (listing.consistent_total if paginator.maximum_value is None
                       and paginator.initial_value == paginator.base_index else None)
        tally.shrank = listing.totals.fell(repeated=tally.distinct() < tally.rows)
        tally.short_of, tally.by_offset = listing.short_of, True
        tally.totals = listing.totals.values()
