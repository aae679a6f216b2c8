"""What dlt takes while it builds the source and refuses (or ignores) only at the first request or response.

dlt compiles a paginator's JSON paths when it reads a response, requests refuses a header value that is not
text when it sends one, and dlt fills ``{incremental.<attribute>}`` placeholders when it pages. Each would stop
a load in extract, after its requests began, as a ``LoadError`` saying to run it again; here each is a
``ConfigError`` at its place in the config, before any request. A response action dlt does not know ("Ignore",
"skip") it passes over without a word when its response comes, and the kit's advice for that 404 was to add the
action the config held (helper-155): refused too.
"""

from __future__ import annotations

import _string  # the field-name splitter str.format itself uses
import string
from typing import Any, Iterable

from analytics_kit.config.messages import did_you_mean, fail, got, join
from analytics_kit.config.refusals import templated
from analytics_kit.seam import jsonpath


def check_json_path(value: Any, path: str, expected: str, guidance: str) -> None:
    """A string dlt compiles as a JSON path only once it reads a response: refused here when it does not compile."""
    if not isinstance(value, str):
        return
    try:
        jsonpath.compile_path(value)
    except Exception as error:  # noqa: BLE001 - jsonpath-ng's parser raises several kinds
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise fail(path, f"not a valid JSON path ({problem})", expected, guidance) from None


def check_answers(endpoint: dict, path: str) -> None:
    """An endpoint's headers and response actions, as requests sends them and dlt reads them (see the module)."""
    check_headers(endpoint.get("headers"), join(path, "headers"))
    actions = endpoint.get("response_actions")
    for index, action in enumerate(actions if isinstance(actions, list) else ()):
        named = action.get("action") if isinstance(action, dict) else "ignore"
        if named is None or isinstance(named, str) and named != "ignore":  # None, or none: dlt's TypeError in extract
            raise fail(f"{join(path, 'response_actions')}[{index}].action",
                       f"got {named!r}{did_you_mean(named.strip().lower(), ['ignore']) if named else ''}",
                       "'ignore', a function, or a list of functions",
                       "dlt knows one action by name, 'ignore' (in lower case), which skips the matching responses; "
                       "any other name does nothing.")


def check_headers(value: Any, path: str) -> None:
    """Header values requests can send: text (or bytes; None leaves the header out). dlt passes others on, and
    requests refuses them at the first request ("Header part (100) ... must be of type str or bytes"); dlt's validator
    checks client.headers (a dict of text) itself. Values are not echoed: a header may hold a secret."""
    if not isinstance(value, dict):
        return
    for name, header in value.items():
        if header is not None and not isinstance(header, (str, bytes)):
            raise fail(join(path, str(name)), f"got {got(header, secret=True)}", "text",
                       f"Write the header's value as a string, e.g. \"{name}\": \"100\" rather than 100.")


INCREMENTAL_VALUES = ("start_value", "end_value", "last_value", "initial_value")


def check_placeholders(config: dict[str, Any], incrementals: Iterable[Any]) -> None:
    """Each ``{incremental.<attribute>}`` in the strings dlt formats when it pages (endpoint path, params, json, data,
    headers) names an attribute of dlt's ``Incremental`` (``incrementals``: the source's; all have the same): dlt
    looks it up with each request, and a misspelt one stopped the load with "'Incremental' object has no
    attribute". Attributes are looked up on the class and the instance, without reading a property (which would
    read the pipeline's state)."""
    incremental = next(iter(incrementals), None)
    if incremental is None:
        return  # dlt refuses {incremental.*} without one while it builds the source
    known = set(dir(type(incremental))) | set(vars(incremental))
    for _, path, text in templated(config):
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(text) if field]
        except ValueError:
            continue  # unbalanced braces: dlt's own refusal names them
        for field in fields:
            head, rest = _string.formatter_field_name_split(field)
            step = next(rest, None)
            if head != "incremental" or step is None or not step[0] or step[1] in known:
                continue
            raise fail(path, f"the placeholder {{{field}}} names no value of the incremental"
                       f"{did_you_mean(step[1], INCREMENTAL_VALUES)}",
                       ", ".join(f"{{incremental.{name}}}" for name in INCREMENTAL_VALUES),
                       "Write the placeholder as one of those: start_value is where this load starts.")
