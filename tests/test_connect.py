"""An API that cannot be connected to, or that says the path is wrong: advice that fits, at once.

Real sockets on 127.0.0.1: a closed port, the demo API spoken to in https, an https server
with a certificate made here by ``openssl``, and a name lookup in a network namespace with no
network (``unshare --net``), so no lookup leaves the machine.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import analytics_kit as ak
from analytics_kit.fetch.retry import RetryPolicy, retry_session
from analytics_kit.fetch.stats import LoadStats

KEY = "canary-connect-3b9d"
# Failing fast: far below the guide's retry schedule (2 + 4 + 8 s), with room for a slow machine.
FAST = 3.0

from helpers import closed_port


def fails(config: dict, caplog) -> tuple[ak.LoadError, float]:
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ak.LoadError) as caught:
            ak.load(config, progress=False)
    took = time.monotonic() - started
    assert KEY not in str(caught.value) + caplog.text
    return caught.value, took


def test_a_refused_connection_fails_at_once_naming_host_and_port(monkeypatch, caplog):
    monkeypatch.setenv("API_KEY", KEY)
    port = closed_port()
    error, took = fails(ak.guide_config(f"http://127.0.0.1:{port}"), caplog)  # the guide's retry policy
    assert took < FAST, f"{took:.1f} s"
    assert str(error).startswith(f"Could not connect to 127.0.0.1:{port} for resource 'events': the connection "
                                 "was refused: nothing listens on that port. The API had not answered in this run, "
                                 "so the kit did not retry")
    assert f"client.base_url (http://127.0.0.1:{port})" in str(error)
    assert "retrying" not in caplog.text


def test_https_on_an_http_port_fails_at_once_naming_the_tls_failure(api, monkeypatch, caplog):
    monkeypatch.setenv("API_KEY", api.api_key)
    error, took = fails(ak.guide_config(f"https://127.0.0.1:{api.port}"), caplog)
    assert took < FAST, f"{took:.1f} s"
    assert f"Could not connect to 127.0.0.1:{api.port} for resource 'events': the TLS handshake failed (" in str(error)
    assert "http:// for a plain HTTP port" in str(error)
    assert api.requests == []  # the demo API saw no request it could parse


def _offline_load(tmp_path: Path, base_url: str) -> tuple[float, str, str]:
    """(seconds, the LoadError's text, all output) of a load of ``base_url`` in a network namespace of its own, whose
    only interface (loopback) is down: nothing is sent anywhere."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--net", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs `unshare --net` (root or user namespaces) for a load without a network")
    script = (
        "import time, analytics_kit as ak\n"
        "import analytics_kit.run.load  # dlt and the load's modules: their import is not the connection\n"
        "t = time.monotonic()\n"
        "try:\n"
        f"    ak.load(ak.guide_config({base_url!r}), progress=False)\n"
        "except ak.LoadError as e:\n"
        "    print(f'{time.monotonic() - t:.2f}'); print(e)\n"
    )
    result = subprocess.run([unshare, "--net", sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env={**os.environ, "API_KEY": KEY})
    took, message = result.stdout.split("\n", 1)
    assert "retrying" not in result.stderr, result.stdout + result.stderr
    return float(took), message, result.stdout + result.stderr


def test_a_name_that_does_not_resolve_fails_at_once(tmp_path):
    """In a network namespace of its own the lookup fails where it starts: nothing is sent."""
    took, message, said = _offline_load(tmp_path, "http://api.example.invalid:8080")
    assert took < FAST and KEY not in said
    assert message.startswith("Could not connect to api.example.invalid:8080 for resource 'events': the host "
                              "name does not resolve ([Errno -3] Temporary failure in name resolution)"), message
    assert "Check the host name in client.base_url (http://api.example.invalid:8080)" in message


@pytest.mark.parametrize(("url", "why"), [("http://127.0.0.1:8080", "no route to the host"),
                                         ("http://[::1]:8080", "no interface for its address family")])
def test_a_network_without_a_route_fails_at_once_and_says_so(tmp_path, url, why):
    """An offline machine (connect fails with ENETUNREACH) was retried for 14 s and blamed on a server "that dropped
    the connection" (helper-125); [::1] there read as a host name that does not resolve (helper-126)."""
    took, message, said = _offline_load(tmp_path, url)
    assert took < FAST and KEY not in said
    assert message.startswith(f"Could not connect to {url.split('//')[1].replace('[', '').replace(']', '')} for "
                              f"resource 'events': the network cannot reach it ({why}"), message
    assert "dropped the connection" not in message and "does not resolve" not in message


def test_connection_failures_are_retried_once_the_api_has_answered():
    """A server restarting mid-load: its port refuses, and the schedule is worth waiting for."""
    from analytics_kit import demo

    stats = LoadStats()
    session = retry_session(RetryPolicy(max_retries=2, backoff_factor=0.01), resource="events", stats=stats)
    with demo.serve(events=10, customers=2) as api:
        url = f"{api.base_url}/v1/events?api_key={api.api_key}"
        assert session.get(url).status_code == 200
    with pytest.raises(requests.ConnectionError):
        session.get(url)  # the same origin, now refusing
    assert [r.reason for r in stats.retries] == ["ConnectionError", "ConnectionError"]
    with pytest.raises(requests.ConnectionError):
        session.get(f"http://127.0.0.1:{closed_port()}/v1/events")  # never answered: not retried
    assert len(stats.retries) == 2


def test_a_404_says_the_path_or_base_url_is_wrong_and_shows_the_url_with_the_key_masked(api, monkeypatch, caplog):
    monkeypatch.setenv("API_KEY", api.api_key)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(ak.guide_config(f"{api.base_url}/api"), progress=False)
    text = str(caught.value)
    assert text.startswith(f"The API answered HTTP 404 (not found) for resource 'events' on "
                           f"{api.base_url}/api/v1/events?updated_since="), text
    assert "api_key=***" in text and api.api_key not in text
    assert "The path or the base URL is wrong: check client.base_url and the resource's endpoint.path" in text
    assert "overloaded" not in text and "max_retries" not in text
    assert api.count(path="/api/v1/events") == 1  # not retried


def test_a_404_part_way_through_a_listing_does_not_blame_the_path(api, monkeypatch):
    """Pages of the listing loaded, then one answered 404: the path works (helper-49 got "the path or
    the base URL is wrong")."""
    monkeypatch.setenv("API_KEY", api.api_key)
    # 250 records: page 200 is the last, read before the others (analytics_kit/fetch/newest.py); 100 is one of them
    api.inject("status", path="/v1/events", offset=100, status=404)
    with pytest.raises(ak.LoadError) as caught:
        ak.load(ak.guide_config(api.base_url), progress=False, concurrency=1)
    text = str(caught.value)
    assert text.startswith("The API answered HTTP 404 (not found) for resource 'events' on "), text
    # the first page twice and the last: then the 404 (page 200 may have been answered meanwhile)
    assert "offset=100" in text and re.search(r"after it had answered [34] request\(s\)", text), text
    assert "The path works" in text and "path or the base URL is wrong" not in text, text
    assert "api_key=***" in text and api.api_key not in text


# -- https that works -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class Events(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        offset = int(parse_qs(urlsplit(self.path).query).get("offset", ["0"])[0])
        rows = [{"id": 1, "kind": "a"}, {"id": 2, "kind": "b"}] if offset == 0 else []
        body = json.dumps({"data": rows, "total": 2}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_api(certificate):
    cert, key = certificate
    server = ThreadingHTTPServer(("127.0.0.1", 0), Events)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def https_config(base_url: str) -> dict:
    return {"client": {"base_url": base_url, "auth": {"type": "api_key", "name": "api_key", "api_key": KEY,
                                                       "location": "query"}},
            "resources": [{"name": "events", "primary_key": "id", "write_disposition": "merge",
                           "endpoint": {"path": "/v1/events", "data_selector": "data",
                                        "paginator": {"type": "offset", "limit": 100}}}]}


def test_an_https_api_loads(https_api, certificate, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    report = ak.load(https_config(https_api), progress=False)
    assert report.rows == {"events": 2}
    assert ak.query("SELECT id, kind FROM events ORDER BY id").values.tolist() == [[1, "a"], [2, "b"]]


def test_an_https_api_whose_certificate_is_not_trusted_fails_at_once(https_api, caplog):
    error, took = fails(https_config(https_api), caplog)
    assert took < FAST
    assert "the TLS handshake failed (" in str(error) and "certificate verify failed" in str(error)
    assert "REQUESTS_CA_BUNDLE" in str(error)


@pytest.mark.parametrize("auth, said, hint, status", [(*case, 401)[:4] for case in [  # 401 unless the case says
    ({"type": "http_basic", "username": "ann", "password": "not-it-7c1"}, "the username and password",
     "CREDENTIALS__USERNAME"),
    ({"type": "bearer", "token": "not-it-7c1"}, "the token", "CREDENTIALS__TOKEN"),
    ({"type": "api_key", "name": "Authorization", "api_key": "Token not-it-7c1", "location": "header"},
     "the credentials", "the auth block's, or client.headers"),
    # the bare key read as a scheme, shown in lower case where no mask matched it (helper-117)
    ({"type": "api_key", "name": "Authorization", "api_key": "Not-It-7c1", "location": "header"},
     "the credentials", "the auth block's, or client.headers"),
    (None, "the request", "The request carried no credentials"),
    ({"type": "api_key", "api_key": "not-it-7c1", "location": "query"}, "the key",
     "a key written in the config itself is used instead of both"),
    # OAuth2's token request refused: "The request carried no credentials" named neither it nor them (helper-125)
    ({"type": "oauth2_client_credentials", "access_token_url": "/oauth/token", "client_id": "cid",
      "client_secret": "not-it-7c1"}, "the client credentials", "access_token_url) refused the request for a token"),
    # its 400 (OAuth's invalid_client) or 404 said to check the resource's endpoint.path or paginator (helper-155)
    *[({"type": "oauth2_client_credentials", "access_token_url": "/oauth/token", "client_id": "cid",
        "client_secret": "not-it-7c1"}, "the client credentials", "access_token_url) refused the request", status)
      for status in (400, 404, 403)],
]])
def test_a_401_under_another_auth_names_its_credentials_not_api_key(auth, said, hint, status):
    """A 401 under http_basic or bearer auth advised setting API_KEY (helper-53); with the key written in the config,
    where setting API_KEY changes nothing, it said only that (helper-115)."""
    import http.server
    import threading

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET  # noqa: N815 - an OAuth2 token request

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    if auth and "access_token_url" in auth:
        auth = {**auth, "access_token_url": base + auth["access_token_url"]}
    try:
        config = {"client": {"base_url": base, **({"auth": auth} if auth else {})},
                  "resources": [{"name": "items", "endpoint": {"path": "/items", "data_selector": "data"}}]}
        with pytest.raises(ak.LoadError) as caught:
            ak.load(config, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    text = str(caught.value)
    who = "token endpoint" if said == "the client credentials" else "API"
    assert f"The {who} rejected {said} (HTTP {status})" in text and hint in text, text
    assert "endpoint.path" not in text and "paginator" not in text
    assert ("API_KEY" not in text or said == "the key") and "not-it-7c1" not in text.lower(), text
