"""The command's regex cache (``analytics_kit_regex_cache``): what it keeps and reuses, what it never
keeps, and what a bad, missing or unwritable file does. Real processes, as the command runs."""

from __future__ import annotations

import _sre
import importlib
import json
import marshal
import os
import re
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path
from re import _compiler

import pytest

import analytics_kit_regex_cache as regex_cache

BIN = Path(sys.executable).parent
# a process importing what `analytics-kit load` imports, as the command does, then its figures
IMPORTS = """
import json, re, sys
import analytics_kit_regex_cache as regex_cache
cache = regex_cache.install()
import analytics_kit.cli
from analytics_kit.run import lean
lean.import_load()
hooked = cache is not None and getattr(re._compiler.compile, "__self__", None) is cache
figures = {"new": cache.new, "hits": cache.hits, "hooked": hooked} if cache else {"hooked": hooked}
regex_cache.save()
print(json.dumps(figures))
"""


def environment(cache: Path | str, **extra: str) -> dict[str, str]:
    env = {**os.environ, regex_cache.ENV: str(cache), **extra}
    if "PYTHONDONTWRITEBYTECODE" not in extra:
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # this machine sets it; a user's usually does not
    return env


def imports(cache: Path | str, **extra: str) -> dict:
    result = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=False,
                            env=environment(cache, **extra), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return json.loads(result.stdout)


def kit(*args: str, cache: Path | str, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "analytics-kit"), *args], capture_output=True, text=True, check=False,
                          env=environment(cache, **extra), cwd=cwd, timeout=120)


def kept(path: Path) -> dict:
    build, entries = marshal.loads(path.read_bytes())
    assert build == regex_cache.BUILD
    return entries


@pytest.fixture(scope="module")
def warm(tmp_path_factory) -> tuple[Path, dict]:
    """A cache file written by one process's imports, and that process's figures."""
    path = tmp_path_factory.mktemp("regex") / "cache"
    return path, imports(path)


def test_a_second_run_compiles_none_of_the_imports_patterns(warm, tmp_path):
    path, first = warm
    assert first["hooked"] and first["hits"] == 0
    assert first["new"] > 150  # dlt, urllib3, packaging, yaml, ... (about 260)
    assert len(kept(path)) == first["new"]
    copy = tmp_path / "cache"
    copy.write_bytes(path.read_bytes())
    before = copy.stat().st_mtime_ns

    second = imports(copy)
    assert second["new"] == 0
    assert second["hits"] == first["new"]
    assert copy.stat().st_mtime_ns == before  # nothing new: not written again


def test_every_kept_pattern_is_the_one_the_interpreter_compiles(warm):
    path, _ = warm
    entries = kept(path)
    assert entries
    for (pattern, flags), args in entries.items():
        fresh = _compiler.compile(pattern, flags)  # this test process's compiler, not the cache
        cached = _sre.compile(pattern, *args)
        assert cached == fresh, pattern  # Pattern equality compares the flags and the code
        assert (cached.groups, cached.groupindex) == (fresh.groups, fresh.groupindex), pattern


def test_the_load_command_keeps_no_secret_and_loads_the_same_with_the_cache(api, tmp_path):
    config = tmp_path / "config.json"
    import analytics_kit as ak

    guide = ak.guide_config(api.base_url)
    guide["client"]["auth"].pop("api_key")
    config.write_text(json.dumps(guide))
    key = api.api_key
    forms = {key, urllib.parse.quote(key, safe=""), re.escape(key)}

    # the key from the environment, then from dlt's secrets file (where no environment value shows it)
    by_env = tmp_path / "env"
    by_env.mkdir()
    cache = tmp_path / "env.regex"
    first = kit("load", "--config", str(config), "--quiet", cache=cache, cwd=by_env, API_KEY=key)
    assert first.returncode == 0, first.stderr
    again = kit("load", "--config", str(config), "--quiet", cache=cache, cwd=by_env, API_KEY=key)
    assert again.returncode == 0, again.stderr
    assert "mode='incremental'" in again.stdout

    by_file = tmp_path / "file"
    (by_file / ".dlt").mkdir(parents=True)
    (by_file / ".dlt" / "secrets.toml").write_text(f'api_key = "{key}"\n')
    file_cache = tmp_path / "file.regex"
    loaded = kit("load", "--config", str(config), "--quiet", cache=file_cache, cwd=by_file)
    assert loaded.returncode == 0, loaded.stderr

    for path in (cache, file_cache):
        data = path.read_bytes()
        assert len(kept(path)) > 150
        for form in forms:
            assert form.encode() not in data, path
    # the run with the cache loaded what the API has, as the first did
    assert "rows=270" in first.stdout and "rows=270" in loaded.stdout  # 250 events + 20 customers


def _import_top_level(folder: Path, source: str) -> None:
    name = f"regex_probe_{uuid.uuid4().hex}"
    (folder / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


def test_only_patterns_compiled_while_a_module_is_imported_are_kept(tmp_path, monkeypatch):
    token = "tok-" + uuid.uuid4().hex
    monkeypatch.setenv("SOME_TOKEN", token)
    cache = regex_cache.Cache(str(tmp_path / "cache"))
    tag = uuid.uuid4().hex  # patterns this process has not compiled, so re's own cache has none of them
    monkeypatch.setattr(_compiler, "compile", cache.compile)
    try:
        re.compile(f"at-run-time-{tag}")
        re.compile(f"locale-{tag}".encode(), re.LOCALE)
        _import_top_level(tmp_path, f"import os, re\n"
                                    f"KEPT = re.compile('imported-{tag}-(?P<n>[0-9]+)')\n"
                                    f"TOKEN = re.compile('imported-{tag}-' + re.escape(os.environ['SOME_TOKEN']))\n"
                                    f"class Inner:\n    ALSO = re.compile('in-a-class-body-{tag}')\n")
    finally:
        monkeypatch.undo()
    patterns = {pattern for pattern, _ in cache.entries}
    assert f"imported-{tag}-(?P<n>[0-9]+)" in patterns
    assert f"in-a-class-body-{tag}" in patterns
    assert not [p for p in patterns if f"at-run-time-{tag}" in str(p) or f"locale-{tag}" in str(p)]
    assert not [p for p in patterns if token.replace("-", "") in str(p).replace("\\", "").replace("-", "")]
    assert cache.new == 2, patterns


def _bad_files(good: bytes) -> dict[str, bytes]:
    build, entries = marshal.loads(good)
    (pattern, flags), args = next(iter(entries.items()))
    rejected = dict(entries)
    rejected[(pattern, flags)] = (args[0], [999, 1, 2], *args[2:])  # code _sre refuses
    other_build = (build[0], "another Python", *build[2:])
    return {
        "garbage": b"\x00not marshal at all" * 10,
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "another build": marshal.dumps((other_build, entries)),
        "not a mapping": marshal.dumps((build, [1, 2, 3])),
        "an entry _sre rejects": marshal.dumps((build, rejected)),
        "entries of the wrong shape": marshal.dumps((build, {(pattern, flags): 7})),
    }


@pytest.mark.parametrize("case", ["garbage", "truncated", "empty", "another build", "not a mapping",
                                  "an entry _sre rejects", "entries of the wrong shape"])
def test_a_bad_file_means_a_normal_compile_and_is_written_again(warm, tmp_path, case):
    good_path, first = warm
    path = tmp_path / "cache"
    path.write_bytes(_bad_files(good_path.read_bytes())[case])
    figures = imports(path)
    assert figures["hooked"]
    assert figures["new"] + figures["hits"] == first["new"]
    assert figures["new"] >= 1
    assert kept(path) == kept(good_path)  # whole again, entry for entry


def test_no_file_where_bytecode_would_not_be_written_or_cannot_be(tmp_path):
    path = tmp_path / "cache"
    assert imports(path, PYTHONDONTWRITEBYTECODE="1")["new"] > 150
    assert not path.exists()

    off = imports("0")
    assert off == {"hooked": False}

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    imports(a_file / "cache")  # its folder cannot be made: quietly no cache (imports() checks stderr)
    assert a_file.read_text() == "not a folder"


def test_the_command_starts_with_the_cache_and_saves_it(tmp_path):
    path = tmp_path / "cache"
    result = kit("tables", "--database", str(tmp_path / "none.duckdb"), cache=path, cwd=tmp_path)
    assert path.exists(), result.stderr
    assert len(kept(path)) > 20  # pyarrow's, DuckDB's and the kit's own imports


def test_runs_writing_at_once_leave_one_whole_file(warm, tmp_path):
    _, first = warm
    path = tmp_path / "cache"
    children = [subprocess.Popen([sys.executable, "-c", IMPORTS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=environment(path)) for _ in range(4)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    assert len(kept(path)) == first["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no temporary file left behind
