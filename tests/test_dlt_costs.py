"""dlt's repeated costs the kit keeps (``seam``): the same answers as dlt's own, computed less often."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import types
from types import SimpleNamespace
from typing import Annotated, Optional, Union

import dlt
import pytest
from dlt.common.configuration.specs import ConnectionStringCredentials, base_configuration
from dlt.common.schema import Schema
from dlt.common.storages.configuration import SchemaStorageConfiguration
from dlt.common.storages.live_schema_storage import LiveSchemaStorage
from dlt.common.storages.schema_storage import SchemaStorage
from dlt.common.typing import TSecretStrValue

import analytics_kit as ak
from analytics_kit.seam import memoise_secret_hints, memoise_typeddict_hints, read_schemas_only_when_changed
from tests.helpers import command_env, loaded, served


def _config_hints() -> list:
    """Every field hint of every config spec dlt has defined so far, and some written here."""
    specs, todo = set(), [base_configuration.BaseConfiguration]
    while todo:
        spec = todo.pop()
        specs.add(spec)
        todo.extend(set(spec.__subclasses__()) - specs)
    hints = [field.type for spec in specs if dataclasses.is_dataclass(spec)
             for field in dataclasses.fields(spec)]
    return hints + [str, Optional[str], TSecretStrValue, Optional[TSecretStrValue], Annotated[str, "x"],
                    Annotated[str, ["unhashable"]]]


def test_a_kept_secret_hint_answers_as_dlts_own_walk():
    memoise_secret_hints()
    kept = base_configuration.is_secret_hint
    walk = kept.__wrapped__
    hints = _config_hints()
    assert len(hints) > 200
    assert [kept(hint) for hint in hints] == [walk(hint) for hint in hints]
    assert [kept(hint) for hint in hints] == [walk(hint) for hint in hints]  # the second time from what was kept
    assert any(walk(hint) for hint in hints) and not all(walk(hint) for hint in hints)
    # every dlt module that imported it by name uses the kept one
    holders = [name for name, module in sys.modules.items()
               if name.startswith("dlt.") and getattr(vars(module).get("is_secret_hint"), "__wrapped__", None) is walk]
    assert "dlt.common.configuration.providers.environ" in holders and "dlt.common.configuration.resolve" in holders
    stale = [name for name, module in sys.modules.items()
             if name.startswith("dlt.") and vars(module).get("is_secret_hint") is walk]
    assert not stale


def _typeddicts() -> list[type]:
    import dlt.sources.rest_api.typing as rest_api_typing
    from dlt.common import typing as dlt_typing

    return [value for value in vars(rest_api_typing).values()
            if isinstance(value, type) and dlt_typing.is_typeddict(value)]


def test_kept_typeddict_hints_are_dlts_own_and_each_caller_gets_a_copy():
    from dlt.common import typing as dlt_typing
    from dlt.common import validation

    memoise_typeddict_hints()
    kept = dlt_typing.get_type_hints
    own = kept.__wrapped__
    assert validation.get_type_hints is kept  # dlt's validator asks the keeping one
    specs = _typeddicts()
    assert len(specs) > 20
    for spec in specs:
        namespace = vars(sys.modules[spec.__module__])
        assert kept(spec, globalns=namespace) == own(spec, globalns=namespace)
        kept(spec, globalns=namespace).clear()  # a caller changing its copy
        assert kept(spec, globalns=namespace) == own(spec, globalns=namespace)
        # what is not the plain question goes to dlt's function
        assert kept(spec, globalns=namespace, include_extras=True) == own(spec, globalns=namespace, include_extras=True)
        assert kept(spec) == own(spec)


def test_a_callers_own_classes_and_call_forms_get_dlts_answers(monkeypatch):
    """helper-44: a notebook redefines a class a TypedDict names; dlt's answer follows, so must the kept one's."""
    from typing import TypedDict

    from dlt.common import typing as dlt_typing
    from dlt.common import validation

    memoise_typeddict_hints()
    cell = types.ModuleType("a_notebook_cell")  # a notebook's namespace, as a module
    namespace = vars(cell)
    namespace["TypedDict"] = TypedDict
    monkeypatch.setitem(sys.modules, cell.__name__, cell)
    exec("class Token:\n    pass\nclass Settings(TypedDict):\n    token: 'Token'\n", namespace)  # noqa: S102
    validation.validate_dict(namespace["Settings"], {"token": namespace["Token"]()}, ".")
    exec("class Token:\n    pass\n", namespace)  # noqa: S102 - the cell run again
    validation.validate_dict(namespace["Settings"], {"token": namespace["Token"]()}, ".")
    get = dlt_typing.get_type_hints
    spec, module = _typeddicts()[0], vars(sys.modules[_typeddicts()[0].__module__])
    own = get.__wrapped__(spec, module)
    assert get(spec, module, None) == get(spec, module, None, True) == get(obj=spec, globalns=module) == own


def test_a_config_is_validated_as_before_and_its_hints_asked_once(monkeypatch):
    from dlt.common import typing as dlt_typing
    from dlt.common import validation
    from dlt.sources.rest_api.typing import RESTAPIConfig

    memoise_typeddict_hints()
    asked = []
    own = dlt_typing.get_type_hints.__wrapped__
    kept_cells = dlt_typing.get_type_hints.__closure__
    counting = lambda *args, **kwargs: asked.append(args[0]) or own(*args, **kwargs)  # noqa: E731
    # the keeping function calls dlt's through its closure: count what reaches it
    cell = next(c for c in kept_cells if c.cell_contents is own)
    monkeypatch.setattr(cell, "cell_contents", counting)
    config = ak.guide_config("http://127.0.0.1:9", "a-key-0123456789")
    for resource in config["resources"]:
        resource["endpoint"].pop("error_handler", None)  # the kit's own key, which dlt's types do not have
    validation.validate_dict(RESTAPIConfig, config, path=".")
    first = len(asked)
    validation.validate_dict(RESTAPIConfig, config, path=".")
    assert len(asked) == first  # the second validation asked dlt's function nothing (the first maybe, in this process)
    config["resources"][0]["endpoint"]["paginator"] = 7
    with pytest.raises(validation.DictValidationException):
        validation.validate_dict(RESTAPIConfig, config, path=".")


def test_equal_hints_that_dlt_reads_differently_are_answered_each_their_own():
    """``Union[a, b] == Union[b, a]``, but dlt reads a union's members in order (helper-27: keyed by equality,
    a secret token read from a reordered union was taken for plain text and shown in the trace)."""
    memoise_secret_hints()
    kept, walk = base_configuration.is_secret_hint, base_configuration.is_secret_hint.__wrapped__

    @base_configuration.configspec
    class Plain(base_configuration.BaseConfiguration):
        x: int = 1

    pairs = [(Union[TSecretStrValue, int, None], Union[int, TSecretStrValue, None]),
             (Union[Plain, ConnectionStringCredentials], Union[ConnectionStringCredentials, Plain])]
    for first, second in pairs:
        assert first == second and walk(first) != walk(second)
        assert (kept(first), kept(second)) == (walk(first), walk(second))
        assert (kept(second), kept(first)) == (walk(second), walk(first))


def test_a_class_registered_as_credentials_later_is_a_secret_from_then_on():
    memoise_secret_hints()
    kept = base_configuration.is_secret_hint

    class Token:
        pass

    assert not kept(Token)
    base_configuration.CredentialsConfiguration.register(Token)
    assert kept(Token)


def test_an_answer_walked_while_a_class_was_registered_is_not_kept():
    """Thread A walks a hint; meanwhile thread B registers the class as credentials and asks about another hint.
    A's answer, from before the registration, must not be kept (helper-28: it was, and stayed False)."""
    memoise_secret_hints()
    kept = base_configuration.is_secret_hint
    paused, registered = threading.Event(), threading.Event()

    class Pausing(type):
        def __getattr__(cls, name):
            if name == "__supertype__" and threading.current_thread().name == "A" and not paused.is_set():
                paused.set()  # A is inside dlt's walk, after its subclass check
                registered.wait(5)
            raise AttributeError(name)

    class Token(metaclass=Pausing):
        pass

    def register() -> None:
        paused.wait(5)
        base_configuration.CredentialsConfiguration.register(Token)
        kept(str)
        registered.set()

    threads = [threading.Thread(target=kept, args=(Token,), name="A"), threading.Thread(target=register)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert paused.is_set() and registered.is_set()
    assert kept(Token) and issubclass(Token, base_configuration.CredentialsConfiguration)


@pytest.fixture
def storages(tmp_path, monkeypatch):
    """A live schema storage as a pipeline holds it, a second writer on the same folder, and the parses counted."""
    parses: list[str] = []
    load = SchemaStorage.load_schema

    def counted(self, name):
        parses.append(name)
        return load(self, name)

    monkeypatch.setattr(SchemaStorage, "load_schema", counted)
    config = SchemaStorageConfiguration(schema_volume_path=str(tmp_path / "schemas"))
    live = LiveSchemaStorage(config, makedirs=True)
    read_schemas_only_when_changed(SimpleNamespace(_schema_storage=live))  # as the kit's own pipelines are
    other = SchemaStorage(config)
    live.save_schema(Schema("analytics"))
    return live, other, parses


def test_an_unchanged_schema_file_is_not_parsed_again(storages):
    live, _, parses = storages
    first = live["analytics"]
    for _ in range(20):
        assert live["analytics"] is first
    assert len(parses) <= 1


def test_a_schema_file_another_writer_changed_is_read(storages):
    live, other, parses = storages
    schema = live["analytics"]
    elsewhere = other.load_schema("analytics")
    elsewhere.update_table({"name": "events", "columns": {"id": {"name": "id", "data_type": "bigint"}}})
    other.save_schema(elsewhere)
    assert "events" in live["analytics"].tables
    assert live["analytics"] is schema  # dlt updates its live schema in place
    count = len(parses)
    live["analytics"]
    assert len(parses) == count  # read once after the change, then kept


def test_a_live_schema_replaced_in_memory_is_read_back_from_its_file(storages):
    """dlt puts another committed schema in the live one without writing it (its extract does): the live schema has
    no unsaved changes, yet is not the file's; dlt's read puts the file's back (helper-27)."""
    live, _, _ = storages
    live["analytics"]
    other = Schema("analytics")
    other.update_table({"name": "not_written", "columns": {"b": {"name": "b", "data_type": "text"}}})
    other._bump_version()
    live.set_live_schema(other)
    assert "not_written" not in live["analytics"].tables


def test_a_live_schema_replaced_by_one_of_the_same_hash_is_read_back_from_its_file(storages):
    """dlt's content hash leaves out the version, the previous hashes and the tables' order: a schema put in the live
    one that differs only there is not written, and dlt's read puts the file's back (helper-28)."""
    live, _, _ = storages
    schema = live["analytics"]
    for table in ("first", "second"):
        schema.update_table({"name": table, "columns": {"id": {"name": "id", "data_type": "bigint"}}})
    live.save_schema(schema)
    on_file = list(live["analytics"].tables)
    stored = live["analytics"].to_dict()
    same = {**stored, "version": 9, "previous_hashes": [],
            "tables": dict(reversed(list(stored["tables"].items())))}
    other = Schema.from_dict(same, bump_version=False)
    assert other.stored_version_hash == schema.stored_version_hash and not other.is_modified
    live.set_live_schema(other)
    assert list(live["analytics"].tables) == on_file
    assert live["analytics"].version == stored["version"]


def test_a_schema_with_unsaved_changes_is_dlts_to_keep(storages):
    live, other, parses = storages
    schema = live["analytics"]
    schema.update_table({"name": "pending", "columns": {"id": {"name": "id", "data_type": "bigint"}}})
    assert live["analytics"] is schema and "pending" in schema.tables
    os.remove(os.path.join(other.storage.storage_path, "analytics.schema.json"))
    assert live["analytics"] is schema  # dlt's way: a modified live schema is returned as it is


def test_loads_with_dlts_costs_kept_load_what_the_api_serves(api, config):
    """Every load installs both; a schema that grows between runs (a new column) is still read."""
    ak.load(config, progress=False)
    assert getattr(LiveSchemaStorage.__getitem__, "kit_kept", False)
    api.advance(new=5, updated=5)
    ak.load(config, progress=False)
    assert loaded(api) == served(api)


def test_a_callers_own_pipeline_keeps_dlts_schema_reads_after_a_load(api, config, tmp_path):
    """dlt hands out fresh objects on every read: an edit through a column dict held from an earlier read goes
    nowhere. The kit keeps its parses for its own pipelines only (helper-29: the edit reached the caller's table)."""
    ak.load(config, progress=False)
    pipeline = dlt.pipeline("callers_own", pipelines_dir=str(tmp_path / "pipelines"),
                            destination=dlt.destinations.duckdb(str(tmp_path / "own.duckdb")), dataset_name="callers")
    pipeline.run([{"id": 1, "a": "x"}], table_name="items")
    held = pipeline.default_schema.tables["items"]["columns"]
    pipeline.default_schema  # noqa: B018 - dlt reads the file again here
    held["note"] = {"name": "note", "data_type": "text", "nullable": True}
    assert not pipeline.default_schema.is_modified and "note" not in pipeline.default_schema.tables["items"]["columns"]
    pipeline.run([{"id": 2, "a": "y"}], table_name="items")
    with pipeline.sql_client() as client:
        columns = [row[0] for row in client.execute_sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'callers' AND table_name = 'items'")]
    assert "note" not in columns and "a" in columns


def test_the_load_command_imports_only_the_destination_it_loads_into(api):
    code = ("import sys; from analytics_kit.cli import main; rc = main(['load', '--quiet'], lean=True); "
            "other = 'dlt.destinations.impl.postgres.factory' in sys.modules; "
            "import dlt; from analytics_kit.seam import known_destinations; "
            "print(rc, other, dlt.destinations.postgres.__name__, 'postgres' in known_destinations())")
    env = command_env(api)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    # the factories are imported when one is asked for, and dlt's registry then knows them all
    assert out.stdout.split()[-4:] == ["0", "False", "postgres", "True"], out.stderr[-2000:]
    assert loaded(api) == served(api)


def test_threads_asking_for_destinations_at_once_each_get_theirs():
    """The first name asked runs the package's body; a thread asking meanwhile waits for it (helper-27: 15 of 16
    threads got AttributeError)."""
    code = ("import threading; from analytics_kit.run.lean import import_load; import_load(); import dlt\n"
            "from dlt.common.destination.reference import Destination\n"
            "names = ['postgres', 'duckdb', 'filesystem', 'bigquery', 'motherduck', 'sqlalchemy', 'dummy'] * 2\n"
            "got, start = [], threading.Barrier(len(names) + 2)\n"
            "def ask(name):\n"
            "    start.wait(); got.append(getattr(dlt.destinations, name).__name__)\n"
            "def find(name):\n"
            "    start.wait(); got.append(Destination.from_reference(name).destination_type.rsplit('.', 1)[-1])\n"
            "threads = [threading.Thread(target=ask, args=(n,)) for n in names]\n"
            "threads += [threading.Thread(target=find, args=(n,)) for n in ('snowflake', 'athena')]\n"
            "[t.start() for t in threads]; [t.join() for t in threads]\n"
            "print(sorted(got) == sorted(names + ['snowflake', 'athena']), sorted(dir(dlt.destinations)) != [])")
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.stdout.split() == ["True", "True"], out.stderr[-2000:]


def _caps(destination, naming) -> dict:
    import functools

    caps = destination.capabilities(naming=naming)
    values = {key: getattr(caps, key) for key in caps}
    # a partial is built anew per call: equal when it calls the same with the same
    return {key: (value.func, value.args, value.keywords) if isinstance(value, functools.partial) else value
            for key, value in values.items()}


@pytest.fixture
def resolved(monkeypatch) -> list:
    """The destinations whose configuration dlt resolves from here on, in call order."""
    from dlt.common.destination.reference import Destination

    seen, configuration = [], Destination.configuration

    def record(self, *args, **kwargs):
        seen.append(self)
        return configuration(self, *args, **kwargs)

    monkeypatch.setattr(Destination, "configuration", record)
    return seen


def _namings() -> list:
    from dlt.common.normalizers.naming import snake_case, sql_cs_v1

    return [None, snake_case.NamingConvention(), sql_cs_v1.NamingConvention()]  # the last is case sensitive


@pytest.mark.parametrize("name", ["duckdb", "postgres", "motherduck"])
def test_the_kits_destinations_answer_capabilities_as_dlt_without_resolving_a_config(name, monkeypatch, resolved):
    from analytics_kit.seam import capabilities_without_resolving

    monkeypatch.setenv(f"DESTINATION__{name.upper()}__CREATE_INDEXES", "true")  # some configuration to resolve
    factory = getattr(dlt.destinations, name)
    plain = factory(supports_transactions=True)
    kept = factory(supports_transactions=True)
    assert capabilities_without_resolving(kept) is kept
    for naming in _namings():
        assert _caps(kept, naming) == _caps(plain, naming)
    assert resolved and all(one is plain for one in resolved)  # dlt's way for the other instance only
    assert kept.capabilities(naming=None) is not kept.capabilities(naming=None)  # each caller its own, as dlt does


def test_a_destination_that_adjusts_by_its_config_is_left_to_dlt(resolved):
    from dlt.common.destination.reference import Destination

    from analytics_kit.seam import capabilities_without_resolving

    destination = dlt.destinations.filesystem(bucket_url="file:///tmp/unused")
    assert type(destination).adjust_capabilities.__func__ is not Destination.adjust_capabilities.__func__
    capabilities_without_resolving(destination).capabilities()
    assert resolved == [destination]


def test_a_callers_unhashable_destination_goes_dlts_way(resolved):
    """A caller's destination class may define __eq__ without __hash__ (a dataclass does): the kit's check
    of its own instances must not hash it (helper-45: every capabilities() call raised TypeError)."""
    from dlt.destinations.impl.duckdb.factory import duckdb

    from analytics_kit.seam import capabilities_without_resolving

    class Compared(duckdb):
        def __eq__(self, other):
            return isinstance(other, Compared) and self.config_params == other.config_params

    assert Compared.__hash__ is None
    capabilities_without_resolving(duckdb())  # the kit's own, as every load makes one
    mine = Compared()
    for naming in _namings():
        assert _caps(mine, naming) == _caps(duckdb(), naming)
    assert sum(one is mine for one in resolved) == len(_namings())  # resolved each time, as dlt does


def test_the_kits_config_checks_ask_for_kept_hints(monkeypatch):
    import dlt.sources.rest_api.typing as rest_api_typing
    from dlt.common import typing as dlt_typing

    from analytics_kit import seam
    from analytics_kit.config.checks import allowed_keys

    memoise_typeddict_hints()
    assert seam.get_type_hints is dlt_typing.get_type_hints and seam.get_type_hints.kit_kept
    for spec in _typeddicts():
        first, again = allowed_keys(spec), allowed_keys(spec)
        assert first == again == seam.get_type_hints.__wrapped__(spec, vars(rest_api_typing)) and first is not again
    asked = []
    monkeypatch.setattr(seam, "get_type_hints", lambda spec, **kwargs: asked.append(spec) or {})
    allowed_keys(rest_api_typing.EndpointResource)
    assert asked == [rest_api_typing.EndpointResource]  # the name is looked up at each call, not bound at import


def test_an_annotated_typeddict_gets_dlts_answer():
    """Python 3.11 gives Annotated[TypedDict, meta] the class's __module__, and dlt's is_typeddict looks inside it:
    its unhashable meta must reach dlt's function, not the memo's dict (helper-46)."""
    from typing import Annotated

    import dlt.sources.rest_api.typing as rest_api_typing
    from dlt.common import typing as dlt_typing

    memoise_typeddict_hints()
    alias = Annotated[rest_api_typing.EndpointResource, {"doc": "x"}]
    errors = []
    for ask in (dlt_typing.get_type_hints, dlt_typing.get_type_hints.__wrapped__):
        with pytest.raises(TypeError) as error:
            ask(alias, vars(rest_api_typing))
        errors.append(str(error.value))
    assert errors[0] == errors[1] and "unhashable" not in errors[0]
