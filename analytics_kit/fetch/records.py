"""The records in a response body, found by the endpoint's data selector."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import orjson
from requests import Response

from analytics_kit.errors import LoadError
from analytics_kit.fetch.transport import request_text
from analytics_kit.redact import Redactor
from analytics_kit.seam import jsonpath


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
    if not redactor.echoed(response.content) or not redactor.echoed(as_json(rows)):
        return
    raise LoadError(
        f"Resource '{resource}': the API sent your credentials back inside its records on "
        f"{request_text(response.request, redactor)}; the kit does not store them. Nothing from this run was committed.",
        guidance="Check that the endpoint returns data, not credentials (the data_selector may point at the "
        "wrong part of the response); if the API echoes request parameters into its data, ask its provider.",
        resource=resource)


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
    if len(found) == 1 and rows is not None and not isinstance(rows, (list, dict)) and lists:
        # one number or string where the body has a list beside it: a counter, not the records; paged
        # by offset it read as "the API serves at most 1 per page" (helper-53)
        raise LoadError(
            f"Resource '{resource}': data_selector {str(data_selector)!r} selects one {type(rows).__name__} "
            f"({redactor(repr(rows))[:40]}) on {request_text(response.request, redactor)}, not a list of records; "
            f"the response holds a list under {', '.join(map(repr, lists))}.",
            guidance="Point the endpoint's data_selector at the field that holds the records "
                     f"(here perhaps {lists[0]!r}).",
            resource=resource,
        )
    rows = [] if rows is None else rows if isinstance(rows, list) else [rows]
    refuse_echoed_secrets(rows, response, resource, redactor)
    return rows
