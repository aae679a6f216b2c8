"""The one watchdog thread cuts each attempt at its own deadline, whatever others are pending.

It is woken only for a deadline earlier than the one it sleeps towards; these check that a
short deadline added while long ones are pending, or while it idles, still fires on time,
on real sockets: a blocked ``recv`` returns when the watchdog shuts its socket down.
"""

from __future__ import annotations

import socket
import threading
import time

from analytics_kit.fetch import deadlines


def _blocked_for(seconds: float, *, started: threading.Event | None = None, done: threading.Event | None = None) -> float:
    """Runs an attempt under ``deadline(seconds)`` whose socket never gets data; how long until it was cut."""
    ours, theirs = socket.socketpair()
    try:
        with deadlines.deadline(seconds) as watch:
            watch.use(ours)
            if started is not None:
                started.set()
            begun = time.monotonic()
            data = ours.recv(1)
            took = time.monotonic() - begun
        assert data == b"" and watch.fired
        return took
    finally:
        ours.close()
        theirs.close()
        if done is not None:
            done.set()


def test_a_short_deadline_fires_on_time_while_longer_ones_are_pending():
    long_started, long_done = threading.Event(), threading.Event()
    threads = [threading.Thread(target=_blocked_for, args=(4.0,), kwargs={"started": long_started, "done": long_done},
                                daemon=True)]
    threads[0].start()
    assert long_started.wait(5)
    time.sleep(0.1)  # the watchdog now sleeps towards the long deadline
    assert _blocked_for(0.3) < 1.5
    assert not long_done.is_set()
    threads[0].join(10)
    assert long_done.is_set()


def test_deadlines_added_one_after_another_each_fire():
    # each attempt starts after the one before it ended: the watchdog sleeps towards a deadline
    # that no longer exists, or idles, when the next is added
    for seconds in (0.6, 0.2, 0.4, 0.1):
        took = _blocked_for(seconds)
        assert seconds * 0.9 <= took < seconds + 1.0, (seconds, took)


def test_many_short_attempts_in_threads_each_end_within_their_deadline():
    took: list[float] = []

    def attempt(seconds: float) -> None:
        took.append(_blocked_for(seconds) - seconds)

    threads = [threading.Thread(target=attempt, args=(0.2 + 0.05 * (i % 5),), daemon=True) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(took) == 12 and max(took) < 1.0 and min(took) > -0.05
