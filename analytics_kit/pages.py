"""A resource's pages: dlt's ``RESTClient.paginate``, or offset pages fetched concurrently.

dlt's ``RESTClient.paginate`` is sequential: each request waits for the previous response,
so with 50 ms of latency 1,000 pages take over 50 s. For an ``OffsetPaginator`` with a
``total``, every later offset is known once the first page arrives, so the kit replaces the
client's ``paginate`` (the call dlt's ``paginate_resource`` makes after it has filled in the
incremental parameters) and fetches the remaining offsets with a bounded pool of workers. Pages
are yielded in offset order, so dlt's incremental step sees what it would have seen, and no
more than ``2 * concurrency`` pages are ever held.

Each worker has its own retrying session (``requests`` sessions are not meant to be shared
between threads), built by the same factory as the resource's, so every request is retried and
counted. A 429 pauses all workers through a shared ``Gate``.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode
from typing import Any, Callable, Iterator

import dlt
import numpy as np
import orjson
import pyarrow as pa
from requests import Response, Session

from dlt.common import jsonpath
from dlt.sources.helpers.rest_client.client import RESTClient
from dlt.sources.helpers.rest_client.exceptions import IgnoreResponseException
from dlt.sources.helpers.rest_client.auth import APIKeyAuth, BearerTokenAuth, HttpBasicAuth
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator

from .errors import LoadError
from .redact import Redactor
from .retry import describe

DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
# dlt spends ~10 ms on every item it extracts (schema hints, validation, incremental), whatever
# its size: 100-row pages cost more there than everything else together. Arrow pages are
# therefore yielded in batches of about this many rows (a few MB).
BATCH_ROWS = 10_000
# Converting records to Arrow costs ~0.24 ms a call on top of ~0.12 ms per 100 rows: one
# 100-row page at a time took three times as long as groups of this many rows.
CONVERT_ROWS = 2_000
# An API that answers in under this long is limited by CPU, not by waiting: on it more
# workers only fight over the GIL (and, for a local API, over the same cores), and two
# (one waiting on the API while the other's page is parsed) are fastest. Measured on 100,000
# events from the demo API: 4.9 s with 1 worker, 3.4 s with 2, 4.1 s with 4, 5.5 s with 8.
FAST_RESPONSE_SECONDS = 0.02
FAST_API_WORKERS = 2
# Auth that adds the same key or header to every request: such requests can be copied.
STATIC_AUTH = (APIKeyAuth, BearerTokenAuth, HttpBasicAuth)
# Passes over a listing that keeps shifting under the pager before the load gives up.
MAX_PASSES = 3
# dlt's table hint that staged rows need no deduplication before the merge.
DEDUPLICATED = "x-stage-data-deduplicated"

logger = logging.getLogger(__name__)


class Gate:
    """A pause shared by all of a resource's workers: a 429 with Retry-After closes it for all."""

    def __init__(self, max_delay: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_delay = max_delay
        self.clock = clock
        self.sleep = sleep
        self._until = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        while True:
            with self._lock:
                left = self._until - self.clock()
            if left <= 0:
                return
            self.sleep(left)

    def pause(self, seconds: float) -> None:
        seconds = max(0.0, min(seconds, self.max_delay))
        with self._lock:
            self._until = max(self._until, self.clock() + seconds)

    def install(self, session: Session) -> Session:
        """Every attempt the session makes (retries included) waits at the gate first."""
        for adapter in set(session.adapters.values()):
            send = adapter.send

            def gated_send(request: Any, *args: Any, _send: Callable[..., Response] = send, **kwargs: Any) -> Response:
                self.wait()
                response = _send(request, *args, **kwargs)
                if response.status_code == 429:
                    self.pause(retry_after(response))
                return response

            adapter.send = gated_send  # type: ignore[method-assign]
        return session


def retry_after(response: Response, default: float = 1.0) -> float:
    """Seconds a 429 asks to wait: Retry-After in seconds or as an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return default


@functools.lru_cache(maxsize=64)
def _selector(data_selector: str) -> tuple[str | None, Any]:
    """(plain key, compiled path) of a data selector, worked out once.

    dlt's ``jsonpath.find_values`` compiles a string path on every call, and compiling
    builds a parser: about 1.4 ms, more than parsing the page itself.
    """
    return jsonpath.extract_simple_field_name(data_selector), jsonpath.compile_path(data_selector)


def select_records(body: Any, data_selector: Any, response: Response, resource: str, redactor: Redactor) -> list:
    """The records under ``data_selector``; a missing path is an error, not an empty page.

    dlt returns [] for a selector that matches nothing, so a renamed field in the API's
    response would load 0 rows and report success.
    """
    key, path = _selector(data_selector) if isinstance(data_selector, str) else (None, data_selector)
    if key is not None and isinstance(body, dict):
        found = [body[key]] if key in body else []
    else:
        found = jsonpath.find_values(path, body)
    if not found:
        shape = f"its keys are {', '.join(map(str, body))}" if isinstance(body, dict) else f"it is a {type(body).__name__}"
        raise LoadError(
            f"Resource '{resource}' got no {str(data_selector)!r} in the response on "
            f"{describe(response.request, redactor)}; {shape}.",
            guidance="Point the endpoint's data_selector at the field that holds the records "
            "(for example \"data\" or \"results\").",
            resource=resource,
        )
    rows = found[0] if len(found) == 1 else found
    return [] if rows is None else rows if isinstance(rows, list) else [rows]


def concurrent_ok(paginator: Any) -> bool:
    """Offset pages with a total in the response and offsets in the query string."""
    return (
        type(paginator) is OffsetPaginator
        and paginator.total_path is not None
        and paginator.has_more_path is None
        and not paginator.param_body_path
        and not getattr(paginator, "limit_body_path", None)
    )


class KitPaginate:
    """Stands in for one resource client's ``paginate``; pages come out as ``convert`` makes them.

    ``convert`` turns a list of records (several pages' worth) into what the resource yields:
    an arrow table, or the list itself; ``None`` from it drops them. Without ``convert``
    the pages go on as they come. With ``concurrency`` 1 or a paginator other than
    offset-with-total, dlt's own sequential ``paginate`` runs.
    """

    def __init__(self, client: RESTClient, *, resource: str, redactor: Redactor, primary_key: Any, concurrency: int,
                 new_session: Callable[[], Session], gate: Gate, convert: Callable[[list], Any] | None,
                 on_arrow_page: Callable[[int], None] | None = None) -> None:
        self.client = client
        self.resource = resource
        self.redactor = redactor
        self.primary_key = primary_key
        # dlt's sequential paginate selects records through this method
        client.extract_response = self._extract  # type: ignore[method-assign]
        self.on_arrow_page = on_arrow_page
        self.sequential = client.paginate
        self.concurrency = concurrency
        self.new_session = new_session
        self.gate = gate
        self.convert = convert

    def __call__(self, path: str = "", method: str = "GET", params: dict | None = None, json: Any = None,
                 auth: Any = None, paginator: Any = None, data_selector: Any = None, hooks: Any = None,
                 headers: dict | None = None, *, data: Any = None, **kwargs: Any) -> Iterator[Any]:
        outcome: dict = {}
        return self._batched(self._pages(path, method, params, json, auth, paginator, data_selector, hooks,
                                         headers, data, kwargs, outcome), outcome)

    def _extract(self, response: Response, data_selector: Any) -> list:
        return select_records(response.json(), data_selector, response, self.resource, self.redactor)

    def _converted(self, pages: Iterator[list]) -> Iterator[Any]:
        """The pages' records, converted in groups of about CONVERT_ROWS rows."""
        waiting: list = []
        sizes: list[int] = []
        for page in pages:
            waiting.extend(page)
            sizes.append(len(page))
            if len(waiting) >= CONVERT_ROWS:
                yield from self._convert(waiting, sizes)
                waiting, sizes = [], []
        if waiting:
            yield from self._convert(waiting, sizes)

    def _convert(self, rows: list, sizes: list[int]) -> Iterator[Any]:
        out = self.convert(rows)  # type: ignore[misc]
        if isinstance(out, pa.Table):
            if self.on_arrow_page is not None:
                for size in sizes:
                    self.on_arrow_page(size)
            yield out
        elif out is not None:
            # records that stay dicts go on page by page, as dlt's own paginate yields them
            start = 0
            for size in sizes:
                if size:
                    yield out[start:start + size]
                start += size

    def _batched(self, pages: Iterator[Any], outcome: dict) -> Iterator[Any]:
        """Arrow pages joined into tables of about BATCH_ROWS rows; other pages as they come.

        The last table carries the hint that the run's rows have distinct keys, when one
        pass proved it (see ``_pages``); one full table is kept back for that.
        """
        held: list[pa.Table] = []
        rows = seen = 0
        ready = None
        for page in pages:
            if not isinstance(page, pa.Table):
                yield page
                continue
            held.append(page)
            rows += page.num_rows
            seen += page.num_rows
            if rows >= BATCH_ROWS:
                if ready is not None:
                    yield ready
                ready, held, rows = pa.concat_tables(held, promote_options="default"), [], 0
        if held:
            if ready is not None:
                yield ready
            ready = pa.concat_tables(held, promote_options="default")
        if ready is None:
            return
        if seen and outcome.get("distinct") == seen:
            # dlt then merges the staged rows without its ROW_NUMBER() dedup, which made
            # DuckDB hold all 1,000,000 rows of a full load at once (+170 MB, 1 s).
            ready = dlt.mark.with_hints(ready, dlt.mark.make_hints(additional_table_hints={DEDUPLICATED: True}))
        yield ready

    def _pages(self, path: str, method: str, params: dict | None, json: Any, auth: Any, paginator: Any,
               data_selector: Any, hooks: Any, headers: dict | None, data: Any, kwargs: dict,
               outcome: dict) -> Iterator[Any]:
        """All pages, in passes until one pass saw as many distinct records as the API's total.

        An offset listing ordered by ``updated_at`` shifts when a record is updated while it
        is being paged: the record moves to the end and the one after its old place slides
        into a page already fetched, so it is never seen; its cursor is behind the run's, so
        no later incremental run fetches it either. Fewer distinct keys than ``total`` is the
        sign. The kit then pages again (merge on the primary key absorbs the repeats).
        ``outcome["distinct"]`` is set to the number of keys seen when a single pass saw
        every record once.
        """
        for attempt in range(1, MAX_PASSES + 1):
            tally = Tally(self.primary_key)
            pages = self._one_pass(path, method, params, json, auth, paginator, data_selector, hooks,
                                   headers, data, kwargs, tally)
            # converted within the pass: a record the converter refuses (a NULL key) is
            # reported as such, not as the missing record it makes the tally count
            yield from self._converted(pages) if self.convert else pages
            missing = tally.missing()
            if not missing:
                if attempt == 1 and tally.distinct() == tally.rows:
                    outcome["distinct"] = tally.rows
                return
            logger.warning("%s: the API's data changed while it was paged (%d record(s) skipped by shifting "
                           "offsets); paging again, pass %d of %d", self.resource, missing, attempt + 1, MAX_PASSES)
        raise LoadError(
            f"Resource '{self.resource}': the API's data kept changing while it was paged, {MAX_PASSES} passes in "
            "a row, so some records may have been skipped; nothing from this run was committed.",
            guidance="Run the load again when the API is quieter.", resource=self.resource,
        )

    def _one_pass(self, path: str, method: str, params: dict | None, json: Any, auth: Any, paginator: Any,
                  data_selector: Any, hooks: Any, headers: dict | None, data: Any, kwargs: dict,
                  tally: "Tally") -> Iterator[Any]:
        paginator = paginator if paginator else copy.deepcopy(self.client.paginator)
        if self.concurrency <= 1 or not concurrent_ok(paginator):
            counted = concurrent_ok(paginator) and paginator.maximum_value is None
            for page in self.sequential(path=path, method=method, params=params, json=json, auth=auth,
                                        paginator=paginator, data_selector=data_selector, hooks=hooks,
                                        headers=headers, data=data, **kwargs):
                if counted:
                    totals = jsonpath.find_values(paginator.total_path, page.response.json())
                    tally.see(page, int(totals[0]) if totals and totals[0] is not None else None)
                yield page
            return
        yield from _Offsets(self, paginator, kwargs, dict(
            path_or_url=path, method=method, params=params, json=json, data=data,
            auth=auth or self.client.auth, headers=headers,
            hooks=hooks if hooks and "response" in hooks else {
                **(hooks or {}), "response": [self.client._create_response_handler()]}),
            data_selector or self.client.data_selector, tally).run()


class Tally:
    """Distinct primary keys, and the latest total, seen in one pass over offset pages.

    Integer keys go into a compact array (8 bytes a record) counted once at the end.
    """

    def __init__(self, key: Any) -> None:
        self.key = key if isinstance(key, str) else tuple(key) if key else None
        self.ints = array("q")
        self.others: set = set()
        self.total: int | None = None
        self.rows = 0  # keys seen, repeats included
        self._lock = threading.Lock()
        self._distinct: int | None = None

    def see(self, rows: list, total: int | None) -> None:
        if self.key is None:
            return
        if isinstance(self.key, str):
            values = [r.get(self.key) for r in rows if isinstance(r, dict)]
        else:
            values = [tuple(r.get(k) for k in self.key) for r in rows if isinstance(r, dict)]
        with self._lock:
            self.rows += len(values)
            self._distinct = None
            try:
                self.ints.extend(values)  # all 64-bit integers: the common case, done in C
                values = []
            except (TypeError, OverflowError):
                pass  # extend stops at the first other value; all go one by one below
                # (the ones it took twice are harmless: only distinct values are counted)
            for value in values:
                if type(value) is int and -(2**63) <= value < 2**63:
                    self.ints.append(value)
                else:
                    self.others.add(value)
            if total is not None:
                self.total = total

    def distinct(self) -> int:
        if self._distinct is None:
            self._distinct = _count_distinct(self.ints) + len(self.others)
        return self._distinct

    def missing(self) -> int:
        if self.key is None or self.total is None:
            return 0
        return max(0, self.total - self.distinct())


def _count_distinct(ints: array) -> int:
    """Distinct values of ``ints``, in a sorted copy: 8 bytes a value.

    Arrow's count_distinct took 120 MB for 1,000,000 keys (its hash table), and
    pa.array() on the array.array another 50 MB; this is the end-of-extraction peak.
    """
    values = np.frombuffer(ints, dtype=np.int64).copy()
    values.sort()
    return int(values.size and 1 + np.count_nonzero(values[1:] != values[:-1]))


class _Offsets:
    """One concurrent pass over an offset paginator's pages."""

    def __init__(self, owner: KitPaginate, paginator: OffsetPaginator, send_kwargs: dict,
                 request_kwargs: dict, data_selector: Any, tally: Tally) -> None:
        self.owner = owner
        self.tally = tally
        self.settings: dict | None = None
        self.first_response: float | None = None
        self.template: tuple | None = None
        self.paginator = paginator
        self.send_kwargs = send_kwargs
        self.request_kwargs = request_kwargs
        self.data_selector = data_selector
        self.local = threading.local()

    def _session(self) -> Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = self.owner.gate.install(self.owner.new_session())
        return session

    def _prepare(self, offset: int, session: Session) -> Any:
        """The request for ``offset``: the first one prepared in full, later ones copied from it.

        Preparing a request (URL parsing and quoting, header and cookie merging, auth) cost
        about as much as converting the page; pages differ only in ``offset``. With an auth
        that only adds a fixed key or header, the kit copies the first request and writes the
        new offset into its query string; any other auth is prepared afresh each time.
        """
        p = self.paginator
        if self.template is not None:
            base, pairs = self.template[1], self.template[2]
            copy_ = self.template[0].copy()
            copy_.url = base + "?" + urlencode([(k, offset if k == p.param_name else v) for k, v in pairs])
            return copy_
        params = dict(self.request_kwargs["params"] or {})
        params[p.param_name] = offset
        params[p.limit_param] = p.limit
        request = self.owner.client._create_request(**{**self.request_kwargs, "params": params})
        prepared = session.prepare_request(request)
        if isinstance(request.auth, STATIC_AUTH) or request.auth is None:
            base, _, query = prepared.url.partition("?")
            self.template = (prepared, base, parse_qsl(query, keep_blank_values=True))
        return prepared

    def fetch(self, offset: int, session: Session | None = None) -> tuple[Any, int | None, bool]:
        """(records, total, empty) of the page at ``offset``; records None if the page was ignored."""
        p = self.paginator
        session = session or self._session()
        prepared = self._prepare(offset, session)
        if self.settings is None:
            # proxies and certificates from the environment: the same for every page of the
            # pass, and looking them up costs about as much as parsing a page
            self.settings = session.merge_environment_settings(prepared.url, {}, None, None, None)
        settings = self.settings
        try:
            response = session.send(prepared, **{**settings, **self.send_kwargs})
        except IgnoreResponseException:
            return None, None, True
        if self.first_response is None:
            self.first_response = response.elapsed.total_seconds()  # the API's own answer time
        body = orjson.loads(response.content)
        if not self.data_selector:
            self.data_selector = self.owner.client.detect_data_selector(response)
        rows = select_records(body, self.data_selector, response, self.owner.resource, self.owner.redactor)
        totals = jsonpath.find_values(p.total_path, body)
        if not totals or totals[0] is None:
            p._handle_missing_total(body)
        try:
            total = int(totals[0])
        except (TypeError, ValueError):
            p._handle_invalid_total(totals[0])
        if p.maximum_value is None:  # a capped listing is partial on purpose
            self.tally.see(rows, total)
        return rows, total, not rows

    def _end(self, total: int) -> int:
        end = total + self.paginator.base_index
        maximum = self.paginator.maximum_value
        return end if maximum is None else min(end, maximum)

    def run(self) -> Iterator[Any]:
        p = self.paginator
        step = p.value_step
        first = p.initial_value
        # the first page on the resource's own session, in the extracting thread: it gives the total
        page, total, empty = self.fetch(first, self.owner.client.session)
        workers = self.owner.concurrency
        if self.first_response is not None and self.first_response < FAST_RESPONSE_SECONDS:
            workers = min(workers, FAST_API_WORKERS)
        if page is not None:
            yield page
        if empty and p.stop_after_empty_page or total is None:
            return
        next_offset, end = first + step, self._end(total)
        window = 2 * workers
        pending: deque[Future] = deque()
        pool = ThreadPoolExecutor(workers, thread_name_prefix="kit-page")
        try:
            while True:
                while len(pending) < window and next_offset < end:
                    pending.append(pool.submit(self.fetch, next_offset))
                    next_offset += step
                if not pending:
                    return
                page, total, empty = pending.popleft().result()
                if total is not None:
                    # the total the latest page reports: records added during the load are fetched too
                    end = self._end(total)
                if page is not None:
                    yield page
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
