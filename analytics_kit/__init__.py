"""analytics-kit: a third-party analytics REST API in a local DuckDB file, read with pandas.

    import analytics_kit as ak
    report = ak.load(config)                  # incremental by default
    ak.query("SELECT count(*) FROM analytics.events")

``config`` is the integration guide's dict: dlt's ``rest_api_source`` language plus an
``error_handler`` block. ``ak.demo.serve()`` starts an embedded demo API to try it on.
"""

from analytics_kit import _settings

_settings.apply()  # before dlt reads its configuration

from analytics_kit import demo, notebook  # noqa: E402
from analytics_kit.config import guide  # noqa: E402
from analytics_kit.config.guide import guide_config  # noqa: E402
from analytics_kit.errors import ConfigError, KitError, LoadError, MissingSecretError, QueryError  # noqa: E402
from analytics_kit.fetch.retry import RetryPolicy  # noqa: E402
from analytics_kit.fetch.source import build_source  # noqa: E402
from analytics_kit.read.history import history  # noqa: E402
from analytics_kit.read.query import describe, query, tables  # noqa: E402
from analytics_kit.read.schema import schema  # noqa: E402
from analytics_kit.read.state import state  # noqa: E402
from analytics_kit.run.load import load  # noqa: E402
from analytics_kit.run.report import LoadReport  # noqa: E402

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
