"""``start``: the first cell of every teaching notebook.

    from analytics_kit.notebook import start
    api, base_url, workdir, database = start("01_configure")
    ...
    if api is not None:
        api.close()

With ``ANALYTICS_API_BASE_URL`` and ``API_KEY`` both set, the notebook runs against that
API and ``api`` is ``None``. Otherwise the embedded demo API starts on 127.0.0.1 with
deterministic data, and ``API_KEY`` is set to its throwaway key, where dlt secrets look.
Either way the data goes to a fresh folder of its own, so a rerun starts from nothing.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from analytics_kit import demo
from analytics_kit.config.guide import BASE_URL_ENV, SOURCE_NAME
from analytics_kit.errors import ConfigError, MissingSecretError
from analytics_kit.store.database import DEFAULT_DATABASE

KEY_ENV = "API_KEY"
# where a demo API's key goes: API_KEY, which notebook 1's config reads, and the guide source's own section, which
# dlt reads first (a key under [sources.analytics.credentials] in .dlt/secrets.toml was sent to the demo API)
_DEMO_ENV = (KEY_ENV, f"SOURCES__{SOURCE_NAME.upper()}__CREDENTIALS__API_KEY")


class Started(NamedTuple):
    """What ``start`` returns; unpack it as ``api, base_url, workdir, database``."""

    api: demo.DemoAPI | None
    base_url: str
    workdir: Path
    database: Path

    def __repr__(self) -> str:
        # Paths, ports and keys differ per run: a stable repr keeps stored outputs stable.
        source = "the demo API" if self.api is not None else f"${BASE_URL_ENV}"
        return f"Started({source}, a fresh data folder with {self.database.name})"


# what ``start`` began in this kernel, by notebook name: a cell run again closes its earlier demo API and folder
# (each rerun left another server running, helper-125); and the keys it set, which are no API's but the demo's
_STARTED: dict[str, "Started"] = {}
_DEMO_KEYS: set[str] = set()
_SET_ASIDE: dict[str, str] = {}  # API_KEY as the user had set it before a demo API's key replaced it


def real_api_configured() -> bool:
    """Whether ``ANALYTICS_API_BASE_URL`` is set and a key for it is where the guide's config looks: ``API_KEY``
    (not a key a demo API of this kernel set) or dlt's secrets (``api_key`` in ``.dlt/secrets.toml``, which notebook 1
    names as the other place for it, at its top or under ``[sources.analytics.credentials]``; those alone ran the
    demo API, helper-129 and helper-131)."""
    if not os.environ.get(BASE_URL_ENV):
        return False
    key = os.environ.get(KEY_ENV)
    return bool(key) and key not in _DEMO_KEYS or _key_in_dlt_secrets()


def _key_in_dlt_secrets() -> bool:
    """Whether the guide's config finds a key without the demo API's: as a load looks it up (``prepare``)."""
    from analytics_kit.config.guide import guide_config
    from analytics_kit.config.prepared import prepare

    held = {env: os.environ.pop(env) for env in _DEMO_ENV if os.environ.get(env) in _DEMO_KEYS}
    try:
        prepare(guide_config(os.environ[BASE_URL_ENV]))
        return True
    except MissingSecretError:
        return False
    except ConfigError as error:
        if error.path == "dlt secrets":
            raise  # a secrets file dlt cannot parse: every later cell would fail on it
        return True  # a key, and another fault of the configuration, which the load names
    finally:
        os.environ.update(held)


@atexit.register
def _tidy() -> None:
    """Removes the data folders this process made as its interpreter exits (a kernel shut down or restarted): each
    kernel left one in the temp folder, with its database (helper-129)."""
    for started in _STARTED.values():
        shutil.rmtree(started.workdir, ignore_errors=True)
    _STARTED.clear()


def start(name: str, *, events: int = 3000, customers: int = 60, seed: int = 7) -> Started:
    """Starts the demo API unless a real one is configured; makes a fresh data folder.

    ``name`` prefixes the temporary folder, so it is easy to find while the notebook
    runs. ``events``, ``customers`` and ``seed`` size the demo data (same seed, same data).
    """
    earlier = _STARTED.pop(name, None)
    if earlier is not None:
        if earlier.api is not None:
            earlier.api.close()
        shutil.rmtree(earlier.workdir, ignore_errors=True)
    for env in _DEMO_ENV:  # a demo API replaced the user's own key: the notebook may run on the user's API now
        if os.environ.get(env) in _DEMO_KEYS:
            del os.environ[env]
        if env in _SET_ASIDE:
            os.environ[env] = _SET_ASIDE.pop(env)
    workdir = Path(tempfile.mkdtemp(prefix=f"analytics-kit-{name}-"))
    database = workdir / DEFAULT_DATABASE
    if real_api_configured():
        started = Started(None, os.environ[BASE_URL_ENV].rstrip("/"), workdir, database)
    else:
        if os.environ.get(BASE_URL_ENV):  # a half-set environment ran on the demo API without a word (helper-125)
            print(f"{BASE_URL_ENV} is set, but no key for it is (in {KEY_ENV}, or api_key in "
                  f"{Path.cwd() / '.dlt' / 'secrets.toml'}): this notebook runs on the demo API. To use yours, put the "
                  "key in that file and restart the kernel (dlt reads the file once a process), or set "
                  f"os.environ[\"{KEY_ENV}\"] = ... in a cell of your own that you do not save, and run this cell "
                  "again.")
        api = demo.serve(events=events, customers=customers, seed=seed)
        for env in _DEMO_ENV:  # dlt.secrets["api_key"] and the guide's config read the demo's key from here
            if os.environ.get(env):
                _SET_ASIDE[env] = os.environ[env]  # the user's own key: back at a later start (see above)
            os.environ[env] = api.api_key
        _DEMO_KEYS.add(api.api_key)
        started = Started(api, api.base_url, workdir, database)
    _STARTED[name] = started
    return started
