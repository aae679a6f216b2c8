"""Cookies the API sets go with later requests, as on dlt's one session, whichever worker fetches.

dlt pages a resource one request after another on one session. The kit fetches pages on
several workers, each with its own session, and copies the first request for later pages:
an API that keeps a session in a cookie answered every worker's page with a 401, read as a
wrong key. A real server on 127.0.0.1 sets and checks cookies here.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest

import analytics_kit as ak

KEY = "cookie-key-5d1e"
RECORDS = 3_000
WINDOW = 16  # requests the kit may have in flight when an answer arrives: 2 per worker, 8 workers at most


class CookieAPI:
    """The guide's events listing. ``sets(offset)`` gives the Set-Cookie values of an answer;
    ``allowed(offset, cookie)`` whether a request with that Cookie header gets its page (else 401)."""

    def __init__(self, sets: Callable[[int], list[str]], allowed: Callable[[int, str], bool] = lambda o, c: True):
        self.sets, self.allowed = sets, allowed
        self.seen: list[tuple[int, str]] = []  # (offset, Cookie header) in arrival order
        self.answered: dict[int, int] = {}  # offset -> how many requests had arrived when its answer was sent
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                offset = int(query.get("offset", ["0"])[0])
                cookie = self.headers.get("Cookie") or ""
                with api.lock:
                    api.seen.append((offset, cookie))
                    arrived = len(api.seen)
                if query.get("api_key") != [KEY] or not api.allowed(offset, cookie):
                    self._send(401, {"error": "no session"}, [])
                    return
                rows = [{"id": i, "customer_id": f"c{i % 7}", "timestamp": "2026-01-01T00:00:00Z",
                         "event_type": "view", "value": 1.5, "properties": {"n": i},
                         "updated_at": f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z", "deleted": False}
                        for i in range(offset, min(offset + 100, RECORDS))]
                with api.lock:
                    api.answered[offset] = arrived
                self._send(200, {"data": rows, "total": RECORDS}, api.sets(offset))

            def _send(self, status: int, body: dict, cookies: list[str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for value in cookies:
                    self.send_header("Set-Cookie", value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    started: list[CookieAPI] = []

    def start(*args, **kwargs) -> CookieAPI:
        started.append(CookieAPI(*args, **kwargs))
        return started[-1]

    yield start
    for api in started:
        api.close()


def load(api: CookieAPI, tmp_path, concurrency: int | None = None) -> ak.LoadReport:
    config = ak.guide_config(api.base_url, KEY, resources=("events",))
    return ak.load(config, "full_refresh", database=str(tmp_path / "c.duckdb"), progress=False,
                   concurrency=concurrency)


def ids(tmp_path) -> list[int]:
    with duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True) as db:
        return [row[0] for row in db.sql("select id from events order by id").fetchall()]


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_session_cookie_from_the_first_answer_goes_with_every_later_page(serve, tmp_path, concurrency):
    api = serve(lambda offset: ["sid=s-71f; Path=/"] if offset == 0 else [],
                allowed=lambda offset, cookie: offset == 0 or "sid=s-71f" in cookie)
    report = load(api, tmp_path, concurrency)
    assert report.rows == {"events": RECORDS}
    assert ids(tmp_path) == list(range(RECORDS))
    assert [cookie for offset, cookie in api.seen if offset > 0] == ["sid=s-71f"] * (len(api.seen) - 1)


def test_a_cookie_rotated_on_every_answer_is_one_the_api_gave(serve, tmp_path):
    given: set[str] = set()

    def sets(offset: int) -> list[str]:
        given.add(f"sid=r{offset}")
        return [f"sid=r{offset}; Path=/"]

    api = serve(sets, allowed=lambda offset, cookie: offset == 0 or cookie in given)
    assert load(api, tmp_path, 8).rows == {"events": RECORDS}
    assert all(cookie in given for offset, cookie in api.seen if offset > 0)


def test_a_cookie_set_by_a_workers_page_reaches_the_other_workers(serve, tmp_path):
    api = serve(lambda offset: ["late=1; Path=/"] if offset == 300 else [])
    assert load(api, tmp_path, 8).rows == {"events": RECORDS}
    after = api.seen[api.answered[300] + WINDOW:]
    assert after, "the listing ended before the cookie could be seen"
    assert all(cookie == "late=1" for _, cookie in after), api.seen


def test_a_cookie_the_api_expires_is_not_sent_again(serve, tmp_path):
    def sets(offset: int) -> list[str]:
        if offset == 0:
            return ["sid=old; Path=/"]
        return ["sid=gone; Path=/; Max-Age=0"] if offset == 200 else []

    api = serve(sets)
    assert load(api, tmp_path, 8).rows == {"events": RECORDS}
    assert api.seen[api.answered[0]][1] == "sid=old"  # the next request to arrive carried it
    after = api.seen[api.answered[200] + WINDOW:]
    assert after and all(cookie == "" for _, cookie in after), api.seen


def test_cookies_stay_with_their_path(serve, tmp_path):
    api = serve(lambda offset: ["elsewhere=1; Path=/admin", "here=1; Path=/v1"] if offset == 0 else [])
    assert load(api, tmp_path, 8).rows == {"events": RECORDS}
    assert {cookie for offset, cookie in api.seen if offset > 0} == {"here=1"}


def test_a_cookies_value_appears_in_no_error_or_log(serve, tmp_path, caplog):
    secret = "cookie-canary-90ab"
    api = serve(lambda offset: [f"sid={secret}; Path=/"] if offset == 0 else [],
                allowed=lambda offset, cookie: offset < 500)  # the session "expires" half way
    with caplog.at_level(logging.DEBUG), pytest.raises(ak.LoadError) as failed:
        load(api, tmp_path, 8)
    assert "HTTP 401" in str(failed.value)
    assert secret not in str(failed.value) + repr(failed.value) + caplog.text
    assert any(secret in cookie for _, cookie in api.seen)  # it was sent, not lost
