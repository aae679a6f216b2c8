"""The command's standard streams, made safe to write to whatever the shell gave it.

A closed stdout (``>&-``) is ``None`` in Python; a stream in an encoding that lacks a character (``PYTHONIOENCODING
=ascii``) refuses it; a full disk (``load > log``) fails the write. Each ended the command with a traceback and exit 1,
the last after a load had committed (helper-149). Here output with nowhere to go is dropped, a character the encoding
lacks is written as its escape, and a failed write is a ``KitError`` that says what was done before it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from analytics_kit.errors import KitError


class OutputFailed(KitError):
    """The standard output could not be written (a full disk, an I/O error)."""


class _Guarded:
    """``stream`` whose failed writes and flushes raise ``OutputFailed`` (a closed pipe stays ``BrokenPipeError``:
    the command's reader went away, `| head`)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._failed = False  # once said, what is left to write is dropped: the same error would come again

    def write(self, text: str) -> int:
        return len(text) if self._failed else self._guard(self._stream.write, text)

    def flush(self) -> None:
        if not self._failed:
            self._guard(self._stream.flush)

    def _guard(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as error:
            self._failed = True
            raise OutputFailed(
                f"could not write to the standard output: {error.strerror or error}",
                guidance="Free space where the output goes (or send it elsewhere) and run the command again. "
                "What it did before it printed is done: a load's commit included, which `analytics-kit history` "
                "shows.") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Sets ``sys.stdout`` and ``sys.stderr`` up for the command (see the module's docstring)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - the process's to the end
        elif hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    sys.stdout = _Guarded(sys.stdout)


def flush_streams() -> None:
    """Flushes both streams; a failed flush of stdout is said on stderr (``OutputFailed``) and raised."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
