"""analytics-kit: a third-party analytics REST API in a local DuckDB file, read with pandas.

    import analytics_kit as ak
    report = ak.load(config)                  # incremental by default
    ak.query("SELECT count(*) FROM analytics.events")

``config`` is the integration guide's dict: dlt's ``rest_api_source`` language plus an
``error_handler`` block. ``ak.demo.serve()`` starts an embedded demo API to try it on.

``import analytics_kit`` does not import dlt: the readers (``query``, ``tables``, ``describe``,
``state``, ``history``, ``schema``) of a DuckDB file run without it. ``load``, ``build_source``
and ``RetryPolicy`` import it on first use (PEP 562), as ``demo`` and ``notebook`` import the
demo API's HTTP server on first use; each name is the function, class or module itself, as
``help(analytics_kit.load)`` and ``from analytics_kit import load`` show.
"""

import threading
from typing import TYPE_CHECKING, Any

from analytics_kit import _settings

_settings.apply()  # before dlt reads its configuration

from analytics_kit.config import guide  # noqa: E402
from analytics_kit.config.guide import guide_config  # noqa: E402
from analytics_kit.errors import ConfigError, KitError, LoadError, MissingSecretError, QueryError  # noqa: E402
from analytics_kit.read.history import history  # noqa: E402
from analytics_kit.read.query import describe, query, tables  # noqa: E402
from analytics_kit.read.schema import schema  # noqa: E402
from analytics_kit.read.state import state  # noqa: E402
from analytics_kit.run.report import LoadReport  # noqa: E402

if TYPE_CHECKING:
    from analytics_kit import demo, notebook
    from analytics_kit.fetch.retry import RetryPolicy
    from analytics_kit.fetch.source import build_source
    from analytics_kit.run.load import load

# Public names imported on first use, and the module each comes from (None: the module itself):
# those that need dlt, and the demo API's server, which a reader of a file has no use for.
_ON_FIRST_USE = {
    "RetryPolicy": "analytics_kit.fetch.retry",
    "build_source": "analytics_kit.fetch.source",
    "load": "analytics_kit.run.load",
    "demo": None,
    "notebook": None,
}
# First uses take turns. dlt's package imports are circular: a thread importing one dlt module
# while another was half-way through another found it partially initialised ("cannot import name
# 'resolve_configuration' from partially initialized module"; ``ak.load`` beside ``ak.RetryPolicy``
# in two threads failed every time, helper-50). Each turn starts at ``dlt`` itself, the order in
# which a single thread imports it.
_FIRST_USE = threading.RLock()

__all__ = [
    "ConfigError",
    "KitError",
    "LoadError",
    "LoadReport",
    "MissingSecretError",
    "QueryError",
    "RetryPolicy",
    "build_source",
    "demo",
    "describe",
    "guide",
    "guide_config",
    "history",
    "load",
    "notebook",
    "query",
    "schema",
    "state",
    "tables",
]


def __getattr__(name: str) -> Any:
    """The names in ``_ON_FIRST_USE``, imported when first used (``load`` and the rest with dlt)."""
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = _ON_FIRST_USE[name]
    with _FIRST_USE:
        if name in globals():  # another thread's turn imported it
            return globals()[name]
        if module is not None:
            importlib.import_module("dlt")
        value = importlib.import_module(f"{__name__}.{name}") if module is None else \
            getattr(importlib.import_module(module), name)
        globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    """The module's names, those imported on first use included (the imports of typing and threading left out)."""
    return sorted({*globals(), *_ON_FIRST_USE} - {"Any", "TYPE_CHECKING", "threading"})
