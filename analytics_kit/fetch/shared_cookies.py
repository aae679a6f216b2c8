"""The cookies a resource's page workers share.

dlt sends a resource's requests one after another on one session, so a cookie
the API sets on any answer goes with every later request. The kit's workers each have a
session; a resource's sessions share one jar (``CookieJar`` locks its writes, and iterates
over snapshots of its dicts, so threads can share it). A request can wait, for a retry's
backoff or a 429's pause, while another worker's answer sets a cookie: its ``Cookie``
header is therefore taken from the jar again at each attempt (``with_jar``,
``current_cookies``), unless the config or the auth wrote that header itself.
"""

from __future__ import annotations

import requests
from requests.cookies import RequestsCookieJar, get_cookie_header

_JAR = "kit_cookie_jar"  # a request's (jar or None, workers): see ``with_jar``


def jar_owns(request: requests.PreparedRequest, jar: RequestsCookieJar) -> bool:
    """Whether ``request``'s ``Cookie`` header (if any) is the jar's, not one the config or the auth
    wrote (an api_key sent in a header named Cookie: dlt's auth writes it after the jar's)."""
    header = request.headers.get("Cookie")
    if header is None:
        return True
    probe = request.copy()
    del probe.headers["Cookie"]
    return get_cookie_header(jar, probe) == header


def with_jar(request: requests.PreparedRequest, jar: RequestsCookieJar | None,
             workers: int = 1) -> requests.PreparedRequest:
    """Marks ``request`` to take its cookies from ``jar`` at each attempt (None: it keeps its own);
    ``workers``: how many requests of its listing may be out at once."""
    setattr(request, _JAR, (jar, workers))
    return request


def current_cookies(request: requests.PreparedRequest) -> None:
    """Sets ``request``'s ``Cookie`` header from its jar as the jar is now (see ``with_jar``)."""
    jar = getattr(request, _JAR, (None, 1))[0]
    if jar is None or (not jar and "Cookie" not in request.headers):
        return  # its own header, or none to set and none to clear
    request.headers.pop("Cookie", None)
    header = get_cookie_header(jar, request)
    if header:
        request.headers["Cookie"] = header


def sent_cookies_in_parallel(response: requests.Response) -> bool:
    """Whether ``response``'s request carried cookies the API had set (not a ``Cookie`` header of the
    config or the auth) while other requests of its listing could be out at once."""
    jar, workers = getattr(response.request, _JAR, (None, 1))
    return bool(jar) and workers > 1 and "Cookie" in response.request.headers


def keep_jar(request: requests.PreparedRequest, hop: requests.PreparedRequest) -> None:
    """A redirect's hop is a copy of ``request``: it keeps the request's jar (see ``with_jar``)."""
    if hasattr(request, _JAR):
        setattr(hop, _JAR, getattr(request, _JAR))
