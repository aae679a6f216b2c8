"""Deadlines for whole responses: one watchdog thread shuts down the socket of any attempt still
running at its deadline (see ``transport``), or at once when the pass it belongs to has ended."""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

# The watchdog thread ends after this long with nothing to watch; the next request starts it.
IDLE_SECONDS = 30.0


class PassEnded(Exception):
    """Raised in a worker whose attempt, or retry wait, the end of its pass cut short; its page is not used."""


class Watch:
    """One attempt's deadline, and the connection it is using once it has one.

    The connection as a duplicate of its socket's file descriptor, not the socket object:
    http.client hands the socket over to the response (and forgets it) when the server says
    it will close the connection, and TLS (to the API, or to a proxy first) wraps the TCP
    socket in another object, which takes over the descriptor; shutting the duplicate down
    ends the connection whatever object reads it.
    """

    __slots__ = ("deadline", "sock", "fired", "group")

    def __init__(self, deadline: float, group: threading.Event | None = None) -> None:
        self.deadline = deadline
        self.sock: socket.socket | None = None
        self.group = group  # set: the attempt's pass has ended (see ``cut``)
        self.fired = group is not None and group.is_set()

    def use(self, sock: Any) -> None:
        try:
            own = socket.socket(fileno=os.dup(sock.fileno())) if sock is not None else None
        except (OSError, AttributeError, ValueError):  # closed, or not a socket at all
            own = None
        old, self.sock = self.sock, own
        if old is not None:
            old.close()
        if self.fired:
            self.fire()

    def release(self) -> None:
        """Closes the duplicate, once the attempt is over."""
        old, self.sock = self.sock, None
        if old is not None:
            old.close()

    def fire(self) -> None:
        self.fired = True
        sock = self.sock
        if sock is not None:
            try:
                # wakes the thread blocked in recv(): it reads end-of-file and fails
                sock.shutdown(socket.SHUT_RDWR)
            except Exception:  # noqa: BLE001 - whatever a socket raises, the watchdog thread must go on
                pass


class _Watchdog:
    """One thread for all attempts: it sleeps until the earliest deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[Watch] = set()
        self._running = False
        self._wakes = 0.0  # when the running thread wakes next, by itself

    def add(self, watch: Watch) -> None:
        with self._cond:
            self._watches.add(watch)
            if not self._running:
                self._running = True
                threading.Thread(target=self._loop, name="kit-deadlines", daemon=True).start()
            elif watch.deadline < self._wakes:
                # Only then: a later deadline is seen when the thread wakes anyway, and waking
                # it costs a thread switch and the GIL (once per request, as it was). Woken only
                # when the first watch came, it slept past a shorter deadline added after a longer
                # one: a 1 s attempt beside a pending 6 s one was cut after 5.25 s.
                self._cond.notify()

    def discard(self, watch: Watch) -> None:
        with self._cond:
            self._watches.discard(watch)

    def cut(self, group: threading.Event) -> None:
        with self._cond:
            for watch in [w for w in self._watches if w.group is group]:
                self._watches.discard(watch)
                watch.fire()

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for watch in [w for w in self._watches if w.deadline <= now]:
                    self._watches.discard(watch)
                    watch.fire()
                if self._watches:
                    self._wakes = min(w.deadline for w in self._watches)
                    self._cond.wait(self._wakes - now)
                    continue
                self._wakes = now + IDLE_SECONDS
                if not self._cond.wait(IDLE_SECONDS) and not self._watches:
                    self._running = False
                    return


_WATCHDOG = _Watchdog()
_current = threading.local()


def join(group: threading.Event) -> None:
    """This thread's attempts belong to ``group`` (a pass's workers'): ``cut`` ends them once it is set."""
    _current.group = group


def cut(group: threading.Event) -> None:
    """Ends at once the attempts under way in ``group``, which is set: an interrupted load waited for a
    stalled page up to its timeout (helper-98). Later attempts in it end as they connect."""
    _WATCHDOG.cut(group)


def in_attempt() -> bool:
    """Whether this thread is inside an attempt (e.g. sending one of its redirect hops)."""
    return getattr(_current, "watch", None) is not None


@contextmanager
def deadline(seconds: float) -> Iterator[Watch]:
    """Runs the block's request under a deadline of ``seconds`` from now.

    Inside another attempt (a redirect hop) the attempt's own deadline goes on: a chain of
    redirects gets no more time than one response.
    """
    outer = getattr(_current, "watch", None)
    if outer is not None:
        yield outer
        return
    watch = Watch(time.monotonic() + seconds, getattr(_current, "group", None))
    _current.watch = watch
    _WATCHDOG.add(watch)
    try:
        yield watch
    finally:
        _WATCHDOG.discard(watch)
        _current.watch = None
        watch.release()


def watch_socket(sock: socket.socket | None) -> None:
    """Tells the current attempt's watch the socket its connection uses."""
    watch = getattr(_current, "watch", None)
    if watch is not None and sock is not None:
        watch.use(sock)
