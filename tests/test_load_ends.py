"""How a load ends around its commit: an interrupt before dlt commits the load is the load's own
error, wherever it lands; a failure after the commit never says that nothing was committed."""

from __future__ import annotations

import signal
from typing import Any

import duckdb
import pytest

import analytics_kit as ak
import analytics_kit.run.load as run_load
import analytics_kit.run.steps as run_steps
from tests.helpers import loaded, served
from tests.test_kept_aside import column_types, retyped

DONE = run_load.full_refresh_done


def _interrupt(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt


def _waits_then_interrupted(*args: Any, on_wait: Any = None, **kwargs: Any) -> Any:
    on_wait("the file is held by another process; waiting up to 10 s")
    raise KeyboardInterrupt


def _disk_full(*args: Any, **kwargs: Any) -> Any:
    raise duckdb.IOException('Could not write file "analytics.duckdb.wal": No space left on device')


@pytest.mark.parametrize("where, step", [("load_lock", "the wait for another load of this database"),
                                         ("open_for_writing", "the wait for the DuckDB file"),
                                         ("begin", "setup"), ("settle_cursors", "setup"),
                                         ("record", "load"), ("empty_tables", "load")])
def test_an_interrupt_in_the_kits_own_steps_before_the_commit_is_the_loads_error(api, config, monkeypatch,
                                                                                   where, step):
    """Outside dlt's steps (which wrap an interrupt in their own error) a Ctrl-C escaped as a bare
    KeyboardInterrupt, where the README promises "The load was interrupted during <step>"."""
    ak.load(config, progress=False)
    api.advance()
    before = loaded(api)
    module = run_steps if where == "open_for_writing" else run_load
    original = getattr(module, where)
    monkeypatch.setattr(module, where, _waits_then_interrupted if step.startswith("the wait") else _interrupt)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    assert str(caught.value).startswith(f"The load was interrupted during {step} "), caught.value
    assert caught.value.context["interrupted"] and "nothing from this run was committed" in str(caught.value)
    assert loaded(api) == before and len(ak.history()) == 1
    monkeypatch.setattr(module, where, original)
    ak.load(config, progress=False)
    assert loaded(api) == served(api)


def test_an_interrupt_as_a_rebuild_marks_itself_leaves_the_old_tables_and_says_so(api, config, monkeypatch):
    ak.load(config, progress=False)
    types, before = column_types(), loaded(api)
    monkeypatch.setattr(run_load, "mark_full_refresh", _interrupt)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(retyped(config), "full_refresh", progress=False)
    assert str(caught.value).startswith("The load was interrupted during load "), caught.value
    assert "The old tables were kept aside and are put back" in caught.value.guidance
    assert column_types() == types and loaded(api) == before


def test_an_interrupt_once_the_load_is_committed_stays_an_interrupt(api, config, monkeypatch):
    """The README's limit: the tables are in (history lists the load), so the load's error, which says
    nothing was committed, would be wrong; the owed bookkeeping is done by the next load."""
    ak.load(config, progress=False)
    monkeypatch.setattr(run_load, "full_refresh_done", _interrupt)
    with pytest.raises(KeyboardInterrupt) as caught:
        ak.load(retyped(config), "full_refresh", progress=False)
    assert len(ak.history()) == 2 and column_types()["value"] == "VARCHAR" and loaded(api) == served(api)
    # saying so: the command printed a bare "interrupted", read as a load that committed nothing (helper-118)
    assert str(caught.value).startswith("the load was committed before the interrupt, its rows are in")


def test_a_rebuild_whose_mark_cannot_be_removed_reports_the_committed_load_with_a_warning(api, config,
                                                                                        monkeypatch):
    """A failure dropping the mark of a full refresh under way failed the whole load, whose tables
    were already committed, and told the user to run it again."""
    ak.load(config, progress=False)
    monkeypatch.setattr(run_load, "full_refresh_done", _disk_full)
    report = ak.load(retyped(config), "full_refresh", progress=False)
    assert any("the next load runs a full refresh again" in w for w in report.warnings), report.warnings
    assert len(ak.history()) == 2 and column_types()["value"] == "VARCHAR" and loaded(api) == served(api)
    monkeypatch.setattr(run_load, "full_refresh_done", DONE)
    again = ak.load(retyped(config), progress=False)
    assert again.mode == "full_refresh" and not again.warnings  # owed, and then done
    assert ak.load(retyped(config), progress=False).mode == "incremental"


def test_a_failure_after_the_commit_says_the_load_is_committed(api, config, monkeypatch, capsys):
    ak.load(config, progress=False)
    api.advance()
    monkeypatch.setattr(run_load, "future_cursors", _disk_full)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config)
    shown = capsys.readouterr()
    assert "the load is committed (its rows are in), but did not finish tidying up: the message below says why" in \
        shown.err + shown.out and "load failed" not in shown.err
    text = str(caught.value)
    assert text.startswith("The load is committed") and "nothing from this run was committed" not in text, text
    assert "No space left on device" in text and api.api_key not in text
    assert len(ak.history()) == 2 and loaded(api) == served(api)


@pytest.mark.parametrize("how", ["disk full", "interrupt"])
@pytest.mark.parametrize("rebuild", [False, True], ids=["a merge", "a rebuild"])
def test_a_load_step_that_fails_after_dlt_marked_the_load_complete_is_not_called_uncommitted(
        api, config, monkeypatch, how, rebuild):
    """dlt's load step goes on after it writes the load's row in _dlt_loads: it moves the package's files,
    on the same disk as the database. A full disk or a Ctrl-C there was "nothing from this run was
    committed", and the tables held the run's data."""
    from dlt.common.storages.load_storage import LoadStorage

    ak.load(config, progress=False)
    api.advance()
    moved = LoadStorage.complete_load_package

    def fails_after_moving(self: Any, load_id: str, aborted: bool) -> None:
        moved(self, load_id, aborted)
        if how == "interrupt":
            raise KeyboardInterrupt
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LoadStorage, "complete_load_package", fails_after_moving)
    with pytest.raises(KeyboardInterrupt if how == "interrupt" else ak.LoadError) as caught:
        ak.load(retyped(config) if rebuild else config, "full_refresh" if rebuild else "incremental", progress=False)
    if how == "disk full":
        text = str(caught.value)
        assert text.startswith("The load is committed") and "No space left on device" in text, text
        assert "PipelineStepFailed" not in text  # the cause, not dlt's wrapper of it
    assert len(ak.history()) == 2 and loaded(api) == served(api)
    assert column_types()["value"] == ("VARCHAR" if rebuild else "DOUBLE")
    monkeypatch.setattr(LoadStorage, "complete_load_package", moved)
    api.advance()
    report = ak.load(retyped(config) if rebuild else config, progress=False)
    assert report.mode == ("full_refresh" if rebuild else "incremental")  # a rebuild's mark stays until one completes
    assert loaded(api) == served(api)


def _sigint_before(cls: type, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cls.name`` sends this process a real SIGINT, then does its work."""
    original = getattr(cls, name)

    def interrupted_then(self: Any, *args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, interrupted_then)


@pytest.mark.parametrize("where", ["normalize", "load"])
def test_a_ctrl_c_inside_dlts_own_steps_stops_the_load(api, config, monkeypatch, where, interruptible):
    """dlt's own SIGINT handler in normalize and load took the signal and, unchecked by the step's end,
    cleared it: the load went on and returned as if nothing had happened (helper-98)."""
    from dlt.common.storages.load_storage import LoadStorage
    from dlt.destinations.job_client_impl import SqlJobClientBase

    ak.load(config, progress=False)
    api.advance()
    before = loaded(api)
    if where == "normalize":  # as normalize hands its package to the load step
        _sigint_before(LoadStorage, "commit_new_load_package", monkeypatch)
    else:  # just before dlt writes the load's row in _dlt_loads
        _sigint_before(SqlJobClientBase, "complete_load", monkeypatch)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    assert str(caught.value).startswith(f"The load was interrupted during {where} "), caught.value
    assert ("before dlt recorded it complete" in str(caught.value)) == (where == "load")
    assert len(ak.history()) == 1 and loaded(api) in (before, served(api))  # each table old or new, whole


@pytest.mark.parametrize("query", ["SELECT s.version_hash", "DROP SCHEMA"], ids=["before the commit", "after it"])
def test_duckdb_turning_a_ctrl_c_into_its_error_in_a_query_the_kit_carries_on_after_is_still_an_interrupt(
        api, config, monkeypatch, query):
    """DuckDB answers an interrupt inside a query with "Query interrupted", an Exception; where the kit
    goes on past a failed query (reading the committed state at setup, dropping dlt's staging after the
    load) the interrupt was lost and the load went on or returned (helper-98)."""
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

    ak.load(config, progress=False)
    api.advance()
    execute = DuckDbSqlClient.execute_sql

    def interrupted(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.lstrip().startswith(query):
            raise RuntimeError("Query interrupted")
        return execute(self, sql, *args, **kwargs)

    monkeypatch.setattr(DuckDbSqlClient, "execute_sql", interrupted)
    if query == "DROP SCHEMA":  # dlt's staging, dropped after the commit: an interrupt, as the README's limit says
        with pytest.raises(KeyboardInterrupt):
            ak.load(config, progress=False)
        assert len(ak.history()) == 2
    else:
        with pytest.raises(ak.LoadError) as caught:
            ak.load(config, progress=False)
        assert str(caught.value).startswith("The load was interrupted during setup"), caught.value
        assert len(ak.history()) == 1
    monkeypatch.setattr(DuckDbSqlClient, "execute_sql", execute)
    ak.load(config, progress=False)
    assert loaded(api) == served(api)


def test_a_ctrl_c_while_a_worker_waits_on_a_stalled_page_ends_the_load_at_once(api, config, interruptible):
    """The pass's end waited for its workers' requests on the wire: a page the API stalled held an
    interrupted load up to the attempt's timeout (14 s of 15, helper-98). The attempt is cut instead,
    and not retried or reported as a retry."""
    import os
    import threading
    import time

    config["resources"][0]["endpoint"]["paginator"]["limit"] = 10  # pages enough for the workers to ask ahead
    api.inject(kind="latency", path="events", skip=3, seconds=15)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))  # a real one: it wakes the waiting thread
    timer.start()
    started = time.monotonic()
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    took = time.monotonic() - started
    timer.cancel()
    assert str(caught.value).startswith("The load was interrupted during extract"), caught.value
    assert took < 4, took
    assert "retrying" not in str(caught.value)


def test_a_second_ctrl_c_while_the_kit_asks_whether_the_load_committed_does_not_hide_the_commit(
        api, config, monkeypatch):
    """After a failure in dlt's load step the kit asks _dlt_loads whether the load committed; a second
    Ctrl-C there made the answer "no", and the message said nothing was committed (helper-100)."""
    from dlt.common.storages.load_storage import LoadStorage
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

    ak.load(config, progress=False)
    api.advance()
    moved, execute, asked = LoadStorage.complete_load_package, DuckDbSqlClient.execute_sql, []

    def interrupted_after_moving(self: Any, load_id: str, aborted: bool) -> None:
        moved(self, load_id, aborted)
        raise KeyboardInterrupt

    def interrupted_once_when_asked(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if "WHERE load_id = " in sql and "status = 0" in sql and not asked:
            asked.append(sql)
            raise KeyboardInterrupt
        return execute(self, sql, *args, **kwargs)

    monkeypatch.setattr(LoadStorage, "complete_load_package", interrupted_after_moving)
    monkeypatch.setattr(DuckDbSqlClient, "execute_sql", interrupted_once_when_asked)
    with pytest.raises(KeyboardInterrupt):
        ak.load(config, progress=False)
    assert asked and len(ak.history()) == 2 and loaded(api) == served(api)


def test_a_second_ctrl_c_in_dlts_load_step_still_says_the_load_was_not_recorded(api, config, monkeypatch):
    """The second interrupt took the place of dlt's error, which named the step: the message said nothing
    was committed, where a table's job may have (helper-100)."""
    from dlt.destinations.job_client_impl import SqlJobClientBase

    ak.load(config, progress=False)
    api.advance()
    monkeypatch.setattr(SqlJobClientBase, "complete_load", _interrupt)
    monkeypatch.setattr(run_load, "forget", _interrupt)  # the second, as the kit clears the pipeline folder
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    assert "before dlt recorded it complete" in str(caught.value), caught.value
    assert len(ak.history()) == 1


def test_a_ctrl_c_as_the_load_sets_pandas_aside_is_the_loads_error(api, config, monkeypatch):
    """pandas' probe (run/lean) ran outside the load's handling: a Ctrl-C there, early in a process's first
    load, was a bare KeyboardInterrupt (helper-100)."""
    from contextlib import contextmanager

    @contextmanager
    def interrupted_probe():  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(run_load, "pandas_after_load", interrupted_probe)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    assert str(caught.value).startswith("The load was interrupted during its start"), caught.value


def test_an_interrupt_after_a_wait_for_the_lock_ended_names_the_step_it_was_in(api, config, monkeypatch):
    """The wait was over, but the message still named it (helper-100)."""
    from contextlib import contextmanager

    @contextmanager
    def waited(*args: Any, on_wait: Any = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        on_wait("another load is running; waiting up to 10 s for it")
        yield

    monkeypatch.setattr(run_load, "load_lock", waited)
    monkeypatch.setattr(run_load, "open_pipeline", _interrupt)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, progress=False)
    assert str(caught.value).startswith("The load was interrupted during setup "), caught.value


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # pytest's report of the drop
def test_a_ctrl_c_a_finalizer_drops_as_the_load_ends_is_raised(api, config, monkeypatch, interruptible):
    """A KeyboardInterrupt a finalizer drops while the load tidies up after its commit is raised, as the
    README's interrupt after the commit (helper-100 saw one lost as the load's collector setting ended)."""
    import gc
    import _thread

    dropped: list[bool] = []

    class DropsAnInterrupt:
        def __del__(self) -> None:
            try:
                _thread.interrupt_main()
                for _ in range(100_000):
                    pass
            except KeyboardInterrupt:
                dropped.append(True)
                raise  # CPython drops it: "Exception ignored in ..."

    def drops_then(pipeline: Any) -> None:
        DONE(pipeline)
        garbage = DropsAnInterrupt()
        garbage.cycle = garbage
        del garbage
        gc.collect()

    ak.load(config, progress=False)
    monkeypatch.setattr(run_load, "full_refresh_done", drops_then)
    with pytest.raises(KeyboardInterrupt):
        ak.load(retyped(config), "full_refresh", progress=False)
    assert dropped and len(ak.history()) == 2 and column_types()["value"] == "VARCHAR"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # pytest's report of the drop
def test_a_thread_of_the_users_dropping_its_own_keyboardinterrupt_does_not_stop_the_load(api, config):
    """Only the main thread's dropped interrupt is the user's Ctrl-C: a background thread's finalizer
    dropping one of its own made the load fail as interrupted (helper-101)."""
    import gc
    import threading

    class DropsItsOwn:
        def __del__(self) -> None:
            raise KeyboardInterrupt  # dropped: "Exception ignored in ..."

    def drop() -> None:
        garbage = DropsItsOwn()
        garbage.cycle = garbage
        del garbage
        gc.collect()

    started = threading.Event()

    def during_the_load(*args: Any, **kwargs: Any) -> Any:
        thread = threading.Thread(target=drop)
        thread.start()
        thread.join()
        started.set()
        return SETTLE(*args, **kwargs)

    run_load.settle_cursors = during_the_load
    try:
        report = ak.load(config, progress=False)
    finally:
        run_load.settle_cursors = SETTLE
    assert started.is_set() and report.rows["events"] == len(served(api))


SETTLE = run_load.settle_cursors
