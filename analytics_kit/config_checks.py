"""Shape checks of a rest_api config against dlt's own TypedDicts, with readable errors.

Allowed keys and leaf types come from ``dlt.sources.rest_api.typing`` (``get_type_hints``), paginator
and auth types from dlt's ``PAGINATOR_MAP`` / ``AUTH_MAP``, so a dlt upgrade updates them. Paths are
written ``resources[0].endpoint.paginator.limit``. Values inside auth blocks, headers and params are
never echoed: they may be secrets.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import re
import sys
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

from dlt.common import jsonpath
from dlt.common.exceptions import DictValidationException
from dlt.common.schema.typing import TColumnSchema
from dlt.common.typing import (
    extract_union_types,
    get_literal_args,
    get_type_hints,
    get_type_name,
    is_literal_type,
    is_optional_type,
    is_typeddict,
    is_union_type,
)
from dlt.common.validation import validate_dict
from dlt.extract.resource import DltResource
from dlt.sources.rest_api import SENSITIVE_KEYS
from dlt.sources.rest_api import typing as rt
from dlt.sources.rest_api.config_setup import AUTH_MAP, PAGINATOR_MAP

from analytics_kit.errors import ConfigError

ERROR_HANDLER = "error_handler"
CONCURRENCY = "concurrency"  # the kit's: workers fetching offset pages at once
KIT_KEYS = [ERROR_HANDLER, CONCURRENCY]
DESTINATION = "destination"  # the kit's, top level: where loads go (a dlt destination name)
MASK = "*****"
_SENSITIVE_NAMES = {k.lower() for k in SENSITIVE_KEYS} | {"authorization", "proxy-authorization", "cookie"}
_SENSITIVE_PARTS = ("key", "token", "secret", "password", "passwd", "auth", "access", "credential", "signature")


def allowed_keys(spec: type) -> dict[str, Any]:
    """Key -> type hint of a dlt TypedDict, resolved the way dlt's validator does."""
    return get_type_hints(spec, globalns=sys.modules[spec.__module__].__dict__)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def quoted(names: Iterable[Any]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def got(value: Any, secret: bool = False) -> str:
    """How a wrong value is shown: its type only when it may be a secret."""
    kind = type(value).__name__
    if secret:
        return f"a value of type {kind}"
    text = repr(value)
    return f"{text[:60]}... ({kind})" if len(text) > 60 else f"{text} ({kind})"


def fail(path: str, problem: str, expected: str, guidance: str) -> ConfigError:
    return ConfigError(f"{problem}; expected {expected}", path=path, guidance=guidance)


def is_sensitive_name(name: Any) -> bool:
    """Header or query-parameter names whose values are credentials."""
    if not isinstance(name, str):
        return False
    low = name.lower()
    return low in _SENSITIVE_NAMES or any(part in low for part in _SENSITIVE_PARTS)


def is_secret_slot(parent: str, key: Any) -> bool:
    """Whether ``block[key]`` holds a credential, for a block found under ``parent``."""
    return key in SENSITIVE_KEYS if parent == "auth" else is_sensitive_name(key)


# -- leaf and mapping checks ---------------------------------------------------------------------

_EXPECTED = {int: "an integer", str: "a string", bool: "true or false", float: "a float"}


def check_leaf(value: Any, hint: Any, path: str, secret: bool = False) -> None:
    """Check scalar and Literal hints; unions and classes are left to dlt's validator."""
    if value is None and is_optional_type(hint):
        return
    members = extract_union_types(hint, no_none=True) if is_union_type(hint) else [hint]
    if len(members) != 1:
        return
    t = members[0]
    if is_literal_type(t):
        options = get_literal_args(t)
        if value not in options:
            shown = "an unsupported value" if secret else f"unsupported value {got(value)}"
            raise fail(path, shown + did_you_mean(value, map(str, options)),
                       f"one of {quoted(options)}", "Use one of the listed values.")
        return
    if t not in _EXPECTED:
        return
    ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
    if not ok:
        raise fail(path, f"got {got(value, secret)}", _EXPECTED[t],
                   f"Write {_EXPECTED[t]} here" + (" without quotes." if isinstance(value, str) else "."))


def check_mapping(value: Any, spec: type, path: str, *, extra: Iterable[str] = (), secret: bool = False,
                  skip: Iterable[str] = (), xkeys: bool = False) -> dict[str, Any]:
    """Unknown keys (with a suggestion), missing required keys and scalar leaves of one dict.

    ``xkeys`` lets custom ``x-...`` keys through, as dlt does for column hints.
    """
    if not isinstance(value, dict):
        raise fail(path, f"got {got(value, secret)}", "a dict", "Write this block as a dict of keys and values.")
    hints = allowed_keys(spec)
    allowed = sorted(set(hints) | set(extra))
    for key in value:
        if key not in allowed and not (xkeys and str(key).startswith("x-")):
            guidance = "Remove the key or rename it to one of the expected keys."
            if key == ERROR_HANDLER:
                guidance = ("error_handler is allowed on client, resource_defaults, "
                            "resource_defaults.endpoint and resources[i].endpoint; move it into the endpoint.")
            raise fail(join(path, str(key)), f"unknown key '{key}'{did_you_mean(key, allowed)}",
                       f"one of {quoted(allowed)}", guidance)
    required = getattr(spec, "__required_keys__", frozenset())
    for key in sorted(required):
        if key not in value and not is_optional_type(hints[key]) and key not in skip:
            raise fail(path, f"missing required key '{key}'", f"'{key}' in this block", f"Add '{key}'.")
    for key, hint in hints.items():
        if key in value and key not in skip:
            check_leaf(value[key], hint, join(path, key), secret)
    return value


def _config_typeddict(cls: type | None, default: type) -> type:
    """dlt's ``<Class>Config`` TypedDict of a paginator or auth class (case-insensitive name match)."""
    if cls is None:
        return default
    wanted = f"{cls.__name__}config".lower()
    for name, obj in vars(rt).items():
        if name.lower() == wanted and isinstance(obj, type):
            return obj
    return default


# -- blocks ------------------------------------------------------------------------------------


# Paginator numbers dlt takes without a word, and then pages nothing (limit 0) or skips
# records (a negative limit or offset).
_PAGINATOR_LEAST = {"limit": 1, "maximum_offset": 1, "maximum_page": 1, "offset": 0, "page": 0, "base_page": 0}


def check_paginator(value: Any, path: str) -> None:
    known = list(PAGINATOR_MAP)
    unsupported = "Use one of dlt's paginator types, or pass a paginator instance."
    if isinstance(value, str):
        if value not in PAGINATOR_MAP:
            raise fail(path, f"unsupported paginator type {value!r}{did_you_mean(value, known)}",
                       f"one of {quoted(known)}", unsupported)
        return
    if not isinstance(value, dict):
        return  # a paginator instance; dlt's validator checks the class
    if "type" not in value:
        raise fail(path, "missing 'type'", f"one of {quoted(known)}", "Add 'type' to the paginator.")
    kind = value["type"]
    if kind not in PAGINATOR_MAP:
        raise fail(join(path, "type"), f"unsupported paginator type {kind!r}{did_you_mean(kind, known)}",
                   f"one of {quoted(known)}", unsupported)
    cls = PAGINATOR_MAP[kind]
    check_mapping(value, _config_typeddict(cls, rt.PaginatorTypeConfig), path)
    for key in (k for k in value if k.endswith("_path")):
        if value[key] is not None and not isinstance(value[key], str):
            raise fail(join(path, key), f"got {got(value[key])}", "a JSON path as a string, or null",
                       "Write the path to the field in the response, e.g. 'total' or 'meta.total'.")
    for key, least in _PAGINATOR_LEAST.items():
        number = value.get(key)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < least):
            raise fail(join(path, key), f"got {got(number)}", f"an integer >= {least}",
                       "A page size and a maximum are at least 1; an offset or page number is not negative.")
    if cls is not None:
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and param.default is inspect.Parameter.empty and name not in value:
                raise fail(path, f"missing required key '{name}' for paginator type '{kind}'",
                           f"'{name}' in the paginator", f"Add '{name}' to the paginator.")


def check_auth(value: Any, path: str) -> None:
    """Auth blocks: keys and types only; values are never shown. A missing api_key is resolved later."""
    known = list(AUTH_MAP)
    unsupported = "Use one of dlt's auth types, or pass an auth instance."
    if value is None or not isinstance(value, (str, dict)):
        return  # auth instances are checked by dlt's validator
    kind = value if isinstance(value, str) else value.get("type", "bearer")
    if kind not in AUTH_MAP:
        where = path if isinstance(value, str) else join(path, "type")
        raise fail(where, f"unsupported auth type{did_you_mean(kind, known)}", f"one of {quoted(known)}",
                   unsupported)
    if isinstance(value, str):
        return
    skip = ("api_key",) if kind == "api_key" and value.get("api_key") in (None, "") else ()
    check_mapping(value, _config_typeddict(AUTH_MAP[kind], rt.AuthTypeConfig), path, secret=True, skip=skip)


def check_incremental(value: Any, path: str, spec: type = rt.IncrementalConfig) -> None:
    check_mapping(value, spec, path)
    if not value.get("cursor_path"):
        raise fail(join(path, "cursor_path"), "missing or empty",
                   "the path of the record field to track, e.g. 'updated_at'",
                   "Add 'cursor_path' naming the field whose last value is kept between loads.")


def check_endpoint(value: Any, path: str) -> None:
    if isinstance(value, str):
        return
    check_mapping(value, rt.Endpoint, path, extra=KIT_KEYS, skip=["auth", "headers", "params"])
    if value.get("data_selector") == "":
        raise fail(join(path, "data_selector"), "empty string",
                   "a JSON path to the records, e.g. 'data', or no data_selector at all",
                   "Remove data_selector to let dlt find the records, or name the key holding them.")
    selector = value.get("data_selector")
    if isinstance(selector, str):
        try:
            jsonpath.compile_path(selector)
        except Exception as error:  # noqa: BLE001 - jsonpath-ng's parser raises several kinds
            problem = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise fail(join(path, "data_selector"), f"not a valid JSON path ({problem})",
                       "a JSON path to the records, e.g. 'data' or 'results.items'",
                       "Write the path to the list of records in the response.") from None
    if value.get("paginator") is not None:
        check_paginator(value["paginator"], join(path, "paginator"))
    if value.get("auth") is not None:
        check_auth(value["auth"], join(path, "auth"))
    if value.get("incremental") is not None:
        check_incremental(value["incremental"], join(path, "incremental"))
    params = value.get("params")
    if isinstance(params, dict):
        for name, param in params.items():
            if isinstance(param, dict) and param.get("type") == "incremental":
                check_incremental(param, join(join(path, "params"), name), rt.IncrementalParamConfig)


def check_resource_base(value: Any, path: str, spec: type, extra: Iterable[str] = ()) -> None:
    check_mapping(value, spec, path, extra=extra)
    steps = value.get("processing_steps")
    if isinstance(steps, list):
        for i, step in enumerate(steps):
            check_mapping(step, rt.ProcessingSteps, join(join(path, "processing_steps"), i))
    columns = value.get("columns")
    if isinstance(columns, dict):  # lists, models and callables are left to dlt
        for name, column in columns.items():
            if isinstance(column, dict):
                check_mapping(column, TColumnSchema, join(join(path, "columns"), name), xkeys=True)
    if value.get("endpoint") is not None:
        check_endpoint(value["endpoint"], join(path, "endpoint"))


def check_client(value: Any) -> None:
    check_mapping(value, rt.ClientConfig, "client", extra=KIT_KEYS, skip=["auth", "headers"])
    url = value.get("base_url")
    expected = "an http(s) URL such as 'https://api.example.com'"
    if url is None:
        raise fail("client.base_url", "missing", expected, "Add client.base_url, the API's root URL.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise fail("client.base_url", f"got {got(url)}", expected,
                   "Start base_url with http:// or https:// followed by the host.")
    if value.get("auth") is not None:
        check_auth(value["auth"], "client.auth")
    if value.get("paginator") is not None:
        check_paginator(value["paginator"], "client.paginator")


def resource_name(resource: Any) -> Any:
    if isinstance(resource, DltResource):
        return resource.name
    return resource if isinstance(resource, str) else resource.get("name")


def check_shape(config: dict[str, Any]) -> None:
    """Raise ConfigError for the first problem in the config's shape (error_handler contents excepted)."""
    check_mapping(config, rt.RESTAPIConfig, "", skip=["client", "resources"], extra=[DESTINATION])
    if DESTINATION in config and not (isinstance(config[DESTINATION], str) and config[DESTINATION].strip()):
        raise fail(DESTINATION, f"got {got(config[DESTINATION])}", "a dlt destination name such as 'duckdb' or 'postgres'",
                   "Name the destination; its credentials go in dlt secrets, not here.")
    if "client" not in config:
        raise fail("client", "missing", "a dict with at least 'base_url'", "Add a 'client' block with base_url.")
    check_client(config["client"])
    if config.get("resource_defaults") is not None:
        check_resource_base(config["resource_defaults"], "resource_defaults", rt.EndpointResourceBase,
                            extra=KIT_KEYS)
    resources = config.get("resources")
    if resources is None:
        raise fail("resources", "missing", "a non-empty list of resources", "Add a 'resources' list.")
    if not isinstance(resources, list) or not resources:
        shown = "an empty list" if resources == [] else f"got {got(resources)}"
        raise fail("resources", shown, "a non-empty list of resource names or dicts",
                   "List at least one resource, e.g. {'name': 'events', 'endpoint': '/v1/events'}.")
    seen: dict[str, int] = {}
    for i, resource in enumerate(resources):
        path = join("resources", i)
        if isinstance(resource, dict):
            check_resource_base(resource, path, rt.EndpointResource)
            if "name" not in resource:
                raise fail(path, "missing 'name'", "a resource name, e.g. 'events'", "Add a 'name' to the resource.")
        elif not isinstance(resource, (str, DltResource)):
            raise fail(path, f"got {got(resource)}", "a resource name or a dict", "Use a string or a dict.")
        name = resource_name(resource)
        if not isinstance(name, str) or not name:
            where = join(path, "name") if isinstance(resource, dict) else path
            raise fail(where, f"got {got(name)}", "a non-empty string", "Give the resource a name.")
        if name in seen:
            raise fail(path, f"duplicate resource name '{name}' (also resources[{seen[name]}])",
                       "unique resource names", "Rename one of them; each name becomes a table.")
        seen[name] = i


# -- dlt's validator ---------------------------------------------------------------------------


def _mask(config: dict[str, Any]) -> dict[str, Any]:
    """A copy with credential values replaced by MASK (auth blocks, sensitive headers and params)."""
    masked = copy.deepcopy(config)
    for block, parent in iter_secret_slots(masked):
        for key in list(block):
            if isinstance(block[key], str) and is_secret_slot(parent, key):
                block[key] = MASK
    return masked


def _under(config: Any, keys: tuple[str, ...]) -> Iterator[tuple[Any, str]]:
    """(value, key) of every value stored under one of ``keys``, at any depth."""
    if isinstance(config, dict):
        for key, child in config.items():
            if key in keys:
                yield child, key
            yield from _under(child, keys)
    elif isinstance(config, list):
        for child in config:
            yield from _under(child, keys)


def iter_secret_slots(config: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """(dict, its key) of every auth, headers and params dict; tolerant of malformed configs."""
    return ((v, k) for v, k in _under(config, ("auth", "headers", "params")) if isinstance(v, dict))


def iter_auth_objects(config: Any) -> Iterator[Any]:
    """Auth instances (not dicts or shorthand strings) given under any ``auth`` key."""
    return (v for v, _ in _under(config, ("auth",)) if v is not None and not isinstance(v, (dict, str)))


def _dlt_path(path: str, field: str | None) -> str:
    parts = [p for p in path.split("/") if p not in (".", "")]
    if field:
        parts.append(field)
    return ".".join(parts).replace(".[", "[")


def _describe(hint: Any) -> str:
    if hint is None or is_typeddict(hint):  # dlt sets a union member here, not the failing field's type
        return "a value of the type dlt names"
    if is_literal_type(hint):
        return f"one of {quoted(get_literal_args(hint))}"
    if is_union_type(hint):
        return " or ".join(_describe(t) for t in extract_union_types(hint, no_none=True))
    return _EXPECTED.get(hint) or get_type_name(hint)


def validate_with_dlt(config: dict[str, Any]) -> None:
    """Run dlt's own validator (as ``rest_api_source`` does) on a masked copy; raise ConfigError."""
    failure: ConfigError | None = None
    try:
        validate_dict(rt.RESTAPIConfig, _mask(config), path=".")
    except DictValidationException as exc:
        deepest = exc
        while deepest.nested_exceptions:
            deepest = max(deepest.nested_exceptions, key=lambda e: e.path.count("/"))
        path = _dlt_path(deepest.path, deepest.field) or "config"
        hint = deepest.expected_type
        if re.search(r"(^|\.)(auth|headers|params)([.\[]|$)", path):
            detail = f"got {got(deepest.value, secret=True)}"  # dlt's text would show the value
        else:
            literal = is_literal_type(hint)
            detail = deepest.msg + (did_you_mean(deepest.value, map(str, get_literal_args(hint))) if literal else "")
        failure = ConfigError(f"rejected by dlt's rest_api validator: {detail}; "
                              f"expected {_describe(hint)}", path=path,
                              guidance="Fix the value as described; see dlt's rest_api documentation.")
    if failure is not None:
        # raised outside the except block: dlt's exception (and its frames) is not chained
        raise failure

