"""One pass over an offset listing: pages fetched by a bounded pool, handed on in offset order.

An API's ``total`` is a hint, checked against the pages, never a stop sign:

- pages are requested ahead, up to ``2 * workers`` at once, as far as the total says;
- the listing ends at an empty page, or at a short page that ends where the total says
  (two signals that agree). A last page that is full is followed by one more request;
- a page past the total that holds records means the total was too low: paging goes on,
  and the run says so. An empty page before the total means it was too high (or absurd,
  10**12): paging stops there, and the run says so. A total that is negative or not a
  number is named and ignored;
- a short page followed by one that holds records means the API serves fewer records than
  ``limit`` per page: the offsets between were skipped, so the load fails and says which
  limit to set. Unless the short page, asked again, holds more: the listing grew at its end;
- paging past the total stops with an error after ``MAX_PAGES_PAST_TOTAL`` pages, and the
  requests in flight never exceed the window, so no run sends an unbounded number of them.

dlt's ``OffsetPaginator`` stops where the total says: a total of 150 loaded 200 of 1,000
records, a negative one a single page, and reported success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import parse_qsl, urlencode

from dlt.sources.helpers.rest_client.auth import APIKeyAuth, BearerTokenAuth, HttpBasicAuth
from dlt.sources.helpers.rest_client.exceptions import IgnoreResponseException
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
from requests import Session

from analytics_kit import seam
from analytics_kit.errors import tag_request
from analytics_kit.fetch.coercion import shown
from analytics_kit.fetch.deadlines import PassEnded, cut, join
from analytics_kit.fetch.newest import last_page_offset, newest_of
from analytics_kit.fetch.page_checks import (endless, listing_gap, nothing_but_a_total, one_object, page_cap,
                                             uneven_pages)
from analytics_kit.fetch.purges import Totals
from analytics_kit.fetch.offset_pages import Page, done, usable_total
from analytics_kit.fetch.records import error_beside, parse_body, select_records
from analytics_kit.fetch.shared_cookies import jar_owns, with_jar
from analytics_kit.fetch.transport import request_text

if TYPE_CHECKING:
    from analytics_kit.fetch.paging import KitPaginate

# An API that answers in under this long is limited by CPU, not by waiting: on it more workers only fight over the
# GIL (and, for a local API, over the same cores), and two (one waiting on the API while the other's page is parsed)
# are fastest. Measured on 100,000 events from the demo API: 4.9 s with 1 worker, 3.4 s with 2, 4.1 s with 4.
FAST_RESPONSE_SECONDS = 0.02
FAST_API_WORKERS = 2
# Auth that adds the same key or header to every request: such requests can be copied.
STATIC_AUTH = (APIKeyAuth, BearerTokenAuth, HttpBasicAuth)
# Pages past the API's total, or in all without a usable total, before the pass gives up:
# 1,000,000 records at limit 100. Every run's requests are bounded by it.
MAX_PAGES_PAST_TOTAL = 10_000
# Times a pass follows a listing that grows at its end while paged (``OffsetPass._grown``) before it ends there: a feed
# growing faster than it is paged is loaded up to that point, and the next run goes on from it.
MAX_GROWTH = 10
logger = logging.getLogger(__name__)


class OffsetPass:
    """One pass over the pages of an offset listing; ``run()`` yields them in offset order.

    After the pass, ``consistent_total`` is the API's total if the pages ended exactly where
    it said, else None: only a total that matched the pages can tell records skipped by
    offsets shifting under the pager (see ``KitPaginate._pages``). With ``newest_field``,
    ``newest`` is the listing's newest cursor, read before the pages (see ``newest``).
    """

    def __init__(self, owner: KitPaginate, paginator: OffsetPaginator, send_kwargs: dict,
                 request_kwargs: dict, data_selector: Any, newest_field: str | None = None,
                 start: int | None = None) -> None:
        self.owner = owner
        # the first offset asked: the paginator's, or one of the kit's (a pass half a page later: realigned.py)
        self.start = paginator.initial_value if start is None else start
        self.newest_field = newest_field
        self.newest: Any = None
        self.paginator = paginator
        self.send_kwargs = send_kwargs
        self.request_kwargs = request_kwargs
        self.data_selector = data_selector
        self.workers = 1  # until the first page has answered
        self.settings: dict | None = None
        self.first_response: float | None = None
        self.template: tuple | None = None
        self.local = threading.local()
        self.stopping = threading.Event()  # set while a pass ends: its workers stop waiting to retry
        self.total: int | None = None  # the latest usable total
        self.first_total: int | None = None
        self.consistent_total: int | None = None
        self.total_before: int | None = None  # the total before the latest page's
        self.totals = Totals()  # for the sign of a purge (``Totals.fell``)
        self._named_bad_total = False
        self.grew = 0  # times a short page asked again held more: the listing grew at its end while paged
        self.short_of: tuple[int, int, str] | None = None  # (total, where the pages ended, the last request)

    # -- requests --------------------------------------------------------------------------------

    def _session(self) -> Session:
        session = getattr(self.local, "http", None)
        if session is None:
            session = self.local.http = self.owner.new_session(sleep=self._sleep)
        return session

    def _sleep(self, seconds: float) -> None:
        """A worker's wait for a retry or a 429's pause, cut short when the pass ends: an interrupted
        load waited for every worker's backoff (up to a minute with Retry-After) before it stopped."""
        if self.stopping.wait(seconds):
            raise PassEnded(f"the listing's pass ended while this request waited {seconds:g} s to be retried")

    def _prepare(self, offset: int, session: Session) -> Any:
        """The request for ``offset``: the first one prepared in full, later ones copied from it.

        Preparing a request (URL parsing and quoting, header and cookie merging, auth) cost
        about as much as converting the page; pages differ only in ``offset``. With an auth
        that only adds a fixed key or header, the kit copies the first request and writes the
        new offset into its query string; any other auth is prepared afresh each time. Either
        way each attempt takes its cookies from the jar as it is then (``with_jar``).
        """
        p = self.paginator
        if self.template is not None:
            base, pairs = self.template[1], self.template[2]
            copy_ = self.template[0].copy()
            copy_.url = base + "?" + urlencode([(k, offset if k == p.param_name else v) for k, v in pairs])
            return with_jar(copy_, self.template[3], self.workers)
        params = dict(self.request_kwargs["params"] or {})
        params[p.param_name] = offset
        params[p.limit_param] = p.limit
        request = seam.create_request(self.owner.client, **{**self.request_kwargs, "params": params})
        prepared = session.prepare_request(request)
        # a Cookie header the config or the auth wrote is sent as it is, as requests does
        jar = session.cookies if jar_owns(prepared, session.cookies) else None
        if isinstance(request.auth, STATIC_AUTH) or request.auth is None:
            base, _, query = prepared.url.partition("?")
            self.template = (prepared, base, parse_qsl(query, keep_blank_values=True), jar)
        return with_jar(prepared, jar, self.workers)

    def fetch(self, offset: int, session: Session | None = None) -> Page:
        """The page at ``offset``; an error raised for it names its request."""
        join(self.stopping)
        session = session or self._session()
        prepared = self._prepare(offset, session)
        shown = request_text(prepared, self.owner.redactor)
        try:
            if self.settings is None:
                # proxies and certificates from the environment: the same for every page of the
                # pass, and looking them up costs about as much as parsing a page
                self.settings = session.merge_environment_settings(prepared.url, {}, None, None, None)
            sent = time.monotonic()
            try:
                response = session.send(prepared, **{**self.settings, **self.send_kwargs})
            except IgnoreResponseException:
                return Page([], offset=offset, request=shown, ignored=True, sent=sent)
            if self.first_response is None:
                self.first_response = response.elapsed.total_seconds()  # the API's own answer time
            body = parse_body(response.content, response.status_code)
            if not self.data_selector:
                self.data_selector = self.owner.client.detect_data_selector(response)
            rows = select_records(body, self.data_selector, response, self.owner.resource, self.owner.redactor)
            short = len(rows) < self.paginator.limit  # where an error beside the records may say why
            said = error_beside(body, self.data_selector, self.owner.redactor) if short else None
            if self.paginator.total_path is None:  # no total configured: pages until an empty one
                return Page(rows, offset=offset, request=shown, sent=sent, said=said)
            totals = seam.jsonpath.find_values(self.paginator.total_path, body)
            # dlt's error where the listing's first page has none (total_path is wrong); a later page's lack, an
            # empty page's, or the first page's asked again, is a glitch: as a total that is no count (helper-102,
            # helper-111: it failed the load)
            if ((not totals or totals[0] is None) and rows and offset == self.start
                    and self.owner.resource not in self.owner.stats.totals):
                seam.missing_total(self.paginator, body)
            return Page(rows, offset=offset, request=shown, total=totals[0] if totals else None, sent=sent, said=said)
        except Exception as error:
            tag_request(error, shown)
            raise

    # -- the listing -----------------------------------------------------------------------------

    def _see_total(self, page: Page) -> None:
        if self.paginator.total_path is None:
            return
        total = usable_total(page.total)
        if total is not None:
            # the latest page's: records added during the load are fetched too
            self.total_before, self.total = self.total, total
            self.totals.saw_total(page.received, page.sent, total, page.offset - self.paginator.base_index, len(page))
            self.owner.stats.total(self.owner.resource, total)
            if self.first_total is None:
                self.first_total = total
        elif not self._named_bad_total and (page or page.total is not None):  # an empty page may lack one
            self._named_bad_total = True
            said = (f"the API's total was missing or null on {page.request}" if page.total is None else
                    f"the API's total={shown(page.total, 40)} on {page.request} is not a plausible record count")
            self.owner.warn(f"{said}; paging until an empty page instead")

    def run(self) -> Iterator[Page]:
        p = self.paginator
        step, limit, maximum = p.value_step, p.limit, p.maximum_value
        # the first page: the resource's own session, the extracting thread
        started = time.perf_counter()
        page = self.fetch(self.start, self.owner.client.session)
        if (first_total := usable_total(page.total)) is not None:  # for the progress display, before the newest
            self.owner.stats.total(self.owner.resource, first_total)
        if self.newest_field is not None and not page.ignored:
            page = self._read_newest(page)
        self.owner.stats.waited(time.perf_counter() - started)
        workers = self.owner.concurrency
        if self.first_response is not None and self.first_response < FAST_RESPONSE_SECONDS:
            workers = min(workers, FAST_API_WORKERS)
        window = 2 * workers
        self.workers = workers
        pending: deque[Future] = deque()
        next_offset = self.start + step
        past_total = False  # a page beyond the total held records: it was too low
        pages_past = 0
        short: Page | None = None
        previous: Page | None = None
        pool: ThreadPoolExecutor | None = None
        try:
            while True:
                if page.ignored:
                    return
                # the highest of the total the pages before this one gave and its own
                expected = max((t for t in (self.total, usable_total(page.total)) if t is not None), default=None)
                # with no total, an empty page after a full one is the only end there is: asked again too (helper-107)
                if not page and short is None and (expected is None or page.offset < expected + p.base_index):
                    # an empty page before the total: the end, or a glitch with records after it? Its own total
                    # is not trusted to say: an API failing with an empty 200 said total=0 there, and the pass
                    # ended with a fifth of the listing (helper-102)
                    again = self._before_total(page, pending, step)
                    if again is not None:  # a glitch: its total, taken as the listing's, had it paged again
                        page = again
                        continue
                self._see_total(page)
                if not page or short is not None:
                    grown = self._empty(page, short, expected) if not page else self._grown(short, page, whole=True)
                    if grown is None:
                        return
                    if page:  # the page after the short one comes after the short one's tail
                        pending.appendleft(done(page))
                    else:  # the pages asked for after the short one were asked before the listing grew
                        for future in pending:
                            future.cancel()
                        pending.clear()
                        next_offset = grown.slot + step
                    page, short = grown, None
                    continue
                due = None if self.total is None else min(limit, self.total + p.base_index - page.offset)
                if page.one_object and due is not None and due > 1:
                    raise one_object(self.owner.resource, page, f"its total says {self.total:,}")
                end = page.offset + len(page)
                self.totals.saw_page(page.sent, end - p.base_index)
                if self.total is not None and end > self.total + p.base_index and not past_total:
                    if page.offset >= self.total + p.base_index and previous is not None and page.ends == previous.ends:
                        # an API that answers an offset past its end with its last page again
                        self.consistent_total = self.total
                        return
                    past_total = True
                    self.owner.warn(f"the API said total={self.total} but {page.request} returned records up to "
                                    f"offset {end}; paging on until an empty page")
                # counted from the first total: one that keeps growing ahead of the pages does
                # not make the listing endless
                if past_total or self.first_total is None or page.offset >= self.first_total + p.base_index:
                    pages_past += 1
                    if pages_past > MAX_PAGES_PAST_TOTAL:
                        beyond = (f"past its first total, {self.first_total}," if self.first_total is not None
                                  else "with no usable total,")
                        raise endless(self.owner.resource, MAX_PAGES_PAST_TOTAL, page.request, beyond)
                yield page
                previous = page
                if maximum is not None and page.slot + step >= maximum:  # a listing capped with maximum_offset
                    if end < page.slot + limit and end < maximum and self.grew < MAX_GROWTH and (  # (helper-128)
                            probe := self.fetch(end)) and not probe.ignored:
                        page = self._grown(page, probe)
                        continue
                    return
                if end < page.slot + limit:
                    if self.total is not None and end >= self.total + p.base_index:
                        self.consistent_total = self.total if end == self.total + p.base_index else None
                        return  # a short page where the total says the listing ends
                    short = page  # the next page tells whether the listing ended here
                # requested ahead as far as the total says; past it (or with no usable total),
                # within the window only
                stop = None if past_total or self.total is None else self.total + p.base_index
                if maximum is not None:
                    stop = maximum if stop is None else min(stop, maximum)
                if pool is None:
                    pool = ThreadPoolExecutor(workers, thread_name_prefix="kit-page")
                # after a short page one request tells whether the listing ended there: a first page of 1 record
                # asked 16 pages ahead of it where the API was slow to answer (helper-143)
                while len(pending) < (window if short is None else 1) and (stop is None or next_offset < stop
                                                                           or not pending):
                    if maximum is not None and next_offset >= maximum:
                        break
                    pending.append(pool.submit(self.fetch, next_offset))
                    next_offset += step
                    if stop is not None and next_offset >= stop:
                        break  # one request past the total at most: it checks the total
                if not pending:
                    return
                started = time.perf_counter()
                page = pending.popleft().result()
                self.owner.stats.waited(time.perf_counter() - started)
        finally:
            for future in pending:
                future.cancel()
            if pool is not None:
                # what the workers still fetch is not used: those waiting to retry give up, and
                # the pass ends once the requests on the wire are answered (each within its deadline)
                self.stopping.set()
                cut(self.stopping)  # a stalled answer would hold the pass's end up to its timeout
                pool.shutdown(wait=True, cancel_futures=True)
                self.stopping.clear()

    def _read_newest(self, first: Page) -> Page:
        """Reads the newest cursor from the listing's last page, where the first page's total
        says there are more; returns the first page asked for again after it, so that every
        page the pass uses was read after that value."""
        p, total = self.paginator, usable_total(first.total)
        if total is None or p.maximum_value is not None or len(first) < p.limit:
            return first
        if (offset := last_page_offset(p, total)) <= first.offset:
            return first
        last = self.fetch(offset, self.owner.client.session)
        # only a page that ends where the total says is the listing's last; its value in the kit's form where
        # the kit rewrites the records' (KitPaginate.cursor)
        ends = not last.ignored and last.offset + len(last) == total + p.base_index
        self.newest = newest_of(last, self.newest_field, self.owner.cursor is not None) if ends else None
        return first if self.newest is None else self.fetch(first.offset, self.owner.client.session)

    def _before_total(self, page: Page, pending: deque, step: int) -> Page | None:
        """An empty page where the total says more follow: asked again once. It comes back with
        records (a glitch: paging goes on), or empty while the next page holds records (a hole
        in the listing: the load fails rather than stop early), or empty with nothing after it
        (the total was too high: the listing ends, with a warning)."""
        again = self.fetch(page.offset)
        if again:
            return again
        after = pending[0].result() if pending else self.fetch(page.offset + step)
        if after:
            raise listing_gap(self.owner.resource, page, after)
        return None

    def _grown(self, short: Page, after: Page, whole: bool = False) -> Page:
        """A short page followed by records (``after``): an API serving fewer records a page than limit, unless the
        short page asked again holds more now, and all of ``after``'s: it is full (``whole``: it must be, as ``after``
        is the next page), or reaches past ``after``, asked where the short page ended. Then the listing grew at its
        end while paged (or the short answer was partial), and the page of what it holds past the short one's goes
        on. A busy feed without a total was refused as capped (helper-139); a page held 3 where ``after`` showed 5,
        and a load took 3 of them as complete (helper-143)."""
        held, limit = short.offset + len(short) - short.slot, self.paginator.limit
        again = self.fetch(short.slot)
        covers = len(again) == limit or (not whole and len(again) >= held + len(after))
        if again.ignored or len(again) <= held or not covers:
            if again.ignored or len(again) == held:  # the same measure again: an API capped below limit
                raise page_cap(self.owner.resource, limit, short, after, self.owner.hooked)
            raise uneven_pages(self.owner.resource, short, held, again)
        self.grew += 1
        logger.info("%s: %s held %d record(s), asked again %d: the listing grew while paged", self.owner.resource,
                    short.request, held, len(again))
        return Page(again[held:], offset=short.slot + held, request=again.request, total=again.total,
                    sent=again.sent, said=again.said, slot=short.slot)

    def _empty(self, page: Page, short: Page | None, expected: int | None) -> Page | None:
        """The listing ended at ``page``; says so if the total disagreed (``expected``: the highest of the
        closing page's total and the one before it). Returns the page to go on with where it grew (``_grown``)."""
        end = short.offset + len(short) if short is not None else page.offset
        if (short is not None and end < page.offset and self.grew < MAX_GROWTH
                and (expected is None or end < expected + self.paginator.base_index)):
            # offsets after the short page, never asked for: an API serving fewer records a page than limit holds
            # records there (a limit past the total loaded one page, helper-125; no total: 20 of 30, helper-126)
            probe = self.fetch(end)
            if probe and not probe.ignored:
                return self._grown(short, probe)
            page = probe
        if short is not None and short.said and expected is None:  # nothing to count the listing's end against
            self.owner.warn(f"the listing's last page ({short.request}) held {len(short)} record(s) beside an error "
                            f"({short.said}): if the API cut its answer short, records are missing from this run; "
                            "load again later")
        if self.total is None:
            return
        if expected and end <= self.start:
            raise nothing_but_a_total(self.owner.resource, expected, page.request)
        if expected is not None and end < expected + self.paginator.base_index:
            self.short_of = (expected, end, page.request)  # a total too high, or records skipped (realigned.py)
        elif end == self.total + self.paginator.base_index:
            self.consistent_total = self.total
        elif not page and short is None and end == (self.total_before or 0) + self.paginator.base_index:
            # the total fell on the closing page (a record seen earlier purged meanwhile): the
            # one before it counted the records the pages held, keys seen twice included
            self.consistent_total = self.total_before
