"""Progress of a load: pages and rows per resource as they arrive.

A terminal or a notebook gets a live tqdm counter per resource; anything else (CI,
pipes, nbval) gets plain lines, at most one per resource every few seconds, plus a
final line, so logs and stored notebook outputs stay short.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO

from tqdm import tqdm

from analytics_kit.fetch.stats import LoadStats

LINE_INTERVAL = 5.0


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _interactive(stream: IO[str]) -> bool:
    return _in_notebook() or bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Receives ``on_page(resource)`` calls from the extract step; ``close()`` prints the totals."""

    def __init__(self, stats: LoadStats, *, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.stats = stats
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.live = enabled and _interactive(self.stream)
        self._bars: dict[str, tqdm] = {}
        self._last_line: dict[str, float] = {}
        self._lock = threading.Lock()

    def on_page(self, resource: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            pages, rows = self.stats.pages[resource], self.stats.rows[resource]
            if self.live:
                bar = self._bars.get(resource)
                if bar is None:
                    # No elapsed time or rate: notebooks store this output, and it must not
                    # change from run to run.
                    bar = self._bars[resource] = tqdm(
                        desc=resource, file=self.stream, mininterval=0.5, leave=True,
                        bar_format="{desc}: {n_fmt} rows{postfix}",
                    )
                bar.set_postfix_str(f"{pages:,} pages", refresh=False)
                bar.update(rows - bar.n)
                return
            now = time.monotonic()
            if now - self._last_line.setdefault(resource, now) >= LINE_INTERVAL:
                self._last_line[resource] = now
                print(f"{resource}: {pages:,} pages, {rows:,} rows so far", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            if not self.live:
                for resource in sorted(self.stats.pages):
                    pages, rows = self.stats.pages[resource], self.stats.rows[resource]
                    print(f"{resource}: {pages:,} pages, {rows:,} rows", file=self.stream, flush=True)
