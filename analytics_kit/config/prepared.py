"""Validate the integration guide's config dict and split it into dlt config and retry policies.

Example (the guide's config, verbatim)::

    import dlt
    from analytics_kit.config.prepared import prepare

    prepared = prepare({
        "client": {"base_url": "https://api.example.com",
                   "auth": {"type": "api_key", "name": "api_key",
                            "api_key": dlt.secrets["api_key"], "location": "query"}},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [{"name": "resource_name", "endpoint": {
            "path": "/v1/resource", "data_selector": "data",
            "paginator": {"type": "offset", "limit": 100},
            "error_handler": {"retry_on_status_codes": [429, 500, 502, 503, 504],
                              "max_retries": 3, "backoff_factor": 2}}}],
    })
    prepared.rest_api                  # for dlt.sources.rest_api.rest_api_source
    prepared.policies["resource_name"]  # RetryPolicy(max_retries=3, backoff_factor=2.0, ...)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import dlt
from dlt.sources.helpers.rest_client.paginators import BasePaginator

from analytics_kit.config import checks as checks
from analytics_kit.config import credentials
from analytics_kit.config.columns import check_cursor_starts, unshare_hints
from analytics_kit.config.decimals import wei_shape
from analytics_kit.config.dlt_validation import validate_with_dlt
from analytics_kit.config.layouts import add_as_written
from analytics_kit.config.guide import SOURCE_NAME
from analytics_kit.config.secret_slots import is_secret_slot, iter_auth_objects, iter_secret_slots, iter_url_secrets
from analytics_kit.errors import ConfigError, KitError, secret_safe
from analytics_kit.fetch.retry import RetryPolicy
from analytics_kit.fetch.transport import origin
from analytics_kit.redact import Redactor

__all__ = ["PreparedConfig", "prepare"]

# error_handler key -> RetryPolicy field
_HANDLER_FIELDS = {
    "retry_on_status_codes": "status_codes",
    "max_retries": "max_retries",
    "backoff_factor": "backoff_factor",
    "max_retry_delay": "max_delay",
    "timeout": "timeout",
}
MAX_RETRIES = 100  # each a wait of its own: more is no policy but a loop
# A day: longer waits or timeouts are mistakes, and beyond what time functions take.
MAX_SECONDS = 86_400
# Workers fetching a resource's offset pages at once: the default, and the most a config may set.
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64


@dataclass(frozen=True)
class PreparedConfig:
    """A validated config: dlt's part, retry policies per resource, and the secrets to redact."""

    rest_api: dict[str, Any] = field(repr=False)
    policies: dict[str, RetryPolicy]
    default_policy: RetryPolicy
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # resource -> workers fetching its offset pages at once, where the config sets it
    concurrency: dict[str, int] = field(default_factory=dict)
    # where loads go, if the config names it (load's destination argument wins)
    destination: str | None = None
    # scheme://host:port of base_url and of endpoint paths written as full URLs: the only
    # places the kit sends requests (and credentials) to
    origins: tuple[str, ...] = ()
    # a wei column's (precision, scale) where the load goes, if known: its values are rounded to it
    wei: tuple[int, int] | None = None
    # where the declared types must fit: load's destination, else the config's (None: the DuckDB file)
    loads_to: str | None = None


def _copied(value: Any, path: str = "") -> Any:
    """The config's dicts and lists copied, an auth or paginator instance as it is, as dlt clones a resource: a deep
    copy of an ``OAuth2ClientCredentials`` copied its requests session without dlt's ``timeout``, and every load of
    it failed (helper-110). An ``Incremental`` is copied: the kit writes its bounds in its own form (helper-111); and
    a paginator: it keeps its place in the listing, and two loads in threads sharing one lost rows (helper-112)."""
    if isinstance(value, dict):
        return {key: _copied(item, checks.join(path, str(key))) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item, checks.join(path, number)) for number, item in enumerate(value)]
    if isinstance(value, (dlt.sources.incremental, BasePaginator)):
        try:
            return copy.deepcopy(value)
        except Exception as error:  # noqa: BLE001 - a lock, an open file, a generator: a raw TypeError escaped
            raise ConfigError(f"this {type(value).__name__} cannot be copied ({type(error).__name__}: {error}); "
                              "each load needs one of its own", path=path,
                              guidance="Give it as a dict (its type and fields), or keep locks, open files and "
                              "generators out of its attributes.") from None
    return value


@secret_safe
def prepare(config: dict[str, Any], *, name: str = SOURCE_NAME, destination: str | None = None) -> PreparedConfig:
    """Validate ``config`` (never mutated) and translate it; raise ConfigError or MissingSecretError.
    ``destination``: where the load goes, if not where the config says (its declared types must fit there).

    Auth fields the config leaves out are resolved as dlt resolves them for a source called
    ``name`` (see ``credentials``); every secret found is in ``secrets``.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"got {type(config).__name__}; expected a dict with 'client' and 'resources'",
                          path="config", guidance="Pass the config as a dict, as in the integration guide.")
    cfg = _copied(config, "")
    found: list[str] = []  # secrets dlt resolved from its providers (or API_KEY)
    failure: KitError | None = None
    try:
        checks.check_shape(cfg)
        named = cfg.pop(checks.DESTINATION, None)
        unshare_hints(cfg)
        default_policy, policies = _extract_policies(cfg)
        concurrency = _extract_concurrency(cfg)
        # secrets first: a field dlt finds there (a password in CREDENTIALS__PASSWORD) may be left
        # out of the dict, and one found nowhere is a MissingSecretError naming where to set it
        credentials.resolve(cfg, name, found)
        validate_with_dlt(cfg)
        check_cursor_starts(cfg)
        add_as_written(cfg)  # after dlt's checks: the config as the user wrote it is what they judge
    except KitError as exc:
        failure = _redacted(exc, _collect_secrets(cfg, found))
    if failure is not None:
        # Raised from here, outside the except block and with this frame's copy of the
        # config (its key resolved from the environment) gone: a traceback printed with
        # its local variables must not show the key.
        del cfg, found
        raise failure
    return PreparedConfig(rest_api=cfg, policies=policies, default_policy=default_policy,
                          secrets=_collect_secrets(cfg, found), concurrency=concurrency, destination=named,
                          origins=_origins(cfg), wei=wei_shape(destination or named),
                          loads_to=destination or named)


def _origins(cfg: dict[str, Any]) -> tuple[str, ...]:
    """The origins of base_url and of every endpoint path that is a full URL."""
    found = {origin(cfg["client"]["base_url"])}
    defaults = cfg.get("resource_defaults") or {}
    endpoints = [defaults.get("endpoint")] + [r.get("endpoint") for r in cfg["resources"] if isinstance(r, dict)]
    for endpoint in endpoints:
        path = endpoint.get("path") if isinstance(endpoint, dict) else endpoint
        if isinstance(path, str) and "://" in path:
            found.add(origin(path))
    return tuple(sorted(found))


# -- concurrency -------------------------------------------------------------------------------


def check_concurrency(value: Any, path: str) -> int:
    """``value`` if it is a worker count from 1 to MAX_CONCURRENCY, else ConfigError at ``path``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise checks.fail(path, f"got {checks.got(value)}", f"an integer from 1 to {MAX_CONCURRENCY}",
                          "Set how many pages are fetched at once, e.g. 8; 1 fetches one after another.")
    return value


def _pop_concurrency(block: Any, path: str) -> int | None:
    if not isinstance(block, dict) or checks.CONCURRENCY not in block:
        return None
    return check_concurrency(block.pop(checks.CONCURRENCY), checks.join(path, checks.CONCURRENCY))


def _extract_concurrency(cfg: dict[str, Any]) -> dict[str, int]:
    """Remove every ``concurrency`` key; endpoint > defaults.endpoint > defaults > client."""
    defaults = cfg.get("resource_defaults") or {}
    base = None
    for block, path in ((cfg["client"], "client"), (defaults, "resource_defaults"),
                        (defaults.get("endpoint"), "resource_defaults.endpoint")):
        found = _pop_concurrency(block, path)
        base = found if found is not None else base
    out = {}
    for i, resource in enumerate(cfg["resources"]):
        own = _pop_concurrency(resource.get("endpoint"), f"resources[{i}].endpoint") if isinstance(resource, dict) else None
        value = own if own is not None else base
        if value is not None:
            out[checks.resource_name(resource)] = value
    return out


# -- error_handler -----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def policy_fields(block: Any, path: str) -> dict[str, Any]:
    """RetryPolicy keyword arguments for the fields set in one error_handler block."""
    if block is None:
        return {}
    allowed = list(_HANDLER_FIELDS)
    checks.check_mapping(block, dict, path, extra=allowed)  # `dict` has no hints: only our keys are allowed
    out: dict[str, Any] = {}
    if "retry_on_status_codes" in block:
        codes, p = block["retry_on_status_codes"], checks.join(path, "retry_on_status_codes")
        if not isinstance(codes, (list, tuple)):
            raise checks.fail(p, f"got {checks.got(codes)}", "a list of HTTP status codes, e.g. [429, 503]",
                              "Write the codes as a list of integers.")
        for i, code in enumerate(codes):
            if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
                # a 200 here retried every page that came back (helper-125)
                raise checks.fail(checks.join(p, i), f"got {checks.got(code)}",
                                  "an integer HTTP error status code between 400 and 599",
                                  "Use error status codes such as 429 or 503, without quotes: a 2xx answer is the "
                                  "data, and a 3xx one a redirect, which requests follows.")
        out["status_codes"] = tuple(sorted(set(codes)))
    if "max_retries" in block:
        value = block["max_retries"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise checks.fail(checks.join(path, "max_retries"), f"got {checks.got(value)}",
                              "an integer >= 0", "Set max_retries to 0 (no retries) or more, e.g. 3.")
        if value > MAX_RETRIES:  # 10**9 was taken, and the waits' schedule failed as a bare OverflowError (helper-126)
            raise checks.fail(checks.join(path, "max_retries"), f"got {value:,}", f"at most {MAX_RETRIES}",
                              "Set max_retries to a number of retries a load can wait for, e.g. 3.")
        out["max_retries"] = value
    for key, zero_ok, fix in _SECONDS:
        if key in block:
            out[_HANDLER_FIELDS[key]] = _seconds(block[key], checks.join(path, key), zero_ok, fix)
    return out


# error_handler keys holding seconds: whether 0 is allowed, and the fix for a wrong value
_SECONDS = (
    ("backoff_factor", True, "Write a number without quotes, e.g. 2."),
    ("max_retry_delay", False, "Set the longest single wait in seconds, e.g. 60."),
    ("timeout", False, "Set how long one attempt may take in all, connecting and reading, e.g. 20."),
)


def _seconds(value: Any, path: str, zero_ok: bool, fix: str) -> float:
    if not _is_number(value) or not (0 <= value if zero_ok else 0 < value) or value > MAX_SECONDS:
        raise checks.fail(path, f"got {checks.got(value)}",
                          f"a number {'>=' if zero_ok else '>'} 0 (seconds), at most {MAX_SECONDS:,}", fix)
    return float(value)


def _pop_handler(block: Any, path: str) -> dict[str, Any]:
    if not isinstance(block, dict) or checks.ERROR_HANDLER not in block:
        return {}
    return policy_fields(block.pop(checks.ERROR_HANDLER), checks.join(path, checks.ERROR_HANDLER))


def _extract_policies(cfg: dict[str, Any]) -> tuple[RetryPolicy, dict[str, RetryPolicy]]:
    """Remove every error_handler; merge fields endpoint > defaults.endpoint > defaults > client."""
    defaults = cfg.get("resource_defaults") or {}
    base = _pop_handler(cfg["client"], "client")
    base.update(_pop_handler(defaults, "resource_defaults"))
    base.update(_pop_handler(defaults.get("endpoint"), "resource_defaults.endpoint"))
    policies = {}
    for i, resource in enumerate(cfg["resources"]):
        own: dict[str, Any] = {}
        if isinstance(resource, dict):
            own = _pop_handler(resource.get("endpoint"), f"resources[{i}].endpoint")
        policies[checks.resource_name(resource)] = RetryPolicy(**{**base, **own})
    return RetryPolicy(**base), policies


# -- secrets -----------------------------------------------------------------------------------


def _collect_secrets(cfg: Any, resolved: Iterable[str] = ()) -> tuple[str, ...]:
    """Credential values in auth blocks and sensitive headers/params, and those dlt resolved
    from its secrets (``resolved``); works on malformed configs."""
    found: list[str] = []
    for block, parent in iter_secret_slots(cfg):
        for key, value in block.items():
            if is_secret_slot(parent, key) and isinstance(value, str) and value:
                found.append(value)
    found.extend(iter_url_secrets(cfg))
    for auth in iter_auth_objects(cfg):
        found.extend(credentials.auth_secrets(auth))
    found.extend(resolved)
    return tuple(dict.fromkeys(found))


def _redacted(exc: KitError, secrets: tuple[str, ...]) -> KitError:
    """``exc`` detached from its frames; should a secret have reached its text, masked. Those the process knows
    (``API_KEY``, ``.dlt/secrets.toml``), which a check before they are resolved may quote, are masked where the
    public entry points raise it (``errors.secret_safe``)."""
    return exc.redacted(Redactor(secrets))


def pages_changed(config: dict[str, Any], name: str) -> bool:
    """Whether the resource's response_actions hold a function, which may take records out of a page; not one that
    ignores a status (a 404 action blamed an API's cap on itself: helper-150)."""
    defaults = (config.get("resource_defaults") or {}).get("endpoint")
    for resource in config.get("resources") or []:
        if isinstance(resource, dict) and resource.get("name") == name:
            endpoint = resource.get("endpoint") if isinstance(resource.get("endpoint"), dict) else {}
            actions = endpoint.get("response_actions", (defaults or {}).get("response_actions")
                                   if isinstance(defaults, dict) else None) or []
            return any(callable(a) or isinstance(a, dict) and callable(a.get("action")) for a in actions)
    return False
