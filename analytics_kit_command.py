"""The ``analytics-kit`` command's entry point, kept outside the package on purpose.

Importing the package (pyarrow, DuckDB) takes about a second before ``analytics_kit.cli.run``
can handle anything: a Ctrl-C then printed a Python traceback and exited 1 or -2, and once the
interpreter's teardown of half-imported extension modules aborted (-6). Here an interrupt during
that import ends the command as one during its work does: "interrupted", status 130.

What must happen before that import happens here too: the regex cache, and for ``load``,
pyarrow imported without numpy.
"""

import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator


class _NoNumpy:
    """A meta-path finder that refuses numpy (and its submodules)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "numpy" or name.startswith("numpy."):
            raise ModuleNotFoundError(f"{name} is not imported while analytics-kit load imports pyarrow")


@contextmanager
def _pyarrow_without_numpy(argv: list[str]) -> Iterator[bool]:
    """For ``load``: the package's imports run with numpy refused, so pyarrow imports without it;
    yields whether it refuses.

    pyarrow imports numpy (~0.12 s, a sixth of the imports of a 1,000-row incremental run) only
    to convert numpy objects, and numpy is optional to it. The load never hands pyarrow or DuckDB
    a numpy object; the kit's own numpy work (distinct keys of a large pass) imports numpy when
    it needs it, later, which the refusal no longer stops. In that process pyarrow then treats
    numpy objects as unknown (``pa.array(np.int64(1))`` raises ArrowInvalid), as it would with
    numpy uninstalled. Other commands hand pandas frames to pyarrow and import as usual.
    """
    command = next((arg for arg in argv if not arg.startswith("-")), None)  # after --debug, say
    if command != "load" or "numpy" in sys.modules or "pyarrow" in sys.modules or _pyarrow_needs_numpy():
        yield False
        return
    refuse = _NoNumpy()
    sys.meta_path.insert(0, refuse)
    try:
        yield True
    finally:
        sys.meta_path.remove(refuse)


def _pyarrow_needs_numpy() -> bool:
    """Whether the installed pyarrow requires numpy (pyarrow 16, the oldest the kit supports, fails to import without
    it: every ``analytics-kit load`` stopped with "numpy is not imported"). Read from its metadata's file, as
    ``importlib.metadata`` would take 40-60 ms to import and find."""
    import glob
    from importlib.util import find_spec

    spec = find_spec("pyarrow")
    if spec is None or not spec.submodule_search_locations:
        return True  # not found here: nothing refused, the import says what is missing
    site = os.path.dirname(list(spec.submodule_search_locations)[0])
    for metadata in glob.glob(os.path.join(glob.escape(site), "pyarrow-*.dist-info", "METADATA")):
        with open(metadata, encoding="utf-8", errors="replace") as file:
            for line in file:
                if not line.strip():
                    break  # the headers end here
                name, _, value = line.partition(":")
                if name.lower() == "requires-dist" and value.strip().lower().startswith("numpy") and "extra" not in value:
                    return True
        return False
    return True  # no metadata to tell: as if it did


def start(argv: list[str]) -> Callable[..., None]:
    """What the command does before its work (bench/peers.py times it as the command's imports):
    the regex cache, then the package's imports, for ``load`` without numpy. Returns the command."""
    import analytics_kit_regex_cache

    analytics_kit_regex_cache.install()  # before the imports whose patterns it keeps
    with _pyarrow_without_numpy(argv) as load:
        from analytics_kit.cli import run as command

        if load:
            import pyarrow.compute  # noqa: F401 - it imports numpy too; the load imports it later
    return command


def save_regex_cache() -> None:
    """The regex cache's new patterns, written once the command's output is out; an interrupt
    meanwhile (the file stays whole) ends the command as any other does."""
    import analytics_kit_regex_cache

    try:
        analytics_kit_regex_cache.save()
    except KeyboardInterrupt:
        _interrupted()


def _interrupted() -> None:
    print("interrupted", file=sys.stderr, flush=True)
    os._exit(130)  # not the teardown of modules half imported


def _interrupt_in(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was raised while handling, an interrupt. The package's
    ``interrupts.is_interrupt`` answers this, but not here: when the package's own import is what
    failed, importing it again would start that import over (a second, in an interrupt's wake)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen and not isinstance(error, KeyboardInterrupt):
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return isinstance(error, KeyboardInterrupt)


def _terminated(signum: int, frame: Any) -> None:  # noqa: ARG001 - a signal handler's signature
    raise KeyboardInterrupt("terminated (SIGTERM)")


def run() -> None:
    import signal

    # from the start: a SIGTERM during the package's imports ended the command at -15 without a word (helper-127)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        command = start(sys.argv[1:])
    except BaseException as error:
        if _interrupt_in(error):
            _interrupted()
        raise
    command(before_exit=save_regex_cache)
