"""A database's stored cursors belong to the API that loaded them: an incremental load from another API
stops, before it commits anything, instead of going on from them (helper-104: the README's "In Python"
steps after ``make demo`` merged a new demo API's rows into ``make demo``'s tables).

Two APIs on other hosts are reached through a forwarding proxy on 127.0.0.1 (the kit honours
``HTTP_PROXY``), so no request leaves this machine.
"""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pytest
from dlt.pipeline.state_sync import decompress_state

import analytics_kit as ak
from analytics_kit.fetch.cursor_origin import ORIGIN, THIS_MACHINE, origin_of

from helpers import fast


class Forwarder:
    """An HTTP proxy on 127.0.0.1 that serves ``http://<host>/...`` from the local server ``hosts[host]``."""

    def __init__(self, hosts: dict[str, str]) -> None:
        forward = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                query = f"?{parts.query}" if parts.query else ""
                target = forward.hosts[parts.hostname.rstrip(".")] + parts.path + query
                try:  # not through HTTP_PROXY, which is this proxy
                    with forward.opener.open(target, timeout=30) as answer:
                        status, body = answer.status, answer.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.hosts = hosts
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def two_hosts(monkeypatch):
    """Two demo APIs, as http://api-one.test and http://api-two.test through the forwarding proxy."""
    with ak.demo.serve(events=300, customers=10, seed=1, api_key="same-key-for-both-1") as first, \
            ak.demo.serve(events=200, customers=10, seed=2, api_key="same-key-for-both-1") as second:
        proxy = Forwarder({"api-one.test": first.base_url.rstrip("/"), "api-two.test": second.base_url.rstrip("/")})
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.setenv("API_KEY", first.api_key)
        try:
            yield first, second
        finally:
            proxy.close()


def stored_origins(database: Path) -> dict:
    with duckdb.connect(str(database), read_only=True) as con:
        (blob,), = con.execute("SELECT state FROM _dlt_pipeline_state ORDER BY created_at DESC LIMIT 1").fetchall()
    resources = decompress_state(blob)["sources"]["analytics"]["resources"]
    return {name: state.get(ORIGIN) for name, state in resources.items()}


def test_an_incremental_load_from_another_api_stops_and_keeps_the_tables(two_hosts, tmp_path):
    first, second = two_hosts
    database = tmp_path / "analytics.duckdb"
    ak.load(fast(ak.guide_config("http://api-one.test")), database=database, progress=False)
    before = ak.query("SELECT * FROM events ORDER BY id", database)
    assert len(before) == 300 and set(stored_origins(database).values()) == {"http://api-one.test:80"}

    with pytest.raises(ak.LoadError) as caught:
        ak.load(fast(ak.guide_config("http://api-two.test")), database=database, progress=False)
    text = str(caught.value)
    assert "came from the API at http://api-one.test:80" in text and "reads it from http://api-two.test:80" in text
    assert 'mode="full_refresh"' in caught.value.guidance and "database=" in caught.value.guidance
    assert ak.query("SELECT * FROM events ORDER BY id", database).equals(before)  # nothing of the second API's
    assert len(ak.history(database)) == 1

    # the same API at a new address: one full refresh takes it over, and incremental loads go on from it
    report = ak.load(fast(ak.guide_config("http://api-two.test")), "full_refresh", database=database, progress=False)
    assert report.rows["events"] == 200
    second.advance(new=5, updated=3)
    report = ak.load(fast(ak.guide_config("http://api-two.test")), database=database, progress=False)
    assert report.rows["events"] == 8 and len(ak.query("SELECT id FROM events", database)) == 205


def test_the_origin_is_the_url_a_resource_reads(two_hosts, tmp_path):
    """An endpoint path written as a full URL reads from its own origin, whatever client.base_url says: two
    APIs' rows were merged where only base_url was compared, and a changed base_url was refused (helper-105)."""
    database = tmp_path / "analytics.duckdb"

    def config(events_at: str, base_url: str = "http://api-one.test") -> dict:
        config = fast(ak.guide_config(base_url))
        events = next(r for r in config["resources"] if r["name"] == "events")
        events["endpoint"]["path"] = f"{events_at}/v1/events"
        return config

    ak.load(config("http://api-one.test"), database=database, progress=False)
    assert stored_origins(database)["events"] == "http://api-one.test:80"
    ak.load(config("http://api-one.test", base_url="http://api-one.test/v1/.."), database=database, progress=False)
    with pytest.raises(ak.LoadError, match="reads it from http://api-two.test:80"):
        ak.load(config("http://api-two.test"), database=database, progress=False)


def test_every_address_of_this_machine_is_one_origin(tmp_path, monkeypatch):
    """The demo API starts on a new port each time: the README's steps, or a notebook, run again went on
    refused (helper-105); so were this machine's other names and addresses (helper-106)."""
    database = tmp_path / "analytics.duckdb"
    for host in ("127.0.0.1", "LOCALHOST", "127.1", socket.gethostname()):
        with ak.demo.serve(events=100, seed=1) as api:
            monkeypatch.setenv("API_KEY", api.api_key)
            port = api.base_url.rsplit(":", 1)[1].rstrip("/")
            ak.load(fast(ak.guide_config(f"HTTP://{host}:{port}/")), database=database, progress=False)
    assert stored_origins(database)["events"] == THIS_MACHINE
    for url in ("http://0.0.0.0:9", "http://2130706433:9", "http://LOCALHOST.:9", "http://[::1]:9",
                "http://[::ffff:127.0.0.1]:9", "http://app.localhost"):
        assert origin_of(url, "") == THIS_MACHINE, url
    assert origin_of(f"http://{socket.gethostname()}:9", "", resolve=True) == THIS_MACHINE
    # spelled differently, one API elsewhere is one origin; the path is not part of it
    assert {origin_of(url, "/v1/events") for url in (
        "https://API.example.com", "https://api.example.com:443/v1/", "https://api.example.com./")} == {
        "https://api.example.com:443"}
    assert origin_of("http://[2001:db8::1]:8080/v1", "") == "http://[2001:db8::1]:8080"


def test_the_origin_is_stored_as_it_is_whatever_the_key(two_hosts, tmp_path, monkeypatch):
    """Masked with the run's secrets, a key "test" made api-one.test "api-one.***": rotating the key then
    refused the same API (helper-106)."""
    database = tmp_path / "analytics.duckdb"
    config = fast(ak.guide_config("http://api-one.test"))
    config["client"]["auth"]["api_key"] = "test"  # the demo API refuses it: only the stored origin matters
    with pytest.raises(ak.LoadError):
        ak.load(config, database=database, progress=False)
    ak.load(fast(ak.guide_config("http://api-one.test")), database=database, progress=False)
    assert stored_origins(database)["events"] == "http://api-one.test:80"


SECRET_URL = "http://loader:pa55-w0rd-canary@127.0.0.1:9/v1/events"


@pytest.mark.parametrize("where, place", [
    ("client.base_url", lambda c: c["client"].update(base_url=SECRET_URL)),
    # not http(s): the check of the scheme quoted the URL (helper-107)
    ("client.base_url", lambda c: c["client"].update(base_url=SECRET_URL.replace("http://", "ftp://"))),
    ("client.base_url", lambda c: c["client"].update(base_url=SECRET_URL.replace("http://", ""))),
    ("resources[0].endpoint.path", lambda c: c["resources"][0]["endpoint"].update(path=SECRET_URL)),
    # a resource's name is its path where it has no endpoint, and names its table (helper-107)
    ("resources[0]", lambda c: c.update(resources=[SECRET_URL])),
    ("resources[0].name", lambda c: c.update(resources=[{"name": SECRET_URL}])),
])
def test_a_url_with_credentials_is_refused_before_any_request(where, place):
    """dlt's trace of a run stores base_url and endpoint paths as they are, in the pipeline folder (helper-106)."""
    config = ak.guide_config("http://127.0.0.1:9")
    place(config)
    with pytest.raises(ak.ConfigError) as caught:
        ak.build_source(config)
    assert caught.value.path == where and "auth block" in caught.value.guidance, str(caught.value)
    assert "pa55-w0rd-canary" not in str(caught.value) and "loader" not in str(caught.value)


def test_telling_two_origins_apart_sends_nothing_not_even_a_dns_query(two_hosts, tmp_path, monkeypatch):
    """A refused load looked both hosts up through the resolver, with its own timeout, though through a proxy
    the load itself resolves no name (helper-107). This machine's names come from the hosts file."""
    database = tmp_path / "analytics.duckdb"
    ak.load(fast(ak.guide_config("http://api-one.test")), database=database, progress=False)
    looked_up: list = []
    lookup = socket.getaddrinfo

    def recorded(host, *args, **kwargs):
        if isinstance(host, (str, bytes)) and host not in ("127.0.0.1", b"127.0.0.1"):
            looked_up.append(host)
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recorded)
    with pytest.raises(ak.LoadError, match="reads it from http://api-two.test:80"):
        ak.load(fast(ak.guide_config("http://api-two.test")), database=database, progress=False)
    assert looked_up == []


def test_a_name_the_hosts_file_gives_this_machine_is_this_machine(tmp_path, monkeypatch):
    from analytics_kit.fetch import cursor_origin

    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# 127.0.0.1 commented.example\n::1 box-six.lan\n"
                     "127.0.0.1 api-here.lan. alias-here # a comment\n192.0.2.7 elsewhere.lan\nnonsense line\n")
    monkeypatch.setattr(cursor_origin, "_hosts_file", lambda: cursor_origin.read_hosts(str(hosts)))
    for name in ("api-here.lan", "API-HERE.LAN.", "alias-here", "box-six.lan"):
        assert origin_of(f"http://{name}:8000", "", resolve=True) == THIS_MACHINE, name
    for name in ("elsewhere.lan", "commented.example", "unknown.example"):
        assert origin_of(f"http://{name}:8000", "", resolve=True) == f"http://{name}:8000", name


def test_a_host_written_another_way_is_the_same_origin(tmp_path, monkeypatch):
    """A non-ASCII host name goes out in its ASCII form: the origin guard refused every request of its own API
    (helper-111); an address written another way (10.66051, a long IPv6 form, an IPv4-mapped one) is one origin."""
    with ak.demo.serve(events=120, customers=5, seed=4) as api:
        proxy = Forwarder({"xn--bcher-kva.example": api.base_url.rstrip("/")})
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.setenv("API_KEY", api.api_key)
        try:
            database = tmp_path / "analytics.duckdb"
            report = ak.load(fast(ak.guide_config("http://Bücher.example")), database=database, progress=False)
            assert report.rows["events"] == 120
            assert stored_origins(database)["events"] == "http://xn--bcher-kva.example:80"
            api.advance(new=4, updated=0, deleted=0)
            again = ak.load(fast(ak.guide_config("http://xn--bcher-kva.example.")), database=database, progress=False)
            assert again.rows["events"] == 4
        finally:
            proxy.close()
    for one, other in (("10.1.2.3", "10.66051"), ("[2001:db8::1]", "[2001:db8:0:0:0:0:0:1]"),
                       ("10.1.2.3", "[::ffff:10.1.2.3]"), ("bücher.example", "XN--BCHER-KVA.EXAMPLE")):
        assert origin_of(f"https://{one}/v1", "") == origin_of(f"https://{other}:443/", ""), (one, other)
    # a link-local address on another interface is another host (helper-112: credentials followed such a link)
    assert origin_of("http://[fe80::1%25eth0]:80", "") != origin_of("http://[fe80::1%25eth1]:80", "")
