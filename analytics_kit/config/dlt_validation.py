"""dlt's own rest_api validator, run on a masked copy of the config, its error made readable."""

from __future__ import annotations

import copy
import re
from typing import Any

from dlt.sources.rest_api import typing as rt

from analytics_kit.config.checks import EXPECTED, did_you_mean, got, quoted
from analytics_kit.config.secret_slots import is_secret_slot, iter_secret_slots
from analytics_kit.errors import ConfigError
from analytics_kit.redact import MASK
from analytics_kit.seam import (
    DictValidationException,
    extract_union_types,
    get_literal_args,
    get_type_name,
    is_literal_type,
    is_typeddict,
    is_union_type,
    validate_dict,
)


PARTIAL_AUTH = ("dlt checks an auth dict as it is written, before it looks in dlt secrets: one that gives some of "
                "the credentials its type requires must give them all (http_basic: its username and its password). "
                "Write every field into the dict, or leave the credentials out of it to take them all from dlt "
                "secrets.")


def _mask(config: dict[str, Any]) -> dict[str, Any]:
    """A copy with credential values replaced by MASK (auth blocks, sensitive headers and params).

    A credential left None in an auth block is masked too, as dlt's own validation masks it:
    dlt resolves it from its secrets later.
    """
    masked = copy.deepcopy(config)
    for block, parent in iter_secret_slots(masked):
        for key in list(block):
            value = block[key]
            if is_secret_slot(parent, key) and (isinstance(value, str) or (value is None and parent == "auth")):
                block[key] = MASK
    return masked


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
    return EXPECTED.get(hint) or get_type_name(hint)


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
        guidance = "Fix the value as described; see dlt's rest_api documentation."
        auth = _at(config, path) if path.endswith("auth") else None
        unset = unfillable(auth)
        if unset:
            # a None elsewhere (an OAuth access_token_url) was refused as "a value of type NoneType", with advice
            # about http_basic (helper-56)
            path, detail = f"{path}.{unset[0]}", f"{unset[0]} is None, and dlt fills only credentials from its secrets"
            guidance = f"Write {unset[0]} into the auth dict."
        elif _partial_auth(auth):
            # what dlt refuses is the dict as written; the kit's own advice (set the missing field in dlt
            # secrets) led here (helper-52)
            guidance = PARTIAL_AUTH
        failure = ConfigError(f"rejected by dlt's rest_api validator: {detail}; "
                              f"expected {_describe(hint)}", path=path, guidance=guidance)
    if failure is not None:
        # raised outside the except block: dlt's exception (and its frames) is not chained
        raise failure


def _at(config: Any, path: str) -> Any:
    """The value at a kit path such as ``resources[0].endpoint.auth``, or None."""
    value = config
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _partial_auth(auth: Any) -> bool:
    """An auth dict with a type and some credentials, that one of dlt's auth shapes would take with the rest
    given: a required field left out, or one left None."""
    if not isinstance(auth, dict) or not any(v is not None for k, v in auth.items() if k != "type"):
        return False
    return any(value is None for value in auth.values()) or bool(missing_required(auth))


def unfillable(auth: Any) -> list[str]:
    """The fields of an auth dict left None that are no credentials: dlt fills only credentials from its secrets,
    and its validator refuses the rest as None."""
    return [k for k, v in auth.items() if v is None and not is_secret_slot("auth", k)] if isinstance(auth, dict) else []


def missing_required(auth: Any) -> list[str]:
    """The fields an auth dict with a type and some credentials leaves out that the one of dlt's auth shapes its
    fields fit requires (an http_basic username without its password); [] where a shape takes it as it is. dlt
    refuses such a dict as written, whatever its secrets hold."""
    if not isinstance(auth, dict) or not isinstance(auth.get("type"), str):
        return []
    given = set(auth) - {"type"}  # a field left None is there: dlt fills it from its secrets
    fits = [shape for shape in extract_union_types(rt.AuthConfig)
            if is_typeddict(shape) and given <= set(shape.__annotations__)]
    lacking = [sorted(shape.__required_keys__ - {"type"} - given) for shape in fits]
    return [] if not given or not lacking or [] in lacking else lacking[0]
