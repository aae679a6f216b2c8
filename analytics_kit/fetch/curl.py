"""The kit's GET requests through libcurl (pycurl), which holds the GIL for none of the transfer.

A full load is CPU-bound in one process: its workers fetch pages while the extracting thread
converts them, and every millisecond a worker spends in Python is taken from that thread.
requests, urllib3 and http.client spend about 1.4 ms of Python on each request here (measured:
1.59 ms of CPU per page against libcurl's 0.18 ms), most of a page's cost after parsing.

``CurlAdapter`` replaces only ``HTTPAdapter.send``, and only for a plain request: a GET
without a body, not streamed, with no proxy and no client certificate. requests' ``Session``
stays above it (auth, cookies, redirects and the kit's origin checks, hooks), and so do the
kit's retries and deadlines. Anything else, or a machine without pycurl, goes through the
urllib3 adapter it extends. Failures are raised as the requests exceptions urllib3's would
have become, with the same causes (a refused connection, a name that does not resolve, a TLS
failure), so that retries and messages do not depend on the transport.
"""

from __future__ import annotations

import io
import logging
import math
import os
import socket
import threading
import time
from http.client import parse_headers
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError, ConnectTimeout, ContentDecodingError, ReadTimeout, SSLError
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy

from analytics_kit.fetch.transport import DeadlineAdapter, current_watch

pycurl: Any = None  # imported by ``available()``: a small load never pays for it (~20 ms, 11 MB)
_TRIED = False

logger = logging.getLogger(__name__)

# libcurl's error codes (curl.h), by what urllib3 would have said.
_RESOLVE = {5, 6}  # COULDNT_RESOLVE_PROXY, COULDNT_RESOLVE_HOST
_CONNECT = {7}  # COULDNT_CONNECT: refused, or no route
_TIMEOUT = {28}  # OPERATION_TIMEDOUT
_TLS = {35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98}
_BODY = {18, 92}  # PARTIAL_FILE (a body cut short), HTTP2_STREAM
_DECODING = {61}  # BAD_CONTENT_ENCODING
# ``ANALYTICS_KIT_CURL=0``: every request through urllib3, as before libcurl was used.
SWITCH_ENV = "ANALYTICS_KIT_CURL"
# After this many requests a handle is closed and a new one made: a long load's handle does
# not keep libcurl's caches (DNS, TLS sessions) for ever.
HANDLE_REQUESTS = 10_000


def available() -> bool:
    """Whether pycurl can be used here (a wheel for Linux x86_64, macOS and Windows; elsewhere
    the urllib3 adapter does it all) and ``ANALYTICS_KIT_CURL`` is not ``0``; imports it on the
    first call."""
    global pycurl, _TRIED, _ENCODINGS
    if os.environ.get(SWITCH_ENV, "").strip() == "0":
        return False
    if not _TRIED:
        _TRIED = True
        try:
            import pycurl as module
        except ImportError:
            return False
        features = module.version_info()[4]
        _ENCODINGS = frozenset({"identity"} | ({"gzip", "deflate", "x-gzip"} if features & module.VERSION_LIBZ else set())
                               | ({"br"} if features & getattr(module, "VERSION_BROTLI", 0) else set())
                               | ({"zstd"} if features & getattr(module, "VERSION_ZSTD", 0) else set()))
        pycurl = module
    return pycurl is not None


# The content codings this libcurl decodes: a request that accepts another goes through urllib3.
_ENCODINGS: frozenset[str] = frozenset()


class _Raw:
    """The response as urllib3 hands one to ``HTTPAdapter.build_response``: status, reason and
    headers, the body to read, and the parsed header block of a response that sets cookies
    (``extract_cookies_to_jar`` reads ``_original_response.msg``)."""

    def __init__(self, status: int, header_bytes: bytes, content: bytes) -> None:
        self.status = status
        self.reason, block = _last_block(header_bytes)
        self.headers = _headers(block)
        self._original_response = _Message(block) if "set-cookie" in self.headers else None
        self._body = io.BytesIO(content)

    def read(self, amt: int | None = None, decode_content: bool = True, **kwargs: Any) -> bytes:
        return self._body.read(amt)

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Message:
    __slots__ = ("msg",)

    def __init__(self, header_block: bytes) -> None:
        self.msg = parse_headers(io.BytesIO(header_block))


class CurlAdapter(DeadlineAdapter):
    """``DeadlineAdapter`` whose plain GETs go through one libcurl handle per thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        if (not available() or stream or cert or request.method != "GET" or request.body
                or (proxies and select_proxy(request.url, proxies))
                or not request.url.lower().startswith(("http://", "https://"))
                or not _decodable(request.headers.get("Accept-Encoding"))):
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        return self._curl(request, timeout, verify)

    def close(self) -> None:
        super().close()
        handle = getattr(self._local, "handle", None)
        if handle is not None:
            self._local.handle = None
            handle.close()

    # -- one transfer ------------------------------------------------------------------------

    def _handle(self) -> Any:
        handle = getattr(self._local, "handle", None)
        if handle is None or self._local.used >= HANDLE_REQUESTS:
            if handle is not None:
                handle.close()
            handle = self._local.handle = pycurl.Curl()
            self._local.used = 0
        self._local.used += 1
        handle.reset()
        return handle

    def _curl(self, request: requests.PreparedRequest, timeout: Any, verify: Any) -> requests.Response:
        handle = self._handle()
        body = io.BytesIO()
        head = io.BytesIO()
        handle.setopt(pycurl.URL, request.url)
        handle.setopt(pycurl.NOSIGNAL, 1)  # required with threads
        handle.setopt(pycurl.PROXY, "")  # requests decided there is no proxy; curl reads none itself
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        if hasattr(pycurl, "HTTP09_ALLOWED"):  # off by default since libcurl 7.66; a build may differ
            handle.setopt(pycurl.HTTP09_ALLOWED, 0)
        handle.setopt(pycurl.WRITEDATA, body)
        handle.setopt(pycurl.HEADERFUNCTION, head.write)
        headers, encoding = _header_lines(request.headers)
        handle.setopt(pycurl.HTTPHEADER, headers)
        if encoding is not None:
            # curl sends this Accept-Encoding and decodes what comes back, as urllib3 does
            handle.setopt(pycurl.ACCEPT_ENCODING, encoding)
        # libcurl sends a request again, at once and on a new connection, when a kept-alive
        # connection dies before any byte of the answer; urllib3 reports that as a
        # ConnectionError. Its own line tells, and the kit counts the request and the retry.
        handle.setopt(pycurl.VERBOSE, 1)
        handle.setopt(pycurl.DEBUGFUNCTION, _note_resend)
        _set_timeouts(handle, timeout)
        _set_tls(handle, verify)
        watch = current_watch()
        if watch is not None:
            left = watch.deadline - time.monotonic()
            if left <= 0:
                watch.fire()
                raise ReadTimeout("no complete response within the deadline", request=request)
            handle.setopt(pycurl.TIMEOUT_MS, max(1, int(left * 1000)))
        failure: requests.RequestException | None = None
        try:
            handle.perform()
        except pycurl.error as error:
            code, text = (error.args + (0, ""))[:2]
            if code in _TIMEOUT and watch is not None and time.monotonic() >= watch.deadline - 0.001:
                watch.fire()
            failure = _as_requests_error(code, str(text), handle.getinfo(pycurl.OS_ERRNO), request)
            self._local.handle = None  # a handle after a failure starts afresh
            handle.close()
        if failure is not None:
            # raised outside the except block: the error's cause is its own (a refused connection,
            # say), and nothing chains pycurl's
            raise failure
        status = handle.getinfo(pycurl.RESPONSE_CODE)
        content = body.getvalue()
        if logger.isEnabledFor(logging.DEBUG):  # the line urllib3 logs for each response
            logger.debug('%s "%s %s HTTP/1.1" %s %s', request.url.split("/", 3)[2], request.method,
                         request.path_url, status, len(content))
        # requests' own assembly, as for urllib3's response: status, headers, cookies, body
        return self.build_response(request, _Raw(status, head.getvalue(), content))


_resends = threading.local()


def _note_resend(kind: int, text: bytes) -> None:
    if kind == 0 and text.startswith(b"Connection died"):  # CURLINFO_TEXT, from Curl_retry_request
        _resends.count = getattr(_resends, "count", 0) + 1


def take_resends() -> int:
    """How often libcurl sent this thread's latest request again by itself (see ``_curl``)."""
    count = getattr(_resends, "count", 0)
    _resends.count = 0
    return count


def _decodable(accepted: Any) -> bool:
    """Whether libcurl can decode every content coding ``accepted`` names."""
    if not accepted:
        return True
    if isinstance(accepted, bytes):
        accepted = accepted.decode("latin-1")
    names = {part.split(";")[0].strip().lower() for part in accepted.split(",")} - {""}
    return names <= _ENCODINGS


def _header_lines(headers: Any) -> tuple[list[str], str | None]:
    """Curl's header list for ``headers``, and the Accept-Encoding curl is to send and decode."""
    lines = []
    encoding = None
    for name, value in headers.items():
        if name.lower() == "accept-encoding":
            encoding = value
            continue
        value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        # "Name:" would make curl drop its own header of that name; "Name;" sends it empty
        lines.append(f"{name}: {value}" if value else f"{name};")
    lines.append("Expect:")  # no 100-continue
    return lines, encoding


def _set_timeouts(handle: Any, timeout: Any) -> None:
    """``timeout`` as requests takes it: seconds, (connect, read), urllib3's Timeout, or None."""
    connect = read = timeout
    if isinstance(timeout, tuple):
        connect, read = timeout
    elif timeout is not None and not isinstance(timeout, (int, float)):
        connect, read = getattr(timeout, "connect_timeout", None), getattr(timeout, "read_timeout", None)
    if isinstance(connect, (int, float)):
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(connect * 1000)))
    if isinstance(read, (int, float)):
        # no byte for ``read`` seconds: the nearest curl has to a read timeout (whole seconds)
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(read)))


def _set_tls(handle: Any, verify: Any) -> None:
    if verify is False:
        handle.setopt(pycurl.SSL_VERIFYPEER, 0)
        handle.setopt(pycurl.SSL_VERIFYHOST, 0)
        return
    path = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
    handle.setopt(pycurl.CAPATH if os.path.isdir(path) else pycurl.CAINFO, path)


def _last_block(header_bytes: bytes) -> tuple[str, bytes]:
    """The reason phrase and header lines of the final response (after any 1xx ones)."""
    blocks = [b for b in header_bytes.split(b"\r\n\r\n") if b.strip()]
    last = blocks[-1] if blocks else b""
    status, _, rest = last.partition(b"\r\n")
    parts = status.split(b" ", 2)
    reason = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
    return reason, rest + b"\r\n\r\n"


def _headers(block: bytes) -> CaseInsensitiveDict:
    """Header lines as urllib3 gives them to requests: repeated names joined with ", "."""
    headers: CaseInsensitiveDict = CaseInsensitiveDict()
    last = None
    for line in block.decode("latin-1").split("\r\n"):
        if not line:
            continue
        if line[0] in " \t" and last is not None:  # an obsolete folded continuation
            headers[last] = headers[last] + " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name, value = name.strip(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        last = name
    return headers


def _as_requests_error(code: int, text: str, errno: int, request: requests.PreparedRequest) -> requests.RequestException:
    """The requests exception urllib3's adapter raises for the same failure, with its cause
    (``errno``: the OS's error number for a failed connection, or 0)."""
    shown = f"{text} (libcurl error {code})"
    if code in _TIMEOUT:
        if "connect" in text.lower() or "resolv" in text.lower():
            return ConnectTimeout(shown, request=request)
        return ReadTimeout(shown, request=request)
    if code in _RESOLVE:
        error: requests.RequestException = requests.ConnectionError(shown, request=request)
        error.__cause__ = socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {text}")
        return error
    if code in _CONNECT:
        error = requests.ConnectionError(shown, request=request)
        if errno:  # OSError picks the subclass: ConnectionRefusedError for ECONNREFUSED
            error.__cause__ = OSError(errno, os.strerror(errno))
        return error
    if code in _TLS:
        return SSLError(f"[SSL] {shown}", request=request)
    if code in _BODY or (code == 56 and "chunk" in text.lower()):  # RECV_ERROR in the chunked coding
        return ChunkedEncodingError(f"Connection broken: {shown}", request=request)
    if code in _DECODING:
        return ContentDecodingError(f"Failed to decode the response body: {shown}", request=request)
    return requests.ConnectionError(f"Connection aborted: {shown}", request=request)


__all__ = ["CurlAdapter", "HTTPAdapter", "available", "take_resends"]
