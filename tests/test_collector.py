"""Python's cyclic garbage collector runs rarely while a load runs, and as before once it ends.

Counted with ``gc.callbacks`` on real loads of the demo API: the collector's own report of
each collection, not a timing.
"""

from __future__ import annotations

import gc
import threading

import pytest

import analytics_kit as ak
from analytics_kit import demo
from analytics_kit.run import collector


@pytest.fixture
def collections():
    """Collections per generation while the test runs, as the collector reports them."""
    counts = [0, 0, 0]

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            counts[info["generation"]] += 1

    gc.callbacks.append(seen)
    yield counts
    gc.callbacks.remove(seen)


def _load(events: int) -> ak.LoadReport:
    with demo.serve(events=events, customers=20, seed=5) as api:
        return ak.load(ak.guide_config(api.base_url, api.api_key), "full_refresh", progress=False)


def test_a_load_runs_few_collections_and_restores_the_threshold(collections):
    before = gc.get_threshold()
    _load(100)  # dlt's imports, which a load of 20,000 would otherwise count
    gc.collect()  # the counts from zero: what earlier tests in this process left pending is not the load's
    collections[:] = [0, 0, 0]
    report = _load(20_000)
    assert report.rows["events"] == 20_000
    # with Python's default (700), about 70 young collections ran in such a load
    assert collections[0] < 40 and collections[2] == 0, collections
    assert gc.get_threshold() == before


def test_a_failed_load_restores_the_threshold(api, config):
    before = gc.get_threshold()
    config["client"]["base_url"] = "http://127.0.0.1:9/"  # nothing listens there
    with pytest.raises(ak.LoadError):
        ak.load(config, progress=False)
    assert gc.get_threshold() == before


def test_loads_at_once_in_threads_restore_the_threshold_when_the_last_ends():
    before = gc.get_threshold()
    first_in, release = threading.Event(), threading.Event()

    def first() -> None:
        with collector.fewer_collections():
            first_in.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with collector.fewer_collections():
        assert gc.get_threshold()[0] == max(collector.YOUNG_OBJECTS, before[0])
    # the first load is still running: the threshold stays raised for it
    assert gc.get_threshold()[0] == max(collector.YOUNG_OBJECTS, before[0])
    release.set()
    thread.join(10)
    assert gc.get_threshold() == before


def test_a_threshold_the_caller_set_is_kept_and_restored():
    before = gc.get_threshold()
    try:
        gc.set_threshold(200_000, 20, 30)  # higher than the kit's: left as it is
        with collector.fewer_collections():
            assert gc.get_threshold() == (200_000, 20, 30)
        gc.set_threshold(0)  # automatic collection off: stays off
        with collector.fewer_collections():
            assert gc.get_threshold()[0] == 0
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)


def test_a_threshold_set_during_a_load_is_kept():
    before = gc.get_threshold()
    try:
        with collector.fewer_collections():
            gc.set_threshold(0)  # other code turned automatic collection off meanwhile
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)
