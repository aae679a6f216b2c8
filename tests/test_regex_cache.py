"""The command's regex cache (``analytics_kit_regex_cache``): what it keeps and reuses, what it never
keeps, and what a bad, missing or unwritable file does. Real processes, as the command runs."""

from __future__ import annotations

import _sre
import hashlib
import importlib
import json
import marshal
import os
import re
import stat
import subprocess
import sys
import time
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
recorder = re._compiler.compile.__globals__.get("_sre")
hooked = cache is not None and getattr(recorder, "cache", None) is cache
figures = {"new": cache.new, "hits": cache.preloaded, "hooked": hooked} if cache else {"hooked": hooked}
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
    build, digest, payload = marshal.loads(path.read_bytes())
    assert build == regex_cache.BUILD and hashlib.blake2b(payload).digest() == digest
    _, entries, _ = marshal.loads(payload)
    return entries


def written(build: tuple, entries: dict, writes: int = 1, used: dict | None = None, digest: bytes | None = None) -> bytes:
    """A cache file's bytes, as the module writes them (or with another digest)."""
    payload = marshal.dumps((writes, entries, {key: writes for key in entries} if used is None else used))
    return marshal.dumps((build, hashlib.blake2b(payload).digest() if digest is None else digest, payload))


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
    monkeypatch.setattr(_compiler, "compile", cache.compiler())
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
    entries = kept_bytes(good)
    build = regex_cache.BUILD
    (pattern, flags), args = next(iter(entries.items()))
    rejected = dict(entries)
    rejected[(pattern, flags)] = (args[0], [999, 1, 2], *args[2:])  # code _sre refuses
    damaged = dict(entries)
    damaged[(pattern, flags)] = (args[0], [0, *args[1][1:]], *args[2:])  # as one bad byte on disk would
    good_payload = marshal.loads(good)[2]
    return {
        "garbage": b"\x00not marshal at all" * 10,
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "another build": written((build[0], "another Python", *build[2:]), entries),
        "an older format": marshal.dumps((build, entries)),
        "a damaged entry (digest of the entries before)": written(build, damaged, digest=hashlib.blake2b(good_payload).digest()),
        "not a mapping": written(build, [1, 2, 3]),
        "an entry _sre rejects": written(build, rejected),
        "entries of the wrong shape": written(build, {(pattern, flags): 7}),
    }


def kept_bytes(data: bytes) -> dict:
    return marshal.loads(marshal.loads(data)[2])[1]


@pytest.mark.parametrize("case", ["garbage", "truncated", "empty", "another build", "an older format",
                                  "a damaged entry (digest of the entries before)", "not a mapping",
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


def test_a_fifo_a_folder_or_a_relative_path_in_its_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert imports(fifo)["new"] > 150  # not blocked reading it (imports() has a timeout)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # left as it is: only a regular file is replaced
    target = tmp_path / "elsewhere"
    target.write_text("not a cache")
    link = tmp_path / "link"
    link.symlink_to(target)
    imports(link)
    assert link.is_symlink() and target.read_text() == "not a cache"
    if os.geteuid() == 0:  # `ANALYTICS_KIT_REGEX_CACHE=/dev/null`, as root, would have replaced the device
        device = tmp_path / "null"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        imports(device)
        assert stat.S_ISCHR(device.lstat().st_mode)
    folder = tmp_path / "folder"
    folder.mkdir()
    assert imports(folder)["new"] > 150 and folder.is_dir()
    result = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=False,
                            env=environment("relative.regex"), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(kept(tmp_path / "relative.regex")) > 150


def test_no_file_where_bytecode_would_not_be_written_or_cannot_be(tmp_path):
    path = tmp_path / "cache"
    assert imports(path, PYTHONDONTWRITEBYTECODE="1")["new"] > 150
    assert not path.exists()

    for switch in ("0", "off", "False", "no"):
        assert imports(switch) == {"hooked": False}
        assert not (Path.cwd() / switch).exists()

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


# a process importing one module of the test's own, with the cache, as the command would
IMPORT_ONE = """
import json, sys
import analytics_kit_regex_cache as regex_cache
cache = regex_cache.install()
sys.path.insert(0, sys.argv[1])
__import__(sys.argv[2])
figures = {"new": cache.new, "hits": cache.preloaded}
regex_cache.save()
print(json.dumps(figures))
"""


def import_one(folder: Path, module: str, cache: Path, **extra: str) -> tuple[dict, str]:
    result = subprocess.run([sys.executable, "-W", "default", "-c", IMPORT_ONE, str(folder), module],
                            capture_output=True, text=True, check=False, env=environment(cache, **extra), timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_a_pattern_that_changes_from_run_to_run_cannot_grow_the_file(tmp_path):
    tag = uuid.uuid4().hex
    # a set of strings iterates in the hash seed's order, as tokenize's string prefixes do
    (tmp_path / "seeded.py").write_text(f"import re\nP = re.compile('{tag}(' + '|'.join({{'ab', 'cd', 'ef', 'gh', 'ij'}}) + ')')\n"
                                        f"Q = re.compile('steady-{tag}')\n")
    cache = tmp_path / "cache"
    texts = set()
    for seed in range(20):
        import_one(tmp_path, "seeded", cache, PYTHONHASHSEED=str(seed))
        texts.update(p for p, _ in kept(cache) if isinstance(p, str) and tag in p and "steady" not in p)
        assert (f"steady-{tag}", 0) in kept(cache)  # held by the module every run: never dropped
    entries = kept(cache)
    assert len(texts) > regex_cache.KEEP_WRITES  # the pattern did change from run to run
    assert len([p for p, _ in entries if isinstance(p, str) and tag in p and "steady" not in p]) <= regex_cache.KEEP_WRITES


def test_a_pattern_that_warns_is_compiled_each_time_and_warns_once(tmp_path):
    tag = uuid.uuid4().hex
    (tmp_path / "warns.py").write_text(f"import re\nP = re.compile('[[{tag}]')\nQ = re.compile('quiet-{tag}')\n"
                                       f"T = re.compile('template-{tag}', re.TEMPLATE)\n")
    cache = tmp_path / "cache"
    for _ in range(2):
        _, stderr = import_one(tmp_path, "warns", cache)
        assert stderr.count("FutureWarning") == 1, stderr
        assert "warns.py:2" in stderr  # where the pattern is, as without the cache
        assert stderr.count("DeprecationWarning") == 1, stderr  # re.TEMPLATE's, before re looks in its cache
    patterns = [p for p, _ in kept(cache) if isinstance(p, str)]
    assert f"quiet-{tag}" in patterns and not [p for p in patterns if f"[[{tag}]" in p or "template" in p]


def test_a_str_subclass_pattern_does_not_stop_the_others_being_kept(tmp_path):
    tag = uuid.uuid4().hex
    (tmp_path / "subclass.py").write_text(f"import re\nclass Text(str):\n    pass\n"
                                          f"P = re.compile(Text('sub-{tag}'))\nQ = re.compile('plain-{tag}')\n")
    cache = tmp_path / "cache"
    import_one(tmp_path, "subclass", cache)
    patterns = [p for p, _ in kept(cache)]
    assert f"plain-{tag}" in patterns and f"sub-{tag}" not in patterns


def test_a_killed_writers_temporary_file_is_removed_later(tmp_path):
    (tmp_path / "fresh.py").write_text(f"import re\nP = re.compile('fresh-{uuid.uuid4().hex}')\n")
    cache = tmp_path / "cache"
    old, recent = tmp_path / ".cache.abc123", tmp_path / ".cache.def456"
    for path in (old, recent):
        path.write_bytes(b"half a file")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    import_one(tmp_path, "fresh", cache)
    assert cache.exists() and recent.exists() and not old.exists()


def test_an_interrupt_while_the_cache_is_written_ends_the_command_as_any_interrupt():
    # the moment cannot be hit from outside reliably: save() raising KeyboardInterrupt stands for it
    script = ("import analytics_kit_regex_cache as r, analytics_kit_command as c\n"
              "def save():\n    raise KeyboardInterrupt\n"
              "r.save = save\nc.save_regex_cache()\nprint('went on')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "interrupted\n")


def test_a_full_file_makes_room_for_what_runs_now(tmp_path):
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    # a dependency's patterns before an upgrade fill the file; the upgraded one compiles others
    (tmp_path / "before.py").write_text("import re\n" + "".join(
        f"P{i} = re.compile('{old}-{i}')\n" for i in range(regex_cache.MAX_ENTRIES + 50)))
    (tmp_path / "after.py").write_text("import re\n" + "".join(f"P{i} = re.compile('{new}-{i}')\n" for i in range(60)))
    cache = tmp_path / "cache"
    import_one(tmp_path, "before", cache)
    assert len(kept(cache)) == regex_cache.MAX_ENTRIES
    figures, _ = import_one(tmp_path, "after", cache)
    assert figures["new"] == 60
    entries = kept(cache)
    assert len(entries) == regex_cache.MAX_ENTRIES
    assert {f"{new}-{i}" for i in range(60)} <= {p for p, _ in entries}
    again, _ = import_one(tmp_path, "after", cache)
    assert again["new"] == 0  # all served from the file


def test_an_interrupt_wrapped_by_python_is_still_an_interrupt():
    import analytics_kit_command
    from analytics_kit.interrupts import is_interrupt

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from interrupt
    except RuntimeError as wrapped:
        error = wrapped
    for check in (is_interrupt, analytics_kit_command._interrupt_in):
        assert check(error) and check(KeyboardInterrupt())
        assert not check(RuntimeError("plain")) and not check(None)
    loop = ValueError("a")
    loop.__context__ = TypeError("b")
    loop.__context__.__context__ = loop
    assert not is_interrupt(loop) and not analytics_kit_command._interrupt_in(loop)


@pytest.mark.parametrize(("argv", "refused"), [(["load"], True), (["--debug", "load", "--quiet"], True),
                                               (["query", "select 1"], False), (["--help"], False)])
def test_numpy_is_refused_for_load_only(argv, refused):
    script = ("import sys, analytics_kit_command as c\n"
              f"with c._pyarrow_without_numpy({argv!r}) as load:\n    import pyarrow\n"
              "print(load, 'numpy' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split() == [str(refused), str(not refused)]
