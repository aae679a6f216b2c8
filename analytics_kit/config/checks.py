"""Shape checks of a rest_api config against dlt's own TypedDicts, with readable errors.

Allowed keys and leaf types come from ``dlt.sources.rest_api.typing`` (``get_type_hints``), paginator
and auth types from dlt's registries (``seam.paginator_types`` / ``auth_types``), read when a config is
checked: a dlt upgrade updates them, and types registered with dlt's ``register_paginator`` /
``register_auth`` are accepted. A registered type dlt has no TypedDict for is checked only as far as
its class tells (a paginator's constructor arguments); the rest is left to dlt. Paths are written
``resources[0].endpoint.paginator.limit``. Values inside auth blocks, headers and params are never
echoed: they may be secrets.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Iterable
from urllib.parse import urlsplit

from dlt.sources import DltResource
from dlt.sources.helpers.rest_client.auth import AuthConfigBase
from dlt.sources.rest_api import typing as rt

from analytics_kit import seam
from analytics_kit.config.first_request import check_answers, check_json_path
from analytics_kit.config.messages import EXPECTED, did_you_mean, fail, got, join, quoted
from analytics_kit.config.urls import check_url_shape, refuse_url_credentials, without_userinfo
from analytics_kit.fetch.transport import sendable
from analytics_kit.seam import (
    TColumnSchema,
    auth_types,
    extract_union_types,
    get_literal_args,
    is_literal_type,
    is_optional_type,
    is_union_type,
    paginator_types,
)

ERROR_HANDLER = "error_handler"
CONCURRENCY = "concurrency"  # the kit's: workers fetching offset pages at once
KIT_KEYS = [ERROR_HANDLER, CONCURRENCY]
DESTINATION = "destination"  # the kit's, top level: where loads go (a dlt destination name)
def allowed_keys(spec: type) -> dict[str, Any]:
    """Key -> type hint of a dlt TypedDict, resolved the way dlt's validator does."""
    # looked up at each call: a load keeps these hints (seam.memoise_typeddict_hints) once this module is imported
    return seam.get_type_hints(spec, globalns=sys.modules[spec.__module__].__dict__)


# -- leaf and mapping checks ---------------------------------------------------------------------

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
    if t not in EXPECTED:
        return
    ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
    if not ok:
        raise fail(path, f"got {got(value, secret)}", EXPECTED[t],
                   f"Write {EXPECTED[t]} here" + (" without quotes." if isinstance(value, str) else "."))


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
            offered = [k for k in allowed if k not in NOT_OFFERED.get(path, ())]  # keys the kit refuses as a rule
            raise fail(join(path, str(key)), f"unknown key '{key}'{did_you_mean(key, offered)}",
                       f"one of {quoted(offered)}", guidance)
    required = getattr(spec, "__required_keys__", frozenset())
    for key in sorted(required):
        if key not in value and not is_optional_type(hints[key]) and key not in skip:
            raise fail(path, f"missing required key '{key}'", f"'{key}' in this block", f"Add '{key}'.")
    for key, hint in hints.items():
        if key in value and key not in skip:
            check_leaf(value[key], hint, join(path, key), secret)
    return value


def _config_typeddict(cls: type) -> type | None:
    """dlt's ``<Class>Config`` TypedDict of one of its paginator or auth classes (case-insensitive
    name match); None for a class dlt has none for, such as a type registered by the user."""
    wanted = f"{cls.__name__}config".lower()
    for name, obj in vars(rt).items():
        if name.lower() == wanted and isinstance(obj, type):
            return obj
    return None


def _arguments(cls: type | None) -> tuple[list[str], list[str], bool]:
    """(argument names, those without a default, whether it takes **kwargs) of a paginator class."""
    params = inspect.signature(cls.__init__).parameters if cls is not None else {}
    named = [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return (named, [n for n in named if params[n].default is inspect.Parameter.empty],
            any(p.kind is p.VAR_KEYWORD for p in params.values()))


# -- blocks ------------------------------------------------------------------------------------


# Paginator numbers dlt takes without a word, and then pages nothing (limit 0) or skips
# records (a negative limit or offset).
_PAGINATOR_LEAST = {"limit": 1, "maximum_offset": 1, "maximum_page": 1, "offset": 0, "page": 0, "base_page": 0}


def check_paginator(value: Any, path: str) -> None:
    registry = paginator_types()  # dlt's, as it is now: registered types included
    known = list(registry)
    unsupported = ("Use one of dlt's paginator types, pass a paginator instance, or register your own "
                   "with dlt.sources.rest_api.config_setup.register_paginator.")
    if isinstance(value, str):
        if value not in registry:
            raise fail(path, f"unsupported paginator type {value!r}{did_you_mean(value, known)}",
                       f"one of {quoted(known)}", unsupported)
        needed = _arguments(registry[value])[1]
        if needed:
            raise fail(path, f"paginator type {value!r} needs arguments ({quoted(needed)})",
                       "a dict with 'type' and its arguments",
                       f"Write it as a dict, e.g. {{'type': {value!r}, {needed[0]!r}: ...}}.")
        return
    if not isinstance(value, dict):
        return  # a paginator instance; dlt's validator checks the class
    if "type" not in value:
        raise fail(path, "missing 'type'", f"one of {quoted(known)}", "Add 'type' to the paginator.")
    kind = value["type"]
    if not isinstance(kind, str) or kind not in registry:
        raise fail(join(path, "type"), f"unsupported paginator type {kind!r}{did_you_mean(kind, known)}",
                   f"one of {quoted(known)}", unsupported)
    cls = registry[kind]
    named, required, any_key = _arguments(cls)
    spec = rt.PaginatorTypeConfig if cls is None else _config_typeddict(cls)
    if spec is not None:
        check_mapping(value, spec, path)
    for key in value if spec is None and not any_key else ():  # registered by the user: its arguments
        if key != "type" and key not in named:
            raise fail(join(path, str(key)), f"unknown key '{key}'{did_you_mean(key, named)} for paginator type "
                       f"'{kind}'", f"one of {quoted(['type', *named])}", "Remove the key or rename it.")
    missing = [n for n in required if n not in value]
    if missing:
        raise fail(path, f"missing required key '{missing[0]}' for paginator type '{kind}'",
                   f"'{missing[0]}' in the paginator", f"Add '{missing[0]}' to the paginator.")
    if spec is None:
        return  # dlt's validator and the class check the rest
    annotations = inspect.signature(cls.__init__).parameters if cls is not None else {}
    for key in (k for k in value if k.endswith("_path")):
        if value[key] is not None and not isinstance(value[key], str):
            raise fail(join(path, key), f"got {got(value[key])}", "a JSON path as a string, or null",
                       "Write the path to the field in the response, e.g. 'total' or 'meta.total'.")
        if key in annotations and "jsonpath" in str(annotations[key].annotation).lower():  # a JSONPath, or dlt's alias
            check_json_path(value[key], join(path, key), "a JSON path, e.g. 'total' or 'meta.total'",
                            "Write the path to the field in the response.")
    for key, least in _PAGINATOR_LEAST.items():
        number = value.get(key)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < least):
            raise fail(join(path, key), f"got {got(number)}", f"an integer >= {least}",
                       "A page size and a maximum are at least 1; an offset or page number is not negative.")


def check_auth(value: Any, path: str) -> None:
    """Auth blocks: keys and types only; values are never shown.

    A field left out or set to None is resolved later from dlt secrets, as dlt does (an api_key
    given as "" too); one found nowhere is a MissingSecretError then. A type registered with dlt that has no TypedDict of dlt's is left to dlt.
    """
    registry = auth_types()  # dlt's, as it is now: registered types included
    known = list(registry)
    unsupported = ("Use one of dlt's auth types, pass an auth instance, or register your own "
                   "with dlt.sources.rest_api.config_setup.register_auth.")
    if value is None or isinstance(value, AuthConfigBase):
        return  # auth instances are checked by dlt's validator, and resolved as dlt resolves them
    if not isinstance(value, (str, dict)):
        raise fail(path, f"got {got(value, secret=True)}",
                   "an auth type name, a dict with 'type' and its fields, or an instance of a dlt auth class",
                   "dlt builds auth from these only (requests' own auth classes are not among them): use e.g. "
                   "{'type': 'http_basic', 'username': ..., 'password': ...}.")
    kind = value if isinstance(value, str) else value.get("type", "bearer")
    if not isinstance(kind, str) or kind not in registry:
        where = path if isinstance(value, str) else join(path, "type")
        raise fail(where, f"unsupported auth type{did_you_mean(kind, known)}", f"one of {quoted(known)}",
                   unsupported)
    spec = _config_typeddict(registry[kind])
    if isinstance(value, str) or spec is None:
        return
    # left out, None or "": dlt resolves it from its secrets, or says where it looked
    skip = [k for k, v in value.items() if v is None or (k == "api_key" and v == "")]
    skip += [k for k in getattr(spec, "__required_keys__", ()) if k not in value]
    check_mapping(value, spec, path, secret=True, skip=skip)


def check_incremental(value: Any, path: str, spec: type = rt.IncrementalConfig) -> None:
    # dlt still takes an incremental param's ``transform``, the deprecated name of ``convert`` (with a warning)
    check_mapping(value, spec, path, extra=("transform",) if spec is rt.IncrementalParamConfig else ())
    check_json_path(value.get("cursor_path"), join(path, "cursor_path"), "a JSON path to the cursor field, e.g. "
                    "'updated_at'", "Write the path to the field whose last value is kept between loads.")
    if not value.get("cursor_path"):
        raise fail(join(path, "cursor_path"), "missing or empty",
                   "the path of the record field to track, e.g. 'updated_at'",
                   "Add 'cursor_path' naming the field whose last value is kept between loads.")


def check_endpoint(value: Any, path: str) -> None:
    if isinstance(value, str):
        refuse_url_credentials(value, path)
        return
    check_mapping(value, rt.Endpoint, path, extra=KIT_KEYS, skip=["auth", "headers", "params"])
    refuse_url_credentials(value.get("path"), join(path, "path"))
    if isinstance(value.get("path"), str) and "://" in value["path"] and sendable(value["path"]) is None:
        raise fail(join(path, "path"), f"got {got(without_userinfo(value['path']))}", "a URL requests can send",
                   "Write its host as the API's documentation gives it (letters, digits, hyphens and dots).")
    if value.get("data_selector") == "":
        raise fail(join(path, "data_selector"), "empty string",
                   "a JSON path to the records, e.g. 'data', or no data_selector at all",
                   "Remove data_selector to let dlt find the records, or name the key holding them.")
    check_json_path(value.get("data_selector"), join(path, "data_selector"),
                    "a JSON path to the records, e.g. 'data' or 'results.items'",
                    "Write the path to the list of records in the response.")
    check_answers(value, path)
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
            elif isinstance(param, dict) and param.get("type") == "resolve":  # dlt's raw KeyError: 'field'
                for needed in ("resource", "field"):  # other keys dlt lets through (helper-140: "location")
                    if param.get(needed) is None:
                        raise fail(join(join(path, "params"), name), f"missing required key '{needed}'",
                                   f"'{needed}' in this block", f"Add '{needed}': the parent resource and its field.")
    refuse_none(value, path, {"path": "a path such as '/v1/events'", "params": "a dict of query parameters",
                              "json": "a dict (the request's JSON body)", "method": "an HTTP method such as 'GET'"})


def refuse_none(value: dict, path: str, expected: dict[str, str]) -> None:
    """Refuses null where dlt's rest_api would fail on it with a bare TypeError that names no place (helper-137): in
    a resource only, where nothing overrides it (dlt loads a resource that replaces resource_defaults' null)."""
    for key, what in expected.items() if path.startswith("resources") else ():
        if key in value and value[key] is None:
            raise fail(join(path, key), "got None", what, f"Write {what} here, or leave '{key}' out.")


def check_resource_base(value: Any, path: str, spec: type, extra: Iterable[str] = ()) -> None:
    check_mapping(value, spec, path, extra=extra)
    refuse_none(value, path, {"endpoint": "an endpoint (a path, or a dict with one)",
                              "processing_steps": "a list of steps such as {\"filter\": f} or {\"map\": f}"})
    if path == "resource_defaults" and isinstance(value.get("endpoint"), str):  # dlt's bare AssertionError
        raise fail("resource_defaults.endpoint", f"got {got(value['endpoint'])}", "a dict of endpoint settings",
                   "Give each resource its own path; resource_defaults.endpoint holds what they share (params, "
                   "paginator, data_selector ...).")
    steps = value.get("processing_steps")
    if isinstance(steps, list):
        for i, step in enumerate(steps):
            check_mapping(step, rt.ProcessingSteps, join(join(path, "processing_steps"), i))
            for kind, function in step.items() if path.startswith("resources") else ():  # a resource's list wins
                if not callable(function):
                    raise fail(join(join(join(path, "processing_steps"), i), kind), f"got {got(function)}",
                               "a function of a record", f"Give {kind} a function, e.g. lambda record: ...")
    columns = value.get("columns")
    if isinstance(columns, (str, list)) and not all(isinstance(c, dict) for c in columns):
        raise fail(join(path, "columns"), f"got {got(columns)}", "a dict of columns, each a dict of hints",
                   "Write columns as {\"name\": {\"data_type\": \"text\"}}, or a list of such dicts with a \"name\".")
    if isinstance(columns, dict):  # models and callables are left to dlt
        for name, column in columns.items():
            if column is None or isinstance(column, dict):
                check_mapping(column, TColumnSchema, join(join(path, "columns"), name), xkeys=True)
    if value.get("endpoint") is not None:
        check_endpoint(value["endpoint"], join(path, "endpoint"))


# Why the kit refuses ``client.session`` (its own session carries the retries, deadlines and
# origin guard), and what to set instead.
NOT_OFFERED = {"client": ("session",)}  # dlt's keys the kit refuses (SESSION_REFUSED): not offered as a spelling
SESSION_REFUSED = ("the kit sends every request through its own session (error_handler's retries, a deadline "
                   "per attempt, credentials kept on the API's origin), which a session here would replace")
SESSION_INSTEAD = ("Remove client.session. Set its timeout as error_handler.timeout (seconds for one whole "
                   "attempt), retries in error_handler, headers in client.headers; proxies and CA bundles come "
                   "from HTTPS_PROXY and REQUESTS_CA_BUNDLE, which the kit's session honours.")


def check_client(value: Any) -> None:
    check_mapping(value, rt.ClientConfig, "client", extra=KIT_KEYS, skip=["auth", "headers"])
    if value.get("session") is not None:
        raise fail("client.session", SESSION_REFUSED, "no session", SESSION_INSTEAD)
    url = value.get("base_url")
    expected = "an http(s) URL such as 'https://api.example.com'"
    if url is None:
        raise fail("client.base_url", "missing", expected, "Add client.base_url, the API's root URL.")
    refuse_url_credentials(url, "client.base_url")  # first: the next message shows the URL (helper-107)
    check_url_shape(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or sendable(url) is None:
        raise fail("client.base_url", f"got {got(without_userinfo(url))}", expected,
                   "Start base_url with http:// or https:// followed by the host, written as the API's documentation "
                   "gives it (a name of letters, digits, hyphens and dots, or an address).")
    if value.get("auth") is not None:
        check_auth(value["auth"], "client.auth")
    if value.get("paginator") is not None:
        check_paginator(value["paginator"], "client.paginator")


# dlt's and the kit's own tables: a resource loading into one paged the API, then failed on a NOT NULL constraint
# with "Fix the cause and run the load again" (helper-125)
BOOKKEEPING_PREFIXES = ("_dlt", "_analytics_kit")


def refuse_bookkeeping(resource: Any, name: str, path: str, defaults: Any) -> None:
    """Refuses a resource whose table is one of dlt's or the kit's, or whose write_disposition is dlt's "skip",
    which its load step refuses after every page was fetched (helper-125)."""
    table = resource.get("table_name", name) if isinstance(resource, dict) else name
    if isinstance(table, str) and table.strip().lower().startswith(BOOKKEEPING_PREFIXES):
        where = join(path, "table_name") if isinstance(resource, dict) and "table_name" in resource else path
        raise fail(where, f"table '{table}' is named like dlt's and the kit's own tables (_dlt..., "
                   "_analytics_kit...)", "a table name of your own",
                   "Give the resource another name, or a table_name of its own.")
    disposition = next((d for d in (resource.get("write_disposition") if isinstance(resource, dict) else None,
                                    defaults.get("write_disposition") if isinstance(defaults, dict) else None)
                        if d is not None), None)
    kind = disposition.get("disposition") if isinstance(disposition, dict) else disposition
    if kind == "skip":
        raise fail(join(path, "write_disposition") if isinstance(resource, dict) and resource.get("write_disposition")
                   else "resource_defaults.write_disposition", "'skip', which loads nothing: dlt's load step refuses "
                   "it once every page was fetched", "'merge', 'append' or 'replace'",
                   "Leave the resource out of the config, or set \"selected\": false on it, to skip it.")


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
        # dlt reads a resource's name as its path where it has no endpoint, and its table is named after it
        refuse_url_credentials(name, join(path, "name") if isinstance(resource, dict) else path)
        if not isinstance(name, str) or not name:
            where = join(path, "name") if isinstance(resource, dict) else path
            raise fail(where, f"got {got(name)}", "a non-empty string", "Give the resource a name.")
        if name in seen:
            raise fail(path, f"duplicate resource name '{name}' (also resources[{seen[name]}])",
                       "unique resource names", "Rename one of them; each name becomes a table.")
        seen[name] = i
        refuse_bookkeeping(resource, name, path, config.get("resource_defaults"))
    from analytics_kit.config.shared_tables import check_shared_tables  # it builds on this module's fail()

    check_shared_tables(resources, config.get("resource_defaults"))
