"""The kit's GET requests through libcurl (pycurl), which holds the GIL for none of the transfer.

A full load is CPU-bound in one process: its workers fetch pages while the extracting thread
converts them, and every millisecond a worker spends in Python is taken from that thread.
Through urllib3 a page request cost the kit's session 1.44 ms of CPU here, nearly all of it
Python holding the GIL; through libcurl 1.06 ms, of which libcurl's own ~0.2 ms (the socket, the
HTTP parsing, the decoding) holds no lock: about 0.6 ms less of the GIL per page, a third.
requests' session, the retries and the response's assembly are what is left.

``CurlAdapter`` replaces only ``HTTPAdapter.send``, and only for a plain request: a GET
without a body, not streamed, with no proxy, no client certificate and no user in the URL,
whose headers are Latin-1. requests' ``Session`` stays above it (auth, cookies, redirects and
the kit's origin checks, hooks), and so do the kit's retries and deadlines; the response's
headers are parsed by http.client and assembled by requests, as urllib3's are.

libcurl and urllib3 read the wire differently in its corners (an independent check found a
dozen). So that the kit sees the same either way:

- a connection that fails before any answer, or a body broken off after a complete header
  block (a reset, a Content-Length or chunk not reached), is raised as the requests exception
  urllib3's would have become, with the same cause (a refused connection, a name that does not
  resolve, a TLS failure): retries and messages do not depend on the transport;
- anything else libcurl refuses (a header line it cannot read, a coding it cannot decode, an
  answer broken off inside its headers...) is asked again through urllib3, whose reading the
  kit then gets; that second request is counted and reported as a retry (``take_resends``);
- libcurl's own resend of a request whose kept-alive connection died before any answer is
  stopped before it goes out, and fails as urllib3's ``ConnectionError`` does, within the
  retry policy's attempts.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import re
import threading
import time
from http.client import HTTPException, parse_headers
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ReadTimeout
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from urllib3 import HTTPHeaderDict

from analytics_kit.fetch.curl_failures import TIMEOUT, as_requests_error
from analytics_kit.fetch.transport import DeadlineAdapter, current_watch

pycurl: Any = None  # imported by ``available()``: a small load never pays for it (~20 ms, 11 MB)
_TRIED = False
_LOCK = threading.Lock()  # the import of pycurl, and _REFUSED

logger = logging.getLogger(__name__)

# urllib3 2.x's folding of an obsolete multi-line header value (connection._normalize_header_value)
_OBSOLETE_FOLD = re.compile(r"(?:(?<![ \t])[ \t]+)?\r\n[ \t]+")
# After libcurl could not read this many answers of a host, this process sends its requests
# through urllib3: an API that always answers so is not asked everything twice.
MAX_REFUSED = 3
_REFUSED: dict[str, int] = {}  # host:port -> answers libcurl could not read
# ``ANALYTICS_KIT_CURL=0``: every request through urllib3, as before libcurl was used.
SWITCH_ENV = "ANALYTICS_KIT_CURL"
# After this many requests a handle is closed and a new one made: a long load's handle does
# not keep libcurl's caches (DNS, TLS sessions) for ever.
HANDLE_REQUESTS = 10_000


def available() -> bool:
    """Whether pycurl can be used here (a wheel for Linux x86_64, macOS and Windows; elsewhere
    the urllib3 adapter does it all) and ``ANALYTICS_KIT_CURL`` is not ``0``; imports it on the
    first call. Threads asking at once wait for that import: none is told no while it runs."""
    global pycurl, _TRIED, _ENCODINGS
    if os.environ.get(SWITCH_ENV, "").strip() == "0":
        return False
    if not _TRIED:
        with _LOCK:
            if not _TRIED:
                try:
                    import pycurl as module
                except ImportError:
                    module = None
                if module is not None:
                    features = module.version_info()[4]
                    _ENCODINGS = frozenset(
                        {"identity"} | ({"gzip", "deflate", "x-gzip"} if features & module.VERSION_LIBZ else set())
                        | ({"br"} if features & getattr(module, "VERSION_BROTLI", 0) else set())
                        | ({"zstd"} if features & getattr(module, "VERSION_ZSTD", 0) else set()))
                    pycurl = module
                _TRIED = True
    return pycurl is not None


# The content codings this libcurl decodes: a request that accepts another goes through urllib3.
_ENCODINGS: frozenset[str] = frozenset()


class _Raw:
    """The response as urllib3 hands one to ``HTTPAdapter.build_response``: status, reason,
    headers (parsed by http.client), the body, and the parsed header block itself, which
    ``extract_cookies_to_jar`` reads as ``_original_response.msg``."""

    def __init__(self, status: int, reason: str, message: Any, content: bytes) -> None:
        self.status = status
        self.reason = reason
        # as urllib3 2.x builds them: http.client's items, folded lines joined, repeats combined
        self.headers = HTTPHeaderDict([(k, _OBSOLETE_FOLD.sub(" ", v) if "\r\n" in v else v)
                                       for k, v in message.items()])
        self._original_response = _Message(message) if "set-cookie" in self.headers else None
        self._content: bytes | None = content

    def read(self, amt: int | None = None, decode_content: bool = True, **kwargs: Any) -> bytes:
        # the body in one piece, whatever ``amt``: requests joins what read returns, and a
        # single piece is not copied (a large body was held three times over)
        content, self._content = self._content, None
        return content or b""

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Message:
    __slots__ = ("msg",)

    def __init__(self, message: Any) -> None:
        self.msg = message


class _Transfer:
    """One transfer's callbacks: the final response's header lines (not a 1xx's, nor trailers),
    and whether libcurl began to send the request again by itself."""

    __slots__ = ("lines", "complete", "final", "resent")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.complete = False  # the current block's blank line was seen
        self.final = False  # ... and it was not a 1xx: what follows is the body, then trailers
        self.resent = False

    def header(self, line: bytes) -> None:
        if self.final:
            return  # trailers after a chunked body: urllib3 does not read them as headers
        if self.complete or not self.lines:
            self.lines, self.complete = [line], False  # a status line: a new response
        elif line in (b"\r\n", b"\n"):
            self.complete = True
            self.final = not _status(self.lines[0]).startswith(b"1")
        else:
            self.lines.append(line)

    def debug(self, kind: int, text: bytes) -> None:
        if kind == 0 and text.startswith(b"Connection died"):  # CURLINFO_TEXT, Curl_retry_request
            self.resent = True

    def progress(self, *args: Any) -> int:
        return 1 if self.resent else 0  # non-zero aborts the transfer before the resend goes out


def _status(line: bytes) -> bytes:
    parts = line.split(None, 2)
    return parts[1] if len(parts) > 1 else b""


class CurlAdapter(DeadlineAdapter):
    """``DeadlineAdapter`` whose plain GETs go through one libcurl handle per thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        headers = None
        if (available() and _REFUSED.get(urlsplit(request.url).netloc, 0) < MAX_REFUSED and not stream and not cert and request.method == "GET" and not request.body
                and not (proxies and select_proxy(request.url, proxies))
                and request.url.lower().startswith(("http://", "https://"))
                and "@" not in urlsplit(request.url).netloc  # libcurl would send the user as Basic auth
                and _decodable(request.headers.get("Accept-Encoding"))):
            headers = _header_lines(request.headers)
        if headers is None:
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        response = self._curl(request, headers, timeout, verify)
        if response is None:  # libcurl refused what urllib3 may read: urllib3's reading, counted
            _resends.reasons = getattr(_resends, "reasons", []) + ["libcurl could not read the answer"]
            host = urlsplit(request.url).netloc
            with _LOCK:
                _REFUSED[host] = _REFUSED.get(host, 0) + 1
                if _REFUSED[host] == MAX_REFUSED:
                    logger.info("libcurl could not read %d answers of %s; its requests go through urllib3 from now on",
                                MAX_REFUSED, host)
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        return response

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

    def _curl(self, request: requests.PreparedRequest, headers: tuple[list[bytes], bytes | None],
              timeout: Any, verify: Any) -> requests.Response | None:
        """The response through libcurl; None where libcurl refused it (see the module docstring)."""
        handle = self._handle()
        body = io.BytesIO()
        transfer = _Transfer()
        handle.setopt(pycurl.URL, request.url)
        handle.setopt(pycurl.NOSIGNAL, 1)  # required with threads
        handle.setopt(pycurl.PROXY, "")  # requests decided there is no proxy; curl reads none itself
        handle.setopt(pycurl.PATH_AS_IS, 1)  # the path as requests prepared it, as urllib3 sends it
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        if hasattr(pycurl, "HTTP09_ALLOWED"):  # off by default since libcurl 7.66; a build may differ
            handle.setopt(pycurl.HTTP09_ALLOWED, 0)
        handle.setopt(pycurl.WRITEDATA, body)
        handle.setopt(pycurl.HEADERFUNCTION, transfer.header)
        lines, encoding = headers
        handle.setopt(pycurl.HTTPHEADER, lines)
        if encoding is not None:
            # curl sends this Accept-Encoding and decodes what comes back, as urllib3 does
            handle.setopt(pycurl.ACCEPT_ENCODING, encoding)
        handle.setopt(pycurl.VERBOSE, 1)  # for the line that says libcurl is sending it again
        handle.setopt(pycurl.DEBUGFUNCTION, transfer.debug)
        handle.setopt(pycurl.NOPROGRESS, 0)
        handle.setopt(pycurl.XFERINFOFUNCTION, transfer.progress)
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
            if code in TIMEOUT and watch is not None and time.monotonic() >= watch.deadline - 0.001:
                watch.fire()
            failure = as_requests_error(code, str(text), handle.getinfo(pycurl.OS_ERRNO), transfer.lines,
                                        transfer.final, transfer.resent, request)
            self._local.handle = None  # a handle after a failure starts afresh
            handle.close()
            if failure is None:
                return None
        if failure is not None:
            # raised outside the except block: the error's cause is its own (a refused connection,
            # say), and nothing chains pycurl's
            raise failure
        if not transfer.final:  # no complete header block: urllib3 reads such an answer its own way
            return None
        status = handle.getinfo(pycurl.RESPONSE_CODE)
        content = body.getvalue()
        if logger.isEnabledFor(logging.DEBUG):  # the line urllib3 logs for each response
            logger.debug('%s "%s %s HTTP/1.1" %s %s', request.url.split("/", 3)[2], request.method,
                         request.path_url, status, len(content))
        status_line, *header_lines = transfer.lines
        parts = status_line.decode("iso-8859-1").split(None, 2)  # as http.client reads it
        reason = parts[2].strip() if len(parts) > 2 else ""
        try:
            message = parse_headers(io.BytesIO(b"".join(header_lines) + b"\r\n"))
        except HTTPException:  # more than 100 headers, a line over 64 KiB: urllib3 refuses them its way
            return None
        # requests' own assembly, as for urllib3's response: status, headers, cookies, body
        return self.build_response(request, _Raw(status, reason, message, content))


_resends = threading.local()


def take_resends() -> list[str]:
    """Why this thread's latest request was sent a second time, through urllib3 (see ``send``)."""
    reasons = getattr(_resends, "reasons", [])
    _resends.reasons = []
    return reasons


def _decodable(accepted: Any) -> bool:
    """Whether libcurl can decode every content coding ``accepted`` names."""
    if not accepted:
        return True
    if isinstance(accepted, bytes):
        accepted = accepted.decode("latin-1")
    names = {part.split(";")[0].strip().lower() for part in accepted.split(",")} - {""}
    return names <= _ENCODINGS


def _header_lines(headers: Any) -> tuple[list[bytes], bytes | None] | None:
    """Curl's header lines for ``headers`` (Latin-1, as http.client encodes them), and the
    Accept-Encoding curl is to send and decode; None for what only urllib3 sends as asked (a
    header http.client could not encode, an empty Accept-Encoding)."""
    lines = []
    encoding = None
    try:
        for name, value in headers.items():
            name = name if isinstance(name, bytes) else str(name).encode("latin-1")
            value = value if isinstance(value, bytes) else str(value).encode("latin-1")
            if name.lower() == b"accept-encoding":
                if not value.strip():
                    return None  # libcurl would send every coding it knows
                encoding = value
                continue
            # "Name:" would make curl drop its own header of that name; "Name;" sends it empty
            lines.append(name + b": " + value if value else name + b";")
    except UnicodeEncodeError:
        return None
    names = {line.split(b":")[0].split(b";")[0].strip().lower() for line in lines}
    if b"accept" not in names:
        lines.append(b"Accept:")  # no */* of libcurl's own where requests sends none
    lines.append(b"Expect:")  # no 100-continue
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
    handle.setopt(pycurl.CAPATH if _is_dir(path) else pycurl.CAINFO, path)


@functools.lru_cache(maxsize=8)
def _is_dir(path: str) -> bool:
    return os.path.isdir(path)  # once per path, not once per page


__all__ = ["CurlAdapter", "HTTPAdapter", "available", "take_resends"]
