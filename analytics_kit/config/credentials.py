"""Auth blocks resolved the way dlt resolves them, with ``API_KEY`` only where dlt finds nothing.

dlt builds each resource's authenticator with ``create_auth`` inside its source's config
sections, so a field the config leaves out (or sets to None) is looked up in dlt secrets:
``sources.rest_api.<name>.credentials``, ``sources.<name>.credentials``, ``credentials``, ...
(``SOURCES__ANALYTICS__CREDENTIALS__API_KEY``, ``CREDENTIALS__API_KEY`` as environment
variables). The kit runs that same function in those same sections (a throwaway dlt source of
the same section and name), before any request, so that

- whatever dlt finds is what the kit uses, every field of it (a ``name`` or ``location`` set in
  secrets included), and every secret it found is known to the kit's redactor;
- only when dlt finds no ``api_key`` for an ``api_key`` auth does the kit take the env
  ``API_KEY`` (or ``api_key`` at the top of ``.dlt/secrets.toml``), keeping the other fields dlt
  found; otherwise a credential set nowhere is a ``MissingSecretError`` naming dlt's places;
- an api_key auth dlt cannot send (``location: cookie`` raises ``NotImplementedError`` in dlt
  1.31 on the first request) is refused now, found by trying it on a request that is never sent.

Example::

    found: list[str] = []
    resolve(cfg, "analytics", found)  # cfg: the kit's copy of the config, completed in place;
                                      # found: every secret value dlt (or API_KEY) supplied
"""

from __future__ import annotations

import unicodedata
from typing import Any, Callable, get_args

import dlt
import requests
from dlt.sources.helpers.rest_client.auth import APIKeyAuth, TApiKeyLocation
from dlt.sources.rest_api import SENSITIVE_KEYS, rest_api
from dlt.sources.rest_api.config_setup import create_auth

from analytics_kit import seam
from analytics_kit.config.dlt_validation import PARTIAL_AUTH, missing_required, unfillable
from analytics_kit.errors import ConfigError, MissingSecretError

SET_API_KEY = 'set the API_KEY environment variable, or add api_key = "..." to .dlt/secrets.toml'


def auth_blocks(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, the dict holding it under "auth") of each auth block a resource is built with.

    As rest_api picks it: the resource's endpoint auth, else resource_defaults.endpoint's
    (merged into the endpoint), else the client's; an explicit None means no auth.
    """
    client = cfg["client"]
    defaults = (cfg.get("resource_defaults") or {}).get("endpoint")
    defaults = defaults if isinstance(defaults, dict) else {}
    found: dict[str, dict[str, Any]] = {}
    for i, resource in enumerate(cfg["resources"]):
        if isinstance(resource, str):
            endpoint: Any = {}
        elif isinstance(resource, dict):
            endpoint = resource.get("endpoint") or {}
        else:
            continue  # a DltResource: no client of rest_api's
        if isinstance(endpoint, dict) and "auth" in endpoint:
            path, holder = f"resources[{i}].endpoint.auth", endpoint
        elif "auth" in defaults:
            path, holder = "resource_defaults.endpoint.auth", defaults
        else:
            path, holder = "client.auth", client
        if holder.get("auth") is not None:
            found.setdefault(path, holder)
    return list(found.items())


def resolve(cfg: dict[str, Any], name: str, secrets: list[str]) -> None:
    """Resolves every auth block of ``cfg`` as dlt will for source ``name``; appends the secret
    values found to ``secrets`` (also when it raises, so the caller can mask them)."""
    blocks = auth_blocks(cfg)
    for _, holder in blocks:
        auth = holder["auth"]
        if isinstance(auth, dict) and auth.get("type") == "api_key" and auth.get("api_key") == "":
            auth["api_key"] = None  # the kit's reading: "" is no key, as None is
    outcomes = _in_dlt_sections([holder["auth"] for _, holder in blocks], name)
    for (path, holder), (auth, error) in zip(blocks, outcomes):
        missing = seam.missing_fields(error) if error is not None else None
        unset = unfillable(holder["auth"])
        if unset:  # asking dlt's secrets for it would not help: its validator refuses the None (helper-56)
            raise ConfigError(f"{unset[0]} is None, and dlt fills only credentials from its secrets",
                              path=f"{path}.{unset[0]}", guidance=f"Write {unset[0]} into the auth dict.")
        lacking = missing_required(holder["auth"])
        if lacking:
            # setting the field in dlt secrets would not help: dlt's validator refuses the dict as written (helper-54)
            raise ConfigError(f"the auth dict gives some credentials but not {' or '.join(lacking)}", path=path,
                              guidance=PARTIAL_AUTH)
        if missing is not None:
            auth = holder["auth"] = _fallback(path, missing, name, secrets)  # resolved: dlt uses it as it is
        elif error is not None:
            first = (str(error).strip().splitlines() or [""])[0][:200]
            in_config = type(error).__name__ == "ValueNotSecretException"  # a secret in config.toml (helper-149)
            raise ConfigError(
                f"dlt could not build this authenticator ({type(error).__name__}: {first})", path=path,
                guidance="Move the credentials from .dlt/config.toml to .dlt/secrets.toml (same section): dlt reads "
                "secrets from there only." if in_config else "Give the auth as a dict with 'type' and its fields, a "
                "type name, or an auth instance; see dlt's rest_api documentation on authentication.")
        secrets.extend(auth_secrets(auth))
        _check_sendable(path, auth, cfg["client"]["base_url"])
        _check_secret_text(path, auth)


def _check_secret_text(path: str, auth: Any) -> None:
    """Refuses a secret with a space or line break at an end, a control character, or (sent in a header) a character
    no header carries, naming the field, never the value: a key read from a file with its newline was sent and
    rejected as a wrong key (401), or failed as "Invalid header value b'***'" after the API was asked (helper-125)."""
    in_header = not isinstance(auth, APIKeyAuth) or auth.location != "query"
    for key in dict.fromkeys([*SENSITIVE_KEYS, *seam.secret_fields(type(auth))]):
        value = getattr(auth, key, None)
        if not isinstance(value, str) or not value:
            continue
        if value != value.strip():
            fault = "starts or ends with a space or a line break"
        elif any(ord(c) < 32 or ord(c) == 127 for c in value) or not value.isascii() and any(
                unicodedata.category(c) in _UNSEEN or c in _BLANK_LETTERS for c in value):
            # C1 controls and invisible ones (a zero-width space, a byte-order mark) too (helper-126)
            fault = "holds a control or invisible character (a line break, a tab, a zero-width space)"
        elif in_header and not value.isascii() and not _latin1(value):  # requests encodes Basic's password so too
            fault = "holds characters an HTTP header cannot carry (beyond Latin-1)"
        else:
            continue
        raise ConfigError(f"the {key} {fault}", path=f"{path}.{key}",
                          guidance="Check how the secret was copied (an environment variable or a file may keep a "
                          "trailing newline) and remove what is not part of it; it is not shown here.")


# controls, invisible formatting, lone surrogates (a raw UnicodeEncodeError, helper-128), line and paragraph
# separators; and letters and marks that show as nothing (Hangul fillers, a blank braille cell, joiners, selectors)
_UNSEEN = ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\ufe0e\ufe0f")


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def auth_secrets(auth: Any) -> list[str]:
    """Values of an authenticator's secret fields (typed as secrets, or named like dlt's)."""
    values = (getattr(auth, key, None) for key in dict.fromkeys([*SENSITIVE_KEYS, *seam.secret_fields(type(auth))]))
    return [value for value in values if isinstance(value, str) and value]


def _in_dlt_sections(auths: list[Any], name: str) -> list[tuple[Any, BaseException | None]]:
    """(authenticator, None) or (None, what dlt raised) for each auth, built by dlt's ``create_auth``
    in the config sections of a rest_api source called ``name`` (those of the running pipeline too)."""
    outcomes: list[tuple[Any, BaseException | None]] = []
    if not auths:
        return outcomes

    def probe() -> list:
        for auth in auths:
            try:
                outcomes.append((create_auth(auth), None))
            except Exception as error:  # noqa: BLE001 - explained by the caller, outside this block
                outcomes.append((None, error))
        return []

    # ``rest_api.ref.section`` is the section rest_api_source puts its sources in ("rest_api")
    refused = None
    try:
        dlt.source(probe, name=name, section=rest_api.ref.section)()
    except Exception as error:  # noqa: BLE001 - dlt refuses the source name itself
        if unreadable := seam.unreadable_config_file(error):  # read as "dlt refuses this source name" (helper-131)
            raise unreadable_secrets(*unreadable) from None
        refused = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
    if refused is not None and name.isidentifier() and name == name.lower():
        # not the name: dlt's settings, read as it starts a source ([runtime] log_level = "verbose": helper-149)
        level = "Unknown level" in refused
        raise ConfigError(f"dlt refuses its own settings as it starts the source ({refused})",
                          path="dlt settings (runtime.log_level)" if level else "dlt settings",
                          guidance="Check dlt's settings in .dlt/config.toml, .dlt/secrets.toml and the environment "
                          "(RUNTIME__*, ...): " + ("log_level takes DEBUG, INFO, WARNING, ERROR or CRITICAL." if level
                                                   else "the value the message names is not one dlt takes."))
    if refused is not None:
        raise ConfigError(f"dlt refuses this source name ({refused})", path="name",
                          guidance="Name the source with a snake_case Python identifier, e.g. 'analytics'.")
    return outcomes


def unreadable_secrets(paths: str, words: str) -> ConfigError:
    """The error for a dlt config or secrets file that dlt cannot parse (its words say where)."""
    return ConfigError(f"dlt cannot read its secrets or config file ({paths}): {words}", path="dlt secrets",
                       guidance="Fix the file: TOML wants text in quotes (api_key = \"...\"), one key = value a line, "
                       "sections as [sources.analytics.credentials]. dlt reads the file once a process: in a notebook "
                       "already running, restart the kernel after fixing it.")


def _fallback(path: str, missing: tuple[Any, list[str], dict[str, list]], name: str, secrets: list[str]) -> Any:
    """The partly resolved api_key auth, its key from ``API_KEY``; else MissingSecretError.

    ``missing``: the spec dlt partly resolved, the fields it found nowhere, and where it looked.
    """
    partial, fields, traces = missing
    if isinstance(partial, APIKeyAuth) and fields == ["api_key"]:
        value = dlt.secrets.get("api_key")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value:
            secrets.append(value)
            partial.api_key = value  # the fields dlt found (name, location) stay as they are
            return partial.resolve()
        placed = (dlt.secrets.get(key) for key in ("api_key", f"sources.{name}.api_key",
                                                   f"sources.{name}.credentials.api_key"))
        value = next((v for v in placed if v is not None and not isinstance(v, (str, int))), None)
        if value is not None:  # a list or a table where the key goes, read as "no API key ... none" (helper-149)
            raise MissingSecretError(f"the API key in dlt secrets is a {type(value).__name__}, not text",
                                     path=f"{path}.api_key", guidance="Write it as text in quotes: api_key = \"...\" "
                                     "in .dlt/secrets.toml (or set API_KEY).")
    raise _missing(path, partial, fields[0], traces.get(fields[0], []), name)


def _missing(path: str, spec: Any, key: str, traces: list, name: str) -> ConfigError:
    """MissingSecretError (ConfigError for a field that is no secret) naming where dlt looked."""
    if isinstance(spec, APIKeyAuth) and key == "api_key":
        # as notebook 1 shows it; dlt's own places for the key are in the README
        # dlt reads secrets.toml once a process: the same error came back after the file was written (helper-125)
        return MissingSecretError(
            f"no API key in the config and none in dlt secrets; {SET_API_KEY}", path=f"{path}.api_key",
            guidance="export API_KEY=... before starting Python, or put api_key = \"...\" "
                     "in .dlt/secrets.toml in the working folder. dlt reads that file once a process: in a notebook "
                     "already running, restart the kernel after writing it, or set os.environ[\"API_KEY\"].")
    # dlt tried environment variables from the most specific (pipeline, sources.rest_api.<name>)
    # to the least (CREDENTIALS__<KEY>): name the shortest under the source's name, and the last
    env = [t for t in traces if "environ" in str(getattr(t, "provider", "")).lower()]
    places = [min(own, key=lambda t: len(t.key))] if (own := [t for t in env if name in t.sections]) else []
    places += [env[-1]] if env and env[-1] not in places else []
    names = " or ".join(t.key for t in places) or f"{key} in dlt's credentials"
    section = ".".join(places[0].sections) if places else "credentials"
    secret = key in SENSITIVE_KEYS or key in seam.secret_fields(type(spec))
    return (MissingSecretError if secret else ConfigError)(
        f"no {key} in the config and none in dlt {'secrets' if secret else 'config or secrets'}; "
        f"expected {key} in the auth block or in dlt {'secrets' if secret else 'config'}",
        path=f"{path}.{key}",
        guidance=f"Set {names} in the environment, or put {key} = \"...\" under [{section}] in "
                 f".dlt/{'secrets' if secret else 'config'}.toml.")


def _sends(auth: APIKeyAuth, location: str, url: str) -> bool:
    """Whether dlt's APIKeyAuth can put a key in ``location``: tried on a request never sent."""
    trial = APIKeyAuth(name=auth.name or "key", api_key="trial", location=location)
    try:
        trial(requests.Request("GET", url).prepare())
    except NotImplementedError:
        return False
    return True


def _check_sendable(path: str, auth: Any, url: str) -> None:
    """Refuses an api_key auth whose location dlt cannot send (it would fail on the first request)."""
    if not isinstance(auth, APIKeyAuth) or type(auth).__call__ is not APIKeyAuth.__call__:
        return  # other authenticators, or a subclass that sends the key its own way
    if auth.location is None or _sends(auth, auth.location, url):
        return
    usable = [repr(where) for where in get_args(TApiKeyLocation) if _sends(auth, where, url)]
    raise ConfigError(
        f"dlt's api_key auth cannot send a key in a {auth.location} (it raises NotImplementedError on the "
        f"first request); expected one of {', '.join(usable)}", path=f"{path}.location",
        guidance=('Send it as a header instead: "location": "header", "name": "Cookie", and the key written as '
                  '"<cookie name>=<key>".') if auth.location == "cookie" else f"Use one of {', '.join(usable)}.")


# A 401 under other auth types told the user to set API_KEY (helper-53), and with the key written in the config,
# where setting API_KEY changes nothing, it said only that (helper-115): by the auth the request carried
_REJECTED = {
    "basic": ("username and password", "Check the username and password (the auth block's, or CREDENTIALS__USERNAME "
              "and CREDENTIALS__PASSWORD in dlt secrets): the API does not accept them."),
    "bearer": ("token", "Check the token (the auth block's, or CREDENTIALS__TOKEN in dlt secrets): the API does not "
               "accept it; it may have expired."),
}
_KEY = ("key", "Check the key the request carried (the auth block's api_key, or a header in client.headers): where "
        "the config leaves it out (ak.guide_config does), set the API_KEY environment variable, or api_key in "
        ".dlt/secrets.toml, to a key the API accepts; a key written in the config itself is used instead of both.")
_OTHER = ("credentials", "Check the credentials the request carried (the auth block's, or client.headers): the API "
          "does not accept them, or they give no access to this endpoint.")
_TOKEN = ("client credentials", "The token endpoint (the auth block's access_token_url) refused the request for a "
          "token: check that URL, and the client_id and client_secret (the auth block's, or dlt secrets).")
_NONE = ("request", "The request carried no credentials: the API wants some. Add an auth block to client (\"auth\": "
         "{\"type\": \"api_key\", ...}, bearer or http_basic), as its documentation says.")


def asks_token(request: requests.PreparedRequest) -> bool:
    """Whether ``request`` is OAuth2's request for a token (client credentials in a form body)."""
    body = request.body.encode() if isinstance(request.body, str) else request.body or b""
    return b"grant_type=" in body


def rejected(request: requests.PreparedRequest, holds_secret: Callable[[str], bool]) -> tuple[str, str]:
    """(what the API rejected, what to do) for a 401 or 403 to ``request``, by the credentials it carried;
    ``holds_secret`` tells a text holding one of the load's secrets (in any form the redactor masks).

    The Authorization header's scheme is named only among the known ones: a header holding the bare key read as its
    scheme, and the message showed the key in lower case, which no mask matched (helper-117)."""
    if asks_token(request):  # OAuth2's token request: "carried no credentials" named neither (helper-125)
        return _TOKEN
    authorization = request.headers.get("Authorization") or ""
    scheme, _, credential = authorization.partition(" ")
    if credential.strip() and scheme.lower() in _REJECTED:
        return _REJECTED[scheme.lower()]
    if authorization:
        return _OTHER
    others = [str(v) for k, v in request.headers.items() if k.lower() not in ("authorization", "cookie")]
    if holds_secret(request.url or "") or any(holds_secret(v) for v in others):
        return _KEY  # where an api_key auth puts it: the query or a header of its own
    return _OTHER if request.headers.get("Cookie") else _NONE
