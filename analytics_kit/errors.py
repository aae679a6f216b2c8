"""The kit's errors.

Every error says what went wrong and what to do next (``guidance``), and carries
no secret: messages are built by the kit from redacted parts only.

    KitError
    ├── ConfigError              (also ValueError) the config dict is malformed, or dlt refuses it
    │   └── MissingSecretError   a credential is set nowhere dlt looks (nor, for a key, in API_KEY)
    └── LoadError                a load failed; nothing half-written, cursors as before
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

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
        if self.guidance:
            return f"{self.message}\n  What to do: {self.guidance}"
        return self.message


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


def secret_safe(fn: F) -> F:
    """Makes ``fn``'s failures leave without frames that hold its arguments.

    A config dict may hold the API key in plain text. A traceback printed with its local
    variables (IPython's verbose mode, rich, error trackers) shows every frame's arguments,
    so an error raised inside ``load(config)`` would print the key from each frame it
    passed through. The error is re-raised here with no traceback below this frame and no
    chained exceptions, and this frame's own references to the arguments are gone.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KitError as error:
            failure: Exception = error.detached()
        except Exception as error:  # noqa: BLE001 - re-raised, only its frames are dropped
            error.__traceback__ = error.__cause__ = error.__context__ = None
            error.add_note("(analytics-kit dropped this traceback: its frames held the config, secrets included)")
            failure = error
        args = kwargs = None  # type: ignore[assignment]  # noqa: F841
        raise failure

    return wrapper  # type: ignore[return-value]
