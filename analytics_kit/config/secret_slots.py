"""Where a config holds credentials: auth blocks, and sensitive headers and query params.

Values found there are masked in every message, and never echoed by the checks.
"""

from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

from dlt.sources.rest_api import SENSITIVE_KEYS

_SENSITIVE_NAMES = {k.lower() for k in SENSITIVE_KEYS} | {"authorization", "proxy-authorization", "cookie", "sig"}
_SENSITIVE_PARTS = ("key", "token", "secret", "password", "passwd", "auth", "access", "credential", "signature",
                    "jwt")


def is_sensitive_name(name: Any) -> bool:
    """Header or query-parameter names whose values are credentials."""
    if not isinstance(name, str):
        return False
    low = name.lower()
    return low in _SENSITIVE_NAMES or any(part in low for part in _SENSITIVE_PARTS)


def is_secret_slot(parent: str, key: Any) -> bool:
    """Whether ``block[key]`` holds a credential, for a block found under ``parent``."""
    return key in SENSITIVE_KEYS if parent == "auth" else is_sensitive_name(key)


def _under(config: Any, keys: tuple[str, ...]) -> Iterator[tuple[Any, str]]:
    """(value, key) of every value stored under one of ``keys``, at any depth."""
    if isinstance(config, dict):
        for key, child in config.items():
            if key in keys:
                yield child, key
            yield from _under(child, keys)
    elif isinstance(config, list):
        for child in config:
            yield from _under(child, keys)


def iter_secret_slots(config: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """(dict, its key) of every auth, headers and params dict; tolerant of malformed configs."""
    return ((v, k) for v, k in _under(config, ("auth", "headers", "params")) if isinstance(v, dict))


def iter_url_secrets(config: Any) -> Iterator[str]:
    """Values of sensitive query parameters written into a URL or path (``"/v1/events?api_key=..."``).

    A key written there rather than in ``auth`` or ``params`` is sent all the same, and every
    request line, retry and error quotes it: it is masked like the others.
    """
    for value, _ in _under(config, ("path", "base_url", "url")):
        if isinstance(value, str) and "?" in value:
            yield from (v for k, v in parse_qsl(urlsplit(value).query) if is_sensitive_name(k) and v)
            # as written too: parse_qsl reads "+" as a space, and "abc/def+ghi==" showed unmasked (helper-126)
            for part in urlsplit(value).query.split("&"):
                name, _, raw = part.partition("=")
                if raw and is_sensitive_name(unquote(name)):
                    yield from {raw, unquote(raw)}


def iter_auth_objects(config: Any) -> Iterator[Any]:
    """Auth instances (not dicts or shorthand strings) given under any ``auth`` key."""
    return (v for v, _ in _under(config, ("auth",)) if v is not None and not isinstance(v, (dict, str)))
