"""Every malformed config of tests/test_config.py, given to load(): refused before any request or write."""

from __future__ import annotations

from pathlib import Path

import pytest

import analytics_kit as ak
from analytics_kit import demo
from test_config import CANARY, INVALID


@pytest.fixture(scope="module")
def shared_api():
    with demo.serve(events=20, customers=2, api_key=CANARY) as server:
        yield server


def _dicts_copied(value):
    """The config's dicts and lists copied, its objects as they are (some cannot be copied: that is the case)."""
    if isinstance(value, dict):
        return {key: _dicts_copied(item) for key, item in value.items()}
    return [_dicts_copied(item) for item in value] if isinstance(value, list) else value


def aimed_at(config, base_url: str):
    """The bad config, its base URL (where it has one) pointed at the local demo API."""
    config = _dicts_copied(config)
    client = config.get("client") if isinstance(config, dict) else None
    if isinstance(client, dict) and isinstance(client.get("base_url"), str) and client["base_url"].startswith("https://api.example.com"):
        client["base_url"] = base_url
    return config


@pytest.mark.parametrize(("config", "error"), [(case[1], case[2]) for case in INVALID], ids=[case[0] for case in INVALID])
def test_refused_before_any_request_or_write(shared_api, config, error, tmp_path: Path):
    shared_api.clear_log()
    with pytest.raises((ak.ConfigError, ak.MissingSecretError)) as caught:
        ak.load(aimed_at(config, shared_api.base_url), progress=False)
    assert isinstance(caught.value, error)
    text = str(caught.value)
    assert CANARY not in text and "What to do:" in text and ":" in text.split("\n")[0]
    assert shared_api.requests == []
    assert list(tmp_path.iterdir()) == []  # no DuckDB file, no pipeline folder
