"""Counters a load keeps while it runs: requests, retries, pages and rows per resource."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryEvent:
    """One retry: which resource, why, which attempt, and how long the kit waited."""

    resource: str
    reason: str  # "HTTP 503" or the exception class name
    attempt: int  # the attempt that failed, 1-based
    attempts: int  # the most attempts allowed (max_retries + 1)
    wait: float  # seconds slept before the next attempt
    request: str  # method and path with query, secrets masked

    def __str__(self) -> str:
        return (
            f"{self.resource}: {self.reason} on {self.request}, attempt {self.attempt} of "
            f"{self.attempts} failed; retrying in {self.wait:g} s"
        )


class LoadStats:
    """Thread-safe counters shared by the sessions, the page steps and the progress display."""

    def __init__(self, redact: Callable[[str], str] = str) -> None:
        self._lock = threading.Lock()
        self._redact = redact
        self.new_folder: Any = None  # the outermost folder of the database's missing before the load
        self.created: str | None = None  # what the load made: "a new file", and that folder
        self.requests: dict[str, int] = defaultdict(int)
        self.pages: dict[str, int] = defaultdict(int)
        self.rows: dict[str, int] = defaultdict(int)
        # Records as the pages arrive, before they are converted in groups and counted in ``rows``: what the
        # progress display shows while a slow API's first group is still being fetched.
        self.arrived: dict[str, int] = defaultdict(int)
        # The API's latest usable total per resource, where it sends one (a hint: see offsets).
        self.totals: dict[str, int] = {}
        self.retries: list[RetryEvent] = []
        self.last_request: dict[str, str] = {}
        # Both kept by ``answer``. Origins that answered in this run, whatever the status: a connection to
        # one of them that fails is retried; to any other it fails at once (see retry.retry_session).
        self.answered: set[str] = set()
        # Answers below 400 per resource: a 404 after some tells a listing that broke off from a wrong path.
        self.answers_ok: dict[str, int] = defaultdict(int)
        # Attempts per request text (method, path and query, secrets masked): a retry
        # repeats the same text, so this counts the attempts each request took.
        self.attempts: dict[str, int] = defaultdict(int)
        self.retried_statuses: dict[str, frozenset[int]] = {}  # per resource: the statuses its policy retries
        # What the run should report: a total the pages contradicted, a cursor in the future.
        self.warnings: list[str] = []
        self.started = datetime.now(timezone.utc)
        self.mode = "incremental"  # what the run turned out to be (a pending full refresh is resumed)
        # a full refresh loaded as a merge into tables dlt drops first, not swapped in per table
        self.drops_tables = False
        self.kept_aside = False  # and the old tables are kept whole meanwhile (see store/kept_aside)
        # a full refresh swapping in a table its incremental runs append to: pending until it completes
        self.swaps_appends = False
        # Seconds the extracting thread sat waiting for the API's pages, when fetching was
        # the bottleneck: the most that overlapping the load step with fetching could hide.
        self.page_wait = 0.0
        self.distinct: dict[str, int] = {}
        # {resource: columns whose values changed type, each group of them handed to dlt's normaliser}
        self.changed_types: dict[str, set[str]] = defaultdict(set)
        # {table: the keys of every pass of every listing} of tables several resources, or one resource's listings
        # (one per parent record), load: dlt's merge keeps each key once. A fetch.tally.Tally each, folded pass by
        # pass: each listing's own is freed with it (this module stays free of the imports tally needs)
        self.shared: dict[str, Any] = {}
        # resources of a full refresh loaded as dlt's merge after their pages held a key twice, and why
        self.merged_instead: dict[str, str] = {}
        # soft-deleted rows a replace staged, per table: its swap deletes them (see seam.delete_flagged)
        self.flagged: dict[str, int] = defaultdict(int)
        # resources whose replace left out soft-deleted records that stayed dicts: they cannot become a merge
        self.dropped_flagged: set[str] = set()
        self.staged_any: set[str] = set()  # resources of a replace that staged a row (see Replace.counted)
        self.passes: dict[str, int] = defaultdict(int)
        self.pass_began: dict[str, int] = {}  # records arrived before the pass now running, where it is not the first
        self.children: set[str] = set()  # resources asked once per record of a parent resource
        # where the load is, for an interrupt's message (dlt names its own steps on the errors it wraps)
        self.step: str | None = None
        # dlt's load step returned: the tables and the load's record are in; what fails after is tidying
        self.committed = False
        self.in_dlts_load = False  # pipeline.load() began: a table's job may have committed on its own

    def request(self, resource: str, request: str) -> None:
        with self._lock:
            self.requests[resource] += 1
            self.attempts[request] += 1
            self.last_request[resource] = request

    def first_attempt(self, request: str) -> None:
        """A request is sent afresh: its attempts count from here. The same page may be asked for twice in a
        run (the newest cursor read before the pass, a pass again), and a message said "after 5 attempt(s)" of 4."""
        with self._lock:
            self.attempts[request] = 0

    def answer(self, resource: str, origin: str, status: int) -> None:
        """An answer of the API's, of any status, from ``origin`` for ``resource``."""
        with self._lock:
            self.answered.add(origin)
            if status < 400:
                self.answers_ok[resource] += 1

    def warn(self, resource: str, text: str) -> None:
        """A warning for ``resource``: logged, and listed in the ``LoadReport``, once a run."""
        line = self._redact(f"{resource}: {text}")  # warnings quote what the API sent
        with self._lock:
            if line in self.warnings:
                return
            self.warnings.append(line)
        logger.warning("%s", line)

    def retry(self, event: RetryEvent) -> None:
        with self._lock:
            self.retries.append(event)

    def total(self, resource: str, total: int) -> None:
        """The API's total for ``resource``'s listing, for the progress display's percentage."""
        with self._lock:
            self.totals[resource] = total

    def paged(self, resource: str) -> None:
        """One pass over ``resource``'s listing began (a shifted listing is paged again)."""
        with self._lock:
            if self.passes[resource]:
                self.pass_began[resource] = self.arrived[resource]
            self.passes[resource] += 1

    def keys(self, resource: str, distinct: int | None) -> None:
        """The distinct keys of ``resource``'s records, where its pages held a key more than once
        (a change feed, or a listing paged twice): the rows a merge leaves of them. None forgets
        them (an extraction starting over)."""
        with self._lock:
            if distinct is None:
                self.distinct.pop(resource, None)
            else:
                self.distinct[resource] = distinct

    def shared_keys(self) -> dict[str, int]:
        """{table: its distinct keys} of tables several resources load: dlt's merge keeps each key once."""
        return {table: keys.distinct_as(None) for table, keys in self.shared.items()}

    def merge_instead(self, resource: str, why: str) -> tuple[str, str]:
        with self._lock:
            self.merged_instead[resource] = why
        return resource, why

    def extracting_again(self) -> None:
        """An extraction abandoned for another: what it counted of its staged rows is not the new one's."""
        with self._lock:
            self.merged_instead.clear()
            self.shared.clear()
            self.flagged.clear()
            self.dropped_flagged.clear()
            self.staged_any.clear()

    def dropped(self, resource: str, staged: int, left_out: int) -> None:
        with self._lock:
            if left_out:
                self.dropped_flagged.add(resource)
            if staged:
                self.staged_any.add(resource)

    def flagged_rows(self, table: str, rows: int) -> None:
        with self._lock:
            self.flagged[table] += rows

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.page_wait += seconds

    def arrive(self, resource: str, rows: int) -> None:
        with self._lock:
            self.arrived[resource] += rows

    def page(self, resource: str, rows: int) -> None:
        with self._lock:
            self.pages[resource] += 1
            self.rows[resource] += rows
