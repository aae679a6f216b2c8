"""Kit errors in IPython and Jupyter: the message and the fix, not a traceback; ``%tb`` for the rest.

A real ``InteractiveShell`` in this process, and a real Jupyter kernel (``jupyter_client``)
for what JupyterLab receives.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell


ANSI = re.compile(r"\x1b\[[0-9;]*m")
CANARY = "canary-nb-5e1f0"

from helpers import closed_port


@pytest.fixture
def shell(capsys):
    """An IPython shell; ``run(code)`` returns what the cell printed, colours removed."""
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(colors="nocolor")

    def run(code: str) -> str:
        capsys.readouterr()
        ip.run_cell(code)
        captured = capsys.readouterr()
        return ANSI.sub("", captured.out + captured.err)

    run.ip = ip  # type: ignore[attr-defined]
    yield run
    InteractiveShell.clear_instance()


def test_a_query_error_shows_as_its_message_and_tb_gives_the_whole_traceback(shell, loaded):
    shell("import analytics_kit as ak")
    shown = shell("ak.query('SELECT evnt_type FROM analytics.events')")
    assert shown.splitlines() == [
        'QueryError: Binder Error: Referenced column "evnt_type" not found in FROM clause!',
        f"  Did you mean event_type? Tables in {loaded}: customers, events (as analytics.<table> or <table>).",
        "(%tb shows the full traceback)",
    ]
    shown = shell("ak.query('SELEC 1')")
    assert shown.splitlines()[:3] == ['QueryError: Parser Error: syntax error at or near "SELEC"',
                                      "  LINE 1: SELEC 1", "          ^^^^^"]
    full = shell("%tb")
    assert "Traceback" in full and "read/query.py" in full and "_arrow" in full
    assert "ParserException" in full  # DuckDB's own error, chained under the QueryError


@pytest.mark.parametrize("mode", ["Context", "Verbose"])
def test_a_load_error_shows_as_its_message_and_its_traceback_resolves_loads_arguments(shell, mode, monkeypatch):
    monkeypatch.setenv("API_KEY", CANARY)  # where the guide keeps the key: not in the notebook's variables
    shell(f"import analytics_kit as ak\nconfig = ak.guide_config('http://127.0.0.1:{closed_port()}')")
    shown = shell("ak.load(config, progress=False)")
    lines = shown.splitlines()
    assert lines[0].startswith("LoadError: Could not connect to 127.0.0.1:") and "refused" in lines[0]
    assert lines[1].startswith("  What to do: Check the host and port in client.base_url")
    assert lines[-1] == "(%tb shows the full traceback)" and len(lines) == 3
    full = shell(f"%tb {mode}")
    assert "Traceback" in full and "load(" in full
    assert "failed resolving arguments" not in full
    assert CANARY not in shown + full


def test_config_errors_show_as_their_message_and_the_fix(shell, monkeypatch):
    monkeypatch.delenv("API_KEY", raising=False)
    shell("import analytics_kit as ak\nconfig = ak.guide_config('http://127.0.0.1:9')")
    missing = shell("ak.build_source(config)").splitlines()
    assert missing[0].startswith("MissingSecretError: client.auth.api_key: ") and "What to do:" in missing[1]
    assert missing[-1] == "(%tb shows the full traceback)" and len(missing) == 3
    shell("import os\nos.environ['API_KEY'] = 'k' * 12\nconfig['resources'][0]['endpoint']['paginater'] = {}")
    broken = shell("ak.build_source(config)").splitlines()
    assert broken[0].startswith("ConfigError: resources[0].endpoint.paginater: unknown key 'paginater' (did you mean")
    assert broken[1].startswith("  What to do: ") and len(broken) == 3


def test_an_interrupted_load_leaves_no_frame_that_fails_to_resolve_or_holds_the_key(shell, api, monkeypatch,
                                                                                        interruptible):
    """The interrupt button stops the load wherever it is: here while it waits for the DuckDB file,
    which another process holds. It was a bare KeyboardInterrupt there, where the README promises
    the load's own error."""
    monkeypatch.setenv("API_KEY", api.api_key)
    shell(f"import analytics_kit as ak\nconfig = ak.guide_config({api.base_url!r})")
    shell("ak.load(config, progress=False)")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                               "c = duckdb.connect('analytics.duckdb'); print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        import _thread

        threading.Timer(1.0, _thread.interrupt_main).start()
        started = time.monotonic()
        shown = shell("ak.load(config, progress=False, lock_timeout=20)")
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    assert "The load was interrupted during the wait for the DuckDB file" in shown, shown
    full = shell("%tb Verbose")
    assert "failed resolving arguments" not in shown + full
    assert api.api_key not in shown + full
    assert "LoadError" in shown


class _DropsAnInterrupt:
    """Interrupts the main thread from its finalizer and is still running when the interrupt is
    handled, so CPython drops it ("Exception ignored in ..."), as it drops one that lands in any
    finalizer a garbage collection runs."""

    dropped: list[str] = []

    def __del__(self) -> None:
        import _thread

        total = 0
        try:
            _thread.interrupt_main()
            for i in range(100_000):  # the interrupt is handled in here
                total += i
        except KeyboardInterrupt:
            self.dropped.append("here")
            raise


class _CollectsOnWarning(logging.Handler):
    """When the load says it waits for the file, lets a collection run ``_DropsAnInterrupt``'s finalizer."""

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting up to" in record.getMessage():
            garbage = _DropsAnInterrupt()
            garbage.cycle = garbage  # freed by the collector, not by its reference count
            del garbage
            gc.collect()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # pytest's report of the drop
@pytest.mark.parametrize("where", ["the DuckDB file", "the load lock"])
def test_an_interrupt_a_finalizer_drops_still_stops_the_load(shell, api, monkeypatch, tmp_path, where,
                                                              interruptible):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_KEY", api.api_key)
    shell(f"import analytics_kit as ak\nconfig = ak.guide_config({api.base_url!r})")
    shell("ak.load(config, progress=False)")
    if where == "the DuckDB file":
        holding = "import duckdb\nc = duckdb.connect('analytics.duckdb')"
    else:  # another load's lock on the pipeline folder beside the file
        holding = ("import fcntl, os\nfd = os.open('analytics.duckdb.state/load.lock', os.O_RDWR)\n"
                   "fcntl.flock(fd, fcntl.LOCK_EX)")
        assert (tmp_path / "analytics.duckdb.state/load.lock").exists()
    holder = subprocess.Popen([sys.executable, "-c", f"{holding}\nimport time\nprint('held', flush=True)\n"
                               "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    handler = _CollectsOnWarning()
    logging.getLogger("analytics_kit").addHandler(handler)
    try:
        started = time.monotonic()
        shown = shell("ak.load(config, progress=False, lock_timeout=20)")
        waited = time.monotonic() - started
    finally:
        logging.getLogger("analytics_kit").removeHandler(handler)
        holder.kill()
        holder.wait()
    assert _DropsAnInterrupt.dropped.pop() == "here"  # the interrupt arrived in the finalizer, which dropped it
    step = "the DuckDB file" if where == "the DuckDB file" else "another load of this database"
    assert waited < 10 and f"The load was interrupted during the wait for {step}" in shown, shown
    assert "locked by another" not in shown and "waited 20 s" not in shown


def test_an_interrupt_does_not_wait_for_the_workers_retry_schedule(api, monkeypatch, tmp_path, interruptible):
    """A page the API keeps failing waits 2, 4 and 8 s between attempts (the guide's policy) in a worker;
    an interrupt then waited for that whole schedule before the load stopped."""
    import analytics_kit as ak

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_KEY", api.api_key)
    api.inject("status", path="/v1/events", offset=200, status=503, times=None)

    def interrupt_after_the_first_503() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(r.status == 503 for r in api.requests):
            time.sleep(0.02)
        time.sleep(0.3)  # the worker is in its 2 s backoff
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    sent: list[float] = []
    threading.Thread(target=interrupt_after_the_first_503, daemon=True).start()
    with pytest.raises(ak.LoadError) as caught:
        ak.load(ak.guide_config(api.base_url), progress=False)
    stopped = time.monotonic() - sent[0]
    assert "interrupted" in str(caught.value) and stopped < 1.5, (stopped, str(caught.value))
    time.sleep(2.5)  # the worker would have sent its retry by now
    assert sum(r.status == 503 for r in api.requests) == 1


def test_a_jupyter_kernel_sends_the_message_and_the_fix_and_tb_sends_the_traceback(loaded):
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(loaded.parent))
    try:
        def run(code: str) -> list[dict]:
            msg_id = client.execute(code)
            found = []
            while True:
                message = client.get_iopub_msg(timeout=60)
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                    return found
                if message["msg_type"] in ("error", "stream"):
                    found.append(message)

        run("import analytics_kit as ak")
        errors = [m["content"] for m in run("ak.query('SELECT * FROM analytics.evnts')") if m["msg_type"] == "error"]
        assert len(errors) == 1 and errors[0]["ename"] == "QueryError"
        shown = [ANSI.sub("", line) for line in errors[0]["traceback"]]
        assert shown[0] == "QueryError: Catalog Error: Table with name evnts does not exist!"
        assert shown[1].startswith("  Did you mean events? Tables in ") and len(shown) == 3
        full = "\n".join(ANSI.sub("", line) for m in run("%tb") for line in m["content"].get("traceback", [])
                         + [m["content"].get("text", "")])
        assert "Traceback" in full and "query.py" in full
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_the_first_cell_run_again_closes_its_earlier_demo_api_and_folder(monkeypatch):
    """Each rerun of a notebook's first cell left another demo API running and its folder behind (helper-125)."""
    import requests

    from analytics_kit.notebook import start

    monkeypatch.delenv("ANALYTICS_API_BASE_URL", raising=False)
    first = start("rerun-test", events=50, customers=5)
    second = start("rerun-test", events=50, customers=5)
    try:
        assert not first.workdir.exists() and second.workdir.exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(first.base_url, timeout=2)
        assert requests.get(f"{second.base_url}/v1/events", params={"api_key": second.api.api_key},
                            timeout=5).status_code == 200
    finally:
        second.api.close()


@pytest.mark.parametrize("restart", [False, True], ids=["shut-down", "restarted"])
def test_a_kernel_shut_down_or_restarted_removes_its_data_folder(tmp_path, restart):
    """Each kernel left its data folder, database and all, in the temp folder (helper-129)."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        msg_id = client.execute("from analytics_kit.notebook import start\n"
                                "started = start('tidy-test', events=50, customers=5)\n"
                                "print(started.workdir)")
        printed = ""
        while True:
            message = client.get_iopub_msg(timeout=60)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                printed += message["content"]["text"]
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        workdir = Path(printed.strip())
        assert workdir.is_dir() and workdir.name.startswith("analytics-kit-tidy-test-")
        if restart:
            manager.restart_kernel()
        else:
            manager.shutdown_kernel()
        deadline = time.monotonic() + 30
        while workdir.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not workdir.exists()
    finally:
        client.stop_channels()
        if manager.is_alive():
            manager.shutdown_kernel(now=True)


def test_a_half_set_environment_says_the_demo_api_runs(monkeypatch, capsys):
    """ANALYTICS_API_BASE_URL without API_KEY ran on the demo API without a word; with the demo's key left from an
    earlier run in API_KEY, the real API got it and answered 401 (helper-125)."""
    from analytics_kit.notebook import start

    monkeypatch.delenv("ANALYTICS_API_BASE_URL", raising=False)
    monkeypatch.delenv("API_KEY", raising=False)
    demo_run = start("half-set-test", events=50, customers=5)
    assert demo_run.api is not None and capsys.readouterr().out == ""
    monkeypatch.setenv("ANALYTICS_API_BASE_URL", "http://127.0.0.1:9")  # the demo's key is still in API_KEY
    again = start("half-set-test", events=50, customers=5)
    try:
        assert again.api is not None and "runs on the demo API" in capsys.readouterr().out
        monkeypatch.setenv("API_KEY", "a-real-key-1234")
        real = start("half-set-test")
        assert real.api is None and real.base_url == "http://127.0.0.1:9"
    finally:
        if again.api is not None:
            again.api.close()


START_WITH_SECRETS_FILE = """
import os, sys
import analytics_kit as ak
from analytics_kit.notebook import start
first = start("secrets-file-test", events=50, customers=5)      # no base URL: the demo API, its key where dlt looks
assert first.api is not None and os.environ["API_KEY"] == first.api.api_key
report = ak.load(ak.guide_config(first.base_url), database="demo.duckdb", progress=False)  # the demo's key is sent
assert report.rows["events"] == 50, report
os.environ["ANALYTICS_API_BASE_URL"] = sys.argv[1]
again = start("secrets-file-test")                                # the key in .dlt/secrets.toml counts
assert again.api is None and again.base_url == sys.argv[1], again
assert not any(k in os.environ for k in ("API_KEY", "SOURCES__ANALYTICS__CREDENTIALS__API_KEY"))  # read first by dlt
from analytics_kit.config.prepared import prepare
assert prepare(ak.guide_config(again.base_url)).secrets == ("file-key-8c2d51",)
print("ok")
"""


@pytest.mark.parametrize("written", ['api_key = "file-key-8c2d51"\n',
                                     '[sources.analytics.credentials]\napi_key = "file-key-8c2d51"\n'],
                         ids=["top", "section"])
def test_a_key_in_dlt_secrets_file_runs_the_notebook_on_the_users_api(tmp_path, written):
    """Notebook 1 names .dlt/secrets.toml as the place for the key: with the base URL set, start() ran the demo API
    anyway, and the demo's key in API_KEY was the one dlt read first (helper-129); a key under the source's section
    was sent to the demo API instead of its own (helper-131). In a fresh process: dlt reads its files once a process."""
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "secrets.toml").write_text(written)
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "ANALYTICS_API_BASE_URL")}
    done = subprocess.run([sys.executable, "-c", START_WITH_SECRETS_FILE, "http://127.0.0.1:9"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


UNREADABLE_SECRETS = """
import os, sys
import analytics_kit as ak
from analytics_kit.notebook import start
try:
    ak.load(ak.guide_config("http://127.0.0.1:9", "a-key-5555"), database="a.duckdb", progress=False)
except ak.ConfigError as error:
    print("load:", error)
os.environ["ANALYTICS_API_BASE_URL"] = "http://127.0.0.1:9"
try:
    start("unreadable-secrets-test")
except ak.ConfigError as error:
    print("start:", error)
"""


def test_a_secrets_file_dlt_cannot_parse_is_named(tmp_path):
    """A value without quotes in .dlt/secrets.toml: the load said "dlt refuses this source name", and start() ran the
    demo API as if no key were there, the next cell failing with 6,400 characters of dlt's traceback (helper-131)."""
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "secrets.toml").write_text("api_key = sk_test_X123\n")
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "ANALYTICS_API_BASE_URL")}
    done = subprocess.run([sys.executable, "-c", UNREADABLE_SECRETS], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    said = done.stdout
    assert said.count("dlt cannot read its secrets or config file (./.dlt/secrets.toml") == 2, (said, done.stderr)
    assert "line 1 col 10" in said and "TOML wants text in quotes" in said and "source name" not in said
    assert "sk_test_X123" not in said + done.stderr


def test_the_users_own_key_comes_back_once_a_demo_api_replaced_it(monkeypatch, capsys):
    """API_KEY set, no base URL: the demo API's key replaced the user's; setting the base URL and running the first
    cell again ran the demo API once more, the user's key gone from the kernel."""
    from analytics_kit.notebook import start

    monkeypatch.delenv("ANALYTICS_API_BASE_URL", raising=False)
    monkeypatch.setenv("API_KEY", "users-own-key-4471")
    demo_run = start("set-aside-test", events=50, customers=5)
    assert demo_run.api is not None and os.environ["API_KEY"] == demo_run.api.api_key
    monkeypatch.setenv("ANALYTICS_API_BASE_URL", "http://127.0.0.1:9")
    real = start("set-aside-test")
    assert real.api is None and os.environ["API_KEY"] == "users-own-key-4471"
    assert "runs on the demo API" not in capsys.readouterr().out
