"""What a small run no longer pays for: a restore it does not need, and pandas from the shell."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dlt import Pipeline

import analytics_kit as ak
from tests.helpers import command_env, loaded, served


def count_restores(monkeypatch) -> list:
    calls: list = []
    sync = Pipeline.sync_destination

    def counted(self, *args, **kwargs):
        calls.append(1)
        return sync(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "sync_destination", counted)
    return calls


def prints(api, code: str, *expected: str) -> None:
    """Runs ``code`` in a fresh Python (with the guide's config pointed at ``api``, if given):
    its last lines of output must be ``expected``."""
    out = subprocess.run([sys.executable, "-c", code], env=command_env(api) if api is not None else None,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-len(expected):] == list(expected), (out.stdout[-500:], out.stderr[-3000:])


def test_the_local_state_is_kept_only_while_it_is_the_committed_one(api, config, monkeypatch, tmp_path):
    restores = count_restores(monkeypatch)
    ak.load(config, progress=False)
    assert len(restores) == 1  # a first run has no local state to trust
    api.advance(new=5, updated=5)
    ak.load(config, progress=False)
    assert len(restores) == 1  # the folder held the committed state: nothing restored
    shutil.copy("analytics.duckdb", tmp_path / "older.duckdb")
    api.advance(new=5, updated=5)
    ak.load(config, progress=False)
    shutil.copy(tmp_path / "older.duckdb", "analytics.duckdb")  # a backup put back: the folder is ahead
    api.advance(new=5, updated=5)
    ak.load(config, progress=False)
    assert len(restores) == 2
    assert loaded(api) == served(api)


def test_a_local_state_edited_under_its_old_hash_is_restored(api, config, monkeypatch):
    """A cursor changed in the folder's state.json (by hand, or bit rot) under the stored hash was
    trusted as the committed state: the next run asked only for later records and skipped 10 new ones
    for good (helper-49). The state must hash to what the database committed."""
    ak.load(config, progress=False)
    restores = count_restores(monkeypatch)
    path = next(Path("analytics.duckdb.state").glob("*/state.json"))
    state = json.loads(path.read_text())
    cursor = state["sources"]["analytics"]["resources"]["events"]["incremental"]["updated_at"]
    later = datetime.fromisoformat(cursor["last_value"]) + timedelta(days=30)  # still in the past
    cursor["last_value"] = later.isoformat()  # the hash left as it was
    path.write_text(json.dumps(state))
    api.advance(new=10, updated=10)
    ak.load(config, progress=False)
    assert restores == [1]
    assert loaded(api) == served(api)


def test_a_run_whose_package_was_left_behind_restores(api, config, monkeypatch):
    ak.load(config, progress=False)
    restores = count_restores(monkeypatch)
    api.inject("status", path="/v1/customers", status=500, times=None)  # fails after events were fetched
    try:
        ak.load(config, progress=False)
    except ak.LoadError:
        pass
    api.clear_faults()
    api.advance(new=5, updated=5)
    ak.load(config, progress=False)
    assert restores == [1]  # the failed run dropped its folder: the next one restores
    assert loaded(api) == served(api)


def test_the_load_command_does_not_import_pandas_and_freezes_dlts_modules(api):
    code = ("import gc, sys; from analytics_kit.cli import main; rc = main(['load', '--quiet'], lean=True); "
            "print(rc, 'pandas' in sys.modules, 'dlt' in sys.modules, gc.isenabled(), gc.get_freeze_count())")
    env = command_env(api)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-5:-1] == ["0", "False", "True", "True"], out.stderr[-2000:]
    # dlt's modules were moved out of the collector's scans (~100,000 objects), which it then ran again
    assert int(out.stdout.split()[-1]) > 50_000, out.stdout
    assert loaded(api) == served(api)


@pytest.mark.parametrize("call", ["ak.load(ak.guide_config(), progress=False)", "main(['load', '--quiet'])"])
def test_a_load_called_from_python_leaves_pyarrows_pandas_support_and_the_collector_alone(api, call):
    """After a failed probe pyarrow's checks for pandas objects never look again: a NaN in a
    Series stopped counting as null and a categorical read as strings (helper-25); and a
    caller's uncollected garbage would be frozen for good. Only the command's own process,
    which ends with the load, may do either."""
    code = ("import gc, sys, analytics_kit as ak; from analytics_kit.cli import main; " + call + "; "
            "import pandas as pd, pyarrow as pa; "
            "print(pa.array(pd.Series([1.5, float('nan')])).null_count, "
            "pa.types.is_dictionary(pa.array(pd.Series(['a', 'b'], dtype='category')).type), gc.get_freeze_count())")
    prints(api, code, "1 True 0")


@pytest.mark.parametrize("fails", [False, True])
def test_a_load_called_from_python_leaves_pandas_to_whoever_imports_it_next(api, fails):
    """pandas is ~35 MB and ~0.3 s that the load never uses: imported by pyarrow's first array it
    sat on top of a 1,000,000-row load's peak, then at the load's end. ``ak.load`` now leaves it
    to the process, failed or not; whatever imports pandas next (a submodule here) finds pyarrow
    treating pandas objects as pandas again."""
    if fails:
        api.inject("status", path="/v1/customers", status=500, times=None)  # fails after events were fetched
    code = ("import sys, analytics_kit as ak, analytics_kit.run.load as run; seen = []; spy = run.release_unused; "
            "run.release_unused = lambda *a: (seen.append('pandas' in sys.modules), spy(*a))[1]\n"
            "try: ak.load(ak.guide_config(), progress=False, concurrency=1)\n"
            "except ak.LoadError: seen.append('failed')\n"
            "after = 'pandas' in sys.modules; import pandas.api.types, pyarrow as pa; pd = sys.modules['pandas']\n"
            "print(seen, after, pa.array(pd.Series([1.5, float('nan')])).null_count, "
            "pa.types.is_dictionary(pa.array(pd.Series(['a', 'b'], dtype='category')).type))")
    # during the load (after extract and normalize) and after it: no pandas; once imported, pyarrow knows it
    prints(api, code, "['failed'] False 1 True" if fails else "[False] False 1 True")


def test_pandas_imported_during_a_load_is_known_to_pyarrow_when_it_ends(api):
    """Imported meanwhile (after the probe, by the load's own thread here; by a notebook's other
    thread in use), pandas is taken up by pyarrow as the load ends, with no import after it."""
    code = ("import sys, analytics_kit as ak, analytics_kit.run.load as run; spy = run.release_unused\n"
            "def importing(*a):\n"
            "    import pandas\n"
            "    return spy(*a)\n"
            "run.release_unused = importing\n"
            "ak.load(ak.guide_config(), progress=False, concurrency=1)\n"
            "import pyarrow as pa; pd = sys.modules['pandas']\n"
            "print(pa.array(pd.Series([1.5, float('nan')])).null_count)")
    prints(api, code, "1")


def test_a_load_runs_while_another_thread_is_half_way_through_importing_pandas(api):
    """dlt tells frames by the module in ``sys.modules``, there from the start of its import: with
    another thread's ``import pandas`` half run (held here in a finder for 3 s), building the
    source failed as a refused config ("partially initialized module 'pandas' has no attribute
    'DataFrame'"; helper-47). Such a module is not imported yet for dlt's checks."""
    code = ("import sys, threading, time, analytics_kit as ak, analytics_kit.run.load as run\n"
            "inside = threading.Event()\n"
            "class Slow:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'pandas.core.frame' and threading.current_thread().name == 'importer':\n"
            "            inside.set(); time.sleep(3)\n"
            "sys.meta_path.insert(0, Slow())\n"
            "build = run._build\n"
            "def building(*a, **k):\n"
            "    if not inside.is_set():\n"
            "        threading.Thread(target=lambda: __import__('pandas'), name='importer').start()\n"
            "        inside.wait(60)\n"
            "        assert sys.modules['pandas'].__spec__._initializing\n"
            "    return build(*a, **k)\n"
            "run._build = building\n"
            "report = ak.load(ak.guide_config(), progress=False)\n"
            "import pandas as pd, pyarrow as pa\n"
            "print(pa.array(pd.Series([1.5, float('nan')])).null_count)")
    prints(api, code, "1")
    assert loaded(api) == served(api)


def test_dlts_frame_checks_everywhere_take_a_module_still_importing_for_none(monkeypatch):
    import importlib.machinery
    import types

    from dlt.common import libs
    from dlt.extract import utils

    from analytics_kit import seam

    seam.skip_half_imported_frame_libraries()
    half = types.ModuleType("pandas")
    half.__spec__ = importlib.machinery.ModuleSpec("pandas", None)
    half.__spec__._initializing = True  # as importlib marks a module whose body is running
    monkeypatch.setitem(sys.modules, "pandas", half)
    assert libs.is_pandas_frame(object()) is False  # was: AttributeError, no DataFrame yet
    assert utils.get_pandas_module() is None  # the name dlt's modules imported is the kit's too
    half.__spec__._initializing = False
    assert libs.get_pandas_module() is half and utils.get_pandas_module() is half


def test_an_interrupt_during_pyarrows_probe_leaves_pandas_to_be_taken_up(api):
    """The hook is in place before the probe: a Ctrl-C during the probe (the probing thread's import
    of pandas refused with KeyboardInterrupt here) left pyarrow without pandas for good (helper-47)."""
    code = ("import sys, analytics_kit as ak\n"
            "from analytics_kit.run import lean\n"
            "def interrupted(self, name, path=None, target=None):\n"
            "    if name == 'pandas': raise KeyboardInterrupt\n"
            "lean._Refuse.find_spec = interrupted\n"
            "try: ak.load(ak.guide_config(), progress=False)\n"
            "except ak.LoadError as e: print('interrupted' if e.context.get('interrupted') else e)\n"
            "import pandas as pd, pyarrow as pa\n"
            "print(pa.array(pd.Series([1.5, float('nan')])).null_count)")
    prints(api, code, "interrupted", "1")


def test_a_load_does_not_deadlock_with_a_thread_importing_pandas_as_pyarrow_probes(api):
    """Another thread's ``import pandas`` in flight (held in a finder, holding pandas' import lock)
    as the load's probe asks pyarrow for pandas: the probe waits for that import while holding
    pyarrow's lock, so a hook run inside that import must not need the lock. With the hook
    registered before the probe, both threads waited for ever (helper-48)."""
    code = ("import sys, threading, time, faulthandler, analytics_kit as ak\n"
            "from analytics_kit.run import lean\n"
            "looking = threading.Event()\n"
            "class Slow:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'pandas' and threading.current_thread().name == 'importer':\n"
            "            looking.set(); time.sleep(1)\n"
            "sys.meta_path.insert(0, Slow())\n"
            "made = lean._Refuse.__init__\n"
            "def probing(self):\n"
            "    threading.Thread(target=lambda: __import__('pandas'), name='importer', daemon=True).start()\n"
            "    looking.wait(60)\n"
            "    made(self)\n"
            "lean._Refuse.__init__ = probing\n"
            "faulthandler.dump_traceback_later(60, exit=True)\n"
            "ak.load(ak.guide_config(), progress=False)\n"
            "import pandas as pd, pyarrow as pa\n"
            "print(pa.array(pd.Series([1.5, float('nan')])).null_count)")
    prints(api, code, "1")
    assert loaded(api) == served(api)


def test_an_interrupt_before_the_probe_leaves_no_hook_that_can_deadlock_a_later_load(api):
    """An interrupt before the kit's probe leaves pyarrow's first probe to come, holding its lock
    while it imports pandas; the hook, run inside another thread's import just then, must not
    wait for that lock (helper-48's s92 hung for good)."""
    code = ("import sys, threading, faulthandler, analytics_kit as ak, analytics_kit.run.load\n"
            "from analytics_kit.run import lean\n"
            "faulthandler.dump_traceback_later(60, exit=True)\n"
            "def tracer(frame, event, arg):\n"
            "    if event == 'call' and frame.f_code is lean.skip_pandas_probe.__code__: raise KeyboardInterrupt\n"
            "sys.settrace(tracer)\n"
            "try: ak.load(ak.guide_config(), progress=False)\n"
            "except ak.LoadError as e: print('interrupted' if e.context.get('interrupted') else e)\n"
            "sys.settrace(None)\n"
            "importer = threading.Thread(target=lambda: __import__('pandas')); importer.start()\n"
            "ak.load(ak.guide_config(), progress=False); importer.join(60)\n"
            "import pandas as pd, pyarrow as pa\n"
            "print(pa.array(pd.Series([1.5, float('nan')])).null_count)")
    prints(api, code, "interrupted", "1")


def test_pandas_imported_past_the_hook_is_taken_up_by_the_next_load(api):
    """A finder ahead of wrapt's that returns pandas' spec itself (an import profiler installed after
    a load) keeps the hook from seeing the import: the next load puts pyarrow right."""
    code = ("import sys, importlib.machinery, analytics_kit as ak\n"
            "ak.load(ak.guide_config(), progress=False)\n"
            "class Own:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        return importlib.machinery.PathFinder.find_spec(name, path, target)\n"
            "sys.meta_path.insert(0, Own())\n"
            "import pandas as pd, pyarrow as pa\n"
            "before = pa.array(pd.Series([1.5, float('nan')])).null_count\n"
            "ak.load(ak.guide_config(), progress=False)\n"
            "print(before, pa.array(pd.Series([1.5, float('nan')])).null_count)")
    prints(api, code, "0 1")


def test_another_thread_can_import_pandas_while_a_load_probes_pyarrow():
    """The probe's refusal sits on the process's import path: a thread importing pandas just
    then must still get it (helper-37 had one refused)."""
    code = ("import sys, threading; from analytics_kit.run.lean import _Refuse; got = []\n"
            "def attempt():\n"
            "    try: import pandas; got.append('imported')\n"
            "    except ImportError as error: got.append(str(error))\n"
            "sys.meta_path.insert(0, _Refuse())\n"
            "attempt(); thread = threading.Thread(target=attempt); thread.start(); thread.join(60)\n"
            "print(got)")
    # refused to the probing thread, imported by the other
    prints(None, code, "['pandas is not imported while analytics-kit loads', 'imported']")


def test_the_analytics_kit_command_exits_with_the_commands_status(api, tmp_path):
    """The command ends without the interpreter's teardown: its output and status must still arrive."""
    kit = shutil.which("analytics-kit", path=os.path.dirname(sys.executable))
    env = command_env(api)
    done = subprocess.run([kit, "load"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "load id" in done.stdout, done.stderr[-2000:]
    failed = subprocess.run([kit, "query", "SELECT * FROM nowhere"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert failed.returncode == 1 and failed.stderr.startswith("error:")


@pytest.mark.parametrize("broken", ["state.json truncated", "schema file missing", "load/normalized missing",
                                    "load/loaded missing", "load missing", "normalize/extracted missing"])
def test_an_unreadable_pipeline_folder_is_restored_from_the_database(api, config, caplog, broken):
    """Also a folder with parts missing, as two quick interrupts during normalize left one: the next
    load failed (SchemaNotFoundError, FileNotFoundError), the one after it worked."""
    ak.load(config, progress=False)
    folders = list(Path("analytics.duckdb.state").glob("*/state.json"))
    assert folders
    folder = folders[0].parent
    if broken == "state.json truncated":
        (folder / "state.json").write_text("{truncated")
    elif broken == "schema file missing":
        schemas = list((folder / "schemas").glob("*.schema.json"))
        assert schemas
        for schema in schemas:
            schema.unlink()
    else:
        shutil.rmtree(folder / broken.removesuffix(" missing"))
    api.advance(new=5, updated=5)
    ak.load(config, progress=False)
    # dlt makes a missing storage folder again itself
    assert ("could not be read" in caplog.text) == (broken not in ("load missing", "normalize/extracted missing"))
    assert loaded(api) == served(api)


def test_the_command_with_stdout_closed_or_cut_short_exits_quietly(api):
    kit = shutil.which("analytics-kit", path=os.path.dirname(sys.executable))
    env = command_env(api)
    closed = subprocess.run(["bash", "-c", f"'{kit}' load --quiet >&-"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert closed.returncode == 0 and "Traceback" not in closed.stderr, closed.stderr[-2000:]
    assert loaded(api) == served(api)
    cut = subprocess.run(["bash", "-c", f"'{kit}' query 'SELECT * FROM range(100000)' | head -1"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert "Traceback" not in cut.stderr and cut.stdout.strip(), cut.stderr[-2000:]


def test_extract_does_not_sleep_dlts_default_poll_interval_when_a_resource_runs_out(api, config, monkeypatch):
    """dlt's extract sleeps its futures poll interval (10 ms by default) each time a resource is
    exhausted; the kit's resources are plain generators, and the kit shortens it (~30 ms a run)."""
    from dlt.extract.concurrency import FuturesPool

    slept: list[float] = []
    sleep = FuturesPool.sleep

    def recorded(self):
        slept.append(self.poll_interval)
        return sleep(self)

    monkeypatch.setattr(FuturesPool, "sleep", recorded)
    ak.load(config, progress=False)
    assert slept and max(slept) <= 0.001, slept
    assert loaded(api) == served(api)


def test_a_tuning_default_yields_to_the_users_dlt_config_file(api, tmp_path):
    """The kit's dlt defaults are environment variables, which dlt ranks above its config files:
    a value the user gave in .dlt/config.toml is kept (a fresh process: dlt reads the folder once)."""
    (tmp_path / ".dlt").mkdir()
    # dlt's performance guide sets the writer's file size in the normalize step's section
    (tmp_path / ".dlt" / "config.toml").write_text("[extract]\nfutures_poll_interval = 0.05\n\n"
                                                   "[normalize.data_writer]\nfile_max_items = 7000\n")
    code = ("import os, analytics_kit as ak\n"
            "from dlt.extract.concurrency import FuturesPool\n"
            "slept = []; sleep = FuturesPool.sleep\n"
            "FuturesPool.sleep = lambda self: (slept.append(self.poll_interval), sleep(self))\n"
            "ak.load(ak.guide_config(), progress=False)\n"
            "print(sorted(set(slept)), os.environ.get('NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS'),\n"
            "      os.environ.get('SOURCES__DATA_WRITER__FILE_MAX_ITEMS'))")
    env = command_env(api)
    for name in ("EXTRACT__FUTURES_POLL_INTERVAL", "NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS",
                 "SOURCES__DATA_WRITER__FILE_MAX_ITEMS"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    # the user's normalize size kept; the extract step's writer still gets the kit's bound
    assert out.stdout.split("\n")[-2] == "[0.05] None 100000", out.stderr[-2000:]
    assert loaded(api, database=str(tmp_path / "analytics.duckdb")) == served(api)
