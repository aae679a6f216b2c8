"""The kit's errors.

Every error says what went wrong and what to do next (``guidance``), and carries
no secret: messages are built by the kit from redacted parts only.

    KitError
    ├── ConfigError          (also ValueError) the config dict is malformed
    ├── MissingSecretError   (also ValueError) the api key is not set anywhere
    └── LoadError            a load failed; tables and cursor state are as before
"""

from __future__ import annotations

from typing import Any


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


class MissingSecretError(KitError, ValueError):
    """The API key is not configured."""


class LoadError(KitError):
    """A load failed. Tables and cursor state are left as they were before the run."""
