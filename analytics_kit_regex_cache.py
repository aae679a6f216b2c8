"""The ``analytics-kit`` command's cache of compiled regular expressions, kept as bytecode is.

The modules a load imports (dlt, urllib3, packaging, yaml, pendulum, ...) compile about 260
regular expressions at module level, every run the same ones. CPython's regex compiler is pure
Python: ~90 ms of a ~2-s incremental run from the shell. What it produces for a pattern is the
arguments ``_sre.compile`` takes, a function of the pattern, its flags and the Python build. This
keeps them in one file beside the module's own bytecode (``__pycache__``, or
``PYTHONPYCACHEPREFIX``), keyed by the exact build, written atomically, trusted as a .pyc is.

- At start, each kept pattern is built (``_sre.compile``, microseconds) into ``re``'s own cache,
  so ``re.compile`` finds it there. What is not there, ``re`` compiles as always, through a copy
  of its own compile function that notes the arguments it hands ``_sre`` (the same code, frames
  and warnings: a warning names the line that compiled the pattern, as without the cache).
- Recorded: only patterns compiled while the import system runs a module's body, that compile
  without a warning, and in which no environment variable's value appears. A pattern built at
  run time (the kit's redaction pattern holds the API key) never reaches the file.
- The file carries a digest of its entries: a damaged file (``_sre`` crashes on some code it
  accepts) is never used.
- Written only when a run recorded something new, never with ``PYTHONDONTWRITEBYTECODE``. An
  entry neither recorded nor held by a module (``P = re.compile(...)``) in any of the file's last 8
  writes is dropped, so a pattern whose text changes from run to run (one built from a set of
  strings follows the hash seed) cannot grow it.
- ``ANALYTICS_KIT_REGEX_CACHE=0`` (or off, false, no) turns it off; a path is the file to use
  instead. Any problem with the file means a normal compile; anything but a regular file at its
  path (``/dev/null``, a FIFO, a symlink) is left as it is.
- Recording runs (the first, and after an upgrade) repeat each new pattern's parse with warnings
  caught: that moment's warnings in other threads are caught too. CPython 3.11 only: ``re``'s cache and compiler
  are its internals, and another version's are not assumed.

A module beside the package, not in it: importing ``analytics_kit`` imports DuckDB and pyarrow,
whose own patterns come first.
"""

from __future__ import annotations

import _sre
import hashlib
import importlib.util
import marshal
import os
import re
import stat
import sys
import tempfile
import time
import types
import warnings
from re import _compiler, _parser
from typing import Any

ENV = "ANALYTICS_KIT_REGEX_CACHE"
FORMAT = 3
SUPPORTED = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)
# what the file is valid for: another interpreter build may compile a pattern otherwise
BUILD = (FORMAT, sys.version, sys.implementation.cache_tag, _sre.MAGIC, _sre.CODESIZE)
KEEP_WRITES = 8  # an entry unused through this many writes of the file is dropped
MAX_ENTRIES = 400  # written at most (the most recently used): re keeps 512; a load's modules compile ~260
MAX_HELD = 4 * MAX_ENTRIES  # recorded at most in one process
MAX_BYTES = 16 * 2**20  # a file larger than this is not read
STALE_TEMPORARY = 600  # seconds: a temporary file this old was left by a killed writer
# DEBUG prints at compile time, TEMPLATE warns before re looks in its cache, LOCALE patterns depend
# on the locale at compile time
SKIPPED_FLAGS = _compiler.SRE_FLAG_DEBUG | _compiler.SRE_FLAG_TEMPLATE | _compiler.SRE_FLAG_LOCALE
OFF, ON = ("0", "off", "false", "no"), ("", "1", "on", "true", "yes")  # $ANALYTICS_KIT_REGEX_CACHE as a switch
MIN_SECRET = 8  # environment values this long are kept out of the file (API_KEY and the like)

_cache: Cache | None = None


class Cache:
    """The patterns kept in the file, and those recorded in this process."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.entries: dict[tuple[Any, int], tuple] = {}  # (pattern, flags) -> _sre.compile's other arguments
        self.recorded: dict[tuple[Any, int], int] = {}  # key -> the last write it was recorded or held in
        self.writes = 0
        self.new = 0  # patterns recorded in this process that the file does not hold
        self.preloaded = 0  # patterns put in re's cache from the file
        self.secrets = [value for value in os.environ.values() if len(value) >= MIN_SECRET]
        try:
            self.writes, self.entries, self.recorded = _read(self.path)
        except Exception:  # noqa: BLE001, S110 - missing, unreadable, damaged or foreign: compile as usual
            pass

    def preload(self) -> None:
        """Puts every kept pattern in ``re``'s cache, as ``re.compile`` would have left it."""
        for key, args in list(self.entries.items()):
            pattern, flags = key
            try:
                re._cache[type(pattern), pattern, flags] = _sre.compile(pattern, *args)
            except Exception:  # noqa: BLE001 - an entry _sre rejects: re compiles it as usual
                del self.entries[key]
        self.preloaded = len(self.entries)

    def compiler(self) -> Any:
        """``re._compiler.compile``'s own code with ``_sre`` swapped for a recorder of its arguments."""
        original = _compiler.compile
        namespace = dict(vars(_compiler), _sre=_Recorder(self))
        return types.FunctionType(original.__code__, namespace, original.__name__, original.__defaults__)

    def note(self, pattern: Any, args: tuple, flags: Any) -> None:
        """Records what ``re`` compiled, if it may be kept (see the module's docstring)."""
        if type(pattern) not in (str, bytes) or not isinstance(flags, int) or flags & SKIPPED_FLAGS:
            return
        if len(self.entries) >= MAX_HELD or not _importing() or self._holds_secret(pattern) or _warns(pattern, flags):
            return
        key, args = (pattern, int(flags)), (int(args[0]), [int(op) for op in args[1]], *args[2:])
        try:
            marshal.dumps((key, args))
        except ValueError:
            return
        if self.entries.get(key) != args:
            self.new += 1
        self.entries[key] = args
        self.recorded[key] = self.writes + 1

    def _holds_secret(self, pattern: str | bytes) -> bool:
        text = pattern if isinstance(pattern, str) else pattern.decode("latin-1")
        bare = text.replace("\\", "")  # as re.escape() left it
        return any(secret in text or secret in bare for secret in self.secrets)

    def save(self) -> None:
        """Writes the file if this run recorded patterns, atomically; quietly not where it cannot.
        An interrupt leaves the old file whole and is raised again."""
        if not self.new or sys.dont_write_bytecode:
            return
        writes = self.writes + 1
        for key in self.entries:
            if _held((type(key[0]), *key)):
                self.recorded[key] = writes
        recent = sorted((key for key in self.entries if self.recorded.get(key, 0) > writes - KEEP_WRITES),
                        key=lambda key: self.recorded.get(key, 0), reverse=True)[:MAX_ENTRIES]
        kept = {key: self.entries[key] for key in recent}
        folder, name = os.path.split(self.path)
        try:
            payload = marshal.dumps((writes, kept, {key: self.recorded.get(key, 0) for key in kept}))
            data = marshal.dumps((BUILD, hashlib.blake2b(payload).digest(), payload))
            os.makedirs(folder, exist_ok=True)
            _remove_stale_temporaries(folder, name)
            fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        except Exception:  # noqa: BLE001 - a read-only or missing folder: no cache, as for bytecode
            return
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            # readable by whoever may read this module, as its bytecode is (mkstemp makes it private)
            os.chmod(temporary, os.stat(__file__).st_mode & 0o666 | 0o200)
            if not _replaceable(self.path):
                raise FileExistsError(self.path)
            os.replace(temporary, self.path)
            self.new, self.writes = 0, writes
        except BaseException as error:  # a full disk, or Ctrl-C: the old file stays whole
            try:
                os.unlink(temporary)
            except OSError:
                pass
            if not isinstance(error, Exception):
                raise


class _Recorder:
    """``_sre`` for the compile function's copy: notes what it is handed, then hands it on."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(_sre, name)

    def compile(self, pattern: Any, *args: Any) -> Any:
        compiled = _sre.compile(pattern, *args)
        try:
            # the flags re.compile was given: the copy's own argument (its _sre call passes them combined)
            self.cache.note(pattern, args, sys._getframe(1).f_locals.get("flags"))
        except Exception:  # noqa: BLE001, S110 - what cannot be noted is compiled every time, as without the cache
            pass
        return compiled


def _replaceable(path: str) -> bool:
    """Whether ``path`` is free or a regular file: never a device (``/dev/null``), FIFO, socket,
    folder or symlink put there, which stays as it is (and there is no cache)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True


def _held(key: tuple) -> bool:
    """Whether a pattern in ``re``'s cache is held elsewhere too: a module kept the one preloaded
    (``P = re.compile(...)``), so the entry is in use though it was not recorded again."""
    compiled = re._cache.get(key)
    # the references: re's cache, ``compiled`` and getrefcount's argument
    return compiled is not None and sys.getrefcount(compiled) > 3


def _warns(pattern: str | bytes, flags: int) -> bool:
    """Whether compiling ``pattern`` warns (its parse is repeated, silently: it already warned, if it does)."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        _parser.parse(pattern, flags)
    return bool(warned)


def _read(path: str) -> tuple[int, dict, dict]:
    """The file's writes, entries and their last use; raises for anything but a whole file of this build."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO in its place does not block
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            raise ValueError("not a cache file")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read()
    finally:
        os.close(fd)
    build, digest, payload = marshal.loads(data)
    if build != BUILD or hashlib.blake2b(payload).digest() != digest:
        raise ValueError("another build's file, or a damaged one")
    writes, entries, used = marshal.loads(payload)
    if not (isinstance(writes, int) and isinstance(entries, dict) and isinstance(used, dict)):
        raise TypeError("not a cache file")
    return writes, entries, used


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Temporary files a killed writer left (a writer holds its own for milliseconds)."""
    now = time.time()
    for entry in os.scandir(folder):
        if entry.name.startswith(f".{name}."):
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMPORARY:
                    os.unlink(entry.path)
            except OSError:
                pass


def _importing() -> bool:
    """Whether the import system is running a module's body in this thread (the compile is at import)."""
    frame = sys._getframe(3)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_load_unlocked" and code.co_filename == "<frozen importlib._bootstrap>":
            return True
        frame = frame.f_back
    return False


def cache_path() -> str | None:
    """Where the file goes: beside this module's bytecode (its ``__pycache__``, or the folder
    ``PYTHONPYCACHEPREFIX`` gives), or the path $ANALYTICS_KIT_REGEX_CACHE names; None when that
    says off (0, off, false, no; 1, on, true and yes mean the default place)."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value.lower() in ON:
        return os.path.splitext(importlib.util.cache_from_source(__file__))[0] + ".regex"
    return value


def install() -> Cache | None:
    """Serves ``re``'s compiles from the file, and records new ones, for this process; once per process."""
    global _cache
    path = cache_path() if _cache is None and SUPPORTED else None
    if path is not None:
        try:
            cache = Cache(path)
            cache.preload()
            _compiler.compile = cache.compiler()
        except Exception:  # noqa: BLE001 - no cache is never an error
            return None
        _cache = cache
    return _cache


def save() -> None:
    """Writes what this process recorded; for the command's end (it exits without teardown)."""
    if _cache is not None:
        _cache.save()
