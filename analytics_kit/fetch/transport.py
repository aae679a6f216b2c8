"""How the kit's requests travel: a deadline for every whole response, and credentials
that never leave the API's own origin.

**Deadlines.** ``requests``' timeouts bound connecting and each wait for the next bytes,
not a whole response: a body trickling one byte every 5 s, or headers sent one byte at a
time, held a load for minutes, and forever when it never ended. Every attempt therefore
runs under a ``deadlines.Watch``; one watchdog thread shuts down the socket of any attempt that is
still running at its deadline, and the attempt fails with ``ResponseTimeout`` (a
``requests.Timeout``, so the retry policy treats it as any other timeout). The socket is
found through ``DeadlineConnection``, urllib3's connection class with one hook in its
public ``request`` method, mounted through ``DeadlineAdapter``.

**Origins.** A redirect to another origin kept the query string, and with it the key; a
key in a header followed any redirect. ``KitSession`` follows a redirect only within
the origins the config names (``client.base_url``'s, and those of endpoint paths written
as full URLs), and refuses to send any request elsewhere, e.g. a paginator's ``next``
link pointing at another host.

The cookies a resource's workers share are ``shared_cookies``'s.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import re
import socket
import ssl
from typing import Any, Callable, Iterable
from urllib.parse import urljoin, urlsplit

import requests
from dlt.sources.helpers.requests import Session
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.utils import select_proxy
from urllib3 import exceptions as urllib3_exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from analytics_kit.errors import LoadError
from analytics_kit.fetch.cut_answers import HeaderCheckedResponse, header_block_cut
from analytics_kit.fetch.answer_size import MAX_ANSWER_MB, cap_body, max_answer_bytes
from analytics_kit.fetch.deadlines import watch_socket
from analytics_kit.fetch.shared_cookies import keep_jar

# A whole response (connecting, headers and body) must arrive within this many seconds
# unless ``error_handler.timeout`` says otherwise; dlt's own default is 60 s per wait.
DEFAULT_TIMEOUT = 20.0


class ResponseTimeout(requests.exceptions.ReadTimeout):
    """No complete response within the deadline (slow, stalled or trickling)."""


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, with the scheme's default port spelled out and the host as requests sends
    it (``canonical_host``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    host = canonical_host(parts.hostname or "")
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@functools.lru_cache(maxsize=256)  # asked for every request's origin; an API has few hosts
def canonical_host(host: str) -> str:
    """A host in one spelling: a name in lower case and in its ASCII (IDNA) form, as requests puts it on the wire (a
    base_url of bücher.example refused its own requests to xn--bcher-kva.example: helper-111), no trailing dot; an
    address in its standard form (10.66051 is 10.1.2.3; an IPv6 address compressed)."""
    host = host.lower().rstrip(".")
    address = address_of(host)  # a zone id kept: fe80::1 on another interface is another host (helper-112)
    if address is not None:
        return str(getattr(address, "ipv4_mapped", None) or address)  # ::ffff:10.1.2.3 reaches 10.1.2.3
    if host.isascii():
        return host
    return urlsplit(sendable(f"http://{host}/") or f"http://{host}/").hostname or host


def address_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` writes, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # the forms C's inet_aton reads, and requests connects to: 127.1, 2130706433
        return ipaddress.ip_address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def sendable(url: str) -> str | None:
    """``url`` as requests sends it (its host in ASCII), or None where requests refuses it (a host IDNA cannot
    write: helper-112, a raw InvalidURL escaped the load)."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
    except requests.RequestException:
        return None
    return prepared.url


def host_of(url: str) -> str:
    """``host:port`` as a message names it (no user, path or query)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def host_port(url: str) -> str:
    """``host:port`` with the scheme's default port spelled out, as connection errors name it."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return f"{parts.hostname}:{port}"


# What the kit quotes of a connection failure's text: the OS's or OpenSSL's own reason.
_OS_REASON = re.compile(r"\[Errno -?\d+\][^'\")]*")
_TLS_REASON = re.compile(r"\[SSL[^\]]*\][^'\")(]*|certificate verify failed[^'\")(]*")


def unreachable(error: BaseException) -> str | None:
    """Why no connection could be made at all, where retrying cannot help: the port refused it,
    the host name does not resolve, or the TLS handshake failed (https on an http port, a
    certificate not trusted). None for anything else: timeouts, resets, a server gone mid-response.
    """
    seen: set[int] = set()
    todo: list[object] = [error]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (requests.exceptions.SSLError, urllib3_exceptions.SSLError, ssl.SSLError)):
            return (f"the TLS handshake failed ({_reason(current, _TLS_REASON)}): an http port asked for "
                    "https, or a certificate that is not trusted")
        if isinstance(current, (urllib3_exceptions.NameResolutionError, socket.gaierror)) and (
                "address family for hostname not supported" in str(current).lower()):
            # an address of a family no interface has ([::1] on a machine offline): no route, not a name (helper-126)
            return ("the network cannot reach it (no interface for its address family: this machine is offline, or "
                    "has no IPv6)")
        if isinstance(current, (urllib3_exceptions.NameResolutionError, socket.gaierror)):
            return f"the host name does not resolve ({_reason(current, _OS_REASON)})"
        if isinstance(current, ConnectionRefusedError) or (
                isinstance(current, urllib3_exceptions.NewConnectionError) and "refused" in str(current).lower()):
            return "the connection was refused: nothing listens on that port"
        if isinstance(current, OSError) and current.errno in _NO_ROUTE or (
                isinstance(current, urllib3_exceptions.NewConnectionError) and "unreachable" in str(current).lower()):
            # retried for 14 s, then blamed on a server "that dropped the connection" (helper-125)
            return ("the network cannot reach it (no route to the host: this machine is offline, or a firewall, "
                    "VPN or proxy setting stands in the way)")
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None),
                 *[a for a in current.args if isinstance(a, BaseException)]]
    return None


_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def _reason(error: BaseException, pattern: re.Pattern[str]) -> str:
    found = pattern.search(str(error))
    return found.group(0).strip().rstrip(",;:") if found else type(error).__name__


def shown_origin(url: str) -> str:
    """``scheme://host:port`` as a message names it: two origins may differ in the scheme only."""
    return f"{urlsplit(url).scheme.lower()}://{host_of(url)}"


class _Watched:
    """Tells the current ``Watch`` its connection: as soon as the TCP socket exists (before a
    proxy's CONNECT answer and the TLS handshakes, which only the connect timeout bounded, per
    wait: a proxy trickling its CONNECT answer held a load for good), and when it is reused. The
    watch keeps a duplicate of the descriptor, which TLS wrapping the socket leaves valid.

    A mixin, so that ``super()`` means urllib3's HTTP or HTTPS connection as the case may be
    (methods copied from an HTTP class into the HTTPS one failed every https request with
    "super(type, obj): obj must be an instance or subtype of type").
    """

    response_class = HeaderCheckedResponse

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]  # urllib3's own step, not its public API
        watch_socket(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch_socket(self.sock)  # type: ignore[attr-defined]  # a connection reused by a new attempt
        super().request(*args, **kwargs)  # type: ignore[misc]


class DeadlineConnection(_Watched, HTTPConnection):
    pass


class DeadlineHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = DeadlineConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = DeadlineHTTPSConnection


_WATCHED_POOLS = {"http": _Pool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose connections tell the current ``Watch`` which socket they use, through
    an http(s) proxy as well. A SOCKS proxy's connections are urllib3's own, which the watchdog
    cannot see: their reads keep a read timeout (see ``KitSession``)."""

    max_answer = MAX_ANSWER_MB * 10**6  # see answer_size: set by KitSession

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        self._pools: dict[tuple, HTTPConnectionPool] = {}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        proxy = select_proxy(request.url, proxies) if proxies else None
        if proxy and proxy.lower().startswith("socks") and isinstance(timeout, tuple) and timeout[1] is None:
            timeout = (timeout[0], timeout[0])  # no watchdog for its socket: each read has the attempt's time
        response = super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        cap_body(response, self.max_answer)
        return response

    def get_connection_with_tls_context(self, request: requests.PreparedRequest, verify: Any,
                                        proxies: Any = None, cert: Any = None) -> HTTPConnectionPool:
        # requests parses the URL and builds the pool's TLS settings again for every request,
        # about a tenth of sending a page; the pool is the same for every page of an origin
        if proxies or not isinstance(verify, (bool, str)) or not isinstance(cert, (str, tuple, type(None))):
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        key = (origin(request.url), verify, cert)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # a pool the manager let go of is closed
            pool = self._pools[key] = super().get_connection_with_tls_context(request, verify, cert=cert)
        return pool


# -- origins -----------------------------------------------------------------------------------


class KitSession(Session):
    """dlt's session, kept to ``origins``: redirects elsewhere are refused, not followed."""

    def __init__(self, *, origins: Iterable[str], timeout: float, redact: Any,
                 cookies: RequestsCookieJar | None = None) -> None:
        # A timeout for connecting only. Every attempt has its deadline (the watchdog), which bounds
        # each read as well; a read timeout made each recv wait in poll() first, one more release
        # of the GIL per read (bench/transport_speed.py). Reads through a SOCKS proxy keep one.
        super().__init__(timeout=(timeout, None), raise_for_status=False)
        if cookies is not None:
            self.cookies = cookies
        self.origins = frozenset(origins)
        self.redact = redact
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=16)
        adapter.max_answer = max_answer_bytes()
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def check_origin(self, request: requests.PreparedRequest) -> None:
        """Refuses to send ``request`` to an origin the config does not name."""
        if not self.origins or origin(request.url) in self.origins:
            return
        raise LoadError(
            f"Refused to send a request to {shown_origin(request.url)}, which is not the API's origin "
            f"({self._hosts()}): the request would carry your credentials there.",
            guidance="A paginator link or an endpoint points at another host. If the API really moved, "
            "set client.base_url to its new address.",
            host=host_of(request.url),
        )

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        # every answer that passed the hooks comes here first, before a redirect is followed
        if header_block_cut(resp):
            resp.close()
            raise requests.exceptions.ChunkedEncodingError(
                "the connection closed inside the answer's header block, before its end", request=resp.request)
        target = super().get_redirect_target(resp)
        if target is None or not self.origins:
            return target
        absolute = urljoin(resp.url, target)
        if origin(absolute) in self.origins:
            return target
        request = resp.request
        raise LoadError(
            f"The API at {host_of(resp.url)} redirected {self.redact(f'{request.method} {request.path_url}')} "
            f"(HTTP {resp.status_code}) to another origin, {shown_origin(absolute)}. The kit did not follow it, "
            "so your credentials were not sent there.",
            guidance="If the API moved, set client.base_url to its new address; redirects within the same "
            "scheme, host and port are followed.",
            status=resp.status_code, host=host_of(absolute),
        )

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        keep_jar(response.request, prepared_request)

    def _hosts(self) -> str:
        return ", ".join(sorted(self.origins))


def request_text(request: requests.PreparedRequest, redact: Callable[[str], str]) -> str:
    """A request as the kit shows it: method, path and query, secrets masked."""
    return redact(f"{request.method} {request.path_url}")
