"""Peer benchmark: the `analytics-kit load` command against dlt (fastest public options), Singer and PyAirbyte.

    .venv/bin/python bench/peers.py [--events 100000] [--peers dlt,singer,airbyte] [--keep]

    .venv/bin/python bench/peers.py                              # 100,000 events, every peer
    .venv/bin/python bench/peers.py --events 10000 --peers dlt,singer
    .venv/bin/python bench/peers.py --keep                       # keep the run folder to inspect

Each peer gets its own venv under bench/.peers/<name>/ (gitignored), created on first use and
reused while its package list is unchanged; what it installs is printed:

- dlt: ``dlt[duckdb]`` at the versions constraints.txt pins (the kit's dlt and duckdb), its
  ``rest_api_source`` on the kit's config (less the kit-only ``error_handler``), with jsonl
  loader files, no compression, a big writer buffer and 2 load workers;
- singer: ``tap-rest-api-msdk`` piped into ``target-duckdb``; incremental through Singer state
  (the target's last STATE line, fed back to the tap with ``--state``);
- airbyte: PyAirbyte with a declarative (low-code YAML) manifest for the demo API and its
  DuckDB cache, offline (``AIRBYTE_OFFLINE_MODE=1``, ``DO_NOT_TRACK=1``).

Two peers need a fix that is merged or proposed upstream but not released; both are applied
here and printed: target-duckdb 0.8.0 drops the first row of every batch with duckdb 2.x, and
PyAirbyte 0.71.3 gives declarative sources no ``--state``, so their incremental runs re-read all.

One run against one demo API (in a subprocess): every loader's full load (N events + 50
customers) against the same data, a check of every table against the API, one
``api.advance()`` that changes 1% of the events, then every loader's incremental run from its
own full load, and the check again. Each run is a fresh process; its wall time includes
starting Python, the imports and the exit, and "load only" runs from the end of the imports to
the end of the load, taken inside the child as bench/load_speed.py does. A table that differs
from the API is reported WRONG with the difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = ROOT / "bench" / ".peers"
KEY_ENV = "BENCH_API_KEY"
SOURCE_NAME = "source-analytics-demo"
CHILD_TIMEOUT = 3600  # seconds; a hung loader must not hang the benchmark


# -- the peers' environments -------------------------------------------------------------------

# The versions the fixes below were written against are pinned, so a new release cannot make a
# fix silently miss; the dlt peer takes the kit's own pins (constraints.txt).
PACKAGES = {
    # the kit as a user installs it: its runtime dependencies only, none of the development tools
    # (Jupyter and the rest make every import of dlt scan ~140 installed distributions for plugins)
    "kit": ["-e", str(ROOT)],
    "dlt": ["dlt[duckdb]"],
    "singer": ["tap-rest-api-msdk==1.4.2", "target-duckdb==0.8.0", "duckdb==2.0.1"],
    "airbyte": ["airbyte==0.71.3"],
}
CONSTRAINTS = {"kit": ROOT / "constraints.txt", "dlt": ROOT / "constraints.txt"}
SHOWN = {  # the packages named when a venv is set up or reused
    "kit": ("analytics-kit", "dlt", "duckdb"),
    "dlt": ("dlt", "duckdb"),
    "singer": ("tap-rest-api-msdk", "singer-sdk", "target-duckdb", "duckdb"),
    "airbyte": ("airbyte", "airbyte-cdk", "duckdb"),
}

# target-duckdb 0.8.0 COPYs each batch from a headerless CSV without saying so; duckdb 2.x then
# takes the first row for a header and drops it. jwills/target-duckdb#58 (merged, unreleased)
# adds HEADER 0. Raw strings: the file holds the two backslashes literally.
TARGET_DUCKDB_FILE = "target_duckdb/db_sync.py"
TARGET_DUCKDB_OLD = r"""WITH (new_line '\\r\\n')"""
TARGET_DUCKDB_NEW = r"""WITH (new_line '\\r\\n', HEADER 0)"""

NOTES = {
    "dlt": "dlt[duckdb] at the kit's pins; rest_api_source on the kit's config without "
           "error_handler; loader_file_format=jsonl, NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION"
           "=true, DATA_WRITER__BUFFER_MAX_ITEMS={buffer}, LOAD__WORKERS=2",
    "singer": "FIX: target-duckdb 0.8.0 drops the first row of each batch with duckdb 2.x (its "
              "headerless CSV is read as having a header); applied the upstream fix "
              "(jwills/target-duckdb#58, merged, unreleased: COPY ... HEADER 0) in its venv, "
              "keeping duckdb 2.0.1 as the kit has. Tap config: explicit schemas (no inference "
              "request), pagination_initial_offset 0 (default 1 skips the first record), "
              "properties kept as one JSON text (except_keys)",
    "airbyte": "FIX: PyAirbyte 0.71.3 builds declarative sources without the --state file it "
               "writes, so every incremental run re-reads everything from start_datetime; the "
               "child passes --state/--catalog to ConcurrentDeclarativeSource as the open "
               "upstream PR airbytehq/PyAirbyte#1164 does. Manifest: a spec block is required; "
               "AIRBYTE_OFFLINE_MODE=1 and DO_NOT_TRACK=1 keep it off the network",
}


def pip(python: Path, *args: str) -> str:
    """Runs pip in a venv; its output is kept and shown only if it fails."""
    done = subprocess.run([str(python), "-m", "pip", *args, "--disable-pip-version-check"],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"pip {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


def ensure_venv(name: str) -> Path:
    """The peer's venv python, created and installed on first use, reused after."""
    venv = PEERS_DIR / name
    python = venv / "bin" / "python"
    pins = CONSTRAINTS[name].read_text() if name in CONSTRAINTS else ""
    if name == "kit":
        pins += (ROOT / "pyproject.toml").read_text()  # its dependencies may change
    wanted = json.dumps({"packages": PACKAGES[name],
                         "constraints": hashlib.sha256(pins.encode()).hexdigest()})
    stamp = venv / ".bench-installed"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        print(f"  {name:<8} reusing {venv.relative_to(ROOT)}: {installed_versions(name, python)}")
    else:
        shutil.rmtree(venv, ignore_errors=True)
        command = ["install", "--quiet", *PACKAGES[name]]
        if name in CONSTRAINTS:
            command += ["-c", str(CONSTRAINTS[name])]
        print(f"  {name:<8} creating {venv.relative_to(ROOT)}: pip {' '.join(command)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip(python, *command)
        (venv / "freeze.txt").write_text(pip(python, "freeze"))
        stamp.write_text(wanted)
        print(f"  {'':<8} installed: {installed_versions(name, python)} "
              f"(all: {(venv / 'freeze.txt').relative_to(ROOT)})")
    if name == "kit":
        # pip byte-compiles the peers' packages, not an editable install: the kit's modules are
        # compiled here, so that no child pays for it (~80 ms of an incremental run)
        subprocess.run([str(python), "-m", "compileall", "-q", str(ROOT / "analytics_kit"),
                        *(str(ROOT / f"{module}.py") for module in ("analytics_kit_command", "analytics_kit_regex_cache"))],
                       check=True)
    if name == "singer":
        fix_target_duckdb(python)
    return python


def installed_versions(name: str, python: Path) -> str:
    """The versions of the packages that matter for this peer, from its pip freeze."""
    freeze = (python.parents[1] / "freeze.txt").read_text().lower().splitlines()
    versions = dict(line.split("==", 1) for line in freeze if "==" in line)
    return ", ".join(f"{p} {versions.get(p, '?')}" for p in SHOWN[name])


def fix_target_duckdb(python: Path) -> None:
    """Applies the upstream HEADER 0 fix to target-duckdb in the singer venv (idempotent)."""
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    path = Path(site) / TARGET_DUCKDB_FILE
    text = path.read_text()
    if TARGET_DUCKDB_NEW in text:
        print(f"  {'':<8} the target-duckdb HEADER 0 fix is in place ({TARGET_DUCKDB_FILE})")
        return
    if text.count(TARGET_DUCKDB_OLD) != 1:
        sys.exit(f"{path}: the COPY statement the fix is for is not there; check the fix")
    path.write_text(text.replace(TARGET_DUCKDB_OLD, TARGET_DUCKDB_NEW))
    print(f"  {'':<8} applied the target-duckdb HEADER 0 fix to {path.relative_to(ROOT)}")


# -- what the parent writes into each peer's folder ---------------------------------------------

JSON_TYPES = {"bigint": "integer", "text": "string", "double": "number", "bool": "boolean",
              "timestamp": "string", "json": "object"}


def json_schema(columns: dict, json_as_text: bool = False) -> dict:
    """The kit's column hints (guide.COLUMNS) as a JSON schema, so every peer types the same."""
    properties = {}
    for name, hint in columns.items():
        kind = JSON_TYPES[hint["data_type"]]
        if kind == "object" and json_as_text:
            kind = "string"
        prop: dict = {"type": [kind, "null"] if hint.get("nullable", True) else kind}
        if hint["data_type"] == "timestamp":
            prop["format"] = "date-time"
        if hint["data_type"] == "bigint":
            prop["maximum"] = 2**63 - 1  # target-duckdb makes an unbounded integer a HUGEINT
        properties[name] = prop
    return {"type": "object", "properties": properties}


def dlt_config(base_url: str) -> dict:
    """The kit's config as plain dlt takes it: without the kit-only error_handler or the key."""
    from analytics_kit import guide_config

    config = guide_config(base_url, "set-in-the-child")
    config["client"]["auth"]["api_key"] = None
    for resource in config["resources"]:
        resource["endpoint"].pop("error_handler", None)
    return config


def singer_configs(base_url: str, api_key: str, folder: Path) -> None:
    """The tap's config (the guide's API in tap-rest-api-msdk's terms) and the target's."""
    from analytics_kit.config.guide import COLUMNS, INITIAL_CURSOR

    streams = [{"name": name, "path": f"/v1/{name}",
                "schema": json_schema(COLUMNS[name], json_as_text=True)} for name in COLUMNS]
    streams[0]["except_keys"] = ["properties"]  # events: keep properties whole, as one JSON text
    tap = {
        "api_url": base_url, "params": {"api_key": api_key}, "records_path": "$.data[*]",
        "streams": streams, "primary_keys": ["id"], "replication_key": "updated_at",
        "start_date": INITIAL_CURSOR, "source_search_field": "updated_since",
        "source_search_query": "$last_run_date",
        # offset paging that reads offset, limit and total from the body's top level ($)
        "pagination_request_style": "offset_paginator", "pagination_response_style": "offset",
        "pagination_page_size": 100, "pagination_initial_offset": 0, "next_page_token_path": "$",
        "pagination_total_limit_param": "total",
    }
    (folder / "tap.json").write_text(json.dumps(tap))
    (folder / "target.json").write_text(json.dumps({"path": str(folder / "singer.duckdb"),
                                                    "default_target_schema": "main"}))


AIRBYTE_MANIFEST = """\
version: 6.7.0
type: DeclarativeSource
spec:
  type: Spec
  connection_specification:
    type: object
    required: [base_url, api_key]
    properties:
      base_url: {type: string}
      api_key: {type: string, airbyte_secret: true}
check:
  type: CheckStream
  stream_names: [events]
definitions:
  stream:
    type: DeclarativeStream
    primary_key: [id]
    retriever:
      type: SimpleRetriever
      requester:
        type: HttpRequester
        url_base: "{{ config['base_url'] }}"
        path: "/v1/{{ parameters['name'] }}"
        http_method: GET
        authenticator:
          type: ApiKeyAuthenticator
          api_token: "{{ config['api_key'] }}"
          inject_into: {type: RequestOption, inject_into: request_parameter, field_name: api_key}
      record_selector:
        type: RecordSelector
        extractor: {type: DpathExtractor, field_path: [data]}
      paginator:
        type: DefaultPaginator
        page_token_option: {type: RequestOption, inject_into: request_parameter, field_name: offset}
        page_size_option: {type: RequestOption, inject_into: request_parameter, field_name: limit}
        pagination_strategy: {type: OffsetIncrement, page_size: 100}
    incremental_sync:
      type: DatetimeBasedCursor
      cursor_field: updated_at
      datetime_format: "%Y-%m-%dT%H:%M:%SZ"
      start_datetime: "__START__"
      start_time_option: {type: RequestOption, inject_into: request_parameter, field_name: updated_since}
streams:
  - $ref: "#/definitions/stream"
    name: events
    $parameters: {name: events}
    schema_loader: {type: InlineSchemaLoader, schema: __EVENTS_SCHEMA__}
  - $ref: "#/definitions/stream"
    name: customers
    $parameters: {name: customers}
    schema_loader: {type: InlineSchemaLoader, schema: __CUSTOMERS_SCHEMA__}
"""


def airbyte_manifest(folder: Path) -> None:
    """The manifest, with the kit's columns as inline schemas (JSON is valid YAML)."""
    from analytics_kit.config.guide import COLUMNS, INITIAL_CURSOR

    text = (AIRBYTE_MANIFEST.replace("__START__", INITIAL_CURSOR)
            .replace("__EVENTS_SCHEMA__", json.dumps(json_schema(COLUMNS["events"])))
            .replace("__CUSTOMERS_SCHEMA__", json.dumps(json_schema(COLUMNS["customers"]))))
    (folder / "manifest.yaml").write_text(text)


def prepare_folder(name: str, folder: Path, base_url: str, api_key: str) -> None:
    """The loader's empty folder, with the config files its child reads."""
    folder.mkdir(parents=True)
    if name == "dlt":
        (folder / "dlt_config.json").write_text(json.dumps(dlt_config(base_url)))
    elif name == "singer":
        singer_configs(base_url, api_key, folder)
    elif name == "airbyte":
        airbyte_manifest(folder)


# -- the child side: one load in a fresh process, run by the loader's own venv ------------------
# Only the standard library above this point runs in the children: this file is their script.


def load_kit(base_url: str, folder: str, mode: str) -> None:
    """``analytics-kit load`` as the shell runs it (the guide's config from the environment)."""
    from analytics_kit import cli

    os.environ.update(ANALYTICS_API_BASE_URL=base_url, API_KEY=os.environ[KEY_ENV])
    argv = ["load", "--quiet", "--database", f"{folder}/kit.duckdb"] + (["--full-refresh"] if mode == "full" else [])
    if cli.main(argv, lean=True):  # as the command runs it (cli.run)
        raise SystemExit("analytics-kit load failed")


def load_dlt(base_url: str, folder: str, mode: str) -> None:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    config = json.loads(Path(folder, "dlt_config.json").read_text())
    config["client"]["auth"]["api_key"] = os.environ[KEY_ENV]
    pipeline = dlt.pipeline(pipeline_name="peers_dlt", pipelines_dir=f"{folder}/pipelines",
                            destination=dlt.destinations.duckdb(f"{folder}/dlt.duckdb"),
                            dataset_name="main")
    # the first run in an empty folder is the full load; the next resumes from dlt's state
    pipeline.run(rest_api_source(config), loader_file_format="jsonl")


def load_singer_tap(base_url: str, folder: str, mode: str) -> None:
    from tap_rest_api_msdk.tap import TapRestApiMsdk

    sys.argv = ["tap-rest-api-msdk", "--config", "tap.json"]
    if mode == "incremental":
        sys.argv += ["--state", "state.json"]
    run_cli(TapRestApiMsdk.cli)


def load_singer_target(base_url: str, folder: str, mode: str) -> None:
    import target_duckdb

    sys.argv = ["target-duckdb", "--config", "target.json"]
    run_cli(target_duckdb.main)


def run_cli(main) -> None:
    """Runs a console script's main as the script would; a clean exit is not an error."""
    try:
        main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        sys.stdout.flush()


def load_airbyte(base_url: str, folder: str, mode: str) -> None:
    import airbyte as ab

    pass_state_to_declarative_sources()
    source = ab.get_source(SOURCE_NAME, config={"base_url": base_url, "api_key": os.environ[KEY_ENV]},
                           source_manifest=Path(folder, "manifest.yaml"))
    source.select_all_streams()
    cache = ab.DuckDBCache(db_path=f"{folder}/airbyte.duckdb", schema_name="main",
                           cache_dir=f"{folder}/airbyte-cache")
    # incremental: PyAirbyte reads the state it stored in the cache and merges on the key
    source.read(cache=cache, force_full_refresh=mode == "full")


def pass_state_to_declarative_sources() -> None:
    """PyAirbyte's fix for declarative incremental syncs (airbytehq/PyAirbyte#1164, unreleased).

    Its DeclarativeExecutor builds the CDK source from the config alone; the CDK's concurrent
    declarative source builds its cursors from the state given to its constructor and ignores
    the one given to read(), so every run started from start_datetime.
    """
    from airbyte._executors.declarative import DeclarativeExecutor
    from airbyte_cdk.entrypoint import AirbyteEntrypoint
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import (
        ConcurrentDeclarativeSource as Source,
    )

    def execute(self, args, *, stdin=None, suppress_stderr=False):
        parsed = AirbyteEntrypoint.parse_args(self.map_cli_args(args))
        catalog, state = getattr(parsed, "catalog", None), getattr(parsed, "state", None)
        source = Source(config={**self._config_dict, **self._config_from_args(args)},
                        source_config=self._manifest_dict,
                        catalog=Source.read_catalog(catalog) if catalog else None,
                        state=Source.read_state(state) if state else None)
        yield from AirbyteEntrypoint(source).run(parsed)

    DeclarativeExecutor.execute = execute


LOADERS = {"kit": load_kit, "dlt": load_dlt, "singer-tap": load_singer_tap,
           "singer-target": load_singer_target, "airbyte": load_airbyte}
# What each child imports before its clock for "load only" starts.
IMPORTS = {
    "kit": ("analytics_kit.cli",),
    "dlt": ("dlt", "dlt.sources.rest_api", "duckdb"),
    "singer-tap": ("tap_rest_api_msdk.tap",),
    "singer-target": ("target_duckdb",),
    "airbyte": ("airbyte", "airbyte_cdk.sources.declarative.concurrent_declarative_source"),
}


def child(args: list[str]) -> None:
    """One load; writes when its imports were done and when it finished (epoch seconds) to a
    file, because a Singer child's stdout is the message stream."""
    kind, base_url, folder, mode, result_path = args
    if kind == "kit":
        import analytics_kit_command

        analytics_kit_command.start(["load"])  # as `analytics-kit load` starts: its regex cache, pyarrow without numpy
    for module in IMPORTS[kind]:
        __import__(module)
    imported = time.time()
    LOADERS[kind](base_url, folder, mode)
    if kind == "kit":
        analytics_kit_command.save_regex_cache()  # as the command does before it exits
    Path(result_path).write_text(json.dumps({"imported": imported, "finished": time.time()}))
    if kind == "kit":
        os._exit(0)  # as the analytics-kit command ends (cli.run): no interpreter teardown


# -- the parent: runs and times the children ---------------------------------------------------


class ChildFailed(Exception):
    pass


def child_env(name: str, events: int, folder: Path) -> dict:
    """The environment a loader's child runs in: its tool's settings, and no telemetry."""
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}  # dlt phones home unless told not to
    # as on a machine that does not set it (this sandbox does): caches beside bytecode are written
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if name == "kit":
        env["PYTHONPATH"] = str(ROOT)  # this checkout's kit, as bench/load_speed.py runs it
        # the command's regex cache starts empty in each benchmark run: its full load writes it
        env["ANALYTICS_KIT_REGEX_CACHE"] = str(folder / "kit.regex")
    if name == "dlt":
        env.update(NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION="true", LOAD__WORKERS="2",
                   DATA_WRITER__BUFFER_MAX_ITEMS=str(dlt_buffer(events)))
    if name == "airbyte":
        env.update(AIRBYTE_OFFLINE_MODE="1", DO_NOT_TRACK="1",
                   AIRBYTE_LOGGING_ROOT=str(folder / "airbyte-logs"))  # not /tmp/airbyte
    return env


def dlt_buffer(events: int) -> int:
    """dlt's writer buffer: every event of a full load at once (dlt's default is 5,000)."""
    return max(100_000, events + 100)


def spawn(python: Path, kind: str, base_url: str, folder: Path, mode: str, env: dict,
          stdin=None, stdout=None) -> tuple[subprocess.Popen, Path]:
    """Starts one child; its stderr (and stdout unless given) go to files in its folder, since
    a pipe nobody reads could fill up and stall it."""
    result = folder / f"{kind}.{mode}.result"
    result.unlink(missing_ok=True)
    with open(folder / f"{kind}.{mode}.stderr", "w") as log, \
            open(folder / f"{kind}.{mode}.stdout", "w") as out:
        proc = subprocess.Popen(
            [str(python), __file__, "--child", kind, base_url, str(folder), mode, str(result)],
            stdin=stdin or subprocess.DEVNULL, stdout=out if stdout is None else stdout, stderr=log,
            cwd=folder, env=env)
    return proc, result


def finish(children: dict[str, subprocess.Popen], folder: Path, mode: str) -> None:
    """Waits for every child (killing one that outlives CHILD_TIMEOUT), then fails on the first
    that did not exit cleanly, with the end of its stderr."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    for proc in children.values():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for kind, proc in children.items():
        if proc.returncode:
            tail = (folder / f"{kind}.{mode}.stderr").read_text()[-3000:]
            raise ChildFailed(f"{kind} {mode} exited with {proc.returncode}:\n{tail}")


def run_single(name: str, python: Path, base_url: str, folder: Path, mode: str, events: int) -> dict:
    """One single-process loader run: wall time, and wall less start and imports."""
    launched = time.time()
    proc, result = spawn(python, name, base_url, folder, mode, child_env(name, events, folder))
    finish({name: proc}, folder, mode)
    ended = time.time()
    times = json.loads(result.read_text())
    return timings(launched, times["imported"], times["finished"], ended)


def run_singer(python: Path, base_url: str, folder: Path, mode: str, events: int) -> dict:
    """tap | target as two processes; the load starts once both have imported."""
    env = child_env("singer", events, folder)
    launched = time.time()
    tap, tap_result = spawn(python, "singer-tap", base_url, folder, mode, env, stdout=subprocess.PIPE)
    target, target_result = spawn(python, "singer-target", base_url, folder, mode, env, stdin=tap.stdout)
    tap.stdout.close()  # the target holds the read end now
    finish({"singer-tap": tap, "singer-target": target}, folder, mode)
    ended = time.time()
    tap_t, target_t = (json.loads(p.read_text()) for p in (tap_result, target_result))
    keep_singer_state(folder, mode)
    return timings(launched, max(tap_t["imported"], target_t["imported"]), target_t["finished"], ended)


def timings(launched: float, imported: float, finished: float, ended: float) -> dict:
    """Wall and load-only seconds, and what lies between: the start (Python and the imports)
    and the exit (interpreter shutdown, threads and atexit hooks)."""
    return {"wall": ended - launched, "load": finished - imported, "start": imported - launched,
            "exit": ended - finished}


def keep_singer_state(folder: Path, mode: str) -> None:
    """The target's last STATE line is the bookmark the next run's tap starts from."""
    lines = [ln for ln in (folder / f"singer-target.{mode}.stdout").read_text().splitlines() if ln.strip()]
    if not lines:
        raise ChildFailed("target-duckdb emitted no state")
    (folder / "state.json").write_text(lines[-1])


def run_loader(name: str, python: Path, api, folder: Path, mode: str, events: int) -> dict:
    """Runs one loader once; adds the requests it made to /v1/events."""
    api.clear_log()
    try:
        if name == "singer":
            out = run_singer(python, api.base_url, folder, mode, events)
        else:
            out = run_single(name, python, api.base_url, folder, mode, events)
    except ChildFailed as e:
        print(f"  {name} {mode}: FAILED\n{e}")
        return {"failed": str(e).splitlines()[0]}
    out["requests"] = api.count("/v1/events")
    print(f"  {name:<8} {mode:<11} {out['wall']:6.2f} s wall = {out['start']:5.2f} s start+imports "
          f"+ {out['load']:6.2f} s load only + {out['exit']:5.2f} s exit; "
          f"{out['requests']:>5} requests to /v1/events", flush=True)
    return out


# -- the check: every table against the API --------------------------------------------------

EQUAL = ("table check, equal means: for events and customers, the table's live rows (its "
         "deleted flag not true; a loader may drop soft-deleted rows or keep them flagged) are "
         "exactly the API's live records (deleted=false): the same ids, one row per id, each with "
         "the API's updated_at to the second in UTC")


def fetch_truth(base_url: str, api_key: str) -> dict:
    """Every record the API serves now, paged as a client would: {table: {id: updated_at}}."""
    import requests

    truth: dict = {}
    with requests.Session() as session:
        for table in ("events", "customers"):
            live, offset, total = {}, 0, 1
            while offset < total:
                page = session.get(f"{base_url}/v1/{table}", params={
                    "api_key": api_key, "offset": offset, "limit": 100}, timeout=60)
                page.raise_for_status()
                body = page.json()
                total = body["total"]
                for rec in body["data"]:
                    if not rec.get("deleted"):
                        live[str(rec["id"])] = rec["updated_at"]
                offset += 100
            truth[table] = live
    return truth


def read_table(database: Path, table: str) -> list[tuple[str, str]]:
    """(id, updated_at) of the table's live rows, normalised like the API's text."""
    import duckdb

    con = duckdb.connect(str(database), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")  # a TIMESTAMPTZ cast to TIMESTAMP reads as UTC
        return con.execute(
            f"SELECT CAST(id AS VARCHAR), strftime(CAST(updated_at AS TIMESTAMP), '%Y-%m-%dT%H:%M:%SZ') "
            f"FROM main.{table} WHERE NOT coalesce(CAST(deleted AS BOOLEAN), false)").fetchall()
    finally:
        con.close()


def compare(truth: dict, database: Path) -> str:
    """'OK', or what differs per table (missing, extra, duplicate and stale ids, with examples)."""
    problems = []
    for table, live in truth.items():
        try:
            rows = read_table(database, table)
        except Exception as e:  # a missing file or table is a finding, not a crash
            problems.append(f"{table}: cannot read ({type(e).__name__}: {str(e).splitlines()[0]})")
            continue
        loaded = dict(rows)
        found = {
            "missing": sorted(set(live) - set(loaded), key=natural),
            "extra": sorted(set(loaded) - set(live), key=natural),
            "duplicated": sorted((i for i, n in Counter(i for i, _ in rows).items() if n > 1), key=natural),
            "stale": sorted((i for i in set(live) & set(loaded) if live[i] != loaded[i]), key=natural),
        }
        said = [f"{len(ids)} {what} (e.g. {', '.join(ids[:3])})" for what, ids in found.items() if ids]
        if said:
            problems.append(f"{table}: {len(rows):,} live rows vs {len(live):,} in the API; "
                            + "; ".join(said))
    return "OK" if not problems else "WRONG: " + " | ".join(problems)


def natural(key: str) -> tuple:
    """Sorts ids as numbers where they are numbers (2 before 10), and cus_00002 as text."""
    return (len(key), key)


# -- the report --------------------------------------------------------------------------------

HEADER = ("loader", "full wall", "full load-only", "vs kit (wall/load)", "incr wall",
          "incr load-only", "incr requests", "table check (full / incr)")


def row(name: str, full: dict, incr: dict, kit: dict, checks: tuple[str, str]) -> tuple:
    """One loader's line of the table; the check's details are printed under it."""
    def seconds(r: dict, key: str) -> str:
        return "FAILED" if "failed" in r else f"{r[key]:.2f} s"

    ratio = "-"
    if "failed" not in full and "failed" not in kit:
        ratio = f"{full['wall'] / kit['wall']:.1f}x / {full['load'] / kit['load']:.1f}x"
    requests = str(incr["requests"]) if "requests" in incr else "-"
    verdicts = " / ".join("OK" if c == "OK" else "WRONG" if c.startswith("WRONG") else c for c in checks)
    return (name, seconds(full, "wall"), seconds(full, "load"), ratio, seconds(incr, "wall"),
            seconds(incr, "load"), requests, verdicts)


def print_table(rows: list[tuple]) -> None:
    """Aligned columns, with a rule under the header."""
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for i, r in enumerate([HEADER, *rows]):
        print(" | ".join(str(cell).ljust(w) for cell, w in zip(r, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


# -- main ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--peers", default="dlt,singer,airbyte",
                        help="comma-separated, from dlt, singer, airbyte (the kit always runs)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="incremental runs per loader, each from a copy of its full load, taken in turns "
                             "(kit, peer, ..., kit, ...); the table gives their median (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder and print its path")
    args = parser.parse_args()
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(args.peers) - set(PACKAGES)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PACKAGES)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def run_incremental(names: list[str], pythons: dict, api, tmp: Path, events: int, full: dict,
                    repeat: int) -> dict:
    """Each loader's incremental run ``repeat`` times, each from a copy of its folder after the full
    load, the loaders taking turns so that a busy moment of the machine hits all of them; the
    median run (by wall time) stands for the loader, with every wall time listed beside it."""
    ready = [n for n in names if "failed" not in full[n]]
    for name in ready:
        shutil.copytree(tmp / name, tmp / f"{name}.after-full")
    runs: dict[str, list] = {n: [] for n in ready}
    for turn in range(repeat):
        for name in ready if turn % 2 == 0 else ready[::-1]:
            if turn:
                shutil.rmtree(tmp / name)
                shutil.copytree(tmp / f"{name}.after-full", tmp / name)
            runs[name].append(run_loader(name, pythons[name], api, tmp / name, "incremental", events))
    out = {n: {"failed": "no full load"} for n in names if n not in ready}
    for name, done in runs.items():
        failed = [r for r in done if "failed" in r]
        if failed:
            out[name] = failed[0]
            continue
        done.sort(key=lambda r: r["wall"])
        out[name] = {**done[len(done) // 2], "walls": [r["wall"] for r in done]}
    return out


def check_all(names: list[str], runs: dict, folder: Path, api, phase: str) -> dict:
    """Checks every loader's table against the API as it is now; prints each difference."""
    truth = fetch_truth(api.base_url, api.api_key)
    print(f"  API now: {len(truth['events']):,} live events, {len(truth['customers']):,} live customers")
    checks = {}
    for name in names:
        if "failed" in runs[name]:
            checks[name] = "not checked (run failed)"
            continue
        checks[name] = compare(truth, folder / name / f"{name}.duckdb")
        print(f"  {name:<8} after {phase}: {checks[name]}")
    return checks


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    from analytics_kit import demo

    names = ["kit", *args.peers]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {args.events:,} events "
          f"+ 50 customers, 100 a page; demo API in a subprocess on 127.0.0.1")
    print("peer environments:")
    pythons = {"kit": ensure_venv("kit")}
    for name in args.peers:
        pythons[name] = ensure_venv(name)
    tmp = Path(tempfile.mkdtemp(prefix="peers_"))
    try:
        with demo.serve(events=args.events, customers=50, process=True) as api:
            os.environ[KEY_ENV] = api.api_key
            for name in names:
                prepare_folder(name, tmp / name, api.base_url, api.api_key)
            print("full loads (same API data for each):")
            full = {n: run_loader(n, pythons[n], api, tmp / n, "full", args.events) for n in names}
            full_checks = check_all(names, full, tmp, api, "full load")
            changed = args.events // 100
            api.advance(new=0, updated=changed, deleted=0, seconds=3600)
            print(f"api.advance(): {changed:,} events changed (1%); incremental runs, each from "
                  f"its own full load, {args.repeat} per loader in turns:")
            incr = run_incremental(names, pythons, api, tmp, args.events, full, args.repeat)
            incr_checks = check_all(names, incr, tmp, api, "incremental")
        print()
        print_table([row(n, full[n], incr[n], full["kit"], (full_checks[n], incr_checks[n])) for n in names])
        print()
        if args.repeat > 1:
            print("incremental wall times, fastest first: " + "; ".join(
                f"{n} {', '.join(f'{w:.2f}' for w in incr[n]['walls'])}" for n in names if "walls" in incr[n]))
            print(f"incr wall and load-only: the median of {args.repeat} runs (by wall time); a table check after "
                  "the last run of each.")
        print(f"wall: the whole process from launch to exit, Python's start and the imports "
              f"included; load only: from the end of the imports to the end of the load, taken "
              f"inside the child as bench/load_speed.py does (Singer: from when both tap and target "
              f"had imported to the target's end); vs kit: full load, peer / kit. incr requests: "
              f"to /v1/events; {-(-changed // 100)} pages hold the {changed:,} changed events.")
        print(EQUAL + ".")
        for name in names:
            for phase, check in (("full", full_checks[name]), ("incremental", incr_checks[name])):
                if check != "OK":
                    print(f"{name} after its {phase} load: {check}")
        for name in args.peers:
            print(f"{name}: {NOTES[name].format(buffer=dlt_buffer(args.events))}.")
    finally:
        if args.keep:
            print(f"run folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
