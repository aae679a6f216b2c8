"""The ``analytics-kit`` command's cache of compiled regular expressions, kept as bytecode is.

The modules a load imports (dlt, urllib3, packaging, yaml, pendulum, ...) compile about 260
regular expressions at module level, every run the same ones. CPython's regex compiler is pure
Python: ~90 ms of a ~2-s incremental run from the shell. What it produces for a pattern is the
opcode list ``_sre.compile`` takes, a function of the pattern, its flags and the Python build.
This keeps those lists in one file beside the module's own bytecode (``__pycache__``, or
``PYTHONPYCACHEPREFIX``), keyed by the exact build, written atomically, trusted as a .pyc is.

- Recorded: only patterns compiled by a module's top-level code while it is imported, and only
  when no environment variable's value appears in them. A pattern built at run time (the kit's
  redaction pattern holds the API key) never reaches the file.
- Each recorded entry was checked equal (``Pattern.__eq__`` compares the code) to what the
  interpreter compiled; an entry ``_sre`` rejects is compiled again as usual.
- Written only when a run recorded something new, never with ``PYTHONDONTWRITEBYTECODE``.
  ``ANALYTICS_KIT_REGEX_CACHE=0`` turns it off; another value is the file to use instead. Any
  problem with the file means a normal compile.

A module beside the package, not in it: importing ``analytics_kit`` imports DuckDB and pyarrow,
whose own patterns come first.
"""

from __future__ import annotations

import _sre
import importlib.util
import marshal
import os
import sys
import tempfile
from re import _compiler, _parser
from typing import Any

ENV = "ANALYTICS_KIT_REGEX_CACHE"
FORMAT = 1
# what the file is valid for: another interpreter build may compile a pattern otherwise
BUILD = (FORMAT, sys.version, sys.implementation.cache_tag, _sre.MAGIC, _sre.CODESIZE)
MAX_ENTRIES = 5000  # module-level patterns are few; more means something compiles patterns from data
# DEBUG prints at compile time; LOCALE patterns depend on the locale at compile time
SKIPPED_FLAGS = _compiler.SRE_FLAG_DEBUG | _compiler.SRE_FLAG_LOCALE
MIN_SECRET = 8  # environment values this long are kept out of the file (API_KEY and the like)

_cache: Cache | None = None


class Cache:
    """The patterns loaded from the file, and those recorded in this process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: dict[tuple[Any, int], tuple] = {}
        self.new = 0
        self.hits = 0
        self.original = _compiler.compile
        self.secrets = [value for value in os.environ.values() if len(value) >= MIN_SECRET]
        try:
            with open(path, "rb") as file:
                build, entries = marshal.load(file)
            if build == BUILD and isinstance(entries, dict):
                self.entries = entries
        except Exception:  # noqa: BLE001, S110 - missing, unreadable, truncated or foreign: compile as usual
            pass

    def compile(self, pattern: Any, flags: int = 0) -> Any:
        """``re._compiler.compile``, from the file where it has the pattern."""
        if not isinstance(pattern, (str, bytes)) or flags & SKIPPED_FLAGS:
            return self.original(pattern, flags)
        key = (pattern, int(flags))
        args = self.entries.get(key)
        if args is not None:
            try:
                compiled = _sre.compile(pattern, *args)
            except Exception:  # noqa: BLE001 - an entry _sre rejects: the usual compile
                self.entries.pop(key, None)
            else:
                self.hits += 1
                return compiled
        compiled = self.original(pattern, flags)
        if len(self.entries) < MAX_ENTRIES and _at_import() and not self._holds_secret(pattern):
            self._record(key, compiled)
        return compiled

    def _holds_secret(self, pattern: str | bytes) -> bool:
        text = pattern if isinstance(pattern, str) else pattern.decode("latin-1")
        bare = text.replace("\\", "")  # as re.escape() left it
        return any(secret in text or secret in bare for secret in self.secrets)

    def _record(self, key: tuple[Any, int], compiled: Any) -> None:
        """Keeps the arguments ``_sre.compile`` needs, as ``re._compiler.compile`` derives them,
        if they give the pattern the interpreter compiled (equal code, flags and groups)."""
        pattern, flags = key
        try:
            parsed = _parser.parse(pattern, flags)
            code = [int(op) for op in _compiler._code(parsed, flags)]
            groupindex = dict(parsed.state.groupdict)
            indexgroup = [None] * parsed.state.groups
            for name, index in groupindex.items():
                indexgroup[index] = name
            args = (int(flags | parsed.state.flags), code, parsed.state.groups - 1, groupindex, tuple(indexgroup))
            if _sre.compile(pattern, *args) != compiled:
                return
            marshal.dumps(args)
        except Exception:  # noqa: BLE001 - another interpreter's internals: that pattern is not cached
            return
        self.entries[key] = args
        self.new += 1

    def save(self) -> None:
        """Writes the file if this run recorded patterns, atomically; quietly not where it cannot."""
        if not self.new or sys.dont_write_bytecode:
            return
        folder = os.path.dirname(self.path)
        try:
            data = marshal.dumps((BUILD, self.entries))
            os.makedirs(folder, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=folder, prefix=".regex-")
        except Exception:  # noqa: BLE001 - a read-only or missing folder: no cache, as for bytecode
            return
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            # readable by whoever may read this module, as its bytecode is (mkstemp makes it private)
            os.chmod(temporary, os.stat(__file__).st_mode & 0o666 | 0o200)
            os.replace(temporary, self.path)
            self.new = 0
        except BaseException:  # a full disk, or Ctrl-C: the old file stays whole
            try:
                os.unlink(temporary)
            except OSError:
                pass
            if not isinstance(sys.exc_info()[1], Exception):
                raise


def _at_import() -> bool:
    """Whether a module other than ``__main__`` is running its top-level code in this thread."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__":
            return True
        frame = frame.f_back
    return False


def cache_path() -> str:
    """Where the file goes: $ANALYTICS_KIT_REGEX_CACHE if it names one, else beside this module's
    bytecode (its ``__pycache__``, or the folder ``PYTHONPYCACHEPREFIX`` gives)."""
    return os.environ.get(ENV) or os.path.splitext(importlib.util.cache_from_source(__file__))[0] + ".regex"


def install() -> Cache | None:
    """Serves ``re``'s compiles from the file, for this process; once per process."""
    global _cache
    if _cache is None and os.environ.get(ENV) != "0":
        try:
            _cache = Cache(cache_path())
        except Exception:  # noqa: BLE001 - no cache is never an error
            return None
        _compiler.compile = _cache.compile
    return _cache


def save() -> None:
    """Writes what this process recorded; for the command's end (it exits without teardown)."""
    if _cache is not None:
        _cache.save()
