"""The libcurl transport (``fetch.curl``) against urllib3's: the same answers and the same failures.

A raw socket server sends byte-exact responses, honest and broken; each is fetched through a
kit session on urllib3 and through one on libcurl, and what the kit sees must agree: status,
headers, body and cookies, or the class of the error, whether it is retried, and whether the
API counts as unreachable. Then the transport in a load: workers of a long listing use it, a
short listing does not, and a load through it loads what the API serves.
"""

from __future__ import annotations

import gzip
import re
import socket
import struct
import threading
import time
import zlib
from typing import Callable

import pytest
import requests

import analytics_kit as ak
from analytics_kit import demo
from analytics_kit.fetch import curl, offsets
from analytics_kit.fetch.retry import UNREACHABLE, RetryPolicy, retry_session
from analytics_kit.seam import DEFAULT_RETRY_EXCEPTIONS
from helpers import closed_port, fast

pytestmark = pytest.mark.skipif(not curl.available(), reason="pycurl is not installed here")

JSON = b'{"data": [{"id": 1}], "total": 1}'


def ok(body: bytes = JSON, extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


class RawServer:
    """Answers each request on 127.0.0.1 with ``script(request_head, n)``: the bytes to send, a
    (bytes, close) pair, or a list of (seconds, bytes) steps sent in turn (None: reset the
    connection); it records every request head it read."""

    def __init__(self, script: Callable[[bytes, int], object]) -> None:
        self.script = script
        self.heads: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.alive:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buffer = b""
        with conn:
            while self.alive:
                while b"\r\n\r\n" not in buffer:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                while length and len(buffer) < int(length.group(1)):  # a body: read, not kept
                    buffer += conn.recv(65536)
                buffer = buffer[int(length.group(1)):] if length else buffer
                self.heads.append(head)
                answer = self.script(head, len(self.heads))
                if isinstance(answer, list):  # (seconds to wait, bytes) steps, then close
                    answer = (answer, True)
                data, close = answer if isinstance(answer, tuple) else (answer, False)
                try:
                    for wait, part in data if isinstance(data, list) else [(0.0, data)]:
                        time.sleep(wait)
                        if part is None:  # a reset: RST, not FIN
                            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            return
                        conn.sendall(part)
                except OSError:
                    return
                if close:
                    return

    def close(self) -> None:
        self.alive = False
        self.sock.close()

    def __enter__(self) -> "RawServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def session(fast_: bool, timeout: float = 5.0) -> requests.Session:
    policy = RetryPolicy(max_retries=0, backoff_factor=0.001, timeout=timeout)
    return retry_session(policy, resource="t", fast=fast_)


def outcome(fast_: bool, url: str, requests_: int = 1, timeout: float = 5.0) -> tuple:
    """What the kit sees of ``requests_`` GETs of ``url`` through one session: the last
    response's status, reason, headers, body and the session's cookies, or the error's class,
    whether it is retried, and whether it says the API is unreachable."""
    s = session(fast_, timeout)
    adapter = s.get_adapter(url)
    assert isinstance(adapter, curl.CurlAdapter) == fast_
    try:
        for _ in range(requests_):
            r = s.get(url)
        return ("response", r.status_code, r.reason, {k.lower(): v for k, v in r.headers.items()}, r.content,
                sorted(s.cookies.items()), r.encoding)
    except requests.RequestException as error:
        return ("error", type(error).__name__, isinstance(error, DEFAULT_RETRY_EXCEPTIONS), getattr(error, UNREACHABLE, None))
    finally:
        s.close()


def both(script: Callable[[bytes, int], object], path: str = "/x", requests_: int = 1,
         timeout: float = 5.0) -> tuple[tuple, tuple, list[bytes], list[bytes]]:
    results, heads = [], []
    for fast_ in (False, True):
        with RawServer(script) as server:
            results.append(outcome(fast_, server.url + path, requests_, timeout))
            heads.append(server.heads)
    return results[0], results[1], heads[0], heads[1]


# -- the same answers ---------------------------------------------------------------------------

GZIPPED = gzip.compress(JSON * 50)
DEFLATED = zlib.compress(JSON * 50)
CHUNKED = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (JSON[:10], JSON[10:])) + b"0\r\n\r\n"

HONEST = {
    "plain": lambda head, n: ok(),
    "chunked": lambda head, n: (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED),
    "gzip": lambda head, n: ok(GZIPPED, b"Content-Encoding: gzip\r\n"),
    "deflate": lambda head, n: ok(DEFLATED, b"Content-Encoding: deflate\r\n"),
    "100 continue first": lambda head, n: b"HTTP/1.1 100 Continue\r\n\r\n" + ok(),
    "repeated headers": lambda head, n: ok(extra=b"X-A: 1\r\nX-A: 2\r\nx-a: 3\r\n"),
    "folded header": lambda head, n: ok(extra=b"X-Long: one\r\n two\r\n"),
    "empty and latin-1 values": lambda head, n: ok(extra=b"X-Empty:\r\nX-Latin: caf\xe9\r\n"),
    "charset": lambda head, n: ok(extra=b"Content-Type: text/plain; charset=iso-8859-1\r\n"),
    "no length, closed": lambda head, n: (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + JSON, True),
    "HTTP/1.0": lambda head, n: (b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(JSON), JSON), True),
    "404 with a body": lambda head, n: ok(b'{"error": "no"}', status=b"404 Not Found"),
    "429 with Retry-After": lambda head, n: ok(b"{}", b"Retry-After: 3\r\n", status=b"429 Too Many Requests"),
    "204 no content": lambda head, n: b"HTTP/1.1 204 No Content\r\n\r\n",
    "odd reason": lambda head, n: ok(status=b"200 Fine, thanks"),
    "no reason": lambda head, n: ok(status=b"200"),
    "cookie set, then sent back": lambda head, n: ok(
        extra=b"Set-Cookie: session=abc; Path=/\r\nSet-Cookie: other=1; Path=/\r\n" if n == 1
        else b"X-Seen: " + (b"yes" if b"session=abc" in head else b"no") + b"\r\n"),
    "chunked with a trailer": lambda head, n: (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nSet-Cookie: a=1; Path=/\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED[:-2] + b"X-Trailer: t\r\n\r\n"),
    "bare LF line ends": lambda head, n: (b"HTTP/1.1 200 OK\nContent-Type: application/json\nX-A: 1\n"
                                          b"Content-Length: %d\n\n%s" % (len(JSON), JSON)),
    "surrounding spaces": lambda head, n: ok(extra=b"X-Sp : v  \r\nX-Tab:\tt\t\r\n"),
    "same-origin redirect": lambda head, n: (
        b"HTTP/1.1 302 Found\r\nLocation: /y\r\nContent-Length: 0\r\n\r\n" if head.startswith(b"GET /x")
        else ok(extra=b"X-At: y\r\n")),
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_answers_are_the_same_through_either_transport(name):
    requests_ = 2 if "cookie" in name else 1
    via_urllib3, via_curl, heads_urllib3, heads_curl = both(HONEST[name], requests_=requests_)
    assert via_urllib3[0] == "response", via_urllib3
    assert via_curl == via_urllib3
    # the same requests: the same lines and headers, Host first as both send it
    assert [_head(h) for h in heads_curl] == [_head(h) for h in heads_urllib3]


def _head(head: bytes) -> tuple:
    """A request's line and its headers, in any order; the two servers' ports are the same word."""
    line, *fields = re.sub(rb"127\.0\.0\.1:\d+", b"127.0.0.1:PORT", head).split(b"\r\n")
    return line, sorted(f.lower() for f in fields)


def test_a_cookie_and_a_redirect_really_happened():
    """The comparisons above compare something: the cookie went back, the redirect was followed."""
    via_curl = both(HONEST["cookie set, then sent back"], requests_=2)[1]
    assert via_curl[3]["x-seen"] == "yes" and ("session", "abc") in via_curl[5]
    via_curl = both(HONEST["same-origin redirect"])[1]
    assert via_curl[3]["x-at"] == "y"


# -- the same failures --------------------------------------------------------------------------

BROKEN = {
    "closed before answering": lambda head, n: (b"", True),
    "garbage status line": lambda head, n: (b"FOO BAR\r\n\r\n", True),
    "body cut short": lambda head, n: (ok()[:-5], True),
    "bad chunk size": lambda head, n: (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", True),
    "chunks cut short": lambda head, n: (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED[:12], True),
    "gzip that is not": lambda head, n: ok(b"not gzip at all", b"Content-Encoding: gzip\r\n"),
    "reset mid-body": lambda head, n: [(0.0, ok(JSON * 50)[:300]), (0.05, None)],
    "two Content-Lengths": lambda head, n: ok(extra=b"Content-Length: 5\r\n"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_failures_are_the_same_through_either_transport(name):
    via_urllib3, via_curl, _, _ = both(BROKEN[name])
    assert via_urllib3[0] == "error", via_urllib3
    assert via_curl == via_urllib3


ODD = {
    "a coding urllib3 leaves alone": lambda head, n: ok(extra=b"Content-Encoding: utf-8\r\n"),
    "gzip with two members": lambda head, n: ok(gzip.compress(JSON[:10]) + gzip.compress(JSON[10:]),
                                                b"Content-Encoding: gzip\r\n"),
    "a Content-Length with a sign": lambda head, n: ok().replace(b"Content-Length: ", b"Content-Length: +"),
    "a header line without a colon": lambda head, n: ok(extra=b"NoColonHere\r\n"),
    "a NUL in a header": lambda head, n: ok(extra=b"X-N: a\x00b\r\n"),
    "cut off inside the headers": lambda head, n: (b"HTTP/1.1 200 OK\r\nContent-Ty", True),
    "over 100 headers": lambda head, n: ok(extra=b"".join(b"X-%d: v\r\n" % i for i in range(120))),
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_what_libcurl_cannot_read_is_read_by_urllib3_and_counted(name):
    """Answers urllib3 reads one way and libcurl refuses (or reads another way): through the
    libcurl session the kit gets urllib3's reading, from a second request it counts."""
    via_urllib3, via_curl, heads_urllib3, heads_curl = both(ODD[name])
    assert via_curl == via_urllib3
    assert len(heads_curl) == len(heads_urllib3) + 1, (heads_urllib3, heads_curl)


def test_a_host_libcurl_cannot_read_is_left_to_urllib3_after_three_answers():
    with RawServer(ODD["a header line without a colon"]) as server:
        s = session(True)
        for _ in range(6):
            assert s.get(server.url + "/x").status_code == 200
        s.close()
    # three answers asked twice, then urllib3 only
    assert len(server.heads) == 6 + curl.MAX_REFUSED


def test_a_refused_connection_is_unreachable_through_either_transport():
    url = f"http://127.0.0.1:{closed_port()}/x"
    via_urllib3, via_curl = outcome(False, url), outcome(True, url)
    assert via_urllib3[3] and "refused" in via_urllib3[3]
    assert via_curl == via_urllib3


def test_a_host_that_does_not_resolve_is_unreachable_through_either_transport():
    url = "http://no-such-host.invalid/x"  # .invalid never resolves (RFC 6761); no traffic leaves
    via_urllib3, via_curl = outcome(False, url), outcome(True, url)
    assert via_urllib3[3] and "does not resolve" in via_urllib3[3]
    assert via_curl[:3] == via_urllib3[:3] and "does not resolve" in via_curl[3]


@pytest.mark.parametrize("how", ["stalled headers", "trickled body"])
def test_the_deadline_holds_through_libcurl(how):
    """A response that never completes ends at the attempt's deadline, as a timeout, though
    its bytes never stop for a whole second (no read timeout would end it)."""
    data = ok(JSON * 20)
    if how == "stalled headers":
        steps = [(0.2, data[i:i + 1]) for i in range(60)]  # a header byte every 0.2 s
    else:
        steps = [(0.0, data[:200])] + [(0.2, data[i:i + 20]) for i in range(200, len(data), 20)]
    with RawServer(lambda head, n: steps) as server:
        started = time.monotonic()
        result = outcome(True, server.url + "/x", timeout=1.0)
        took = time.monotonic() - started
    assert result[:3] == ("error", "ResponseTimeout", True), result
    assert 0.9 <= took < 2.5, took


def test_libcurls_own_resend_stays_within_the_retry_budget():
    """A kept-alive connection closed after reading a request, without an answer: libcurl
    would send the request again by itself; it fails as urllib3's does, one attempt each."""
    def script(head: bytes, n: int) -> object:
        return (b"", True) if n == 2 else ok()

    via_urllib3, via_curl, heads_urllib3, heads_curl = both(script, requests_=2)
    assert via_urllib3[:3] == ("error", "ConnectionError", True)
    assert via_curl == via_urllib3 and len(heads_curl) == len(heads_urllib3) == 2


def test_a_latin1_request_header_goes_out_as_urllib3_sends_it():
    """A cookie or a config header with a Latin-1 character: the same bytes on the wire."""
    def script(head: bytes, n: int) -> bytes:
        return ok(extra=b"Set-Cookie: lb=n\xe9ud1; Path=/\r\n")

    _, _, heads_urllib3, heads_curl = both(script, requests_=2)
    assert b"Cookie: lb=n\xe9ud1" in heads_curl[1]
    assert [_head(h) for h in heads_curl] == [_head(h) for h in heads_urllib3]


def test_pycurl_is_imported_once_whatever_threads_ask_at_once(monkeypatch):
    monkeypatch.setattr(curl, "_TRIED", False)
    monkeypatch.setattr(curl, "pycurl", None)
    answers: list[bool] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        answers.append(curl.available())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [True] * 8


# -- what goes through libcurl ------------------------------------------------------------------


def test_other_requests_stay_on_urllib3():
    """A POST, a proxy, a client certificate or a streamed response is urllib3's to send."""
    adapter = curl.CurlAdapter()
    with RawServer(lambda head, n: ok()) as server:
        s = requests.Session()
        s.mount("http://", adapter)
        assert s.post(server.url + "/x", data=b"a=1").status_code == 200
        assert s.get(server.url + "/x", stream=True).status_code == 200
        with pytest.raises(requests.exceptions.ProxyError):  # urllib3 tried the proxy that is not there
            s.get(server.url + "/x", proxies={"http": f"http://127.0.0.1:{closed_port()}"})
        assert s.get(server.url + "/x").status_code == 200
    assert [h.split(b" ")[0] for h in server.heads] == [b"POST", b"GET", b"GET"]


def test_an_encoding_libcurl_cannot_decode_goes_through_urllib3():
    assert curl._decodable("gzip, deflate") and curl._decodable(None)
    assert not curl._decodable("gzip, deflate, unknown-coding")


def _load(api, tmp_path, **kwargs) -> ak.LoadReport:
    config = fast(ak.guide_config(api.base_url, api.api_key))
    return ak.load(config, "full_refresh", database=str(tmp_path / "a.duckdb"), progress=False, **kwargs)


def test_a_long_listing_is_fetched_through_libcurl_a_short_one_is_not(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(offsets, "CURL_MIN_PAGES", 5)
    with demo.serve(events=1200, customers=20) as api, caplog.at_level("DEBUG", logger="analytics_kit.fetch.curl"):
        report = _load(api, tmp_path)
        assert report.rows["events"] == 1200
        lines = [r for r in caplog.records if r.name == "analytics_kit.fetch.curl"]
        # the first page of each resource on the resource's own session; events' other 12 pages
        # (11 and the empty one after a full last page, or 11 and none) through libcurl
        assert 11 <= len(lines) <= 12, [r.getMessage() for r in lines]
        assert all("/v1/events" in r.getMessage() and "api_key=***" in r.getMessage() for r in lines)
        assert api.api_key not in caplog.text
        caplog.clear()
        monkeypatch.setattr(offsets, "CURL_MIN_PAGES", 50)
        _load(api, tmp_path)
        assert not [r for r in caplog.records if r.name == "analytics_kit.fetch.curl"]


def test_a_load_through_libcurl_loads_what_the_api_serves_despite_faults(tmp_path, monkeypatch):
    """Workers on libcurl meet a 503, a 429 and a reset mid-listing; the retries carry the load."""
    monkeypatch.setattr(offsets, "CURL_MIN_PAGES", 1)
    with demo.serve(events=2500, customers=5) as api:
        api.inject("status", path="/v1/events", status=503, offset=700)
        api.inject("status", path="/v1/events", status=429, retry_after=0, offset=1200)
        api.inject("reset", path="/v1/events", offset=1800)
        report = _load(api, tmp_path)
        assert report.rows["events"] == 2500 and len(report.retries) == 3, report.retries
        # a request libcurl sent again by itself after the reset is counted and listed too
        assert report.requests["events"] == api.count("/v1/events"), (report.requests, api.count("/v1/events"))
        assert {r.reason for r in report.retries} == {"HTTP 503", "HTTP 429", "ConnectionError"}
        frame = ak.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM analytics.events",
                         str(tmp_path / "a.duckdb"))
        assert (frame.n[0], frame.d[0]) == (2500, 2500)


def test_analytics_kit_curl_0_keeps_every_request_on_urllib3(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(offsets, "CURL_MIN_PAGES", 1)
    monkeypatch.setenv(curl.SWITCH_ENV, "0")
    assert not curl.available()
    with demo.serve(events=600, customers=5) as api, caplog.at_level("DEBUG"):
        assert _load(api, tmp_path).rows["events"] == 600
    assert not [r for r in caplog.records if r.name == "analytics_kit.fetch.curl"]
    assert [r for r in caplog.records if r.name.startswith("urllib3")]  # urllib3's own request lines


@pytest.mark.parametrize(("events", "through_curl"), [(500, False), (600, True)])
def test_the_threshold_counts_the_pages_after_the_first(tmp_path, caplog, monkeypatch, events, through_curl):
    """CURL_MIN_PAGES pages still to fetch after the first page: 600 events leave 5 pages of 100."""
    monkeypatch.setattr(offsets, "CURL_MIN_PAGES", 5)
    with demo.serve(events=events, customers=5) as api, caplog.at_level("DEBUG", logger="analytics_kit.fetch.curl"):
        _load(api, tmp_path)
    assert bool([r for r in caplog.records if r.name == "analytics_kit.fetch.curl"]) == through_curl
