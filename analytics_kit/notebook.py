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

import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from analytics_kit import demo
from analytics_kit.config.guide import BASE_URL_ENV
from analytics_kit.store.database import DEFAULT_DATABASE

KEY_ENV = "API_KEY"


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


def real_api_configured() -> bool:
    """Whether ``ANALYTICS_API_BASE_URL`` and ``API_KEY`` are both set (and not empty), the key not one a demo API
    of this kernel set."""
    key = os.environ.get(KEY_ENV)
    return bool(os.environ.get(BASE_URL_ENV)) and bool(key) and key not in _DEMO_KEYS


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
    workdir = Path(tempfile.mkdtemp(prefix=f"analytics-kit-{name}-"))
    database = workdir / DEFAULT_DATABASE
    if real_api_configured():
        started = Started(None, os.environ[BASE_URL_ENV].rstrip("/"), workdir, database)
    else:
        if os.environ.get(BASE_URL_ENV):  # a half-set environment ran on the demo API without a word (helper-125)
            print(f"{BASE_URL_ENV} is set, but {KEY_ENV} is not (or holds the demo API's key from an earlier run): "
                  f"this notebook runs on the demo API. Set {KEY_ENV} to your API's key and run this cell again to "
                  "use yours.")
        api = demo.serve(events=events, customers=customers, seed=seed)
        os.environ[KEY_ENV] = api.api_key  # dlt.secrets["api_key"] reads it from here
        _DEMO_KEYS.add(api.api_key)
        started = Started(api, api.base_url, workdir, database)
    _STARTED[name] = started
    return started
