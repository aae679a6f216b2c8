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
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest

import analytics_kit as ak
from helpers import NEWEST_READ

KEY = "cookie-key-5d1e"
RECORDS = 3_000
LAST = RECORDS - 100  # the last page, read before the others (analytics_kit/fetch/newest.py)
WINDOW = 16  # requests the kit may have in flight when an answer arrives: 2 per worker, 8 workers at most
# When the request the handler thread is serving arrived: a check of time is made against it, not against the
# moment the handler gets to it after the page's delay (on a loaded machine, that came late).
ARRIVAL = threading.local()


class CookieAPI:
    """The guide's events listing. ``sets(offset)`` gives the Set-Cookie values of an answer;
    ``allowed(offset, cookie)`` whether a request with that Cookie header gets its page (else 401)."""

    def __init__(self, sets: Callable[[int], list[str]], allowed: Callable[[int, str], bool] = lambda o, c: True,
                 *, refuse: Callable[[int], tuple[int, list[str]] | None] = lambda o: None,
                 delay: Callable[[int], float] = lambda o: 0.0, moved: Callable[[int], bool] = lambda o: False):
        """``refuse(offset)``: (status, extra headers) to answer instead of the page, or None;
        ``delay(offset)``: seconds to wait before answering; ``moved(offset)``: whether the listing
        redirects that page (302) to the same query on /v1/moved, which answers as above."""
        self.sets, self.allowed, self.refuse, self.delay, self.moved = sets, allowed, refuse, delay, moved
        self.keyed = True  # the key in the query, as the guide sends it
        self.seen: list[tuple[int, str]] = []  # (offset, Cookie header) in arrival order
        self.answered: dict[int, int] = {}  # offset -> how many requests had arrived when its answer was sent
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                offset = int(query.get("offset", ["0"])[0])
                cookie = self.headers.get("Cookie") or ""
                ARRIVAL.at = time.monotonic()
                with api.lock:
                    api.seen.append((offset, cookie))
                    arrived = len(api.seen)
                time.sleep(api.delay(offset))
                if url.path == "/v1/events" and api.moved(offset):
                    self._send(302, {}, [], [f"Location: /v1/moved?{url.query}"])
                    return
                refused = api.refuse(offset)
                if refused is not None:
                    self._send(refused[0], {"error": "not now"}, [], refused[1])
                    return
                if api.keyed and query.get("api_key") != [KEY] or not api.allowed(offset, cookie):
                    self._send(401, {"error": "no session"}, [])
                    return
                rows = [{"id": i, "customer_id": f"c{i % 7}", "timestamp": "2026-01-01T00:00:00Z",
                         "event_type": "view", "value": 1.5, "properties": {"n": i},
                         "updated_at": f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z", "deleted": False}
                        for i in range(offset, min(offset + 100, RECORDS))]
                with api.lock:
                    api.answered[offset] = arrived
                self._send(200, {"data": rows, "total": RECORDS}, api.sets(offset))

            def _send(self, status: int, body: dict, cookies: list[str], headers: list[str] = ()) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for value in cookies:
                    self.send_header("Set-Cookie", value)
                for header in headers:
                    self.send_header(*header.split(": ", 1))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client hanging up, when a load fails
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"
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


def load(api: CookieAPI, tmp_path, concurrency: int | None = None, **client: Any) -> ak.LoadReport:
    config = ak.guide_config(api.base_url, KEY, resources=("events",))
    config["client"].update(client)
    # a short backoff: a retried page waits 0.3 s, long enough for other pages' answers
    config["resources"][0]["endpoint"]["error_handler"]["backoff_factor"] = 0.3
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
    # the first page is asked twice: before and after the listing's last (analytics_kit/fetch/newest.py)
    assert [cookie for offset, cookie in api.seen if offset > 0] == ["sid=s-71f"] * (len(api.seen) - 2)


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


def _set_then_required(set_at: int):
    """An API that sets a session cookie on the answer for ``set_at`` and refuses a request without
    it that arrives from 0.3 s after (dlt, one request after another, never sends one): the grace is
    for requests already on their way."""
    when: dict[str, float] = {}

    def sets(offset: int) -> list[str]:
        if offset == set_at:
            when.setdefault("set", time.monotonic())
            return ["sess=v1; Path=/"]
        return []

    def allowed(offset: int, cookie: str) -> bool:
        return "set" not in when or ARRIVAL.at < when["set"] + 0.3 or cookie == "sess=v1"

    return sets, allowed


def test_a_page_retried_after_its_backoff_takes_the_cookie_set_meanwhile(serve, tmp_path):
    failed: list[int] = []

    def refuse(offset: int):
        if offset == 1000 and not failed:
            failed.append(offset)
            return 503, []
        return None

    sets, allowed = _set_then_required(1100)
    api = serve(sets, allowed, refuse=refuse)
    report = load(api, tmp_path, 8)
    assert report.rows == {"events": RECORDS} and len(report.retries) == 1
    retried = [cookie for offset, cookie in api.seen if offset == 1000]
    assert retried == ["", "sess=v1"], api.seen


def test_requests_held_by_a_429_pause_take_the_cookie_set_during_it(serve, tmp_path):
    paused: list[int] = []

    def refuse(offset: int):
        if offset == 1000 and not paused:
            paused.append(offset)
            return 429, ["Retry-After: 1"]
        return None

    sets, allowed = _set_then_required(1100)
    # a slow API (8 workers, up to 16 requests out): the answer setting the cookie arrives while the
    # 429's pause holds requests that were prepared before it
    api = serve(sets, allowed, refuse=refuse, delay=lambda offset: 0.4 if offset == 1100 else 0.05)
    assert load(api, tmp_path, 8).rows == {"events": RECORDS}
    assert api.seen[-1][1] == "sess=v1"


def test_a_cookie_header_the_config_sets_is_sent_as_it_is(serve, tmp_path):
    api = serve(lambda offset: ["sid=theirs; Path=/"] if offset == 0 else [])
    assert load(api, tmp_path, 8, headers={"Cookie": "mine=1"}).rows == {"events": RECORDS}
    assert {cookie for _, cookie in api.seen} == {"mine=1"}


def test_a_session_cookie_rotated_strictly_fails_naming_concurrency_one(serve, tmp_path):
    latest = {"value": "sid=0"}
    lock = threading.Lock()

    def sets(offset: int) -> list[str]:
        with lock:
            latest["value"] = f"sid={offset + 1}"
        return [latest["value"] + "; Path=/"]

    def allowed(offset: int, cookie: str) -> bool:
        return offset == 0 or cookie == latest["value"]  # only the newest is valid: one page at a time

    api = serve(sets, allowed, delay=lambda offset: 0.03)
    with pytest.raises(ak.LoadError) as failed:
        load(api, tmp_path, 8)
    assert "concurrency: 1" in failed.value.guidance and "cookies the API set" in failed.value.guidance
    latest["value"] = "sid=0"
    assert load(api, tmp_path, 1).rows == {"events": RECORDS}


@pytest.mark.parametrize("api_sets", [False, True])
def test_a_key_the_auth_sends_as_a_cookie_header_goes_with_every_request(serve, tmp_path, api_sets):
    # the kit's advice for an api_key with location: cookie, which dlt cannot send
    api = serve(lambda offset: ["lb=node2; Path=/"] if api_sets else [],
                allowed=lambda offset, cookie: cookie == f"sess={KEY}")
    api.keyed = False
    auth = {"type": "api_key", "name": "Cookie", "api_key": f"sess={KEY}", "location": "header"}
    assert load(api, tmp_path, 8, auth=auth).rows == {"events": RECORDS}
    assert {cookie for _, cookie in api.seen} == {f"sess={KEY}"}  # as dlt sends it: the auth's header wins


def test_no_advice_on_concurrency_when_the_load_ran_one_page_at_a_time(serve, tmp_path):
    api = serve(lambda offset: [f"sid={offset}; Path=/"], allowed=lambda offset, cookie: offset < 1000)
    with pytest.raises(ak.LoadError) as failed:
        load(api, tmp_path, 1)
    assert "HTTP 401" in str(failed.value) and "concurrency" not in failed.value.guidance


def test_the_advice_holds_for_a_refusal_behind_a_redirect(serve, tmp_path):
    """A same-origin redirect whose target refuses a request carrying the API's session cookie."""
    api = serve(lambda offset: ["sid=S1; Path=/"] if offset == 0 else [],
                refuse=lambda offset: (403, []) if 0 < offset < LAST else None,  # the workers' pages
                moved=lambda offset: 0 < offset < LAST, delay=lambda offset: 0.03)  # slow enough for 8 workers
    with pytest.raises(ak.LoadError) as failed:
        load(api, tmp_path, 8)
    assert "HTTP 403" in str(failed.value) and "concurrency: 1" in failed.value.guidance


@pytest.mark.parametrize("status", [429, 503])
def test_a_cookie_set_on_an_answer_that_is_retried_is_kept(serve, tmp_path, status):
    # a rate limiter or proxy sets a cookie on its refusal and wants it back; dlt's response hook
    # raises before requests stores it, so dlt alone loses it (and then fails with 401)
    refused: list[int] = []

    def refuse(offset: int):
        if offset == 1000 and not refused:
            refused.append(offset)
            return status, ["Set-Cookie: pass=p1; Path=/", "Retry-After: 0"]
        return None

    api = serve(lambda offset: [], allowed=lambda offset, cookie: not refused or cookie == "pass=p1"
                or offset < 1000, refuse=refuse)
    report = load(api, tmp_path, 1)
    assert report.rows == {"events": RECORDS} and len(report.retries) == 1
    later = [cookie for offset, cookie in api.seen[NEWEST_READ:] if offset >= 1000]  # after the last page's read
    assert later[0] == "" and set(later[1:]) == {"pass=p1"} and len(later) > 20, later
