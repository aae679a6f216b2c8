"""The kit's errors.

Every error says what went wrong and what to do next (``guidance``), and carries
no secret: messages are built by the kit from redacted parts only.

    KitError
    ├── ConfigError              (also ValueError) the config dict is malformed, or dlt refuses it
    │   └── MissingSecretError   a credential is set nowhere dlt looks (nor, for a key, in API_KEY)
    ├── LoadError                a load failed; nothing half-written, cursors as before
    └── QueryError               (also ValueError) SQL the database refused, or no database to read

In IPython and Jupyter a kit error shows as its message and what to do, not as a
traceback through the kit's and DuckDB's frames (``_render_traceback_``); ``%tb``
still prints the whole traceback.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


# Set on an error raised while one page was handled: that page's request, secrets masked.
# With pages fetched concurrently, the last request sent is usually another one.
PAGE_REQUEST = "kit_request"


def tag_request(error: BaseException, request: str) -> None:
    """Marks ``error`` with the request it was raised for, unless it names one already."""
    if getattr(error, PAGE_REQUEST, None) is None:
        try:
            setattr(error, PAGE_REQUEST, request)
        except AttributeError:
            pass


# An unbroken run of characters longer than this, in a message, is an API's value, a link or a field name quoted as
# it came: cut to its ends. A 200,000-character key, cursor or next link made messages of that length (helper-132).
_LONGEST_RUN = 300
_LONG_RUN = re.compile(r"\S{%d,}" % (_LONGEST_RUN + 1))


def _cut_runs(text: str) -> str:
    """``text`` with each run of more than ``_LONGEST_RUN`` non-space characters cut to its first 200 and last 60."""
    if len(text) <= _LONGEST_RUN:
        return text
    return _LONG_RUN.sub(lambda run: f"{run[0][:200]}...({len(run[0]) - 260:,} characters)...{run[0][-60:]}", text)


class KitError(Exception):
    """Base of the kit's errors: a message, optional guidance, optional context."""

    def __init__(self, message: str, *, guidance: str | None = None, **context: Any) -> None:
        self.message = message
        self.guidance = guidance
        self.context = context
        super().__init__(message)

    def detached(self) -> "KitError":
        """A copy with no traceback and no chained exceptions: nothing that holds the
        frames (and their local variables, secrets included) it was raised from."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        Exception.__init__(clone, *self.args)
        return clone

    def redacted(self, redact: Callable[[str], str]) -> "KitError":
        """A detached copy whose message, guidance and context pass through ``redact``.

        Kit errors quote what the API sent (a total, a value, a field name); an API that
        echoes the key puts it there.
        """
        clone = self.detached()
        clone.message = redact(self.message)
        clone.guidance = redact(self.guidance) if self.guidance else self.guidance
        clone.context = {k: redact(v) if isinstance(v, str) else v for k, v in self.context.items()}
        for name, value in list(vars(clone).items()):
            if isinstance(value, str) and name not in ("message", "guidance"):
                setattr(clone, name, redact(value))
        clone.args = (clone.message,)
        return clone

    def __str__(self) -> str:
        # cut as shown, not as built: redaction (``redacted``) sees each secret whole
        if self.guidance:
            return f"{_cut_runs(self.message)}\n  What to do: {_cut_runs(self.guidance)}"
        return _cut_runs(self.message)

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show for this error: its message and the fix, no frames.

        IPython calls this for every traceback it shows, ``%tb`` included; there the
        whole traceback is what was asked for, so it gets it.
        """
        full = _full_traceback(self)
        if full is not None:
            return full
        return [f"{type(self).__name__}: {self}", "(%tb shows the full traceback)"]


def _full_traceback(error: BaseException) -> list[str] | None:
    """IPython's own traceback of ``error`` when the ``%tb`` magic asks for it, else None."""
    frame = inspect.currentframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "tb" and code.co_filename.replace("\\", "/").endswith("IPython/core/magics/execution.py"):
            shell = frame.f_locals.get("self")
            shell = getattr(shell, "shell", None)
            if shell is None:
                return None
            return shell.InteractiveTB.structured_traceback(type(error), error, error.__traceback__)
        frame = frame.f_back
    return None


class ConfigError(KitError, ValueError):
    """The config dict is malformed; ``path`` points at the offending key."""

    def __init__(self, message: str, *, path: str | None = None, guidance: str | None = None, **context: Any) -> None:
        self.path = path
        if path:
            message = f"{path}: {message}"
        super().__init__(message, guidance=guidance, **context)


class MissingSecretError(ConfigError):
    """A credential (the API key, a token, a password) is not configured.

    A ConfigError, so ``except ConfigError`` catches every config dlt would refuse;
    ``path`` names the auth field, e.g. ``client.auth.api_key``.
    """


class LoadError(KitError):
    """A load failed. Each table's merge is all-or-nothing and the cursors stay at the last
    completed load, so running it again fetches the same data again."""


class QueryError(KitError, ValueError):
    """A query failed, or there is nothing to query: the database's own message, the tables
    there are and a "did you mean" for a misspelt table or column. ``str()`` is one line;
    ``detail`` holds the database's pointer into the SQL (``LINE 1: ...``), where it gave one."""

    def __init__(self, message: str, *, guidance: str | None = None, detail: str = "",
                 tables: tuple[str, ...] = (), **context: Any) -> None:
        from analytics_kit.redact import known_mask

        # DuckDB's message quotes the SQL, where a person may have typed their key (helper-142)
        mask = known_mask()
        self.detail = mask(detail)
        self.tables = tuple(tables)
        super().__init__(mask(message), guidance=mask(guidance) if guidance else guidance, **context)

    def __str__(self) -> str:
        return f"{self.message} {self.guidance}" if self.guidance else self.message

    def _render_traceback_(self) -> list[str]:
        full = _full_traceback(self)
        if full is not None:
            return full
        lines = [f"{type(self).__name__}: {self.message}"]
        lines += [f"  {line}" for line in self.detail.splitlines() if line.strip()]
        if self.guidance:
            lines.append(f"  {self.guidance}")
        return lines + ["(%tb shows the full traceback)"]


def secret_safe(fn: F) -> F:
    """Makes ``fn``'s failures leave without frames that hold its arguments.

    A config dict may hold the API key in plain text. A traceback printed with its local
    variables (IPython's verbose mode, rich, error trackers) shows every frame's arguments,
    so an error raised inside ``load(config)`` would print the key from each frame it
    passed through. The error is re-raised here with no traceback below this frame and no
    chained exceptions, and this frame's own references to the arguments are gone. That
    holds for a KeyboardInterrupt too: a notebook's interrupt button raises one wherever
    the load happens to be.

    In a traceback this frame reads as ``fn`` (``load(*args, **kwargs)``), not as a wrapper.
    """
    return _without_frames(fn, None)


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and every exception it was raised from or while handling (dlt wraps a step's
    errors; Python wraps an interrupt that lands in a class body), each once."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend([getattr(current, "exception", None), current.__cause__, current.__context__])


def arguments_safe(fn: F) -> F:
    """Makes a ``ConfigError`` (an argument refused) leave ``fn`` without frames that hold its arguments: a
    destination or database passed as an object, or as a connection string, holds credentials. Other errors keep
    their tracebacks (``%tb`` shows DuckDB's own error under a ``QueryError``)."""
    return _without_frames(fn, ConfigError)


def check_working_folder() -> None:
    """A working folder deleted under the process failed as "dlt refuses this source name (FileNotFoundError)", or
    as a raw traceback from a path's resolution (helper-124): every call resolves paths against it."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise ConfigError("the current folder no longer exists: it was deleted or moved while this process ran in it",
                          path="working folder", guidance="Change to a folder that exists (cd in the shell, "
                          "os.chdir in Python, or a new terminal or kernel) and run this again: relative paths, the "
                          "default database and dlt's settings are found from there.") from None


def _known_mask(with_loads: bool) -> Callable[[str], str]:
    from analytics_kit.redact import known_mask

    return known_mask(with_loads)


def _without_frames(fn: F, only: type[KitError] | None) -> F:
    """``fn``, whose failures (those of type ``only``, or all) leave it without the frames below it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_working_folder()
            return fn(*args, **kwargs)
        except KitError as error:
            if only is not None and not isinstance(error, only):
                raise
            # masked of the secrets the process knows too: an argument's refusal quotes what was passed (a key given
            # as the dataset showed: helper-149, helper-151). A load's own keys are its redactor's already, and left
            # out: the loads' keys may be words, and "api-one.test" read "api-one.***"
            failure: BaseException = error.redacted(_known_mask(with_loads=only is ConfigError))
        except BaseException as error:  # noqa: BLE001 - re-raised, only its frames are dropped
            if only is not None:
                raise
            error.__traceback__ = error.__cause__ = error.__context__ = None
            error.add_note("(analytics-kit dropped this traceback: its frames held the config, secrets included)")
            failure = error
        args = kwargs = None  # type: ignore[assignment]  # noqa: F841
        raise failure

    wrapper.__code__ = wrapper.__code__.replace(co_name=fn.__name__, co_qualname=fn.__qualname__)
    return wrapper  # type: ignore[return-value]
