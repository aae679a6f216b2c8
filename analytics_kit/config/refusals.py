"""What dlt refuses while it builds the source, as a ``ConfigError`` with the place and the fix.

dlt alone decides whether a config builds; the kit does not repeat its rules. When
``rest_api_source`` raises (a ``resolve`` naming a missing parent, a path placeholder with no
param, two parents, resources that depend on each other, ...), ``explain`` finds where the
config says what dlt refused, from the exception and the config, and says how to fix it.
What it cannot place still becomes a ``ConfigError`` (at the resource dlt names, else at
``config``) with dlt's first line, secrets masked.

Example::

    try:
        source = rest_api_source(cfg, name="analytics")
    except Exception as error:
        failure = explain(error, cfg, redactor)
    raise failure  # outside the except block: dlt's exception is not chained
"""

from __future__ import annotations

import difflib
import graphlib
import re
from typing import Any, Callable, Iterator

from analytics_kit.errors import ConfigError

DOCS = "see dlt's rest_api documentation on resource relationships"
PLACEHOLDERS = ("Placeholders are {resources.<parent>.<field>}, {incremental.start_value} (with an incremental), "
                "or the name of a param in endpoint.params; write literal braces as {{ and }}.")
# endpoint keys whose strings may hold {placeholders}
_TEMPLATED = ("path", "params", "json", "data", "headers")


def built_source(config: dict[str, Any], secrets: tuple[str, ...], name: str) -> Any:
    """dlt's source for ``config`` (``prepare``'s rest_api part); what dlt still refuses after the kit's checks (a
    resolve naming a missing parent, a placeholder with no param, two parents, a cycle, ...) is a ConfigError naming
    the place in the config and the fix (``explain``), before any request, and so is what dlt builds and fails on
    once it pages (``first_request``). ``client.session`` never gets here: the kit's checks refuse it."""
    from dlt.sources.rest_api import rest_api_source

    from analytics_kit import seam
    from analytics_kit.config.first_request import check_placeholders
    from analytics_kit.redact import Redactor

    failure: ConfigError | None = None
    try:
        source = rest_api_source(config, name=name)
    except Exception as error:  # noqa: BLE001 - dlt raises ValueError, JsonPath and graph errors alike
        failure = explain(error, config, Redactor(secrets))
    if failure is not None:
        raise failure  # outside the except block: dlt's exception and its frames are not chained
    check_placeholders(config, filter(None, map(seam.resource_incremental, source.resources.values())))
    return source


def explain(error: BaseException, config: dict[str, Any], redact: Callable[[str], str]) -> ConfigError:
    """The ConfigError for what ``rest_api_source`` raised on ``config`` (the kit's copy)."""
    text = str(error)
    found = _explained(error, text, config)
    if found is not None:
        path, problem, guidance = found
        return ConfigError(redact(problem), path=path, guidance=redact(guidance))
    first = text.strip().splitlines()[0] if text.strip() else ""
    index = _resource_named(config, text)
    return ConfigError(
        redact(f"dlt's rest_api refused this config: {type(error).__name__}: {first[:300]}"),
        path=f"resources[{index}]" if index is not None else "config",
        guidance="Fix the part of the config the message names (paginator, params, resolve, JSON paths); "
        "see dlt's rest_api documentation.")


# -- the config's resources ------------------------------------------------------------------------


def _names(config: dict[str, Any]) -> list[Any]:
    out = []
    for resource in config.get("resources") or []:
        if isinstance(resource, str):
            out.append(resource)
        elif isinstance(resource, dict):
            out.append(resource.get("name"))
        else:
            out.append(getattr(resource, "name", None))
    return out


def _index(config: dict[str, Any], name: Any) -> int | None:
    names = _names(config)
    return names.index(name) if name in names else None


def _resource_named(config: dict[str, Any], text: str) -> int | None:
    """The index of the resource dlt's message names (`name` or 'name' after "resource")."""
    for match in re.finditer(r"[Rr]esource [`']([^`']+)[`']", text):
        index = _index(config, match.group(1))
        if index is not None:
            return index
    return None


def _endpoint(config: dict[str, Any], index: int) -> dict[str, Any]:
    resource = config["resources"][index]
    endpoint = resource.get("endpoint") if isinstance(resource, dict) else None
    if isinstance(endpoint, str):
        return {"path": endpoint}
    return endpoint if isinstance(endpoint, dict) else {}


def _endpoint_path(config: dict[str, Any], index: int) -> str:
    resource = config["resources"][index]
    endpoint = resource.get("endpoint") if isinstance(resource, dict) else None
    base = f"resources[{index}].endpoint"
    return base if isinstance(endpoint, str) else f"{base}.path"


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, string) of every string in ``value``, keys included, at any depth."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            sub = f"{path}.{key}"
            if isinstance(key, str):
                yield sub, key
            yield from _strings(child, sub)
    elif isinstance(value, (list, tuple)):
        for i, child in enumerate(value):
            yield from _strings(child, f"{path}[{i}]")


def templated(config: dict[str, Any]) -> Iterator[tuple[int | None, str, str]]:
    """(resource index or None for resource_defaults, path, string) of every string that may hold
    placeholders: endpoint path, params, json, data and headers."""
    defaults = (config.get("resource_defaults") or {}).get("endpoint")
    if isinstance(defaults, dict):
        for key in _TEMPLATED:
            if key in defaults:
                for path, text in _strings(defaults[key], f"resource_defaults.endpoint.{key}"):
                    yield None, path, text
    for index in range(len(config.get("resources") or [])):
        endpoint = _endpoint(config, index)
        for key in _TEMPLATED:
            if key in endpoint:
                where = _endpoint_path(config, index) if key == "path" else f"resources[{index}].endpoint.{key}"
                for path, text in _strings(endpoint[key], where):
                    yield index, path, text


def _holding(config: dict[str, Any], expression: str, index: int | None = None) -> str | None:
    """Where ``{expression...}`` is written (in resource ``index`` when given)."""
    for at, path, text in templated(config):
        if (index is None or at == index) and "{" + expression in text:
            return path
    return None


def _reference(config: dict[str, Any], index: int, parent: str) -> str:
    """Where resource ``index`` takes values from ``parent``: a resolve param or a placeholder."""
    for key, param in (_endpoint(config, index).get("params") or {}).items():
        if isinstance(param, dict) and param.get("type") == "resolve" and param.get("resource") == parent:
            return f"resources[{index}].endpoint.params.{key}.resource"
    return _holding(config, f"resources.{parent}.", index) or f"resources[{index}].endpoint"


def _did_you_mean(word: Any, choices: list[Any]) -> str:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices if c], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _param(text: str, pattern: str) -> str | None:
    found = re.search(pattern, text)
    return found.group(1) if found else None


# -- one explanation per kind of refusal -----------------------------------------------------------

Explained = tuple[str, str, str]  # path, problem, guidance


def _explained(error: BaseException, text: str, config: dict[str, Any]) -> Explained | None:
    if isinstance(error, graphlib.CycleError):
        return _cycle(error, config)
    if all(hasattr(error, a) for a in ("key", "value_received", "valid_values")):  # dlt's ValueErrorWithKnownValues
        return _bind_type(error, config)
    if isinstance(error, ValueError):
        for explainer in (_missing_parent, _unbound_placeholder, _unknown_context, _bad_expression,
                          _unbound_resolve, _two_parents, _no_parent, _path_binds_other, _two_incrementals,
                          _incremental_end, _paginator_needs_arguments):
            found = explainer(text, config)
            if found is not None:
                return found
    return None


def _cycle(error: graphlib.CycleError, config: dict[str, Any]) -> Explained | None:
    cycle = list(error.args[1]) if len(error.args) > 1 else []
    indexed = [(i, n) for n in cycle if (i := _index(config, n)) is not None]
    if not indexed:
        return None
    index, name = min(indexed)
    # each node in graphlib's cycle is a parent of the next: the one before ``name`` is its parent
    parent = cycle[cycle.index(name) - 1] if cycle.index(name) > 0 else cycle[-2]
    if parent == name:
        problem = f"resource '{name}' takes values from itself"
    else:
        links = ", ".join(f"'{child}' from '{source}'" for source, child in zip(cycle, cycle[1:]))
        problem = f"resources take values from each other in a cycle ({links})"
    return (_reference(config, index, parent), problem,
            f"A resource takes values from a parent, and the chain of parents must end at a resource that "
            f"depends on none. Remove the reference to resources.{parent} from '{name}', or the one that closes "
            f"the cycle; {DOCS}.")


def _missing_parent(text: str, config: dict[str, Any]) -> Explained | None:
    parent = _param(text, r"non existing parent resource `([^`]+)`")
    child = _param(text, r"dependent resource `([^`]+)`")
    index = _index(config, child)
    if parent is None or index is None:
        return None
    names = _names(config)
    return (_reference(config, index, parent),
            f"resource '{child}' takes values from '{parent}', which is not one of the resources"
            f"{_did_you_mean(parent, names)}",
            f"Name a resource listed in resources ({', '.join(repr(n) for n in names if n)}), "
            f"or add a resource named '{parent}'.")


def _unbound_placeholder(text: str, config: dict[str, Any]) -> Explained | None:
    name = _param(text, r"requires a param named '([^']+)'")
    index = _resource_named(config, text)
    if name is None or index is None:
        return None
    return (_endpoint_path(config, index), f"the placeholder {{{name}}} has no value: '{name}' is not in endpoint.params",
            f"Add '{name}' to endpoint.params (a value, or {{'type': 'resolve', 'resource': <parent>, 'field': "
            f"<field>}}), or write the placeholder as {{resources.<parent>.<field>}}.")


def _unknown_context(text: str, config: dict[str, Any]) -> Explained | None:
    name = _param(text, r"contains a placeholder `([^`]+)`\. This placeholder is not a valid name")
    index = _resource_named(config, text)
    if name is None or index is None:
        return None
    head = name.split(".")[0]
    return (_endpoint_path(config, index), f"the placeholder {{{name}}} names no context dlt knows"
            f"{_did_you_mean(head, ['resources', 'incremental'])}", PLACEHOLDERS)


def _bad_expression(text: str, config: dict[str, Any]) -> Explained | None:
    expression = _param(text, r"Expression `([^`]+)` defined in `\w+` is not valid")
    if expression is None:
        expression = _param(text, r"Invalid definition of `([^`]+)`")
        problem = "the placeholder {%s} does not name a field: expected {resources.<parent>.<field>}"
    else:
        problem = "the placeholder {%s} names no context dlt knows here" + _did_you_mean(
            expression.split(".")[0], ["resources", "incremental"])
    if expression is None:
        return None
    path = _holding(config, expression + "}") or _holding(config, expression)
    if path is None:
        return None
    return path, problem % expression, PLACEHOLDERS


def _unbound_resolve(text: str, config: dict[str, Any]) -> Explained | None:
    if "that are not bound in path" not in text:
        return None
    index = _resource_named(config, text)
    listed = re.findall(r"'([^']+)'", _param(text, r"resolve params `\[([^\]]*)\]`") or "")
    if index is None or not listed:
        return None
    name = listed[0]
    return (f"resources[{index}].endpoint.params.{name}",
            f"the resolve param '{name}' is not used in endpoint.path",
            f"Put {{{name}}} in endpoint.path, or, to send the parent's value as a query parameter, write "
            f"'{name}': '{{resources.<parent>.<field>}}' instead of the resolve dict.")


def _two_parents(text: str, config: dict[str, Any]) -> Explained | None:
    if "Multiple parent resources" not in text:
        return None
    index = _resource_named(config, text)
    if index is None:
        return None
    parents = sorted(set(re.findall(r"'resource': '([^']+)'", text)))
    return (f"resources[{index}].endpoint",
            f"the resource takes values from more than one parent ({', '.join(repr(p) for p in parents)})",
            "A resource takes values from one parent only. Take the values from one of them, e.g. by making it "
            f"a child of the other and using include_from_parent; {DOCS}.")


def _no_parent(text: str, config: dict[str, Any]) -> Explained | None:
    if "has `include_from_parent` but is not dependent" not in text:
        return None
    index = _resource_named(config, text)
    if index is None:
        return None
    return (f"resources[{index}].include_from_parent", "the resource has no parent to include fields from",
            "Remove include_from_parent, or make the resource a child: reference the parent in endpoint.path as "
            "{resources.<parent>.<field>} (or with a resolve param).")


def _path_binds_other(text: str, config: dict[str, Any]) -> Explained | None:
    name = _param(text, r"tries to bind param `([^`]+)` with type")
    index = _resource_named(config, text)
    if name is None or index is None:
        return None
    return (_endpoint_path(config, index), f"the placeholder {{{name}}} binds a param that is not a resolve param",
            "A path placeholder takes a plain value or a resolve param; for an incremental value write "
            "{incremental.start_value} with endpoint.incremental.")


def _two_incrementals(text: str, config: dict[str, Any]) -> Explained | None:
    if "Only a single incremental parameter" not in text:
        return None
    listed = re.findall(r"'([^']+)'", _param(text, r"Found parameters: `\[([^\]]*)\]`") or "")
    for index in range(len(config.get("resources") or [])):
        params = _endpoint(config, index).get("params") or {}
        if listed and all(name in params for name in listed):
            return (f"resources[{index}].endpoint.params",
                    f"more than one incremental param ({', '.join(repr(n) for n in listed)})",
                    "An endpoint has one incremental cursor: keep one incremental param, or move it to "
                    "endpoint.incremental.")
    return None


def _incremental_end(text: str, config: dict[str, Any]) -> Explained | None:
    name = _param(text, r"allowed in the configuration of param: `([^`]+)`")
    if name is None:
        return None
    for index in range(len(config.get("resources") or [])):
        if isinstance((_endpoint(config, index).get("params") or {}).get(name), dict):
            return (f"resources[{index}].endpoint.params.{name}",
                    "an incremental param takes only a start (cursor_path, initial_value), not an end",
                    "Move the incremental to endpoint.incremental, with start_param, end_param and end_value.")
    return None


def _paginator_needs_arguments(text: str, config: dict[str, Any]) -> Explained | None:
    name = _param(text, r"Paginator `([^`]+)` requires arguments")
    if name is None:
        return None
    for path, value in _paginators(config):
        if value == name:
            return (path, f"paginator type '{name}' needs arguments",
                    f"Write it as a dict, e.g. {{'type': '{name}', ...}} with its arguments.")
    return None


def _paginators(config: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(path, paginator) of every paginator the config sets."""
    yield "client.paginator", (config.get("client") or {}).get("paginator")
    defaults = (config.get("resource_defaults") or {}).get("endpoint")
    if isinstance(defaults, dict):
        yield "resource_defaults.endpoint.paginator", defaults.get("paginator")
    for index in range(len(config.get("resources") or [])):
        yield f"resources[{index}].endpoint.paginator", _endpoint(config, index).get("paginator")


def _bind_type(error: Any, config: dict[str, Any]) -> Explained | None:
    """A param dict whose ``type`` is neither of the bind types dlt lists in the error."""
    name = _param(str(error.key), r"^(.+)\['type'\]$")
    if name is None:
        return None
    for index in range(len(config.get("resources") or [])):
        param = (_endpoint(config, index).get("params") or {}).get(name)
        if isinstance(param, dict) and param.get("type") == error.value_received:
            known = list(error.valid_values)
            return (f"resources[{index}].endpoint.params.{name}.type",
                    f"unsupported param type {error.value_received!r}{_did_you_mean(error.value_received, known)}; "
                    f"expected one of {', '.join(repr(k) for k in known)}",
                    "A param given as a dict binds a value: 'resolve' (from a parent) or 'incremental' (a cursor).")
    return None
