"""The embedded demo analytics API: a deterministic fake REST API on 127.0.0.1.

    from analytics_kit import demo
    with demo.serve(events=1000, seed=7) as api:
        requests.get(f"{api.base_url}/v1/events", params={api.key_param: api.api_key})

Notebooks, tests and benchmarks use it as a stand-in for a real third-party API: paging,
``updated_since``, data that changes on ``api.advance()``, faults on demand and a request log.
"""

from analytics_kit.demo.api import DemoAPI, ProcessDemoAPI, serve
from analytics_kit.demo.data import AdvanceResult
from analytics_kit.demo.server import RequestRecord

__all__ = ["serve", "DemoAPI", "ProcessDemoAPI", "AdvanceResult", "RequestRecord"]
