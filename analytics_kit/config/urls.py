"""Checks of the URLs a config gives (base_url, a full URL as an endpoint's path): what dlt would send otherwise than
the user meant, or store where it should not."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from analytics_kit.config.messages import fail, got


def refuse_url_credentials(url: Any, path: str) -> None:
    """A user name or password written into a URL: dlt's trace of each run stores the URL as it is, in the
    pipeline folder, and messages show it (helper-106); the auth block keeps them secret."""
    if not isinstance(url, str) or "@" not in url:
        return
    parts = urlsplit(url if "://" in url else f"//{url.strip()}")  # a name without a scheme: dlt's path
    if parts.username is None and parts.password is None and _loose_userinfo(url) is None:
        return
    raise fail(path, f"a user name or password in the URL ({without_userinfo(url)})",
               "a URL without credentials",
               "Move them to the auth block, e.g. {\"type\": \"http_basic\", \"username\": ..., \"password\": ...} "
               "(or a token's own auth type), where they are kept out of files, logs and errors.")


# user:password@ where the password holds a "/", "?" or "#", which URL parsers take for the path's, query's or
# fragment's start: the host then read as "user:pa" with a port that is no number, and the message quoted the password
# (helper-149, helper-150)
_LOOSE = re.compile(r"[^/?#@:]*:(.*)@")  # an empty user too; the password up to the last "@" (helper-151)


def _loose_userinfo(url: str) -> int | None:
    """Where the "@" after a user name and a password holding a "/", "?" or "#" ends (its index + 1), or None; not a host's port
    before a path holding an "@" (``host:8080/users/@me``)."""
    scheme = url.find("://")
    start = scheme + 3 if scheme >= 0 else 0
    found = _LOOSE.match(url, start)
    return found.end() if found is not None and not re.split(r"[/?#]", found.group(1))[0].isdigit() else None


def without_userinfo(url: str) -> str:
    """``url`` with what stands before an "@" in its host part masked, as a message shows it."""
    end = _loose_userinfo(url)
    if end is not None:
        scheme = url.find("://")
        return (url[:scheme + 3] if scheme >= 0 else "") + "***@" + url[end:]
    return re.sub(r"^(\s*[A-Za-z][\w+.-]*://)?[^/?#@]*@", lambda m: (m.group(1) or "") + "***@", url)


def check_url_shape(url: Any) -> None:
    """What the scheme check's "start base_url with http://" did not say (helper-125): a space or line break at an
    end (a leading one was taken, a trailing one refused for its scheme), a port past 65535, and a query or fragment,
    which dlt joins the endpoint's path after ("/?x=1/items"; "#frag" swallowed the path)."""
    if not isinstance(url, str):
        return
    if url != url.strip():
        raise fail("client.base_url", f"got {got(without_userinfo(url))}: it starts or ends with a space or a line "
                   "break", "the URL alone", "Remove what stands before or after the URL (copied with it).")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return  # the scheme's own check says it
    try:
        if parts.port == 0:  # requests sends to the scheme's port instead: the key went to port 80 (helper-126)
            raise ValueError
    except ValueError:
        raise fail("client.base_url", f"got {got(without_userinfo(url))}: its port is not a number from 1 to 65535",
                   "an http(s) URL with a port of 1 to 65535, or none", "Check the port the API's documentation "
                   "gives.") from None
    if parts.query or parts.fragment or url.rstrip("/").endswith(("?", "#")):
        raise fail("client.base_url", f"got {got(without_userinfo(url))}: it holds a query or fragment, which dlt "
                   "would put before each endpoint's path", "the API's root URL, without ? or #",
                   "Put query parameters into the endpoint's params (or resource_defaults.endpoint.params), and "
                   "leave the fragment out.")
