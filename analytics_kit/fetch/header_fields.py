"""An answer's header fields, read without the email parser when every line is a plain field.

http.client hands each header block to ``email.parser``, which cost about a fifth of a page
worker's time on the demo API's pages (py-spy, 100,000 events). A block whose lines are all
``Name: value`` (a name of visible ASCII without a colon, no folded lines, no stray CR or LF)
parses the same way by a split at the first colon: the email parser's compat32 policy strips
the value's leading blanks and its line break, nothing else. Any other block (folded lines,
a line that is not a field, a block the connection cut, a multipart or message content type,
after which the parser looks for a body) goes to the email parser as before.

``begin`` is http.client's own ``HTTPResponse.begin``, the same code object with this parser
in the place of ``parse_headers``, so the status, length and framing rules stay the stdlib's.
"""

from __future__ import annotations

import email.parser
import http.client
import re
import types
from collections.abc import Callable
from typing import Any

# Content types after which the email parser reads a body (parts, an attached message) and
# records defects for the empty one: such blocks go to it, for the same message and warnings
_PARTS = ("multipart/", "message/")
# A field line the email parser reads as one field named by what precedes the first colon
_PLAIN_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n")


def most_lines() -> int:
    """The lines of a header block http.client reads, its blank line included, as it is now (a
    program may raise it): a block of this many fields is refused."""
    return getattr(http.client, "_MAXHEADERS", 100)


def read_lines(fp: Any) -> list[bytes]:
    """The header block's lines up to and including its blank line (or the connection's end), within
    http.client's limits, failing as it fails."""
    longest, most = getattr(http.client, "_MAXLINE", 65536), most_lines()
    lines = []
    while True:
        line = fp.readline(longest + 1)
        if len(line) > longest:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > most:
            raise http.client.HTTPException(f"got more than {most} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def parse_headers(fp: Any, _class: type = http.client.HTTPMessage) -> http.client.HTTPMessage:
    """``http.client.parse_headers``, the same message for every block, faster for plain ones."""
    lines = read_lines(fp)
    if lines[-1] not in (b"\r\n", b"\n") or not all(map(_PLAIN_FIELD.fullmatch, lines[:-1])):
        return _parsed(lines, _class)
    message = _class()
    for line in lines[:-1]:
        name, value = line.decode("iso-8859-1").split(":", 1)
        value = value.lstrip(" \t").rstrip("\r\n")
        if name.lower() == "content-type" and value.split(";", 1)[0].strip().lower().startswith(_PARTS):
            return _parsed(lines, _class)
        message[name] = value
    message.set_payload("")  # as the parser leaves a block with nothing after its blank line
    return message


def _parsed(lines: list[bytes], _class: type) -> http.client.HTTPMessage:
    """What ``http.client.parse_headers`` makes of ``lines``: the email parser's message."""
    return email.parser.Parser(_class=_class).parsestr(b"".join(lines).decode("iso-8859-1"))


def _with_parser(begin: Callable[..., Any]) -> Callable[..., Any]:
    """``begin`` reading its header fields with ``parse_headers`` above; ``begin`` itself where its
    code does not look the parser up by name (another Python's http.client)."""
    code = begin.__code__
    if code.co_freevars or "parse_headers" not in code.co_names:
        return begin
    scope = {**vars(http.client), "parse_headers": parse_headers}
    return types.FunctionType(code, scope, begin.__name__, begin.__defaults__)


begin = _with_parser(http.client.HTTPResponse.begin)
