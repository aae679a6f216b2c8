"""build_source(): the guide's config, its retry policy, typed columns and secrets, against the demo API."""

from __future__ import annotations

import copy
import logging

import pytest

import analytics_kit as ak
from analytics_kit.fetch.retry import RetryPolicy, retry_session
from analytics_kit.fetch.stats import LoadStats
from helpers import FAST_RETRIES, NEWEST_READ, guide_dict


def guide_verbatim(api) -> dict:
    """The integration guide's dict, as printed, pointed at the demo API's generic resource."""
    import dlt

    return guide_dict(api.base_url, dlt.secrets["api_key"])


def with_handler(config: dict, **handler) -> dict:
    config = copy.deepcopy(config)
    for resource in config["resources"]:
        resource["endpoint"]["error_handler"] = {**FAST_RETRIES, **handler}
    return config


def test_the_guide_verbatim_loads(api, monkeypatch):
    monkeypatch.setenv("API_KEY", api.api_key)
    config = guide_verbatim(api)
    snapshot = copy.deepcopy(config)
    report = ak.load(config)
    assert report.rows == {"resource_name": 250}
    assert config == snapshot
    # offset pagination of 100, key in the query string, data selector "data"
    params = sorted((r.params for r in api.requests), key=lambda p: int(p["offset"]))  # pages come concurrently
    assert [(p["offset"], p["limit"], p["api_key"]) for p in params] == [("0", "100", "***"), ("100", "100", "***"), ("200", "100", "***")]


def test_a_burst_within_the_budget_recovers(api, config, caplog):
    api.inject("status", path="/v1/events", status=503, times=2)
    with caplog.at_level(logging.WARNING, logger="analytics_kit"):
        report = ak.load(config)
    assert report.rows["events"] == 250
    assert report.requests["events"] == 3 + NEWEST_READ + 2
    assert [(e.reason, e.attempt, e.attempts) for e in report.retries] == [("HTTP 503", 1, 4), ("HTTP 503", 2, 4)]
    lines = [r.getMessage() for r in caplog.records if r.name == "analytics_kit.fetch.retry"]
    assert len(lines) == 2
    assert lines[0].startswith("events: HTTP 503 on GET /v1/events?") and "attempt 1 of 4 failed; retrying in 0.001 s" in lines[0]
    assert api.api_key not in caplog.text


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_each_listed_status_is_retried_at_most_three_times(api, config, status):
    api.inject("status", path="/v1/events", status=status, times=None)
    with pytest.raises(ak.LoadError, match=f"HTTP {status}.* after 4 attempt"):
        ak.load(config)
    assert api.count(path="/v1/events") == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_never_retried_even_when_listed(api, config, status):
    config = with_handler(config, retry_on_status_codes=[status, 503])
    api.inject("status", path="/v1/events", status=status, times=None)
    with pytest.raises(ak.LoadError):
        ak.load(config)
    assert api.count(path="/v1/events") == 1


def test_only_listed_statuses_are_retried(api, config):
    config = with_handler(config, retry_on_status_codes=[503])
    api.inject("status", path="/v1/events", status=502, times=None)
    with pytest.raises(ak.LoadError, match="HTTP 502"):
        ak.load(config)
    assert api.count(path="/v1/events") == 1


@pytest.mark.parametrize("kind", ["reset", "short_body"])
def test_broken_connections_are_retried(api, config, kind):
    api.inject(kind, path="/v1/events", times=2)
    report = ak.load(config)
    assert report.rows["events"] == 250
    assert len(report.retries) == 2
    assert api.count(path="/v1/events") == 3 + NEWEST_READ + 2


def test_each_endpoint_keeps_its_own_policy(api, config):
    config = copy.deepcopy(config)
    config["resources"][0]["endpoint"]["error_handler"] = {**FAST_RETRIES, "max_retries": 3}  # events
    config["resources"][1]["endpoint"]["error_handler"] = {**FAST_RETRIES, "max_retries": 1}  # customers
    api.inject("status", path="/v1/events", status=503, times=2)
    api.inject("status", path="/v1/customers", status=503, times=2)
    with pytest.raises(ak.LoadError, match="'customers' failed with HTTP 503.* after 2 attempt"):
        ak.load(config)
    # events recovered within its budget of 4 attempts; customers gave up after 2.
    assert api.count(path="/v1/events", status=503) == 2
    assert api.count(path="/v1/customers") == 2


def test_client_level_error_handler_is_the_default(api, monkeypatch):
    monkeypatch.setenv("API_KEY", api.api_key)
    config = ak.guide_config(api.base_url)
    for resource in config["resources"]:
        resource["endpoint"].pop("error_handler")
    config["client"]["error_handler"] = {**FAST_RETRIES, "max_retries": 0}
    api.inject("status", path="/v1/events", status=503, times=1)
    with pytest.raises(ak.LoadError, match="after 1 attempt"):
        ak.load(config)


def _recording_session(api, policy):
    sleeps: list[float] = []
    stats = LoadStats()
    session = retry_session(policy, resource="events", stats=stats, sleep=sleeps.append)
    return session, sleeps, stats


def test_the_real_backoff_schedule_is_2_4_8_seconds(api):
    """The guide's factor 2, checked without sleeping: the waits the session asks for."""
    api.inject("status", path="/v1/events", status=503, times=None)
    session, sleeps, stats = _recording_session(api, RetryPolicy(backoff_factor=2))
    response = session.get(f"{api.base_url}/v1/events", params={"api_key": api.api_key})
    assert response.status_code == 503
    assert sleeps == [2, 4, 8]
    assert stats.requests["events"] == 4 == api.count(path="/v1/events")


def test_retry_after_seconds_and_http_date_are_honoured(api):
    from email.utils import formatdate
    import time

    api.inject("status", path="/v1/events", status=429, retry_after=7, times=1)
    api.inject("status", path="/v1/events", status=429, retry_after=formatdate(time.time() + 20, usegmt=True), times=1)
    session, sleeps, _ = _recording_session(api, RetryPolicy(backoff_factor=0.001))
    assert session.get(f"{api.base_url}/v1/events", params={"api_key": api.api_key}).status_code == 200
    assert sleeps[0] == 7
    assert 18 <= sleeps[1] <= 20


def test_retry_after_is_capped(api):
    api.inject("status", path="/v1/events", status=429, retry_after=3600, times=1)
    session, sleeps, _ = _recording_session(api, RetryPolicy(backoff_factor=0.001, max_delay=30))
    assert session.get(f"{api.base_url}/v1/events", params={"api_key": api.api_key}).status_code == 200
    assert sleeps == [30]


def test_typed_columns_land_as_declared(api, config):
    ak.load(config)
    described = ak.describe("events").set_index("column")
    expected = {
        "id": ("BIGINT", False),
        "customer_id": ("VARCHAR", False),
        "timestamp": ("TIMESTAMP WITH TIME ZONE", False),
        "event_type": ("VARCHAR", False),
        "value": ("DOUBLE", True),
        "properties": ("JSON", True),
        "updated_at": ("TIMESTAMP WITH TIME ZONE", False),
    }
    for column, (kind, nullable) in expected.items():
        assert (described.loc[column, "type"], bool(described.loc[column, "nullable"])) == (kind, nullable), column
    # nested properties stay queryable
    devices = ak.query("SELECT DISTINCT properties->>'device' AS device FROM analytics.events ORDER BY 1")
    assert set(devices.device) <= {"mobile", "desktop", "tablet"} and len(devices) > 1


def test_query_dtypes_are_nullable_and_tz_aware(api, config):
    ak.load(config)
    frame = ak.query("SELECT id, customer_id, timestamp, value, deleted FROM analytics.events ORDER BY id")
    assert str(frame.dtypes["id"]) == "Int64"
    assert str(frame.dtypes["customer_id"]) == "string"
    assert str(frame.dtypes["timestamp"]) == "datetime64[us, UTC]"
    assert str(frame.dtypes["value"]) == "Float64"
    assert str(frame.dtypes["deleted"]) == "boolean"
    assert frame["value"].isna().any() and frame["value"].notna().any()


def test_missing_key_is_a_missing_secret_error(api):
    with pytest.raises(ak.MissingSecretError, match="API_KEY"):
        ak.build_source(ak.guide_config(api.base_url))
    assert api.requests == []


def test_a_key_under_an_unlisted_parameter_name_never_shows(tmp_path, caplog):
    """dlt masks only 11 parameter names; 'ak' is not one of them."""
    from analytics_kit import demo

    canary = "canary-key-5f3a9"
    with demo.serve(events=30, customers=3, api_key=canary, key_param="ak") as api:
        config = ak.guide_config(api.base_url, api_key=canary)
        config["client"]["auth"]["name"] = "ak"
        config = with_handler(config)
        api.inject("status", path="/v1/events", status=503, times=None)
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(ak.LoadError) as caught:
                ak.load(config)
    text = str(caught.value) + repr(caught.value) + caplog.text
    assert "HTTP 503" in str(caught.value)
    assert canary not in text
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_connection_errors_do_not_leak_the_key(caplog):
    """dlt's ConnectionError text carries the full URL: the kit's error must not."""
    import socket

    canary = "canary-key-77d1e"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = with_handler(ak.guide_config(f"http://127.0.0.1:{port}", api_key=canary))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ak.LoadError, match=f"Could not connect to 127.0.0.1:{port}") as caught:
            ak.load(config)
    assert canary not in str(caught.value) + caplog.text
