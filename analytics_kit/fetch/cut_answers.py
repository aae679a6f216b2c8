"""Answers cut off where nothing declared their length, told from answers that are whole.

An answer without a usable Content-Length and not chunked ends where the connection closes,
so its framing cannot say whether it is whole. http.client reads one cut inside its header
block as an answer with no headers and an empty body, and one cut mid-body as a shorter body;
both failed the load as "not valid JSON" instead of being retried. Such a body is called cut
short only when it fails to parse because it stops: nothing at all, or JSON that breaks off
(in a string, a literal, a number, an escape, a character's UTF-8 bytes, or between tokens).
A body that is whole but not JSON (an HTML page, NaN, a byte-order mark, invalid UTF-8
inside) is not, and keeps its exact diagnosis without a retry.

A header block must end with its blank line. http.client also takes the connection closing
as its end, even inside a line: a redirect cut inside its Location was followed to the cut
target (another page of the listing). ``HeaderCheckedResponse`` remembers how its block
ended, and ``header_block_cut`` tells the session not to use such an answer.
"""

from __future__ import annotations

import codecs
import http.client
import json
import re
from typing import Any

import orjson
import urllib3.exceptions
from requests import RequestException, Response
from requests.exceptions import InvalidHeader

from analytics_kit.fetch import header_fields

# What a JSON document can end in when cut inside a literal, with the json module's own
# NaN and infinities, which it reads and orjson does not.
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")
# The part of a number the json module stops before when the number is cut: "1." or "1.5e-"
_NUMBER_TAIL = re.compile(r"(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?")
_JSON_SPACE = " \t\n\r"
# A string cut in or just after a \uXXXX escape (the json module looks on for a surrogate's pair)
_ESCAPE_TAIL = re.compile(r"u[0-9a-fA-F]{0,4}(?:\\(?:u[0-9a-fA-F]{0,4})?)?")


def cut_short(response: Response) -> bool:
    """Whether ``response`` is a data answer ended by the connection closing before it was whole.

    A data answer is a 2xx, or a 3xx the kit will not follow (no Location): either reaches
    the page's JSON parse. The framing is urllib3's, which read the body.
    """
    status = response.status_code
    if not 200 <= status < 400 or status in (204, 205, 304):
        return False
    if response.is_redirect and response.headers.get("location"):
        return False  # followed; cut after "Location:", it is not, and reaches the parse
    if response.request is not None and response.request.method == "HEAD":
        return False
    raw = response.raw
    if getattr(raw, "chunked", True) or getattr(raw, "length_remaining", 0) is not None:
        return False  # chunked, or a length urllib3 read and checked
    body = response.content
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return ends_early(body)
    return False


# Bytes an answer is read in at a time, at most: a page of a few hundred records in one recv.
READ_BUFFER = 1 << 16


class _LastLine:
    """The response's reader, remembering the last line read from it (the header block's last)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.last = b""

    def readline(self, *args: Any) -> bytes:
        self.last = self.reader.readline(*args)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)


class CutAnswer(http.client.HTTPException):
    """The connection closed inside an answer's status line, or after an interim (1xx) answer and
    before the final one."""


class TooManyHeaders(http.client.HTTPException):
    """An answer whose header block http.client does not read, whole, and refused the same way on every attempt:
    ``why`` says how (more header fields than it reads, a line longer than it reads, another HTTP version). Each
    was retried as a dropped connection, and its advice was to check base_url (helper-146)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class HeaderCheckedResponse(http.client.HTTPResponse):
    """http.client's response, told apart from a cut one, and reading past interim answers.

    It knows whether its header block ended with the connection closing (``header_block_cut``),
    raises ``CutAnswer`` for a status line the connection closed inside of (http.client's
    BadStatusLine, as for a line that is not HTTP, which ends with its line break), and skips
    every interim answer (102 Processing, 103 Early Hints) as http.client skips 100 Continue:
    it took them for the final answer, with an empty body.
    """

    header_block_cut = False
    interim = False

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        # http.client reads through an 8 KB buffer: a page already received (24 KB for 100 events)
        # took three recv calls, and each lets go of the GIL, which under the page workers' and the
        # extracting thread's contention costs a thread switch (bench/transport_speed.py)
        self.fp.close()  # not read from yet
        self.fp = sock.makefile("rb", buffering=READ_BUFFER)

    def begin(self) -> None:
        if self.headers is not None:
            return
        reader, lines = self.fp, _LastLine(self.fp)
        self.fp = lines  # only while the status line and the headers are read
        try:
            header_fields.begin(self)  # http.client's begin, reading the header block faster
        except http.client.LineTooLong:
            raise TooManyHeaders(f"a header line longer than {getattr(http.client, '_MAXLINE', 65536):,} bytes, "
                                 "the longest Python's HTTP client (http.client) reads") from None
        except http.client.UnknownProtocol as error:
            raise TooManyHeaders(f"a status line of {str(error)[:20]!r}, an HTTP version Python's HTTP client "
                                 "(http.client) does not speak (it speaks HTTP/1.0 and 1.1)") from None
        except http.client.HTTPException as error:
            if type(error) is http.client.HTTPException and str(error).startswith("got more than"):
                raise TooManyHeaders(f"{header_fields.most_lines()} or more header fields, more than Python's HTTP client "
                                     "(http.client) reads") from None
            raise
        finally:
            if self.fp is lines:
                self.fp = reader
        self.header_block_cut = lines.last not in (b"\r\n", b"\n")

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            try:
                version, status, reason = super()._read_status()
            except http.client.RemoteDisconnected:
                if self.interim:
                    raise CutAnswer("the connection closed after an interim answer, before the final one") from None
                raise
            except http.client.BadStatusLine as error:
                # a status line begun ("HTTP/1.1 20") and no line break: not bytes of another protocol
                begun = error.line.startswith("HTTP/") or "HTTP/".startswith(error.line)
                if begun and not error.line.endswith("\n"):
                    raise CutAnswer("the connection closed inside the answer's status line") from None
                raise
            if not 100 <= status < 200 or status == 101:  # 101: the connection switches protocols
                return version, status, reason
            self.interim = True
            if status == 100:
                return version, status, reason  # begin() skips its headers and reads on
            http.client.parse_headers(self.fp)


def header_block_cut(response: Response) -> bool:
    """Whether ``response``'s header block ended where the connection closed, not at its blank line."""
    original = getattr(response.raw, "_original_response", None)
    return getattr(original, "header_block_cut", False)


def raised_in_answer(error: RequestException, kind: type[BaseException]) -> BaseException | None:
    """The ``kind`` error http.client raised reading the answer, as requests wraps it (in urllib3's
    ProtocolError), or None."""
    for arg in error.args:
        for inner in (arg, *getattr(arg, "args", ())):
            if isinstance(inner, kind):
                return inner
    return None


def broken_header(error: RequestException) -> bool:
    """Whether ``error`` is urllib3 refusing an answer's header block: Content-Length values that
    differ, as a block cut inside a repeated one reads ("46, 4"). Not a request header of the
    config's that requests refused: that InvalidHeader carries text, not urllib3's error."""
    return isinstance(error, InvalidHeader) and any(
        isinstance(arg, urllib3.exceptions.InvalidHeader) for arg in error.args)


def ends_early(body: bytes) -> bool:
    """Whether ``body`` is empty, or JSON that fails only because it stops before its end."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        # a character whose last bytes were cut off is held back, not refused
        text = decoder.decode(body, final=False)
    except UnicodeDecodeError:
        return False
    text = text.rstrip(_JSON_SPACE)
    if not text:
        return True
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        return _stops_at(text, error)
    except (RecursionError, ValueError):  # nested too deep, or an integer of over 4,300 digits
        return False  # the json module cannot tell; the page's own parse names what it is
    return False  # whole JSON by the json module's reading (NaN, 1e400): orjson's refusal stands


def _stops_at(text: str, error: json.JSONDecodeError) -> bool:
    """Whether the json module's ``error`` on ``text`` comes from the text stopping, not from a wrong character."""
    rest, message = text[error.pos:], error.msg
    if message.startswith("Unterminated string"):
        return True
    if message.startswith("Invalid \\uXXXX escape"):  # at the u of \u, the text's end near
        return _ESCAPE_TAIL.fullmatch(rest) is not None
    if not rest:  # a value, a delimiter or a name was expected where the text ends
        return message.startswith("Expecting")
    if message.startswith("Expecting value"):  # a literal begun: "tr", "nul", "-"
        return any(len(rest) < len(word) and word.startswith(rest) for word in _LITERALS)
    if message.startswith("Expecting ',' delimiter"):  # a number begun: "1." or "1.5e-", right after a digit
        return text[error.pos - 1].isdigit() and rest[0] in ".eE" and _NUMBER_TAIL.fullmatch(rest) is not None
    return False
