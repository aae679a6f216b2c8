"""Answers cut off where nothing declared their length are retried, not loaded nor read as bad JSON.

A raw-socket server (stdlib only, 127.0.0.1) serves an offset listing honestly, with a
Content-Length, except where a test tells it to cut an answer: inside its header block,
after the status line, or mid-body with no length declared (HTTP/1.1 ``Connection: close``
or HTTP/1.0). http.client reads the first two as a 200 with an empty body and the last as
a shorter body; the load failed as "not valid JSON" before. A server that frames every
answer by closing the connection, honestly, loads without a retry.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

import analytics_kit as ak
from analytics_kit.fetch.cut_answers import ends_early

KEY = "cut-answers-key-5b1e"
RECORDS = [{"id": i, "name": f"caf\u00e9 \u2603 \x01 {i}", "deleted": False, "score": 1.5e-07,
            "updated_at": f"2026-01-{1 + i % 28:02d}T10:00:00Z"} for i in range(250)]
# Where a body is cut: just after the first occurrence of each marker
CUT_AT = {"in_string": b'"name": "ca', "in_key": b'"upd', "in_literal": b'"deleted": fa', "in_number": b'"score": 1.',
          "in_exponent": b'"score": 1.5e-', "between_tokens": b"}, ", "in_a_character": b"caf\xc3",
          "in_an_escape": b"\\u00", "in_the_first_record": b"[{"}
# Answers that are whole, framed by closing the connection, and not JSON orjson reads: not cut
WHOLE_BUT_NOT_JSON = {"html": b"<html>maintenance</html>", "nan": b'{"data": [{"id": NaN}], "total": 1}',
                      "bom": b'\xef\xbb\xbf{"data": [], "total": 0}', "utf8": b'{"data": [{"id": 1, "n": "\xff"}]}',
                      "extra": b'{"data": [], "total": 0} trailing',
                      # they end in what could begin a number or a literal, where none can stand
                      "dot_after_space": b'{"data": [{"id": 1}], "total": 1 .', "true_dot": b'{"data": [{"id": true.',
                      "t_for_a_key": b'{"data": [{"id": 1}], t'}
# The key in a body as no mask of the whole key matches it (helper-105, helper-106)
BROKEN_KEY = {"ends_in_key": b'{"data": [{"id": 1, "echo": "' + KEY[:14].encode(),
              "split_key": b"<p>" + b"\r\n".join(KEY[i:i + 5].encode() for i in range(0, len(KEY), 5)) + b"</p>",
              "encoded_key": b"<p>" + b"".join(b"%%%02X" % ord(c) for c in KEY) + b"</p>",
              "key_at_the_cut": b"<p>" + b"a" * 53 + KEY[:10].encode() + b" and more</p>",
              # a URL echoed inside a URL: percent-encoded twice (helper-107)
              "encoded_twice": b"<p>" + b"".join(b"%%25%02X" % ord(c) for c in KEY[:12]) + b"</p>",
              # an Authorization header echoed back (helper-107)
              "base64": b"<p>Authorization: Basic " + base64.b64encode(b"loader:" + KEY.encode()) + b"</p>",
              # upper-cased, or as hex (helper-108)
              "upper": b"<p>bad key " + KEY.upper().encode() + b" denied</p>",
              "hex": b"<p>key " + KEY.encode().hex().encode() + b"</p>",
              # hex pairs with separators, \x escapes (helper-109)
              "hex_pairs": b"<p>key " + KEY.encode().hex(" ").encode() + b"</p>",
              "x_escapes": b"<p>key " + b"".join(b"\\x%02x" % c for c in KEY.encode()) + b"</p>"}
# A login page echoing the key across the 60th character, where the message cuts the body it shows
ECHOED = b"<html>Denied: GET /v1/items?offset=200&api_k=" + KEY.encode() + b" is not allowed</html>"
TINY = {"retry_on_status_codes": [429, 500, 502, 503, 504], "max_retries": 2, "backoff_factor": 0.001, "timeout": 5}


class CuttingServer:
    """Pages of ``RECORDS``; ``cut(offset, how, times)`` breaks the next ``times`` answers for ``offset``."""

    def __init__(self, *, close_framed: bool = False) -> None:
        self.close_framed = close_framed  # every answer HTTP/1.0, ended by closing, honest
        self.cuts: dict[int, list] = {}
        self.served: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def cut(self, offset: int, how: str, times: int | None = 1) -> None:
        self.cuts[offset] = [how, times]

    def close(self) -> None:
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                target = head.split(b"\r\n")[0].split(b" ")[1].decode()
                query = parse_qs(urlsplit(target).query)
                offset, limit = int(query.get("offset", ["0"])[0]), int(query.get("limit", ["100"])[0])
                body = json.dumps({"data": RECORDS[offset:offset + limit], "total": len(RECORDS)},
                                  ensure_ascii=False).encode()
                how = self._take(offset) if query.get("api_key") == [KEY] else "unauthorized"
                with self.lock:
                    self.served.append((offset, how))
                if how == "unauthorized":
                    conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}")
                elif how == "honest" and not self.close_framed:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
                    continue
                elif how == "honest":
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
                elif how == "in_headers":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: 7")
                elif how == "after_status":
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                elif how == "mid_body":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                                 + body[:len(body) // 2])
                elif how == "mid_body_http10":
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + body[:-1])
                elif how in CUT_AT:
                    marker = CUT_AT[how]
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + body[:body.index(marker) + len(marker)])
                elif how == "empty_length":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length:")
                elif how == "bad_length":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: about 9000\r\nConnection: close\r\n\r\n"
                                 + body[:100])
                elif how == "location_colon":  # a redirect cut before its target: not followed
                    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation:")
                elif how == "two_lengths_cut":  # cut inside a repeated Content-Length: "46, 4"
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d"
                                 % (len(body), len(body) // 10))
                elif how == "location_cut":  # cut inside its target: followed, it would load another page
                    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /v1/items?api_key=%s&offset=1" % KEY.encode())
                elif how == "location_no_blank_line":  # a whole Location line, then the block breaks off
                    conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %s\r\n" % target.encode())
                elif how == "status_cut":  # inside the status line's code
                    conn.sendall(b"HTTP/1.1 20")
                elif how == "status_cut_early":  # inside its version
                    conn.sendall(b"HTTP/1.")
                elif how == "continue_then_close":  # an interim answer, then nothing
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                elif how == "early_hints_then_close":
                    conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                elif how in ("early_hints", "processing"):  # whole: an interim answer before the final one
                    interim = (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" if how == "early_hints"
                               else b"HTTP/1.1 102 Processing\r\n\r\n")
                    conn.sendall(interim + b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                elif how in ("gzip_lie", "deflate_lie"):  # whole, labelled compressed, sent as it is
                    coding = how.split("_")[0].encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: %s\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (coding, len(body), body))
                    continue
                elif how in ("no_content", "accepted_empty"):  # whole, and no page at all
                    conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n" if how == "no_content" else
                                 b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                    continue
                elif how == "half_a_character":  # whole JSON, a string escaping half of a UTF-16 pair
                    body = body.replace(b"caf\xc3\xa9", b"caf\\ud800", 1)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
                    continue
                elif how in ("many_headers", "long_header", "http2"):  # whole, and not what http.client reads
                    fields = {"many_headers": b"".join(b"X-H%d: v\r\n" % i for i in range(150)),
                              "long_header": b"X-Trace: " + b"a" * 70_000 + b"\r\n"}.get(how, b"")
                    status = b"HTTP/2 200 OK\r\n" if how == "http2" else b"HTTP/1.1 200 OK\r\n"
                    conn.sendall(status + fields + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                elif how == "not_http":  # bytes of another protocol (a TLS alert), no line break
                    conn.sendall(b"\x15\x03\x03\x00\x02\x02\x32")
                elif how == "redirect_status_only":
                    conn.sendall(b"HTTP/1.1 302 Found\r\n")
                elif how in BROKEN_KEY:  # whole by its length, holding the key cut off, split or encoded
                    cut = BROKEN_KEY[how]
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(cut), cut))
                    continue
                elif how == "echoed":
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n" + ECHOED)
                elif how in WHOLE_BUT_NOT_JSON:
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n" + WHOLE_BUT_NOT_JSON[how])
                return  # each of these ends by closing the connection

    def _take(self, offset: int) -> str:
        with self.lock:
            cut = self.cuts.get(offset)
            if cut is None or cut[1] == 0:
                return "honest"
            if cut[1] is not None:
                cut[1] -= 1
            return cut[0]


@pytest.fixture
def server():
    made: list[CuttingServer] = []

    def make(**kwargs) -> CuttingServer:
        made.append(CuttingServer(**kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()


def _config(server: CuttingServer) -> dict:
    return {
        "client": {"base_url": server.base_url,
                   "auth": {"type": "api_key", "name": "api_key", "api_key": KEY, "location": "query"}},
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [{"name": "items", "endpoint": {
            "path": "/v1/items", "data_selector": "data", "error_handler": TINY,
            "paginator": {"type": "offset", "limit": 100, "total_path": "total"}}}],
    }


def _ids(database) -> list[int]:
    return ak.query("SELECT id FROM analytics.items ORDER BY id", database=database)["id"].tolist()


@pytest.mark.parametrize("how", [
    "in_headers", "after_status", "mid_body", "mid_body_http10", "empty_length", "bad_length", "redirect_status_only",
    "location_colon", "location_cut", "location_no_blank_line", "two_lengths_cut", "status_cut", "status_cut_early",
    "continue_then_close", "early_hints_then_close",
    *CUT_AT,
])
@pytest.mark.parametrize("offset", [0, 100])  # the first page, on the resource's session; a worker's
def test_an_answer_cut_once_is_retried_and_every_record_loads(server, tmp_path, how, offset):
    api = server()
    api.cut(offset, how)
    database = tmp_path / "cut.duckdb"
    report = ak.load(_config(api), "full_refresh", database=database, progress=False)
    assert _ids(database) == [r["id"] for r in RECORDS]
    assert len(report.retries) == 1 and f"offset={offset}&" in report.retries[0].request, report.retries
    assert report.retries[0].reason == "ChunkedEncodingError", report.retries  # not "HTTP 200"
    assert (offset, how) in api.served and KEY not in str(report)


@pytest.mark.parametrize(("how", "said"), [("in_headers", "inside the answer's header block"),
                                           ("mid_body", "declared no length"),
                                           ("location_cut", "inside the answer's header block"),
                                           ("status_cut", "inside the answer's status line"),
                                           ("continue_then_close", "after an interim answer")])
def test_an_answer_cut_every_time_fails_the_load_naming_the_request_and_commits_nothing(server, tmp_path, how, said):
    api = server()
    database = tmp_path / "cut.duckdb"
    ak.load(_config(api), "full_refresh", database=database, progress=False)
    api.cut(100, how, times=None)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(_config(api), "full_refresh", database=database, progress=False)
    text = str(caught.value)
    assert "broke off its response" in text and "offset=100" in text and "3 attempt(s)" in text, text
    assert said in text and KEY not in text
    assert [o for o, h in api.served if h == how] == [100, 100, 100]
    assert [o for o, _ in api.served].count(1) == 0  # the cut Location's target was never asked for
    assert _ids(database) == [r["id"] for r in RECORDS]  # the earlier load's table, whole


@pytest.mark.parametrize("how", ["early_hints", "processing"])
def test_an_interim_answer_before_the_final_one_is_read_past(server, tmp_path, how):
    api = server()
    for offset in (0, 100, 200):
        api.cut(offset, how)
    database = tmp_path / "interim.duckdb"
    report = ak.load(_config(api), "full_refresh", database=database, progress=False)
    assert _ids(database) == [r["id"] for r in RECORDS] and not report.retries
    assert [h for _, h in api.served].count(how) == 3


@pytest.mark.parametrize(("how", "said", "advice"), [
    ("no_content", "got a response with an empty body (HTTP 204)", "a 204 No Content"),
    ("accepted_empty", "got a response with an empty body (HTTP 202)", "a 202 Accepted"),
    ("half_a_character", "got a response with a string holding half of a UTF-16 pair", "a fault of the API's data")])
def test_an_answer_that_is_no_page_says_what_it_is_not_to_check_base_url(server, tmp_path, how, said, advice):
    """An empty 204 or 202, or a lone surrogate escape, was "not valid JSON ... an HTML error page ... check
    client.base_url", the status never named (helper-146)."""
    api = server()
    error = _refused_after_a_load(api, tmp_path, how)
    assert said in str(error) and advice in error.guidance, error
    assert "base_url" not in error.guidance and KEY not in str(error) + error.guidance


def _refused_after_a_load(api, tmp_path, how: str) -> ak.LoadError:
    """The error of a full refresh whose page at offset 100 is answered ``how`` every time, after one that loaded;
    the table stays as that load left it."""
    database = tmp_path / "refused.duckdb"
    ak.load(_config(api), "full_refresh", database=database, progress=False)
    api.cut(100, how, times=None)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(_config(api), "full_refresh", database=database, progress=False)
    assert _ids(database) == [r["id"] for r in RECORDS]  # the earlier load's table, whole
    return caught.value


@pytest.mark.parametrize(("how", "said"), [
    ("many_headers", "with 100 or more header fields"),
    # retried as a dropped connection, advising to check base_url (helper-146)
    ("long_header", "with a header line longer than 65,536 bytes"),
    ("http2", "with a status line of 'HTTP/2', an HTTP version Python's HTTP client (http.client) does not speak")])
def test_a_whole_answer_http_client_does_not_read_fails_once_saying_so(server, tmp_path, how, said):
    api = server()
    text = str(_refused_after_a_load(api, tmp_path, how))
    assert said in text and "offset=100" in text and KEY not in text, text
    assert "dropped the connection" not in text and "base_url" not in text
    assert [o for o, h in api.served if h == how] == [100]  # not retried: it would answer the same


def test_bytes_of_another_protocol_are_not_taken_for_a_cut_answer(server, tmp_path):
    api = server()
    database = tmp_path / "other.duckdb"
    ak.load(_config(api), "full_refresh", database=database, progress=False)
    api.cut(100, "not_http", times=None)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(_config(api), "full_refresh", database=database, progress=False)
    text = str(caught.value)
    assert "broke off" not in text and "dropped the connection" in text and "BadStatusLine(" in text, text
    assert "could not be reached" not in text and "raise error_handler.max_retries" in text, text


def test_answers_framed_by_closing_the_connection_load_without_a_retry(server, tmp_path):
    api = server(close_framed=True)
    database = tmp_path / "close.duckdb"
    report = ak.load(_config(api), "full_refresh", database=database, progress=False)
    assert _ids(database) == [r["id"] for r in RECORDS] and not report.retries


@pytest.mark.parametrize("how", sorted(WHOLE_BUT_NOT_JSON))
def test_a_whole_answer_that_is_not_json_is_not_retried_and_keeps_its_diagnosis(server, tmp_path, how):
    api = server(close_framed=True)
    api.cut(200, how, times=None)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(_config(api), "full_refresh", database=tmp_path / "whole.duckdb", progress=False)
    text = str(caught.value)
    assert "offset=200" in text and "not valid JSON" in text and "broke off" not in text, text
    assert [o for o, h in api.served if h == how] == [200]
    # what the body looks like, where the parse could decode it (helper-102: the decoder's position only)
    body = WHOLE_BUT_NOT_JSON[how]
    if how != "utf8":
        assert "the body begins " + repr(body.decode("utf-8")[:60]) in text, text


def test_a_body_shown_in_an_error_is_masked_before_it_is_cut(server, tmp_path):
    """The key straddles where the shown start of the body ends: cut first, its first half would show."""
    assert ECHOED.index(KEY.encode()) < 60 < ECHOED.index(KEY.encode()) + len(KEY)
    api = server(close_framed=True)
    api.cut(200, "echoed", times=None)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(_config(api), "full_refresh", database=tmp_path / "echo.duckdb", progress=False)
    text = str(caught.value)
    assert "the body begins '<html>Denied" in text and "api_k=***" in text, text
    assert KEY[:6] not in text, text
    # the key cut off by the body's end or by the excerpt's, split by line breaks, or percent-encoded: no mask of
    # the whole key matches, and nothing of the body is shown (helper-105, helper-106)
    for how in BROKEN_KEY:
        api.cut(200, how, times=None)
        with pytest.raises(ak.LoadError) as caught:
            ak.load(_config(api), "full_refresh", database=tmp_path / "echo.duckdb", progress=False)
        text = str(caught.value)
        assert "the body is not shown: it holds what looks like part of your credentials" in text, (how, text)
        assert KEY[:4] not in text.lower() and "%63%75%74" not in text and KEY.encode().hex()[:12] not in text, (how, text)


def test_the_place_the_parse_stopped_is_shown_where_it_stands_once_masked():
    """A masked key before the parse position shifted the excerpt by the key's length less the mask's (helper-107)."""
    import orjson

    from analytics_kit.fetch.records import body_shown
    from analytics_kit.redact import Redactor

    body = '{"k": "' + KEY + '", "t": "' + "t" * 20 + '", BROKEN_HERE' + "x" * 80 + "}"
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads(body)
    shown = body_shown(caught.value, Redactor([KEY]))
    assert f"at character {body.index('BROKEN_HERE')} reads 'ttttttt\", BROKEN_HERExxx" in shown, shown


def test_every_cut_of_a_page_reads_as_cut_and_the_whole_page_does_not():
    body = json.dumps({"data": RECORDS[:40], "total": len(RECORDS), "next": None, "ratio": -2.5e+300,
                       "tags": ["\U0001F600", "\\", "\"", "\u2028"]}, ensure_ascii=False, indent=1).encode()
    ascii_body = json.dumps({"data": RECORDS[:5], "emoji": "\U0001F600"}).encode()  # \ud83d\ude00 escapes
    for whole in (body, ascii_body):
        assert not ends_early(whole)
        assert [i for i in range(len(whole)) if not ends_early(whole[:i])] == []
    for name, whole in WHOLE_BUT_NOT_JSON.items():
        assert not ends_early(whole), name
    # the json module cannot read these (too deep, too many digits): not called cut, and no exception
    assert not ends_early(b'{"meta": ' + b"[" * 1100) and not ends_early(b'{"n": ' + b"1" * 5000)


def test_a_request_header_requests_refuses_is_not_taken_for_a_broken_answer(server, tmp_path):
    api = server()
    config = _config(api)
    config["client"]["headers"] = {"X-Trace": "a\r\nb"}
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, "full_refresh", database=tmp_path / "header.duckdb", progress=False)
    assert "InvalidHeader" in str(caught.value) and "cut or malformed" not in str(caught.value)
    assert api.served == []  # refused before sending, and not retried


def test_bytes_of_another_protocol_on_the_first_request_say_to_check_the_base_url(server, tmp_path):
    """Something on the port that is no HTTP API: it took the connection, so "could not be reached" was wrong, and
    retrying will not help (helper-85)."""
    api = server()
    api.cut(0, "not_http", times=None)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(_config(api), "full_refresh", database=tmp_path / "first.duckdb", progress=False)
    text = str(caught.value)
    assert "dropped the connection" in text and "could not be reached" not in text, text
    assert "points at the API" in text and KEY not in text, text


@pytest.mark.parametrize("how", ["gzip_lie", "deflate_lie"])
def test_an_answer_labelled_compressed_that_is_not_says_so_not_that_the_connection_closed(server, tmp_path, how):
    """A body sent as it is under Content-Encoding: gzip failed as "The connection closed in the middle of a
    response" (helper-102); the connection did not close, and a retry of the same request gets the same."""
    api = server()
    api.cut(100, how, times=None)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(_config(api), database=tmp_path / "a.duckdb", progress=False)
    text, guidance = str(caught.value), caught.value.guidance
    assert f"Content-Encoding: {how.split('_')[0]}" in text and "offset=100" in text, text
    assert "closed" not in text + guidance and "Accept-Encoding" in guidance, (text, guidance)
