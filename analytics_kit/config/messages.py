"""How a config check words what is wrong: a path into the config, what it got, what it expected, what to do."""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from analytics_kit.errors import ConfigError

EXPECTED = {int: "an integer", str: "a string", bool: "true or false", float: "a float"}


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def quoted(names: Iterable[Any]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def got(value: Any, secret: bool = False) -> str:
    """How a wrong value is shown: its type only when it may be a secret."""
    kind = type(value).__name__
    if secret:
        return f"a value of type {kind}"
    text = repr(value)
    return f"{text[:60]}... ({kind})" if len(text) > 60 else f"{text} ({kind})"


def fail(path: str, problem: str, expected: str, guidance: str) -> ConfigError:
    return ConfigError(f"{problem}; expected {expected}", path=path, guidance=guidance)
