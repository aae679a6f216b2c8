"""``build_source``: the integration guide's config as a dlt source."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from dlt.extract import DltSource
from dlt.extract.items_transform import ItemTransform
from dlt.sources.rest_api import rest_api_source

from .config import PreparedConfig, prepare
from .redact import Redactor
from .retry import retry_session
from .stats import LoadStats

SOURCE_NAME = "analytics"


class PageStep(ItemTransform[Any, dict]):
    """Sees every page a resource yields: counts it and reports progress."""

    def __init__(self, resource: str, stats: LoadStats, on_page: Callable[[str], None] | None) -> None:
        super().__init__(lambda item: item)
        self.resource = resource
        self.stats = stats
        self.on_page = on_page

    def __call__(self, item: Any, meta: Any = None) -> Any:
        rows = len(item) if isinstance(item, list) else getattr(item, "num_rows", 1)
        self.stats.page(self.resource, rows)
        if self.on_page is not None:
            self.on_page(self.resource)
        return item


def build_source(
    config: Mapping[str, Any],
    *,
    stats: LoadStats | None = None,
    on_page: Callable[[str], None] | None = None,
    name: str = SOURCE_NAME,
) -> DltSource:
    """The validated dlt source for ``config``, the integration guide's dict.

    Example, against the embedded demo API::

        import analytics_kit as ak
        with ak.demo.serve() as api:
            source = ak.build_source({
                "client": {"base_url": api.base_url,
                           "auth": {"type": "api_key", "name": "api_key",
                                    "api_key": api.api_key, "location": "query"}},
                "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
                "resources": [{"name": "events", "endpoint": {
                    "path": "/v1/events", "data_selector": "data",
                    "paginator": {"type": "offset", "limit": 100},
                    "error_handler": {"retry_on_status_codes": [429, 500, 502, 503, 504],
                                      "max_retries": 3, "backoff_factor": 2}}}]})

    ``error_handler`` becomes a retrying session for its resource; everything else is
    passed to dlt's ``rest_api_source`` unchanged. Raises ``ConfigError`` or
    ``MissingSecretError`` before any request is made. The caller's dict is not changed.
    """
    return _build(prepare(config), stats=stats, on_page=on_page, name=name)


def _build(
    prepared: PreparedConfig,
    *,
    stats: LoadStats | None,
    on_page: Callable[[str], None] | None,
    name: str,
) -> DltSource:
    stats = stats if stats is not None else LoadStats()
    redactor = Redactor(prepared.secrets)
    source = rest_api_source(prepared.rest_api, name=name)
    for resource in source.resources.values():
        policy = prepared.policies.get(resource.name, prepared.default_policy)
        # dlt gives each resource its own RESTClient but takes the session from the one
        # client config, so per-endpoint policies are set on each resource's client here.
        client = (resource.explicit_args or {}).get("client")
        if client is not None:
            client.session = retry_session(policy, resource=resource.name, stats=stats, redactor=redactor)
        resource.add_step(PageStep(resource.name, stats, on_page))
    return source
