"""The records in a response body, found by the endpoint's data selector."""

from __future__ import annotations

import functools
import html
import json
import re
from typing import Any
from urllib.parse import unquote, unquote_plus

import orjson
from requests import Response

from analytics_kit.errors import LoadError
from analytics_kit.fetch.transport import request_text
from analytics_kit.redact import Redactor
from analytics_kit.seam import jsonpath


# 19 digits in a row: maybe an integer outside the 64 bits orjson reads as integers (2**70,
# or -9223372036854775809), which it reads as a float instead: 1180591620717412303424 became
# 1.1805916207174124e+21, and ids collided. Such a body is parsed again by the json module, which
# keeps the integer for the checks downstream to refuse, as dlt's normaliser does. orjson reads
# it first all the same: what it refuses (NaN, Infinity, invalid UTF-8) stays refused, whatever
# else the page holds. The digits are found by mapping every digit to 0 and anything else to a
# space, then looking for 19 zeros: the regex \d{19} did the same in twice orjson's time (0.38 ms
# of a 24 KB page), as it tries a match at every digit; bytes.translate and ``in`` take 0.02 ms.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"0" * 19


def parse_body(content: bytes, status: int | None = None) -> Any:
    """The JSON body, as orjson reads it, with integers beyond 64 bits kept whole; ``status``: the answer's, for what a
    body that is none says."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError as error:
        if not content.strip():  # read as "not valid JSON ... an HTML error page ... check base_url" (helper-146)
            error.what = f"with an empty body{f' (HTTP {status})' if status else ''}"  # type: ignore[attr-defined]
        if not content.strip() and status in (202, 204):
            error.guidance = (  # type: ignore[attr-defined]
                "The API answered with no records at all where a page of them was asked for (a 204 No Content, or a "
                "202 Accepted whose result is not ready), which the kit does not take for an empty page: a full refresh "
                "would replace the table with it. Run the load again later; if the API answers so whenever nothing "
                "changed, ask its provider for an empty page (\"data\": []) instead.")
        elif "surrogate in string" in str(error):  # valid JSON's grammar, read as "not JSON... base_url" (helper-146)
            error.what = "with a string holding half of a UTF-16 pair (a lone \\ud800-\\udfff escape)"  # type: ignore[attr-defined]
            error.guidance = (  # type: ignore[attr-defined]
                "The API's JSON escapes half of a character, which no text column stores: a fault of the API's data. "
                "Report it to its provider, with the request named here.")
        elif "depth limit" in str(error):  # read as "not valid JSON ... check client.base_url" (helper-123)
            error.guidance = (  # type: ignore[attr-defined]
                "The API's JSON nests deeper than 1,024 levels, more than the kit's JSON parser reads: a fault of the "
                "API's data. Report it to its provider, with the request named here.")
        elif "is infinity when parsed as double" in str(error):  # valid JSON, read as "not JSON... base_url"
            error.what = "with a number beyond a double's range"  # type: ignore[attr-defined]
            error.guidance = (  # type: ignore[attr-defined]
                "The API sent a number beyond a double's range (such as 1e400): JSON's grammar allows it, but no "
                "column type holds it (plain dlt stores null for it), so the kit stops rather than lose it. Ask the "
                "API's provider to send such values as strings; the request is named here.")
        raise (_not_utf8(content) or error) from None
    return json.loads(content) if _LONG_NUMBER in content.translate(_DIGITS_AS_ZEROS) else body


def _not_utf8(content: bytes) -> json.JSONDecodeError | None:
    """What a body that is no UTF-8 text is, where it is none: orjson said only "str is not valid UTF-8: surrogates
    not allowed" at character 0, and no start of the body could be shown (helper-116)."""
    try:
        content.decode("utf-8")
        at = content.find(b"\x00")  # UTF-16 of ASCII text is valid UTF-8, with a NUL beside each character
        if not 0 <= at < 4:
            return None
    except UnicodeDecodeError as error:
        at = error.start
    if content[:2] == b"\x1f\x8b":
        what = ("gzip-compressed data, not JSON text: the server compressed the body without saying so in its "
                "Content-Encoding header, or compressed it twice")
    elif content[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in content[:4]:
        what = "UTF-16 or UTF-32 text: JSON over HTTP is UTF-8 (RFC 8259)"
    else:
        what = (f"not UTF-8 text (byte {content[at]:#04x} at {at:,}; perhaps Latin-1 or another legacy encoding): JSON "
                "over HTTP is UTF-8 (RFC 8259)")
    error = json.JSONDecodeError(f"the body is {what}", content.decode("utf-8", "replace"), at)
    error.guidance = (  # type: ignore[attr-defined]
        "The API sends its answers in a form JSON over HTTP does not take: a fault of the API's, which running the "
        "load again will not mend. Report it to its provider, with the request named here.")
    return error


def ends_of(rows: list) -> tuple:
    """A page's length and its first and last record as compact JSON: where it is told from another page."""
    return (len(rows), as_json(rows[0]), as_json(rows[-1])) if rows else ()


def as_json(value: Any) -> bytes:
    """``value`` as compact JSON; orjson, or the json module for an integer beyond 64 bits,
    which orjson cannot write (``parse_body`` keeps such integers whole)."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False).encode()


@functools.lru_cache(maxsize=64)
def _selector(data_selector: str) -> tuple[str | None, Any]:
    """(plain key, compiled path) of a data selector, worked out once.

    dlt's ``jsonpath.find_values`` compiles a string path on every call, and compiling
    builds a parser: about 1.4 ms, more than parsing the page itself.
    """
    return jsonpath.extract_simple_field_name(data_selector), jsonpath.compile_path(data_selector)


def refuse_echoed_secrets(rows: list, response: Response, resource: str, redactor: Redactor) -> None:
    """Stops a load whose records hold a credential the API echoed back into its data.

    They would be stored in the table, the pipeline folder and the trace. The body is
    searched first (one fast scan); only when it holds a secret are the records themselves
    looked at, since an API may echo the request's URL, key included, in its paging links.
    """
    content = response.content
    if not redactor.echoed(content) and not any(mark in content for mark in _ESCAPES):
        return
    if not _holds_secret(as_json(rows), redactor):
        return
    raise LoadError(
        f"Resource '{resource}': the API sent your credentials back inside its records on "
        f"{request_text(response.request, redactor)}; the kit does not store them. Nothing from this run was committed.",
        guidance="Check that the endpoint returns data, not credentials (the data_selector may point at the "
        "wrong part of the response); if the API echoes request parameters into its data, ask its provider.",
        resource=resource)


# A body with these may hold a secret in a form of its own: a JSON "\u0053" or "\/" in any of its characters
# (helper-123: .NET escapes "+" so), "%3D" in some of them only (JavaScript's escape()), encoded twice, HTML
# entities (&#47;), JSON text inside a value (helper-126): its records, written again by orjson (escapes only where
# JSON must) and decoded layer by layer, are looked at.
_ESCAPES = (b"\\", b"%", b"&")
_U_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _json_unescaped(text: str) -> str:
    return _U_ESCAPE.sub(lambda found: chr(int(found.group(1), 16)), text).replace("\\/", "/")


def _decoded(text: str) -> str:
    """``text`` with one layer of each escape undone: percent escapes, HTML entities, JSON escapes in a value's text."""
    if "%" in text:
        text = unquote(text)
    if "&" in text:
        text = html.unescape(text)
    if "\\" in text:
        text = _json_unescaped(text.replace("\\\\", "\\"))
    return text


def _holds_secret(records: bytes, redactor: Redactor) -> bool:
    """Whether ``records`` hold a secret, as written or under up to three layers of escapes: each layer undoes every
    kind at once (a product of the kinds made mixed values 3.9x slower to load, helper-128), and a "+" read as a
    space once more."""
    if redactor.echoed(records):
        return True
    text = records.decode("utf-8", "replace")
    for _ in range(3):
        decoded = _decoded(text)
        if decoded == text:
            break
        text = decoded
        if redactor.echoed(text.encode()) or "+" in text and redactor.echoed(unquote_plus(text).encode()):
            return True
    return False


_PLAIN_PATH = re.compile(r"\$?\.?[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_simple(data_selector: Any) -> bool:
    """Whether the selector names one field (``data``, ``result.items``; None: dlt detects one),
    so that a page's records are the listing's: a wildcard or filter may match fewer, or none."""
    return data_selector is None or (isinstance(data_selector, str) and _PLAIN_PATH.fullmatch(data_selector) is not None)


def select_records(body: Any, data_selector: Any, response: Response, resource: str, redactor: Redactor) -> list:
    """The records under ``data_selector``; a missing field is an error, not an empty page.

    dlt returns [] for a selector that matches nothing, so a renamed field in the API's
    response would load 0 rows and report success. A wildcard or filter (``data[*]``,
    ``data[?(@.id < 12)]``) may match nothing on a page that has its field: that page is empty,
    as with dlt; only a body without the selector's first field is an error.
    """
    if response.status_code in NOT_THE_LISTING:
        raise LoadError(
            f"Resource '{resource}': the API answered {request_text(response.request, redactor)} with HTTP "
            f"{response.status_code} ({NOT_THE_LISTING[response.status_code]}): not the records it was asked for, "
            "and a full refresh would have replaced the table with what it held. Nothing from this run was committed.",
            guidance="Run the load again later, once the API answers with HTTP 200; if it keeps answering so, ask "
            "its provider how to fetch the listing whole.", resource=resource)
    key, path = _selector(data_selector) if isinstance(data_selector, str) else (None, data_selector)
    if key is not None and isinstance(body, dict):
        found = [body[key]] if key in body else []
    else:
        found = jsonpath.find_values(path, body)
        # only a wildcard or filter may match nothing where its first field is there; a plain
        # dotted path (result.items) that matches nothing is missing, as a plain key is
        root = re.match(r"\$?\.?([A-Za-z_]\w*)", data_selector) if isinstance(data_selector, str) else None
        if not found and not is_simple(data_selector) and (
                root is None or (isinstance(body, dict) and root.group(1) in body)):
            found = [[]]
    if (not found or found in ([None], [[]])) and (said := _error_said(body, redactor)) is not None:
        raise LoadError(
            f"Resource '{resource}': the API answered {request_text(response.request, redactor)} with an error inside "
            f"an HTTP {response.status_code} ({said}), not records. Nothing from this run was committed.",
            guidance="Run the load again later; if the error stays, it says what the API wants (its key, its "
            "parameters, a pause).", resource=resource)
    if not found:
        shape = f"its keys are {', '.join(map(str, body))}" if isinstance(body, dict) else f"it is a {type(body).__name__}"
        raise LoadError(
            f"Resource '{resource}' got no {str(data_selector)!r} in the response on "
            f"{request_text(response.request, redactor)}; {shape}.",
            guidance="Point the endpoint's data_selector at the field that holds the records "
            "(for example \"data\" or \"results\").",
            resource=resource,
        )
    rows = found[0] if len(found) == 1 else found
    lists = [str(k) for k, v in body.items() if isinstance(v, list)] if isinstance(body, dict) else []
    if len(found) == 1 and rows is not None and not isinstance(rows, (list, dict)):
        # one number or string where the body has a list beside it: a counter, not the records; paged
        # by offset it read as "the API serves at most 1 per page" (helper-53); without one, a message
        # in the records' place read as a page without a total (helper-123)
        raise LoadError(
            f"Resource '{resource}': data_selector {str(data_selector)!r} selects one {type(rows).__name__} "
            f"({redactor(repr(rows))[:40]}) on {request_text(response.request, redactor)}, not a list of records"
            + (f"; the response holds a list under {', '.join(map(repr, lists))}." if lists else "."),
            guidance="Point the endpoint's data_selector at the field that holds the records"
                     + (f" (here perhaps {lists[0]!r})." if lists else "; if the API put a message there instead "
                        "(an outage), run the load again later."),
            resource=resource,
        )
    rows = [] if rows is None else rows if isinstance(rows, list) else OneObject([rows])
    if None in rows:
        raise LoadError(
            f"Resource '{resource}': the API sent null where a record was due (record {rows.index(None) + 1} of "
            f"{len(rows)}) on {request_text(response.request, redactor)}. Nothing from this run was committed.",
            guidance="The API's listing holds empty entries: a fault of the API's. Report it to its provider, with "
            "the request named here; running the load again helps only if the API mends it.", resource=resource)
    kinds = set(map(type, rows))  # in C: a microsecond for a page of objects
    if dict in kinds and len(kinds) > 1:
        odd = next(i for i, row in enumerate(rows) if type(row) is not dict)
        # a 7 among objects read as "the API's records have no field 'updated_at'" (helper-138)
        raise LoadError(
            f"Resource '{resource}': the API sent {_JSON_KINDS.get(type(rows[odd]), 'a value')} where a record was due "
            f"(record {odd + 1} of {len(rows)}, among objects) on {request_text(response.request, redactor)}. "
            "Nothing from this run was committed.", guidance="The API's listing mixes other values with its "
            "records: a fault of the API's. Report it to its provider, with the request named here; running the load "
            "again helps only if the API mends it.", resource=resource)
    refuse_echoed_secrets(rows, response, resource, redactor)
    return rows


_JSON_KINDS = {int: "a number", float: "a number", str: "a string", bool: "true or false", list: "a list"}
# 2xx answers that are not the resource asked for: an accepted job still running, a part of the body
NOT_THE_LISTING = {202: "Accepted: the result is not ready", 206: "Partial Content: a part of the answer only"}
_ERROR_KEYS = ("error", "errors", "fault", "error_message", "errormessage", "error_code", "errorcode")
_FAILED = ("error", "fail", "failed", "failure")
_NO_ERROR_WORDS = frozenset({"", "none", "null", "nil", "ok", "false", "0", "no", "n/a", "success"})
_PLAIN_KEY = re.compile(r"[A-Za-z_][\w-]*")


def error_beside(body: Any, data_selector: Any, redactor: Redactor) -> str | None:
    """The error a body holds beside the records its plain selector names (``{"data": [...], "error": ...}``, at
    any level of ``result.items``), masked; None for none, and for a body that is the record or the records
    themselves. Not a refusal: an error log's listing, a record with an error field and GraphQL's warnings beside
    its data are answers (helper-139); a page cut short says it (``page_checks.page_cap``): 5 records beside "shard
    2 unavailable" read as "it serves at most 5 per page" (helper-138)."""
    level = body
    for key in _plain_path(data_selector) if isinstance(data_selector, str) else ():
        if not isinstance(level, dict) or key not in level:
            return None
        # at each level of an envelope: {"result": {"items": [...], "error": ...}} (helper-139)
        if said := _error_said({name: value for name, value in level.items() if name != key}, redactor):
            return said
        level = level[key]
    return None


@functools.lru_cache(maxsize=64)
def _plain_path(data_selector: str) -> tuple[str, ...]:
    """The keys of a selector made of plain names only (``data``, ``result.items``, ``$.result.items``)."""
    keys = data_selector.removeprefix("$.").split(".")
    return tuple(keys) if all(_PLAIN_KEY.fullmatch(key) for key in keys) else ()


def _error_said(body: Any, redactor: Redactor) -> str | None:
    """The start of the error an answer without records holds (``{"error": ...}``), masked; None for none."""
    if not isinstance(body, dict):
        return None
    said = next((v for k, v in body.items() if isinstance(k, str) and k.lower() in _ERROR_KEYS
                 and not _no_error(v)), None)  # "Error", "ERRORS" too (helper-126)
    lowered = {k.lower(): v for k, v in body.items() if isinstance(k, str)}
    if said is None and (str(lowered.get("status", "")).lower() in _FAILED or lowered.get("success") is False
                         or lowered.get("ok") is False):
        # {"status": "error", "message": ..., "data": []}, {"success": false, ...} (helper-128)
        said = lowered.get("message") or lowered.get("detail") or f"status {lowered.get('status', 'failed')!s}"
    if said is None and isinstance(lowered.get("meta"), dict):  # {"data": [], "meta": {"error": ...}}
        return _error_said(lowered["meta"], redactor)
    if said is None:
        return None
    text = redactor(said if isinstance(said, str) else as_json(said).decode("utf-8", "replace"))
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)  # no ESC to a terminal (helper-127)
    return text if len(text) <= 120 else text[:120] + "..."


def _no_error(value: Any) -> bool:
    """Whether an error field says there is none: empty, zero, "none", "null", "ok", or a dict or list of only such
    (``{"code": 0, "message": ""}``); every page's ``"error": "none"`` failed a listing's closing page (helper-143)."""
    if isinstance(value, str):
        return value.strip().lower() in _NO_ERROR_WORDS
    if isinstance(value, dict):
        return all(map(_no_error, value.values()))
    if isinstance(value, list):
        return all(map(_no_error, value))
    # a status of success where an error would be: {"code": 200, "message": "OK"} (helper-144)
    return value is None or value is False or value == 0 or (type(value) is int and 200 <= value < 300)


class OneObject(list):
    """The one record of a page whose selected value was an object, not a list (as dlt reads it)."""


# Characters looked at past each cut of a body shown in a message, for part of a secret (see ``body_shown``).
_MARGIN = 24


def body_shown(error: Any, redact: Redactor, width: int = 60) -> str:
    """What a body that is not JSON looks like where the parse stopped: its start, and the text at that
    point if it lies further on (the message gave the decoder's position only: helper-102). Nothing of it
    where what would be shown holds part of a secret, which no mask of the whole matches: the body may end
    inside one, break it apart or encode it (helper-105, helper-106)."""
    doc, pos = getattr(error, "doc", None), getattr(error, "pos", None)
    if not isinstance(doc, str) or not doc:
        return ""
    # masked whole, then cut: a secret cut in two would not be masked; the position shifts where a mask did
    masked = redact(doc)
    head, window, near = masked[:width], "", masked[:width + _MARGIN]
    if isinstance(pos, int) and pos > width // 2:
        here = redact.position(doc, pos)  # where it stands once masked
        window = masked[max(0, here - 10):here + 30]
        near += masked[max(0, here - 10 - _MARGIN):here + 30 + _MARGIN]
    # looked for a little past each cut (a secret's run the cut leaves a few characters of), and with the two
    # excerpts side by side (each with a part of one)
    if redact.holds_part(near) or redact.holds_part(head + window):
        return "; the body is not shown: it holds what looks like part of your credentials"
    shown = f"; the body begins {head!r}" + ("..." if len(masked) > width else "")
    return shown + (f", and at character {pos:,} reads {window!r}" if window else "")
