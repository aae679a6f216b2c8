"""analytics-kit: a third-party analytics REST API in a local DuckDB file, read with pandas.

    import analytics_kit as ak
    report = ak.load(config)                  # incremental by default
    ak.query("SELECT count(*) FROM analytics.events")

``config`` is the integration guide's dict: dlt's ``rest_api_source`` language plus an
``error_handler`` block. ``ak.demo.serve()`` starts an embedded demo API to try it on.
"""

from . import _settings

_settings.apply()  # before dlt reads its configuration

from . import demo, guide, notebook  # noqa: E402
from .errors import ConfigError, KitError, LoadError, MissingSecretError  # noqa: E402
from .guide import guide_config  # noqa: E402
from .load import load  # noqa: E402
from .query import describe, query, tables  # noqa: E402
from .report import LoadReport  # noqa: E402
from .retry import RetryPolicy  # noqa: E402
from .source import build_source  # noqa: E402
from .state import state  # noqa: E402

__all__ = [
    "ConfigError",
    "KitError",
    "LoadError",
    "LoadReport",
    "MissingSecretError",
    "RetryPolicy",
    "build_source",
    "demo",
    "describe",
    "guide",
    "guide_config",
    "load",
    "notebook",
    "query",
    "state",
    "tables",
]
