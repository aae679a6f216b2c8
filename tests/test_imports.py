"""Reads without dlt: ``import analytics_kit``, the readers of a DuckDB file and the CLI's read
commands and ``--help`` run with dlt unimportable, and print exactly what they print with dlt
there; ``load``, ``build_source`` and ``RetryPolicy`` import dlt on first use.

Each run is a fresh interpreter (dlt is long imported in this one). ``BLOCK`` makes ``dlt`` and
every ``dlt.*`` refuse to import, as if dlt were not installed, before the kit is imported, and
notes each attempt: a reader that tried dlt and fell back quietly fails too. The outputs are
compared with the same commands run normally, against one database loaded by ``ak.load`` from
the demo API; and what the readers decode without dlt is compared with what dlt restores.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

import analytics_kit as ak
from analytics_kit import seam
from analytics_kit.read import connection
from analytics_kit.read.diagram import mermaid
from analytics_kit.read.state import SOURCE_NAME, restored
from analytics_kit.store.cursor_state import cursor_values
from analytics_kit.store.target import Target

from helpers import fast

BIN = Path(sys.executable).parent
BLOCK = '''
import os, sys

class NoDlt:
    """Refuses dlt and dlt.*, as if dlt were not installed; notes each attempt."""
    def find_spec(self, name, path=None, target=None):
        if name == "dlt" or name.startswith("dlt."):
            with open(os.environ["KIT_DLT_ATTEMPTS"], "a") as attempts:
                attempts.write(name + "\\n")
            raise ImportError(f"No module named {name!r} (dlt is blocked by tests/test_imports.py)")
        return None

sys.meta_path.insert(0, NoDlt())
'''
CLI = "import sys\nfrom analytics_kit.cli import main\nsys.exit(main(sys.argv[1:]))\n"
LOADED = "sorted(m for m in sys.modules if m == 'dlt' or m.startswith('dlt.'))"
# The Python readers, everything they show printed.
READERS = f'''
import sys
import analytics_kit as ak
import pandas as pd

pd.set_option("display.width", 250)
pd.set_option("display.max_columns", 50)
for frame in (ak.tables(), ak.describe("events"), ak.describe("analytics.customers"), ak.history(), ak.history(last=1),
              ak.query("SELECT id, customer_id, event_type, value, properties, deleted, updated_at "
                       "FROM analytics.events ORDER BY id LIMIT 7"),
              ak.query("SELECT count(*) AS n, max(updated_at) AS newest FROM events WHERE id > ?", params=[3])):
    print(frame.to_string(), frame.dtypes.to_dict(), sep="\\n")
print(ak.tables()._repr_html_())
state = ak.state()
print(repr(state), state._repr_html_(), state["cursors"], sep="\\n")
print(state.loads.to_string(), state.loads.dtypes.to_dict(), sep="\\n")
schema = ak.schema()
print(repr(schema), schema._repr_markdown_(), schema.columns.to_string(), schema.tables.to_string(), sep="\\n")
try:
    ak.query("SELECT * FROM analytics.evnts")
except ak.QueryError as error:
    print(repr(error), error.guidance, error.tables)
print({LOADED})
'''
# Each read command and every --help.
COMMANDS = [
    ["query", "SELECT id, event_type, value, updated_at FROM analytics.events ORDER BY id LIMIT 5"],
    ["query", "SELECT count(*) FROM events"],
    ["query", "SELECT * FROM evnts"],  # the QueryError, one line on stderr
    ["tables"], ["state"], ["history"], ["history", "--last", "1"], ["schema"], ["schema", "--mermaid"],
    ["describe", "events"], ["describe", "analytics.customers"], ["describe", "evnts"],
    ["--help"], ["--version"],
    *[[command, "--help"] for command in ("load", "query", "tables", "describe", "state", "history", "schema",
                                          "demo-api", "demo")],
]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo API loaded twice by ``ak.load`` (new and changed records the second time)."""
    path = tmp_path_factory.mktemp("reads") / "analytics.duckdb"
    with ak.demo.serve(events=250, customers=20, seed=11) as api, pytest.MonkeyPatch.context() as env:
        env.setenv("API_KEY", api.api_key)
        config = fast(ak.guide_config(api.base_url))
        ak.load(config, database=str(path), progress=False)
        api.advance(new=7, updated=5, deleted=2)
        ak.load(config, database=str(path), progress=False)
    return path


def run(args: list[str], cwd: Path, *, blocked: bool) -> tuple[int, str, str, list[str]]:
    """(exit code, stdout, stderr, dlt modules it tried to import) of one fresh interpreter."""
    attempts = cwd / f"dlt-attempts-{os.getpid()}.txt"
    attempts.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("ANALYTICS_DATABASE", "API_KEY", "ANALYTICS_API_BASE_URL")}
    env["KIT_DLT_ATTEMPTS"] = str(attempts)
    result = subprocess.run(args if not blocked else [sys.executable, "-c", BLOCK + args[0], *args[1:]],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    tried = attempts.read_text().split() if attempts.exists() else []
    return result.returncode, result.stdout, result.stderr, tried


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_each_read_command_prints_the_same_without_dlt(database: Path, args: list[str]) -> None:
    code, out, err, tried = run([CLI, *args], database.parent, blocked=True)
    assert tried == [], f"tried to import {tried}: {err}"
    assert (code, out, err) == run([str(BIN / "analytics-kit"), *args], database.parent, blocked=False)[:3]
    if "evnts" in args[-1]:
        assert code == 1 and err.count("\n") == 1 and "evnts" in err  # the QueryError, in one line
    else:
        assert code == 0 and out.strip()


def test_the_python_readers_show_the_same_without_dlt(database: Path) -> None:
    code, out, err, tried = run([READERS], database.parent, blocked=True)
    assert (code, tried) == (0, []), err
    assert out.rstrip().endswith("\n[]")  # no dlt module in sys.modules
    assert "cursors (where the next" in out and "committed" in out and "erDiagram" in out  # state and schema read
    assert (code, out) == run([sys.executable, "-c", READERS], database.parent, blocked=False)[:2]


def test_the_block_refuses_dlt_and_the_kit_imports_without_it(tmp_path: Path) -> None:
    code = ("import analytics_kit as ak\nprint(" + LOADED + ")\n"
            "print(sorted(set(ak.__all__) - set(dir(ak))), callable(ak.query), callable(ak.schema))\n"
            "try:\n    ak.load\nexcept ImportError as error:\n    print('load needs dlt:', error)\n")
    status, out, err, tried = run([code], tmp_path, blocked=True)
    assert status == 0, err
    assert out.splitlines()[:2] == ["[]", "[] True True"]
    assert "load needs dlt: No module named 'dlt" in out and tried and tried[0].startswith("dlt")


def test_import_leaves_dlt_out_and_load_imports_it_on_first_use(tmp_path: Path, api) -> None:
    code = (f"import json, sys\nimport analytics_kit as ak\nassert {LOADED} == [], {LOADED}\n"
            "from analytics_kit import load\nassert load is ak.load and 'dlt' in sys.modules\n"
            f"report = ak.load(ak.guide_config({api.base_url!r}), database='fresh.duckdb', progress=False)\n"
            "print(json.dumps(report.rows, sort_keys=True))\n"
            "print(ak.query('SELECT count(*) AS n FROM events', 'fresh.duckdb')['n'][0])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ANALYTICS_DATABASE", "ANALYTICS_API_BASE_URL")}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "API_KEY": api.api_key},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    events, customers = (len(api.records(name, include_deleted=False)) for name in ("events", "customers"))
    assert result.stdout.splitlines() == [json.dumps({"customers": customers, "events": events}), str(events)]


FIRST_USE_RACE = '''
import sys, threading
import analytics_kit as ak
names = sys.argv[1].split(",")
start = threading.Barrier(len(names))
failed = []
def use(name):
    start.wait()
    try: getattr(ak, name)
    except BaseException as error: failed.append(f"{name}: {type(error).__name__}: {error}")
threads = [threading.Thread(target=use, args=(name,)) for name in names]
[t.start() for t in threads]; [t.join() for t in threads]
print(failed)
'''


@pytest.mark.parametrize("names", ["load,RetryPolicy", "build_source,load,RetryPolicy,demo"])
def test_the_lazy_names_can_be_first_used_from_threads_at_once(names: str) -> None:
    """dlt's imports are circular: first used in two threads at once, ``load`` beside ``RetryPolicy``
    each found dlt's modules partially initialised, in 15 of 15 fresh processes (helper-50)."""
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", FIRST_USE_RACE, names], capture_output=True, text=True,
                                timeout=120)
        assert result.stdout.splitlines()[-1:] == ["[]"], (result.stdout[-2000:], result.stderr[-2000:])


def test_two_first_loads_and_a_source_in_threads_at_once_all_work(tmp_path: Path, api) -> None:
    code = ("import json, threading, analytics_kit as ak\n"
            f"config = ak.guide_config({api.base_url!r}, {api.api_key!r})\n"
            "start = threading.Barrier(3); done = {}\n"
            "def run(i):\n"
            "    start.wait()\n"
            "    try: done[i] = sum(ak.load(config, database=f'{i}.duckdb', progress=False).rows.values()) if i \\\n"
            "        else sorted(ak.build_source(config).resources)\n"
            "    except BaseException as error: done[i] = repr(error)\n"
            "threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]\n"
            "[t.start() for t in threads]; [t.join() for t in threads]\n"
            "print(json.dumps(done, sort_keys=True))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    rows = sum(len(api.records(name, include_deleted=False)) for name in ("events", "customers"))
    assert result.stdout.splitlines()[-1:] == [json.dumps({"0": ["customers", "events"], "1": rows, "2": rows})], \
        (result.stdout[-2000:], result.stderr[-2000:])


def test_the_lazy_names_are_the_real_ones() -> None:
    from analytics_kit.fetch.retry import RetryPolicy
    from analytics_kit.fetch.source import build_source
    from analytics_kit.run.load import load

    assert (ak.load, ak.build_source, ak.RetryPolicy) == (load, build_source, RetryPolicy)
    assert inspect.signature(ak.load) == inspect.signature(load) and ak.load.__doc__ == load.__doc__
    assert ak.load.__module__ == "analytics_kit.run.load" and "LoadReport" in str(inspect.signature(ak.load))
    assert ak.__all__ == sorted(ak.__all__) == [
        "ConfigError", "KitError", "LoadError", "LoadReport", "MissingSecretError", "QueryError", "RetryPolicy",
        "build_source", "demo", "describe", "guide", "guide_config", "history", "load", "notebook", "query",
        "schema", "state", "tables"]
    assert set(ak.__all__) <= set(dir(ak))
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        ak.lod  # noqa: B018
    assert SOURCE_NAME == __import__("analytics_kit.config.prepared", fromlist=["x"]).SOURCE_NAME


def _decoded(path: Path) -> tuple[dict | None, dict | None]:
    target = Target.of(database=str(path))
    with connection.connect(target.database, None, target.dataset) as con:
        state = seam.stored_state(con, target.dataset, target.pipeline_name)
        return state, seam.stored_schema(con, target.dataset, state)


def _restored(path: Path) -> tuple[dict, dict, str]:
    """What dlt restores from the file: the state, the default schema's tables and its diagram."""
    with restored(Target.of(database=str(path))) as pipeline:
        schema = pipeline.default_schema
        diagram = schema.to_mermaid(remove_processing_hints=True, hide_descriptions=True, include_dlt_tables=False)
        return pipeline.state, schema.tables, diagram


def test_state_and_schema_are_read_as_dlt_restores_them(database: Path) -> None:
    state, schema = _decoded(database)
    restored_state, tables, diagram = _restored(database)
    assert state == {k: v for k, v in restored_state.items() if k != "_local"}
    assert ak.state(database=str(database)).cursors == cursor_values(restored_state, SOURCE_NAME) != {}
    assert schema["tables"] == tables
    assert mermaid(schema["tables"]) == diagram
    assert ak.schema(database=str(database)).mermaid == diagram.rstrip()


@pytest.mark.parametrize("form", ["typed values", "plain JSON", "older engine", "rows to pass over"])
def test_states_in_other_forms_are_decoded_as_dlt_decodes_them(database: Path, tmp_path: Path, form: str) -> None:
    """dlt's JSON types (a datetime or Decimal cursor), a state stored as plain JSON, one of
    state engine 3 (dlt upgrades it), and newer rows of an uncommitted load or of another
    pipeline (which dlt passes over) give what dlt restores."""
    from dlt.common.versioned_state import compress_state

    copy = tmp_path / "analytics.duckdb"
    shutil.copy(database, copy)
    state = dict(_decoded(copy)[0])
    resources = state["sources"][SOURCE_NAME]["resources"]
    if form == "rows to pass over":
        resources["events"]["incremental"]["updated_at"]["last_value"] = "2099-01-01T00:00:00+00:00"
        with duckdb.connect(str(copy)) as con:
            newest = "SELECT * REPLACE (? AS state, ? AS pipeline_name, ? AS _dlt_load_id) FROM _dlt_pipeline_state " \
                     "ORDER BY _dlt_load_id DESC LIMIT 1"
            uncommitted = "9999999999.5"
            con.execute(f"INSERT INTO _dlt_pipeline_state {newest}", [compress_state(state), "analytics_kit_main",
                                                                      uncommitted])
            con.execute("INSERT INTO _dlt_loads SELECT * REPLACE (? AS load_id, 1 AS status) FROM _dlt_loads LIMIT 1",
                        [uncommitted])
            con.execute(f"INSERT INTO _dlt_pipeline_state {newest}", [compress_state(state), "another_pipeline",
                                                                      "9999999999.9"])
            con.execute("INSERT INTO _dlt_loads SELECT * REPLACE ('9999999999.9' AS load_id) FROM _dlt_loads LIMIT 1")
        decoded, restored_state = _decoded(copy)[0], _restored(copy)[0]
        assert decoded["sources"] == restored_state["sources"] != state["sources"]
        return
    if form == "typed values":
        from datetime import datetime, timezone

        cursor = datetime(2026, 4, 1, 0, 58, 43, tzinfo=timezone.utc)
        resources["events"]["incremental"]["updated_at"]["last_value"] = cursor
        resources["customers"]["incremental"]["updated_at"]["last_value"] = Decimal("1.50")
        blob = compress_state(state)
    elif form == "plain JSON":
        blob = json.dumps(state)
    else:
        state["_state_engine_version"] = 3
        state["destination"] = state.pop("destination_type")
        state.pop("destination_name")
        blob = json.dumps(state)
    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE _dlt_pipeline_state SET state = ? WHERE _dlt_load_id = "
                    "(SELECT max(load_id) FROM _dlt_loads WHERE status = 0)", [blob])
    decoded, restored_state = _decoded(copy)[0], _restored(copy)[0]
    for key in ("sources", "default_schema_name", "schema_names", "_state_engine_version", "pipeline_name"):
        assert decoded[key] == restored_state[key], key
    assert ak.state(database=str(copy)).cursors == cursor_values(restored_state, SOURCE_NAME)
    if form == "typed values":
        assert isinstance(ak.state(database=str(copy)).cursors["customers"], Decimal)


def test_the_diagram_is_drawn_as_dlt_draws_it(tmp_path: Path) -> None:
    """Nested tables, root keys, references (declared and to dlt's tables), columns with no type
    yet: the kit's diagram and dlt's ``to_mermaid``, and what ``ak.schema()`` reads from the file."""
    import dlt

    @dlt.source(root_key=True)
    def shop():  # type: ignore[no-untyped-def]
        # dlt keeps one reference per referenced table
        yield dlt.resource([{"id": 1, "customer": "c1", "lines": [{"sku": "a", "tags": ["x", "y"]}], "notes": [None]}],
                           name="orders", primary_key="id", write_disposition="merge", references=[
                               {"referenced_table": "customers", "columns": ["customer"],
                                "referenced_columns": ["cid"]},
                               {"referenced_table": "shops", "columns": ["id"], "referenced_columns": ["id"],
                                "cardinality": "one_to_one", "label": "sold by"},
                               {"table": "orders__lines", "referenced_table": "skus", "columns": ["sku"],
                                "referenced_columns": ["sku"], "cardinality": "zero_to_many"},
                               {"referenced_table": "_dlt_loads", "columns": ["_dlt_load_id"],
                                "referenced_columns": ["load_id"]}])
        yield dlt.resource([{"cid": "c1", "name": "A", "empty": None}], name="customers")
        yield dlt.resource([{"id": 1}], name="shops")

    path = tmp_path / "shop.duckdb"
    target = Target.of(database=str(path))
    dlt.pipeline(target.pipeline_name, pipelines_dir=str(tmp_path / "dlt"), dataset_name=target.dataset,
                 destination=dlt.destinations.duckdb(str(path))).run(shop())
    _, tables, diagram = _restored(path)
    assert [line for line in diagram.splitlines() if "--" in line] == [
        '    orders ||--|{ customers : ""', '    orders ||--|| shops : "sold by"',
        '    orders__lines |o--|{ skus : ""', '    orders__lines }|--|| orders : "_dlt_parent"',
        '    orders__lines }|--|| orders : "_dlt_root"', '    orders__lines__tags }|--|| orders__lines : "_dlt_parent"',
        '    orders__lines__tags }|--|| orders : "_dlt_root"', '    orders__notes }|--|| orders : "_dlt_parent"',
        '    orders__notes }|--|| orders : "_dlt_root"']
    assert mermaid(tables) == diagram
    dictionary = ak.schema(database=str(path))
    assert dictionary.mermaid == diagram.rstrip()
    assert dictionary.tables["table"].tolist() == ["customers", "orders", "orders__lines", "orders__lines__tags",
                                                   "orders__notes", "shops"]
