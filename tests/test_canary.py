"""The secret canary: an API key that must never show up anywhere it was not put.

The key is a canary string. Loads that succeed, fail on 500s, get a 401 whose body echoes
the request, hit a closed port, time out, or have a broken config run at INFO and at DEBUG
(the root logger at DEBUG too, into a log file and a StringIO), with the key under the
usual ``api_key`` parameter (from dlt secrets, ``API_KEY``) and under ``ak``, a name dlt's
own redaction does not know (inline in the config). Afterwards the canary, its URL-encoded
form and its random core are searched for in every file written under the test's folder
(DuckDB tables column by column and the decoded pipeline state, the pipelines folder with
``trace.pickle`` unpickled, the logs), in the captured stdout and stderr, in the exceptions
(str, repr, args, attributes, the whole cause/context chain) and their tracebacks with
locals (frames in analytics_kit, dlt, requests and urllib3), in the load reports, and in
the notebooks' stored outputs. Expected: 0 hits. ``-s`` prints the number of places checked.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import re
import secrets
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote, quote_plus

import pytest

import analytics_kit as ak
from analytics_kit import demo
from leaks import REPO, Search, search_error, search_files

TINY_BACKOFF = {"retry_on_status_codes": [429, 500, 502, 503, 504], "max_retries": 2, "backoff_factor": 0.001}
# The timeout case sets error_handler.timeout to this many seconds.
SHORT_TIMEOUT = 0.3
KEY_IN_URL = re.compile(r"\b(api_key|ak)=[^*&\"\s\\]{4,}")


def _canary() -> str:
    # '+', '/' and '=' make the URL-encoded form differ from the plain one.
    return f"CANARY-{secrets.token_hex(8)}+k/y="


# -- the loads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    # Called with the running API and the config; returns the config to load.
    prepare: Callable[[demo.DemoAPI, dict, pytest.MonkeyPatch], dict]
    fails: bool = True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _succeeds(api, config, mp):
    return config


def _always_500(api, config, mp):
    api.inject("status", status=500, times=None)
    return config


def _echo_401(api, config, mp):
    api.inject("echo_401", times=None)
    return config


def _closed_port(api, config, mp):
    config["client"]["base_url"] = f"http://127.0.0.1:{_free_port()}"
    return config


def _times_out(api, config, mp):
    api.inject("latency", seconds=SHORT_TIMEOUT * 4, times=None)
    for resource in config["resources"]:
        resource["endpoint"]["error_handler"]["max_retries"] = 1
        resource["endpoint"]["error_handler"]["timeout"] = SHORT_TIMEOUT
    return config


def _broken_config(api, config, mp):
    # A misspelled key next to the secret: validators like to print the block they reject.
    auth = config["client"]["auth"]
    auth["locaton"] = auth.pop("location")
    return config


def _rejected_by_dlt(api, config, mp):
    # Passes the kit's own checks; dlt's validator rejects it after the key was resolved.
    config["resources"][0]["endpoint"]["data_selector"] = 5
    return config


def _broken_config_top(api, config, mp):
    config["resourcs"] = config.pop("resources")
    return config


CASES = (
    Case("succeeds", _succeeds, fails=False),
    Case("always 500", _always_500),
    Case("401 echoing the request", _echo_401),
    Case("closed port", _closed_port),
    Case("times out", _times_out),
    Case("misspelled auth key", _broken_config),
    Case("misspelled top-level key", _broken_config_top),
    Case("rejected by dlt's validator", _rejected_by_dlt),
)
# (query parameter name, where the key comes from, pages fetched at once): concurrency 1 goes
# through dlt's own paginate and its DEBUG request logs, more goes through the kit's pager.
KEYS = (("api_key", "dlt secrets (API_KEY)", 8), ("ak", "inline in the config", 1))
LEVELS = ("INFO", "DEBUG")


@contextmanager
def _levels(level: int, names: tuple[str, ...]) -> Iterator[None]:
    """Loggers at ``level`` for the block; setLevel (not the attribute) also clears their caches."""
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, before):
            logger.setLevel(old)


@dataclass
class Outcome:
    where: str
    error: BaseException | None = None
    report: Any = None
    caller_config: dict | None = None


def _run(case: Case, key_param: str, source: str, concurrency: int, level: str, canary: str, folder: Path,
         monkeypatch: pytest.MonkeyPatch) -> Outcome:
    where = f"load '{case.name}' with the key as {key_param}= from {source}, concurrency {concurrency}, at {level}"
    with demo.serve(events=120, customers=10, seed=5, api_key=canary, key_param=key_param) as api, \
            monkeypatch.context() as mp:
        inline = source.startswith("inline")
        if not inline:
            mp.setenv("API_KEY", canary)
        config = ak.guide_config(api.base_url, canary if inline else None)
        config["client"]["auth"]["name"] = key_param
        for resource in config["resources"]:
            resource["endpoint"]["error_handler"] = copy.deepcopy(TINY_BACKOFF)
        config = case.prepare(api, config, mp)
        outcome = Outcome(where, caller_config=config)
        mp.setenv("RUNTIME__LOG_LEVEL", level)
        levels = _levels(getattr(logging, level), ("dlt", "analytics_kit", "urllib3", "requests"))
        database = folder / f"{case.name}-{key_param}-{level}".replace(" ", "_").replace("'", "") / "analytics.duckdb"
        try:
            with levels:
                outcome.report = ak.load(config, database=str(database), concurrency=concurrency)
        except Exception as error:  # noqa: BLE001 - every failure is searched below
            outcome.error = error
        assert (outcome.error is not None) == case.fails, f"{where}: {outcome.error!r}"
        return outcome


# -- where to search -----------------------------------------------------------------------


def _search_notebooks(search: Search) -> None:
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        for n, cell in enumerate(cells):
            for output in cell.get("outputs", []):
                text = json.dumps(output)
                where = f"{notebook.name} cell {n} output"
                search.text(where, text)
                found = KEY_IN_URL.search(text.replace("\\n", " "))
                if found:
                    search.hits.append(f"{where}: a key value in a URL: {found.group(0)!r}")


# -- the test ------------------------------------------------------------------------------


def test_the_api_key_never_leaks(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch, record_property) -> None:
    canary = _canary()
    search = Search({"canary": canary, "URL-encoded canary": quote(canary, safe=""),
                     "form-encoded canary": quote_plus(canary), "canary core": canary[7:23]})
    log_file = tmp_path / "logs" / "all.log"
    log_file.parent.mkdir()
    memory = io.StringIO()
    handlers = [logging.FileHandler(log_file), logging.StreamHandler(memory)]
    formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    root = logging.getLogger()
    root_level = root.level
    root.setLevel(logging.DEBUG)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.setLevel(logging.DEBUG)
        root.addHandler(handler)
    outcomes = []
    try:
        for key_param, source, concurrency in KEYS:
            for level in LEVELS:
                for case in CASES:
                    outcomes.append(_run(case, key_param, source, concurrency, level, canary, tmp_path / "loads",
                                         monkeypatch))
    finally:
        root.setLevel(root_level)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()

    captured = capfd.readouterr()
    search.text("captured stdout", captured.out)
    search.text("captured stderr", captured.err)
    search.text("root logger StringIO", memory.getvalue())
    assert "DEBUG" in memory.getvalue(), "the DEBUG records did not reach the root logger"
    for outcome in outcomes:
        if outcome.error is not None:
            search_error(search, outcome.where, outcome.error, outcome.caller_config)
        else:
            search.text(f"{outcome.where}: report repr", repr(outcome.report))
            search.text(f"{outcome.where}: report str", str(outcome.report))
    search_files(search, tmp_path)
    _search_notebooks(search)

    summary = f"canary: {search.places} places checked, {len(search.hits)} hits"
    record_property("canary_places_checked", search.places)
    record_property("canary_hits", len(search.hits))
    with capfd.disabled():
        print(f"\n{summary} ({len(outcomes)} loads)")
    assert len(outcomes) == len(KEYS) * len(LEVELS) * len(CASES)
    # dlt's trace, which kept an endpoint's path as written (helper-125), is no longer written at all
    assert not any(p.name == "trace.pickle" for p in tmp_path.rglob("*")), "a trace.pickle was written"
    assert any(p.suffix == ".duckdb" for p in tmp_path.rglob("*")), "no database was searched"
    assert not search.hits, f"{summary}:\n" + "\n".join(search.hits)


@pytest.mark.parametrize("reader", [None, "query", "tables"])
def test_a_destination_object_passed_as_the_destination_is_named_by_its_type_not_its_credentials(tmp_path: Path,
                                                                                                 reader):
    """dlt's destination objects print their credentials: the error named the argument with its repr, password
    included. The readers take the argument too."""
    import dlt

    password = f"S3cret-{secrets.token_hex(6)}"
    destination = dlt.destinations.postgres(credentials=f"postgresql://loader:{password}@127.0.0.1:1/x")
    config = ak.guide_config("http://127.0.0.1:1", "key")
    with pytest.raises(ak.ConfigError) as raised:
        if reader is None:
            ak.load(config, database=str(tmp_path / "a.duckdb"), destination=destination, progress=False)
        elif reader == "query":
            ak.query("SELECT 1", database=str(tmp_path / "a.duckdb"), destination=destination)
        else:
            ak.tables(database=str(tmp_path / "a.duckdb"), destination=destination)
    text = str(raised.value) + repr(raised.value)
    assert password not in text and "loader:" not in text, text
    assert "got a postgres object" in text and "DESTINATION__POSTGRES__CREDENTIALS" in text, text



# Ways a credential reaches an argument; each a function of the password
HOLDING = {
    "a connection string": lambda pw: f"postgresql://loader:{pw}@127.0.0.1:1/x",
    "a dict": lambda pw: {"credentials": f"postgresql://loader:{pw}@127.0.0.1:1/x"},
    "a Path, which collapses //": lambda pw: Path(f"postgresql://loader:{pw}@127.0.0.1:1/x"),
    "a MotherDuck string": lambda pw: f"md:analytics?motherduck_token={pw}",
    "a key=value string": lambda pw: f"host=127.0.0.1 user=loader password={pw}",
    "a percent-encoded URL": lambda pw: quote(f"postgresql://loader:{pw}@127.0.0.1:1/x", safe=""),
}


@pytest.mark.parametrize("argument", ["database", "destination", "dataset"])
@pytest.mark.parametrize("given", list(HOLDING))
def test_an_argument_holding_credentials_is_refused_without_showing_them(tmp_path: Path, monkeypatch, argument,
                                                                          given):
    """A connection string passed as the database made a folder named after it, password included; as the
    destination, the error quoted it lowercased, past the masking; as a dataset, dlt's error quoted it."""
    monkeypatch.chdir(tmp_path)
    password = f"S3cret-{secrets.token_hex(6)}"
    value = HOLDING[given](password)
    with pytest.raises(ak.ConfigError) as raised:
        ak.tables(**{argument: value})
    text = str(raised.value) + repr(raised.value)
    assert password not in text and password.lower() not in text and "loader" not in text, text
    kit_frames = __import__("traceback").walk_tb(raised.value.__traceback__.tb_next)  # past this test's own frame
    assert not [frame for frame, _ in kit_frames if password in repr(frame.f_locals)]
    assert not [p for p in tmp_path.rglob("*") if password in str(p)]



def test_a_warehouse_readers_driver_error_quoting_the_credentials_is_masked(tmp_path: Path, monkeypatch):
    """psycopg quotes a DSN whose scheme it does not know (POSTGRESQL://) whole, password included; the load
    masked it, the readers did not."""
    monkeypatch.chdir(tmp_path)
    password = f"S3cret-{secrets.token_hex(6)}"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", f"POSTGRESQL://loader:{password}@127.0.0.1:1/x")
    with pytest.raises(ak.QueryError) as raised:
        ak.query("SELECT 1", destination="postgres")
    text = str(raised.value) + repr(raised.value)
    assert password not in text and "The query failed on" in text, text
