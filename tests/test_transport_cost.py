"""What the kit's transport does per request, kept cheap without losing what it guards.

Each page worker's socket reads let go of the GIL, and with the extracting thread and the
other workers waiting for it, each release costs a thread switch (``bench/transport_speed.py``).
So an answer already received is read in one ``recv``, a read waits in ``recv`` itself (the
attempt's deadline bounds it, not a socket timeout that polls first), and the connection pool
of an origin is looked up once, not rebuilt from the URL for every page. Real sockets on
127.0.0.1 throughout.
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from analytics_kit.fetch.cut_answers import HeaderCheckedResponse
from analytics_kit.fetch.retry import RetryPolicy, retry_session
from analytics_kit.fetch.stats import LoadStats


class CountingSocket(socket.socket):
    """A socket that counts the reads made on it (http.client reads through ``recv_into``)."""

    reads = 0

    def recv_into(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().recv_into(*args, **kwargs)


def _answer(body: bytes, *, chunked: bool = False) -> bytes:
    if chunked:
        framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5000]), body[i:i + 5000]) for i in range(0, len(body), 5000))
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                + framed + b"0\r\n\r\n")
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def _read(answer: bytes, *, pieces: int = 1) -> tuple[bytes, int]:
    """Reads ``answer`` (sent in ``pieces``, the later ones after a pause) as the kit's responses
    do; the body, and how many reads it took."""
    ours, theirs = socket.socketpair()
    counted = CountingSocket(ours.family, ours.type, ours.proto, fileno=ours.detach())
    step = -(-len(answer) // pieces)

    def send() -> None:
        for start in range(0, len(answer), step):
            theirs.sendall(answer[start:start + step])
            time.sleep(0.05)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        if pieces == 1:
            sender.join(5)
        response = HeaderCheckedResponse(counted, method="GET")
        response.begin()
        body = response.read()
        response.close()
        return body, counted.reads
    finally:
        sender.join(5)
        counted.close()
        theirs.close()


def test_an_answer_already_received_is_read_in_one_recv():
    body = b'{"data": [' + b", ".join(b'{"id": %d, "name": "record %d"}' % (i, i) for i in range(1000)) + b"]}"
    assert 20_000 < len(body) < 60_000  # a page of a few hundred records
    got, reads = _read(_answer(body))
    assert got == body
    assert reads == 1  # http.client's own 8 KB buffer takes one per 8 KB


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("size, pieces", [(200_000, 1), (30_000, 4), (5, 1)], ids=["past the buffer", "in pieces", "tiny"])
def test_answers_larger_than_the_buffer_or_in_pieces_are_read_whole(size, pieces, chunked):
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    got, reads = _read(_answer(body, chunked=chunked), pieces=pieces)
    assert got == body
    assert reads >= max(1, pieces)


# -- the pool of each origin --------------------------------------------------------------------


class _Named(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.peers.add(self.client_address)  # type: ignore[attr-defined]
        body = self.server.name  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def two_servers():
    servers = []
    for name in (b"first", b"second"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        server.daemon_threads = True
        server.name, server.peers = name, set()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def test_each_origin_keeps_its_own_pool_when_requests_alternate(two_servers):
    session = retry_session(RetryPolicy(max_retries=0, timeout=5), resource="r", stats=LoadStats())
    urls = [f"http://127.0.0.1:{s.server_address[1]}/page" for s in two_servers]
    # the pool manager holds one pool, so each switch of origin closes the other's pool
    answers = [session.get(urls[i % 2]).content for i in range(8)]
    assert answers == [b"first", b"second"] * 4
    # one origin alone: one pool, one kept-alive connection for every request
    for _ in range(10):
        assert session.get(urls[0]).content == b"first"
    first_peers = len(two_servers[0].peers)
    for _ in range(10):
        assert session.get(urls[0]).content == b"first"
    assert len(two_servers[0].peers) == first_peers


def test_a_pool_is_looked_up_per_origin_and_tls_setting():
    """verify and cert are part of a pool's identity: a request with other TLS settings gets its own
    (looked up only: nothing is sent)."""
    session = retry_session(RetryPolicy(max_retries=0, timeout=5), resource="r", stats=LoadStats())
    url = "https://127.0.0.1:9/page"
    adapter = session.get_adapter(url)
    prepared = session.prepare_request(requests.Request("GET", url))
    one = adapter.get_connection_with_tls_context(prepared, True)
    assert adapter.get_connection_with_tls_context(prepared, True) is one
    assert one.cert_reqs == "CERT_REQUIRED"
    other = adapter.get_connection_with_tls_context(prepared, False)
    assert other is not one and other.cert_reqs == "CERT_NONE"
    again = session.prepare_request(requests.Request("GET", "https://127.0.0.1:8/page"))
    assert adapter.get_connection_with_tls_context(again, True).port == 8
    # a proxy is requests' own business, looked up afresh
    proxied = adapter.get_connection_with_tls_context(prepared, True, proxies={"https": "http://127.0.0.1:9"})
    assert proxied is not one and proxied.proxy is not None


# -- reads bounded by the deadline, not by a socket timeout -------------------------------------


class _Stalling(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"{")
        self.wfile.flush()
        self.server.release.wait(10)  # type: ignore[attr-defined]

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def stalling():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stalling)
    server.daemon_threads = True
    server.release = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/page"
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("stream", [False, True], ids=["read in the attempt", "streamed"])
def test_a_stalled_body_ends_at_the_timeout(stalling, stream):
    """Without a socket read timeout the attempt's deadline cuts a stalled body; a streamed body,
    read after the attempt, keeps a read timeout of its own."""
    session = retry_session(RetryPolicy(max_retries=0, timeout=0.5), resource="r", stats=LoadStats())
    started = time.monotonic()
    with pytest.raises(requests.RequestException):
        _ = session.get(stalling, stream=stream).content
    assert time.monotonic() - started < 3


# -- header blocks read without the email parser ------------------------------------------------

BLOCKS = [
    b"Server: demo\r\nContent-Type: application/json\r\nContent-Length: 24309\r\n\r\n",
    b"A: 1\nB:2\n\n",  # LF only, no blank after the colon
    b"Empty:\r\nTabbed:\t\t v \r\nSpaces:   x  y   \r\n\r\n",  # blanks: the leading go, the trailing stay
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nset-cookie: c=3\r\n\r\n",
    b"X-Odd!#$%&'*+-.^_`|~: ok\r\nX-Colon: a: b: c\r\n\r\n",
    b"Latin: caf\xe9 \xff\r\nNel: a\x85b\r\nControls: a\x0bb\x0cc\x1cd\x00e\r\n\r\n",
    b"Folded: first\r\n second\r\n\tthird\r\nAfter: x\r\n\r\n",  # obsolete line folding
    b" Leading: continuation first\r\nA: 1\r\n\r\n",
    b"Not a field\r\nA: 1\r\n\r\n",
    b"A: 1\r\nNot a field\r\nB: 2\r\n\r\n",  # the email parser puts the rest in the payload
    b": no name\r\nA: 1\r\n\r\n",
    b"Sp ace: x\r\n\r\n",
    b"A: bare\rcarriage\r\nB: 2\r\n\r\n",
    b"A: 1\r\r\n\r\n",
    b"From someone: x\r\nA: 1\r\n\r\n",
    b"From: someone\r\n\r\n",
    b"A: 1\r\nB: 2",  # cut: no blank line
    b"A: 1\r\n",  # cut after a whole line
    b"\r\n",  # no fields
    b"".join(b"F%d: %d\r\n" % (i, i) for i in range(99)) + b"\r\n",
]


def _both(block: bytes):  # type: ignore[no-untyped-def]
    import http.client
    import io

    from analytics_kit.fetch import header_fields

    return header_fields.parse_headers(io.BytesIO(block)), http.client.parse_headers(io.BytesIO(block))


def _same(ours, theirs) -> None:  # type: ignore[no-untyped-def]
    assert ours._headers == theirs._headers
    assert ours.items() == theirs.items()
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert ours.get_payload() == theirs.get_payload()
    assert ours.get_unixfrom() == theirs.get_unixfrom()
    assert type(ours) is type(theirs)


@pytest.mark.parametrize("block", BLOCKS, ids=range(len(BLOCKS)))
def test_a_header_block_parses_as_http_client_parses_it(block):
    _same(*_both(block))


def test_random_header_blocks_parse_as_http_client_parses_them():
    import random

    rng = random.Random(1903)
    pieces = [b"A", b"b", b"-", b":", b": ", b" ", b"\t", b"\r\n", b"\n", b"\r", b"\xe9", b"\x85", b"\x00", b"x=1",
              b"From ", b"\x7f", b"(", b"\x0b"]
    for _ in range(3000):
        lines = [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(0, 5))]
        block = b"".join(line if line.endswith(b"\n") else line + b"\r\n" for line in lines) + rng.choice(
            [b"\r\n", b"\n", b""])
        _same(*_both(block))


def test_too_many_fields_and_long_lines_fail_as_in_http_client():
    import http.client
    import io

    from analytics_kit.fetch import header_fields

    many = b"".join(b"F%d: x\r\n" % i for i in range(101)) + b"\r\n"
    for block in (many, b"A: " + b"x" * 70_000 + b"\r\n\r\n"):
        with pytest.raises(http.client.HTTPException) as ours:
            header_fields.parse_headers(io.BytesIO(block))
        with pytest.raises(http.client.HTTPException) as theirs:
            http.client.parse_headers(io.BytesIO(block))
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_begin_is_http_clients_own_with_the_faster_parser():
    import http.client

    from analytics_kit.fetch import header_fields

    # a Python whose begin no longer looks parse_headers up by name keeps http.client's begin (slower,
    # not wrong); this says when that happens, so the gain is not lost unnoticed
    assert header_fields.begin is not http.client.HTTPResponse.begin
    assert header_fields.begin.__code__ is http.client.HTTPResponse.begin.__code__
    body = b'{"data": []}'
    got, _ = _read(b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert got == body
