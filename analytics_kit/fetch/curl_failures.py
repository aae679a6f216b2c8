"""libcurl's failures as the requests exceptions urllib3's would have become (see ``curl``).

The kit's retries and messages look at the exception's class and its cause: a refused
connection or a name that does not resolve on first contact is not retried, a body broken off
is "broke off its response", a timeout is the deadline's. The mapping keeps them the same
whichever transport sent the request; what it cannot map, the caller asks urllib3 again.
"""

from __future__ import annotations

import os
import socket

import requests
from requests.exceptions import ChunkedEncodingError, ConnectTimeout, ReadTimeout, SSLError

# libcurl's error codes (curl.h) that urllib3 meets too, by what urllib3 would have said; any
# other is libcurl refusing what urllib3 may read, and the request is asked again there.
_RESOLVE = {5, 6}  # COULDNT_RESOLVE_PROXY, COULDNT_RESOLVE_HOST
_CONNECT = {7}  # COULDNT_CONNECT: refused, or no route
TIMEOUT = {28}  # OPERATION_TIMEDOUT
_TLS = {35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98}
# before any answer: the connection closed or reset; after a complete header block: the body
# broken off (PARTIAL_FILE: fewer bytes than Content-Length; RECV_ERROR: a reset, a bad chunk)
_BROKEN = {18, 52, 55, 56}


def as_requests_error(code: int, text: str, errno: int, lines: list[bytes], final: bool, resent: bool,
                      request: requests.PreparedRequest) -> requests.RequestException | None:
    """The requests exception urllib3's adapter raises for the same failure, with its cause;
    None where libcurl refused what urllib3 may read, and where the answer broke off inside
    its headers. ``errno``: the OS's error number for a failed connection, or 0; ``lines``: the
    answer's status and header lines so far; ``final``: its header block is complete (and not
    a 1xx's); ``resent``: libcurl began to send the request again by itself, and was stopped."""
    shown = f"{text} (libcurl error {code})"
    if resent:  # libcurl's own resend, stopped: urllib3's RemoteDisconnected
        return requests.ConnectionError(f"Connection aborted: the server closed the connection without an answer "
                                        f"({shown})", request=request)
    if code in TIMEOUT:
        if not lines and ("connect" in text.lower() or "resolv" in text.lower()):
            return ConnectTimeout(shown, request=request)
        return ReadTimeout(shown, request=request)
    if not lines:  # nothing of an answer yet
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
        if code in _BROKEN:
            return requests.ConnectionError(f"Connection aborted: {shown}", request=request)
        return None
    if final and code in _BROKEN and _framed(lines):
        return ChunkedEncodingError(f"Connection broken: {shown}", request=request)
    return None


def _framed(lines: list[bytes]) -> bool:
    """Whether the answer said where its body ends (Content-Length, or chunked): only then is
    an early end an error to urllib3 too, rather than the end of the body."""
    names = {line.split(b":", 1)[0].strip().lower() for line in lines[1:]}
    return b"content-length" in names or b"transfer-encoding" in names
