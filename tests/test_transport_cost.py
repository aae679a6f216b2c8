"""What the kit's transport does per request, kept cheap without losing what it guards.

Each page worker's socket reads let go of the GIL, and with the extracting thread and the
other workers waiting for it, each release costs a thread switch (``bench/transport_speed.py``).
So an answer already received is read in one ``recv``, a read waits in ``recv`` itself (the
attempt's deadline bounds it, not a socket timeout that polls first), and the connection pool
of an origin is looked up once, not rebuilt from the URL for every page. Real sockets on
127.0.0.1 throughout.
"""

from __future__ import annotations

import copy
import shutil
import socket
import ssl
import subprocess
import tempfile
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


def _serving(handler: type, **attributes) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 answering with ``handler`` in a thread of its own; ``attributes`` set on it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for name, value in attributes.items():
        setattr(server, name, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _stop(*servers: ThreadingHTTPServer) -> None:
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def two_servers():
    servers = [_serving(_Named, name=name, peers=set()) for name in (b"first", b"second")]
    yield servers
    _stop(*servers)


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


class _Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next status of the server's script, then 200s."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        script = self.server.script  # type: ignore[attr-defined]
        status = script.pop(0) if script else 200
        if status == 0:  # a connection closed before any answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = b"{}"
        self.send_response(status)
        if status in (301, 302):
            self.send_header("Location", "/moved")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def scripted():
    server = _serving(_Scripted, script=[])
    yield server
    _stop(server)


@pytest.mark.parametrize("script, status, retried", [
    ([], 200, []),
    ([302], 200, []),  # a redirect hop runs inside the first attempt
    ([404], 404, []),  # a status the policy never retries
    ([503, 503], 200, ["HTTP 503", "HTTP 503"]),
    ([429, 500, 502, 504], 504, ["HTTP 429", "HTTP 500", "HTTP 502"]),  # out of attempts: the last answer
    ([0], 200, ["ConnectionError"]),
], ids=["ok", "redirect", "never retried", "503 twice", "out of attempts", "dropped"])
def test_the_first_attempt_is_judged_by_the_policy_as_every_other(scripted, monkeypatch, script, status, retried):
    """The first attempt runs outside tenacity (its setup cost 70 us a request); whatever it ends in,
    the policy judges it as it judges a retry: the same retries, waits and final answer."""
    from tenacity import Retrying

    calls = []
    real = Retrying.__call__
    monkeypatch.setattr(Retrying, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    scripted.script[:] = script
    stats, waits = LoadStats(), []
    session = retry_session(RetryPolicy(max_retries=3, backoff_factor=0.001, timeout=5), resource="r",
                            stats=stats, sleep=waits.append)
    response = session.get(f"http://127.0.0.1:{scripted.server_address[1]}/page")
    assert response.status_code == status
    assert [e.reason for e in stats.retries] == retried
    assert [e.attempt for e in stats.retries] == list(range(1, len(retried) + 1))
    assert len(waits) == len(retried)
    assert calls == ([1] if retried else [])  # tenacity only for an attempt that failed


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
    # content types after which the email parser looks for a body, finds none and says so (helper-67)
    b"Content-Type: multipart/mixed\r\n\r\n",
    b"Content-Type:  Multipart/Form-Data ; boundary=x\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"content-type: message/delivery-status\r\nA: 1\r\n\r\n",
    b"Content-Type: text/plain\r\nContent-Type: multipart/mixed\r\n\r\n",
    b"Content-Type: application/json; x=multipart/mixed\r\nContent-Transfer-Encoding: base64\r\n\r\n",
]


def _both(block: bytes):  # type: ignore[no-untyped-def]
    import http.client
    import io

    from analytics_kit.fetch import header_fields

    return header_fields.parse_headers(io.BytesIO(block)), http.client.parse_headers(io.BytesIO(block))


def _shape(payload):  # type: ignore[no-untyped-def]
    """A payload compared by value: the parser attaches messages for message/* types."""
    if isinstance(payload, list):
        return [_shape(part) for part in payload]
    if hasattr(payload, "items") and hasattr(payload, "get_payload"):
        return payload.items(), _shape(payload.get_payload()), [type(d) for d in payload.defects]
    return payload


def _same(ours, theirs) -> None:  # type: ignore[no-untyped-def]
    assert ours._headers == theirs._headers
    assert ours.items() == theirs.items()
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert _shape(ours.get_payload()) == _shape(theirs.get_payload())
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


def test_a_raised_field_limit_is_honoured_as_http_client_honours_it(monkeypatch):
    import http.client
    import io

    from analytics_kit.fetch import header_fields

    monkeypatch.setattr(http.client, "_MAXHEADERS", 1000)  # the usual way a program reads more
    block = b"".join(b"F%d: x\r\n" % i for i in range(150)) + b"\r\n"
    _same(header_fields.parse_headers(io.BytesIO(block)), http.client.parse_headers(io.BytesIO(block)))


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


# -- through a proxy: the deadline holds there too ------------------------------------------------


class Proxy:
    """A forward proxy on 127.0.0.1: absolute-form requests for http, CONNECT tunnels for https.
    ``give`` bytes of each upstream answer (None: all) are passed on, then it stalls, or trickles
    the rest a byte at a time with ``trickle``."""

    def __init__(self, give: int | None = None, trickle: bool = False, tls: ssl.SSLContext | None = None,
                 slow_connect: bool = False) -> None:
        self.give, self.trickle, self.tls, self.slow_connect = give, trickle, tls, slow_connect
        self.seen: list[str] = []
        self.passed: list[int] = []  # bytes of each upstream connection passed on whole
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _pass(self, source: socket.socket, sink: socket.socket) -> None:
        """Upstream's bytes to the client, up to ``give``."""
        sent = 0
        try:
            while data := source.recv(65536):
                if self.give is not None and sent + len(data) > self.give:
                    data = data[:self.give - sent]
                    sink.sendall(data)
                    rest = b"x" * 1000
                    while self.trickle and not self.stop.is_set() and rest:
                        sink.sendall(rest[:1])
                        rest = rest[1:]
                        time.sleep(0.05)
                    self.stop.wait(30)
                    return
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        self.passed.append(sent)

    def _serve(self, client: socket.socket) -> None:
        # an upstream connection left open would hold the https API's accept() in its TLS handshake,
        # and the API fixture's shutdown() with it
        upstream: socket.socket | None = None
        try:
            if self.tls is not None:  # an https proxy: the tunnel's TLS runs inside this TLS
                client = self.tls.wrap_socket(client, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                if not (data := client.recv(65536)):
                    return
                head += data
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
            self.seen.append(f"{method} {target}")
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                assert host == "127.0.0.1"
                client.sendall(b"HTTP/1.1 200 Connection established\r\n")
                while self.slow_connect:  # header lines, never the blank line
                    if self.stop.is_set():
                        return
                    client.sendall(b"X-Wait: 1\r\n")
                    time.sleep(0.2)
                client.sendall(b"\r\n")
                upstream = socket.create_connection((host, int(port)))
                threading.Thread(target=self._pass, args=(client, upstream), daemon=True).start()
            else:
                port = int(target.split("/")[2].split(":")[1])
                assert target.startswith("http://127.0.0.1:")
                upstream = socket.create_connection(("127.0.0.1", port))
                upstream.sendall(head)
            self._pass(upstream, client)
        except OSError:
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def proxied(monkeypatch):
    proxies: list[Proxy] = []

    def start(scheme: str = "http", **kwargs) -> Proxy:  # type: ignore[no-untyped-def]
        proxy = Proxy(**kwargs)
        proxies.append(proxy)
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(f"{scheme.upper()}_PROXY", proxy.url)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()


def _timing_out(config: dict) -> tuple[str, float]:
    import analytics_kit as ak

    for resource in config["resources"]:
        resource["endpoint"]["error_handler"] = {"retry_on_status_codes": [429, 500, 502, 503, 504], "max_retries": 1,
                                                 "backoff_factor": 0.01, "timeout": 1}
    started = time.monotonic()
    with pytest.raises(ak.LoadError) as caught:
        ak.load(config, "full_refresh", progress=False)
    return str(caught.value), time.monotonic() - started


def test_a_load_through_an_http_proxy(api, proxied):
    import analytics_kit as ak

    proxy = proxied()
    report = ak.load(ak.guide_config(api.base_url, api.api_key), "full_refresh", progress=False)
    assert report.rows["events"] == 250
    assert any(seen.startswith(f"GET {api.base_url}/v1/events?") for seen in proxy.seen)


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickling"])
def test_an_answer_that_stalls_or_trickles_through_an_http_proxy_times_out(api, proxied, trickle):
    import analytics_kit as ak

    proxied(give=300, trickle=trickle)  # the status line and some headers, then nothing, or a byte at a time
    text, took = _timing_out(ak.guide_config(api.base_url, api.api_key))
    assert "no complete response within 1 s" in text and "2 attempt(s)" in text, text
    assert took < 2 * 1 + 3  # two attempts of 1 s, a short wait, and the load's own start


@pytest.fixture(scope="module")
def tls_api():
    """An https API on 127.0.0.1 with a certificate made here by openssl, and a server context
    with the same certificate (for an https proxy on the same address)."""
    from test_connect import Events

    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    folder = tempfile.mkdtemp()
    cert, key = f"{folder}/cert.pem", f"{folder}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Events)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert, context
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("proxy_tls", [False, True], ids=["http proxy", "https proxy (TLS in TLS)"])
def test_an_https_answer_that_stalls_in_a_proxys_tunnel_times_out(tls_api, proxied, monkeypatch, proxy_tls):
    import analytics_kit as ak
    from analytics_kit.fetch import deadlines

    base_url, cert, context = tls_api
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    config = {"client": {"base_url": base_url,
                         "auth": {"type": "api_key", "name": "api_key", "api_key": "k", "location": "query"}},
              "resources": [{"name": "events", "primary_key": "id", "write_disposition": "merge",
                             "endpoint": {"path": "/v1/events", "data_selector": "data",
                                          "paginator": {"type": "offset", "limit": 100}}}]}
    tls = context if proxy_tls else None
    proxy = proxied("https", tls=tls)
    assert ak.load(config, "full_refresh", progress=False).rows == {"events": 2}
    assert proxy.seen and all(seen.startswith("CONNECT 127.0.0.1:") for seen in proxy.seen)
    for _ in range(100):  # the tunnels end as the load closes its connections
        if proxy.passed:
            break
        time.sleep(0.05)
    # the tunnel passes the handshake and most of the answer, then stalls
    stalling = proxied("https", give=max(proxy.passed) - 30, tls=tls)
    text, took = _timing_out(copy.deepcopy(config))
    assert stalling.seen and "no complete response within 1 s" in text, text
    assert took < 2 * 1 + 3
    # the watchdog outlived cutting a socket it reached through the tunnel's TLS (helper-68)
    assert deadlines._WATCHDOG._running and any(t.name == "kit-deadlines" for t in threading.enumerate())


@pytest.mark.parametrize("proxy_tls", [False, True], ids=["http proxy", "https proxy"])
def test_a_proxy_that_never_ends_its_connect_answer_times_out(tls_api, proxied, monkeypatch, proxy_tls):
    """Header lines of the CONNECT answer, one every 0.2 s and never the blank line: each wait was
    within the connect timeout, and the socket was watched only once connected (helper-68)."""
    base_url, cert, context = tls_api
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    proxied("https", slow_connect=True, tls=context if proxy_tls else None)
    config = {"client": {"base_url": base_url,
                         "auth": {"type": "api_key", "name": "api_key", "api_key": "k", "location": "query"}},
              "resources": [{"name": "events", "primary_key": "id",
                             "endpoint": {"path": "/v1/events", "data_selector": "data",
                                          "paginator": {"type": "offset", "limit": 100}}}]}
    text, took = _timing_out(config)
    assert "no complete response within 1 s" in text, text
    assert took < 2 * 1 + 3
