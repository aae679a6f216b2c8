"""Progress of a load: one display, updated in place, that ends with the report's numbers.

- In a notebook (JupyterLab, VS Code, nbclient): one HTML display, updated through its
  display id; frontends ignore a terminal's cursor movements, so tqdm's bars left stale
  lines there. The display carries no plain text: nbval compares plain text, and it does not
  follow display updates, so a stored first state would never match a fresh run's.
- In a terminal: one line rewritten in place with a carriage return.
- Anywhere else (CI, pipes): a plain line per resource at most every few seconds.

While a load runs each resource shows the rows fetched, and the API's ``total`` with a
percentage where the API sends one. At the end every form shows the ``LoadReport``'s rows
and requests per table, and why fewer rows were loaded than fetched ("1 already loaded":
an incremental load fetches the records at its stored cursor again, and dlt leaves out
those it already loaded).
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import IO, Any

from analytics_kit.display import block, esc, html_table, plural
from analytics_kit.fetch.stats import LoadStats
from analytics_kit.run.report import LoadReport

LINE_INTERVAL = 5.0  # seconds between plain lines per resource
RENDER_INTERVAL = 0.2  # seconds between updates of a live display
# Seconds between updates that no page prompts: the display shows within this long of the start, and
# keeps moving while a slow API answers. Pages prompt updates only as they reach dlt, converted in groups
# of 2,000 records: with 2 s per answer, a notebook showed nothing for 17 s of a 22 s load (helper-104).
TICK = 0.5
WAITING = "setting up, or waiting for the API's first answer"
BAR = 20  # characters of a text progress bar


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """Receives ``on_page(resource)`` calls from the extract step; ``close(report)`` shows the end."""

    def __init__(self, stats: LoadStats, *, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.stats = stats
        self.enabled = enabled
        self.stream = stream or sys.stderr
        if not enabled:
            self.kind = "off"
        elif stream is None and _in_notebook():
            self.kind = "notebook"
        elif getattr(self.stream, "isatty", lambda: False)():
            self.kind = "terminal"
        else:
            self.kind = "lines"
        self.live = self.kind in ("notebook", "terminal")
        self._handle: Any = None  # the notebook display
        self._written = 0  # characters of the terminal line on screen
        self._rendered = 0.0  # the display's last update
        self._page_rendered = 0.0  # its last update for a page
        self._last_line: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._began = time.strftime("%H:%M:%S")
        self._clearing = _ClearsLine(self)

    def start(self) -> None:
        """Updates the display every ``TICK`` s until ``close``, pages or not."""
        if self.enabled and self._ticker is None:
            if self.kind == "terminal":
                self._clearing.install()
            if self.live:
                # shown from the load's own thread: a notebook routes a new display to the cell whose code
                # made it, and the ticker's thread runs in no cell; it only updates the display by its id
                self.on_page(None)
            self._ticker = threading.Thread(target=self._tick, name="kit-progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            try:
                for resource in self._resources() or [None]:
                    self.on_page(resource, tick=True)
            except Exception:  # noqa: BLE001 - a display that fails must not fail, or stop, the load
                return

    # -- while the load runs ---------------------------------------------------------------------

    def on_page(self, resource: str | None, tick: bool = False) -> None:
        """A page of ``resource`` reached dlt; ``tick``: no page, time passed (resource None: nothing asked yet)."""
        if not self.enabled or self._stop.is_set():
            return
        with self._lock:
            now = time.monotonic()
            if self.kind == "lines":
                if resource is not None and now - self._last_line.setdefault(resource, now) >= LINE_INTERVAL:
                    self._last_line[resource] = now
                    print(f"{self._running(resource)} so far", file=self.stream, flush=True)
                return
            # a tick only where nothing was shown for as long, so that it never holds back a page's update
            if tick and now - self._rendered < TICK:
                return
            if not tick and self._page_rendered and now - self._page_rendered < RENDER_INTERVAL:
                return
            self._rendered = now
            if not tick:
                self._page_rendered = now
            if self.kind == "notebook":
                self._show(self._running_html())
            else:
                self._rewrite("  ".join(self._running(r, short=True) for r in self._resources())
                              or f"loading ({self.stats.mode}): {self._waiting()}")

    def _resources(self) -> list[str]:
        """Those asked for or fetched so far, in the order they started."""
        return list(dict.fromkeys([*self.stats.requests, *self.stats.rows]))

    def _fetched(self, resource: str) -> int:
        """Records fetched so far; in a listing paged again, this pass's, against its total (helper-106: the
        passes added up showed "89/59 (100%)")."""
        began = self.stats.pass_began.get(resource)
        if began is not None:
            return self.stats.arrived.get(resource, 0) - began
        return fetched_so_far(self.stats, resource)

    def _total(self, resource: str) -> int | None:
        """The API's total for the listing; none for a resource asked once per parent record, whose rows add up
        over its listings while each has a total of its own (helper-112: "40 rows (the API's total said 25)")."""
        return None if resource in self.stats.children else self.stats.totals.get(resource)

    def _pass(self, resource: str) -> str:
        again = self.stats.passes.get(resource, 0) if resource in self.stats.pass_began else 0
        return f", pass {again}" if again > 1 else ""

    def _running(self, resource: str, *, short: bool = False) -> str:
        rows, total = self._fetched(resource), self._total(resource)
        # more rows than a total too low: the count against it ("60/35") read as a fault of the display (helper-111)
        past = f"the API's total said {total:,}" if total and rows > total else ""
        if short:
            again = self._pass(resource)
            if total and not past:
                return f"{resource} {rows:,}/{total:,} ({_percent(rows, total)}{again})"
            notes = ", ".join(n for n in (past, again[2:]) if n)
            return f"{resource} {rows:,} rows" + (f" ({notes})" if notes else "")
        text = f"{resource}: {rows:,} of {total:,} rows ({_percent(rows, total)})" if total and not past else \
            f"{resource}: {rows:,} rows" + (f" ({past})" if past else "")
        return f"{text}{self._pass(resource)}, {plural(self.stats.requests.get(resource, 0), 'request')}"

    def _running_html(self) -> str:
        rows = []
        for resource in self._resources():
            fetched, total = self._fetched(resource), self._total(resource)
            done = ("past the API's total" if total and fetched > total else
                    f"{_bar(fetched, total)} {_percent(fetched, total)}" if total else "")
            done += self._pass(resource)
            rows.append((resource, fetched, total, done, self.stats.requests.get(resource, 0)))
        # the time it began: a display left behind by a kernel restarted or killed mid-load, which nothing can
        # update any more, still says "Loading" (helper-104), and shows since when
        caption = (f"<b>Loading</b> ({self.stats.mode}, started {self._began}) …"
                   + ("" if rows else f" {self._waiting()}"))
        return block(html_table(["resource", "rows fetched", "of", "", "requests"], rows, right=(1, 2, 4),
                                caption=caption))

    def _waiting(self) -> str:
        """What a load with nothing fetched yet is doing: a wait for a lock, where it is in one."""
        step = self.stats.step or ""
        return step.removeprefix("the ") if step.startswith("the wait") else WAITING

    # -- the end ---------------------------------------------------------------------------------

    def close(self, report: LoadReport | None = None) -> None:
        """Shows the end: the report's numbers, or how far a failed load got."""
        if not self.enabled:
            return
        self._stop.set()
        self._clearing.remove()
        if self._ticker is not None:
            self._ticker.join(5)  # it renders nothing once stopped; this only waits out a render under way
        with self._lock:
            if report is None and not self._resources():
                if self._written:
                    self._rewrite("")
                if self._handle is not None:  # a display showing the wait: it ends as a failure
                    self._show(self._final_html(None))
                return
            if self.kind == "notebook":
                self._show(self._final_html(report))
                if report is not None and self._handle is not None:  # the handle and the line only: no stats kept
                    handle, line = self._handle, {"text/html": self._shown_elsewhere(report)}
                    object.__setattr__(report, "on_shown", lambda: handle.update(line, raw=True))
                return
            if self._written:
                self._rewrite("")
            for line in final_lines(report, self.stats):
                print(line, file=self.stream, flush=True)

    def _final_html(self, report: LoadReport | None) -> str:
        if report is None:
            rows = [(r, fetched_so_far(self.stats, r), self.stats.requests.get(r, 0), "") for r in self._resources()]
            caption = ("<b>Load committed</b>, but it did not finish tidying up (the error below says what)"
                       if self.stats.committed else
                       "<b>Load failed</b>: how far it got (the error below says what to do)")
        else:
            rows = [(t, report.rows.get(t, 0), report.requests.get(t), report.not_loaded(t) or "")
                    for t in report.table_names()]
            caption = f"<b>Loaded</b> ({report.mode}): the report's numbers"
        headers = ["table", "rows" if report else "rows fetched", "requests", ""]
        return block(html_table(headers, rows, right=(1, 2), caption=caption))

    @staticmethod
    def _shown_elsewhere(report: LoadReport) -> str:
        """The end once the report shows its own table: its totals on one line."""
        counts = (plural(report.total_rows, "row"), plural(report.total_requests, "request"))
        return block(f'<div style="text-align:left;margin:0.2em 0"><b>Loaded</b> ({esc(report.mode)}): '
                     f'{esc(", ".join(counts))}; each table\'s numbers are in the report</div>')

    # -- output ----------------------------------------------------------------------------------

    def _show(self, html: str) -> None:
        from IPython.display import display

        data = {"text/html": html}
        if self._handle is None:
            self._handle = display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)

    def clear_line(self) -> None:
        """Blanks the terminal's progress line, which the next update draws again."""
        with self._lock:
            if self._written:
                self._rewrite("")

    def _rewrite(self, line: str) -> None:
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        line = line if len(line) <= width else line[: width - 1] + "…"
        self.stream.write("\r" + line.ljust(self._written) + ("\r" if not line else ""))
        self.stream.flush()
        self._written = len(line)


class _ClearsLine(logging.Filter):
    """On the log's handlers that write to a terminal, blanks the progress line before each record: the record was
    written after the line's last character ("...first answerWARNING ..."), and the line went on under it."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress
        self.handlers: list[logging.Handler] = []

    def install(self) -> None:
        loggers = [logging.getLogger(), *(x for x in list(logging.Logger.manager.loggerDict.values())
                                          if isinstance(x, logging.Logger))]
        found = {id(h): h for x in loggers for h in x.handlers}
        if logging.lastResort is not None:  # what a program that set up no logging prints warnings with
            found.setdefault(id(logging.lastResort), logging.lastResort)
        for handler in found.values():
            if getattr(getattr(handler, "stream", None), "isatty", lambda: False)():
                handler.addFilter(self)
                self.handlers.append(handler)

    def remove(self) -> None:
        for handler in self.handlers:
            handler.removeFilter(self)
        self.handlers = []

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self.progress.clear_line()
        except Exception:  # noqa: BLE001 - a display that fails must not lose the log's record
            pass
        return True


def final_lines(report: LoadReport | None, stats: LoadStats) -> list[str]:
    """The last lines of a load's progress: the report's rows and requests per table, and why
    fewer rows were loaded than fetched; how far it got when there is no report."""
    if report is None:
        lines = [f"{r}: {fetched_so_far(stats, r):,} rows fetched, {plural(stats.requests.get(r, 0), 'request')}"
                 for r in dict.fromkeys([*stats.requests, *stats.rows, *stats.arrived])]
        return lines + ["the load is committed (its rows are in), but did not finish tidying up: the message below says why" if stats.committed
                        else "the load failed: the error says what to do"]
    lines = []
    for table in report.table_names():
        rows, fetched, why = report.rows.get(table, 0), report.fetched.get(table), report.not_loaded(table)
        line = f"{table}: {plural(rows, 'row')}" + (f" of {fetched:,} fetched ({why})" if why else "")
        if report.loads_elsewhere(table):  # "a: 0 rows" for a's rows counted in t (helper-142)
            line = f"{table}: " + (f"{plural(fetched, 'row')} fetched " if fetched is not None else "") + \
                f"into {report.into[table]}"
        if table in report.requests:
            line += f", {plural(report.requests[table], 'request')}"
        lines.append(line)
    return lines


def fetched_so_far(stats: LoadStats, resource: str) -> int:
    """The records of a resource fetched so far, every pass's: what the live display counted up to. The rows dlt's
    steps have seen lag behind by a group of pages, and a failed incremental load said "0 rows fetched" after the
    display had shown 900 (helper-129)."""
    return max(stats.rows.get(resource, 0), stats.arrived.get(resource, 0))


def _percent(rows: int, total: int | None) -> str:
    # a total is a hint: pages beyond it still load, and a record fetched twice counts twice
    return f"{min(100, rows * 100 // total) if total else 100}%"


def _bar(rows: int, total: int | None) -> str:
    filled = min(BAR, rows * BAR // total) if total else BAR
    return "█" * filled + "░" * (BAR - filled)
