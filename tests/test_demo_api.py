"""The embedded demo API, over real HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from pathlib import Path

import pytest
import requests

from analytics_kit import demo
from analytics_kit.demo.__main__ import build_parser

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def session():
    s = requests.Session()
    s.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
    yield s
    s.close()


@pytest.fixture(scope="module")
def shared():
    """A read-only default server; tests that change state start their own."""
    with demo.serve(events=250, customers=20, seed=7) as api:
        yield api


@pytest.fixture
def api():
    with demo.serve(events=50, customers=5, seed=11) as a:
        yield a


def get(session, api, path="/v1/events", key=True, **params):
    if key:
        params.setdefault(api.key_param, api.api_key)
    return session.get(api.base_url + path, params=params, timeout=10)


def fetch_all(session, api, resource="events", limit=100, **params):
    out, offset = [], 0
    while True:
        body = get(session, api, f"/v1/{resource}", offset=offset, limit=limit, **params).json()
        assert body["offset"] == offset and body["limit"] == limit
        out.extend(body["data"])
        if not body["data"]:
            return out, body["total"]
        offset += len(body["data"])


def sort_key(rec):
    rid = rec["id"]
    return rec["updated_at"], rid if isinstance(rid, int) else int(rid[4:])


# -- paging and data ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 250, 1001])
def test_every_record_served_once_in_stable_order(session, size):
    with demo.serve(events=size, customers=10, seed=3) as api:
        expected = api.records()
        assert len(expected) == size
        for limit in (1, 7, 100):
            got, total = fetch_all(session, api, limit=limit)
            assert total == size
            assert got == expected
            assert [r["id"] for r in got] == sorted(r["id"] for r in got) or size == 0
        if size > 10:  # and still after changes: originals first, then changed by (updated_at, id)
            api.advance(new=5, updated=4, deleted=2, purged=2)
            expected = api.records()
            for limit in (7, 100):
                got, total = fetch_all(session, api, limit=limit)
                assert got == expected and total == size + 5 - 2
                assert got == sorted(got, key=sort_key)
                assert len({r["id"] for r in got}) == len(got)


def test_customers_and_generic_resource(session, shared):
    customers, total = fetch_all(session, shared, "customers", limit=7)
    assert total == 20 and customers == shared.records("customers")
    assert [c["id"] for c in customers] == [f"cus_{i:05d}" for i in range(1, 21)]
    assert fetch_all(session, shared, "resource")[0] == shared.records("events")


def test_record_shapes(shared):
    customers = {c["id"]: c for c in shared.records("customers")}
    events = shared.records()
    assert [e["id"] for e in events] == list(range(1, 251))
    for e in events:
        assert set(e) == {"id", "customer_id", "timestamp", "event_type", "value", "properties",
                          "updated_at", "deleted"}
        assert e["customer_id"] in customers and e["deleted"] is False
        assert TS.match(e["timestamp"]) and TS.match(e["updated_at"])
        assert "2026-01-01T00:00:00Z" <= e["timestamp"] < "2026-04-01T00:00:00Z"
        assert e["event_type"] in {"page_view", "click", "signup", "purchase", "refund"}
        if e["event_type"] == "purchase":
            assert e["value"] > 0 and round(e["value"], 2) == e["value"]
        elif e["event_type"] == "refund":
            assert e["value"] < 0 and round(e["value"], 2) == e["value"]
        else:
            assert e["value"] is None
        p = e["properties"]
        assert set(p) == {"page", "device", "country", "campaign"}
        assert p["device"] in {"mobile", "desktop", "tablet"} and len(p["country"]) == 2
    stamps = [e["updated_at"] for e in events]
    assert stamps == sorted(stamps)
    for c in customers.values():
        assert c["plan"] in {"free", "pro", "enterprise"} and "@" in c["email"]
        assert TS.match(c["created_at"]) and TS.match(c["updated_at"])


def test_updated_since_returns_exactly_the_changes(session, api):
    before = {r["id"]: r for r in api.records()}
    res = api.advance(new=3, updated=4, deleted=2, purged=1)
    assert res.now == "2026-04-01T01:00:00Z"
    picked = [*res.new_ids, *res.updated_ids, *res.deleted_ids, *res.purged_ids]
    assert len(set(picked)) == len(picked) == 10  # picks never overlap
    changed, total = fetch_all(session, api, limit=3, updated_since="2026-04-01T00:00:00Z")
    assert total == 9
    assert {r["id"] for r in changed} == set(res.new_ids + res.updated_ids + res.deleted_ids)
    for r in changed:
        assert "2026-04-01T00:00:00Z" <= r["updated_at"] <= res.now
        if r["id"] in res.updated_ids:
            assert r != before[r["id"]] and r["timestamp"] == before[r["id"]]["timestamp"]
        assert r["deleted"] is (r["id"] in res.deleted_ids)
    everything = api.records()
    assert not {r["id"] for r in everything} & set(res.purged_ids)
    assert [r["id"] for r in api.records(include_deleted=False)] == [
        r["id"] for r in everything if r["id"] not in res.deleted_ids]
    # inclusive, and the other accepted spellings
    first = changed[0]["updated_at"]
    for since in (first, first.replace("Z", "+00:00"), first[:-1]):
        assert get(session, api, updated_since=since).json()["data"][0]["id"] == changed[0]["id"]
    assert get(session, api, updated_since="2026-04-01").json()["total"] == 9
    assert get(session, api, updated_since="2026-04-01T01:00:00+01:00").json()["total"] == 9
    assert get(session, api, updated_since="2030-01-01").json() == {
        "data": [], "total": 0, "offset": 0, "limit": 100}
    assert get(session, api, updated_since="2000-01-01").json()["total"] == 50 + 3 - 1


def test_customers_advance(api):
    res = api.advance(resource="customers", new=2, updated=2, deleted=1)
    assert all(isinstance(i, str) and i.startswith("cus_") for i in res.updated_ids + res.new_ids)
    recs = api.records("customers")
    assert [r["id"] for r in recs[-5:]] == [r["id"] for r in sorted(recs[-5:], key=sort_key)]
    assert {r["id"] for r in recs[-5:]} == set(res.new_ids + res.updated_ids + res.deleted_ids)


def test_advance_is_deterministic_and_seed_dependent():
    def run(seed):
        with demo.serve(events=300, customers=10, seed=seed) as a:
            results = [a.advance(new=5, updated=7, deleted=3, purged=2),
                       a.advance(resource="customers", new=1, updated=2),
                       a.advance(new=0, updated=20, seconds=60)]
            return results, a.records(), a.records("customers")
    assert run(5) == run(5)
    assert run(5)[1] != run(6)[1]


def test_repeated_and_zero_second_advances_keep_order(session, api):
    for kwargs in ({"seconds": 0}, {"seconds": 1}, {"seconds": 0, "updated": 20}, {}):
        api.advance(new=2, **{"updated": 5, **kwargs})
        recs = api.records()
        assert recs == sorted(recs, key=sort_key)
        assert fetch_all(session, api, limit=7)[0] == recs
        newest = recs[-1]["updated_at"]
        assert all(r["updated_at"] == newest for r in get(
            session, api, updated_since=newest).json()["data"])


def test_advance_rejects_bad_arguments(api):
    with pytest.raises(ValueError, match="cannot pick"):
        api.advance(updated=40, deleted=20)
    with pytest.raises(ValueError):
        api.advance(new=-1)
    with pytest.raises(ValueError, match="unknown resource"):
        api.advance(resource="orders")


# -- HTTP contract --------------------------------------------------------------------------
def test_auth(session, shared):
    for params in ({}, {"api_key": "wrong-key-123"}, {"api_key": ""}):
        r = session.get(shared.base_url + "/v1/events", params=params, timeout=10)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
        assert "wrong-key-123" not in r.text and shared.api_key not in r.text
    with demo.serve(events=3, customers=1, api_key="k1", key_param="token") as a:
        assert get(session, a).json()["total"] == 3
        assert session.get(a.base_url + "/v1/events", params={"api_key": "k1"}).status_code == 401
        assert a.api_key == "k1" and a.key_param == "token"


@pytest.mark.parametrize("params,word", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "abc"}, "limit"),
    ({"limit": "1.5"}, "limit"), ({"offset": "-1"}, "offset"), ({"offset": "x"}, "offset"),
    ({"updated_since": "yesterday"}, "updated_since"), ({"updated_since": ""}, "updated_since"),
])
def test_bad_parameters_are_400(session, shared, params, word):
    r = get(session, shared, **params)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "bad_request" and word in err["message"]


def test_limit_message_exact(session, shared):
    assert get(session, shared, limit="0").json() == {"error": {
        "code": "bad_request", "message": "limit must be an integer between 1 and 100"}}


def test_offset_past_end_and_unknown_params(session, shared):
    body = get(session, shared, offset=10**40, foo="bar").json()
    assert body == {"data": [], "total": 250, "offset": 10**40, "limit": 100}
    assert get(session, shared, offset=249, limit=5).json()["data"][0]["id"] == 250


def test_404_and_405(session, shared):
    r = get(session, shared, "/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = session.post(shared.base_url + "/v1/events", params={"api_key": shared.api_key})
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=10)
    conn.request("BREW", "/v1/events")
    resp = conn.getresponse()
    assert resp.status == 405 and json.loads(resp.read())["error"]["code"] == "method_not_allowed"
    conn.close()
    r = session.head(shared.base_url + "/v1/events", params={"api_key": shared.api_key})
    assert r.status_code == 200 and r.content == b""


def test_fuzz_never_500(session, shared):
    key = shared.api_key
    paths = ["/", "//", "/v1", "/v1/events/", "/v1/events/../customers", "/v1/%C3%ABvents", "/%ff%fe",
             "/v1/events%00", "/_admin/log", "/_admin/nope", "/" + "a" * 5000, "*"]
    queries = [f"api_key={key}&limit=" + "9" * 5000, f"api_key={key}&offset=" + "9" * 5000,
               f"api_key={key}&limit=5&limit=6", f"api_key=x&api_key={key}",
               f"api_key={key}&updated_since=%F0%9F%92%A9", f"api_key={key}&updated_since=9999-12-31",
               f"api_key={key}&updated_since=0001-01-01T00:00:00-23:59", f"api_key={key}&offset=%D9%A3",
               f"api_key={key}&limit=%20%205", "api_key=%ZZ", "&&&==&", "a=" + "%" * 300,
               f"api_key={key}&" + "&".join(f"p{i}=1" for i in range(300)), f"api_key={key}&offset=1e3"]
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=10)
    for p in paths:
        for q in queries[:3] + [""]:
            conn.request("GET", f"{p}?{q}")
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status in (200, 400, 401, 404), (p, q)
            json.loads(body)
    for q in queries:
        conn.request("GET", f"/v1/events?{q}")
        resp = conn.getresponse()
        assert resp.status in (200, 400, 401), q
        json.loads(resp.read())
    conn.close()
    # a malformed request line gets a JSON 400 and a closed connection, not a hang
    with socket.create_connection(("127.0.0.1", shared.port), timeout=10) as s:
        s.sendall(f"GET /v1/events?api_key={key} HTTP/1.1 junk\r\n\r\n".encode())
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.") and b" 400 " in data.split(b"\r\n")[0]
    assert key.encode() not in data and data.endswith(b"}")
    with socket.create_connection(("127.0.0.1", shared.port), timeout=10) as s:
        s.sendall("GET /v1/évents?api_key=ü HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = s.recv(65536)
    assert b" 404 " in data.split(b"\r\n")[0] and data.endswith(b"}")


# -- faults ---------------------------------------------------------------------------------
def test_status_burst_then_success(session, api):
    api.inject("status", times=2)
    assert [get(session, api).status_code for _ in range(3)] == [503, 503, 200]
    assert [(r.status, r.fault) for r in api.requests] == [
        (503, "status"), (503, "status"), (200, None)]
    assert api.count(status=503) == 2 and api.count("/v1/events") == 3 and api.count("events") == 3
    api.clear_log()
    assert api.requests == []


def test_skip_offset_and_path_targeting(session, api):
    api.inject("status", status=500, path="/v1/events", offset=10, skip=1, times=1)
    api.inject("status", status=502, path="customers", times=None)
    codes = [get(session, api, offset=10).status_code for _ in range(3)]
    assert codes == [200, 500, 200]
    assert get(session, api, offset=0).status_code == 200
    assert get(session, api, "/v1/customers").status_code == 502
    assert get(session, api, "/v1/customers").status_code == 502
    api.clear_faults()
    assert get(session, api, "/v1/customers").status_code == 200
    assert api.count("/v1/customers", status=502) == 2


def test_retry_after_headers(session, api):
    date = formatdate(time.time() + 5, usegmt=True)
    api.inject("status", status=429, retry_after=2)
    api.inject("status", status=503, retry_after=date)
    r1, r2, r3 = (get(session, api) for _ in range(3))
    assert r1.status_code == 429 and r1.headers["Retry-After"] == "2"
    assert r1.json()["error"]["code"] == "rate_limited"
    assert r2.status_code == 503 and r2.headers["Retry-After"] == date
    assert r3.status_code == 200 and "Retry-After" not in r3.headers


def test_reset_and_short_body_break_the_client(session, api):
    api.inject("reset")
    with pytest.raises(requests.ConnectionError):
        get(session, api)
    api.inject("short_body")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        get(session, api)
    assert get(session, api).status_code == 200
    assert [(r.status, r.fault) for r in api.requests] == [
        (None, "reset"), (200, "short_body"), (200, None)]


def test_truncated_json_and_html(session, api):
    api.inject("truncated_json")
    api.inject("html")
    r = get(session, api)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(r.content)
    with pytest.raises(requests.JSONDecodeError):
        r.json()
    r = get(session, api)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.text.startswith("<!DOCTYPE html>")
    assert get(session, api).json()["total"] == 50


def test_latency(session, api):
    api.inject("latency", seconds=0.15)
    t = time.perf_counter()
    assert get(session, api).status_code == 200
    assert time.perf_counter() - t >= 0.15
    api.set_latency(0.1)
    t = time.perf_counter()
    get(session, api)
    assert time.perf_counter() - t >= 0.1
    api.set_latency(0)
    assert api.requests[0].fault == "latency" and api.requests[1].fault is None


def test_echo_401_leaks_key_in_body_but_not_in_log(session, api):
    api.inject("echo_401")
    r = get(session, api, note=f"x{api.api_key}x")
    assert r.status_code == 401 and api.api_key in r.text
    get(session, api, f"/v1/{api.api_key}")
    for rec in api.requests:
        assert api.api_key not in repr(rec)
    assert api.requests[0].params == {"api_key": "***", "note": "x***x"}
    assert api.requests[1].path == "/v1/***"


def test_transform_and_callback(session, api):
    def drop_total(body):
        del body["total"]
        body["data"] = body["data"] + body["data"][:1]
        return body
    api.inject("transform", fn=drop_total, times=1)
    body = get(session, api, limit=2).json()
    assert "total" not in body and [r["id"] for r in body["data"]] == [1, 2, 1]
    assert get(session, api, limit=2).json()["total"] == 50  # originals untouched

    seen = []
    api.inject("callback", fn=lambda a: seen.append(a.advance(new=1, updated=0)), offset=40)
    first = get(session, api, offset=0, limit=40).json()
    second = get(session, api, offset=40, limit=40).json()
    assert first["total"] == 50 and second["total"] == 51 and len(seen) == 1
    assert second["data"][-1]["id"] == 51
    api.inject("transform", fn=lambda body: 1 / 0)
    r = get(session, api)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"


def test_rate_is_reproducible():
    def pattern(seed):
        with demo.serve(events=5, customers=1, seed=seed) as a, requests.Session() as s:
            s.trust_env = False
            a.inject("status", rate=0.5)
            return [get(s, a).status_code for _ in range(40)]
    p = pattern(1)
    assert p == pattern(1) and 5 < p.count(503) < 35
    assert p != pattern(2)


def test_inject_validation(api):
    for kwargs in ({"kind": "nope"}, {"kind": "status", "status": 99}, {"kind": "latency"},
                   {"kind": "transform"}, {"kind": "status", "rate": 2},
                   {"kind": "status", "times": -1}, {"kind": "status", "skip": "1"}):
        with pytest.raises(ValueError):
            api.inject(**kwargs)


def test_stop_releases_port_and_threads(session):
    before = set(threading.enumerate())
    a = demo.serve(events=10, customers=1)
    with a:
        s = requests.Session()  # a keep-alive connection left open on purpose
        s.trust_env = False
        assert get(s, a).status_code == 200
    time.sleep(0.05)
    assert set(threading.enumerate()) <= before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
    s.close()
    a.close()  # idempotent


# -- subprocess mode and CLI ----------------------------------------------------------------
def test_process_mode_round_trip(session):
    with demo.serve(events=30, customers=3, seed=9, process=True) as a:
        proc = a._proc
        assert a.base_url.startswith("http://127.0.0.1:")
        res = a.advance(new=2, updated=1, deleted=1, purged=1)
        assert isinstance(res, demo.AdvanceResult) and len(res.new_ids) == 2
        recs = a.records()
        assert fetch_all(session, a, limit=7) == (recs, 30 + 2 - 1)
        assert len(a.records(include_deleted=False)) == len(recs) - 1
        a.clear_log()
        a.inject("status", status=429, retry_after=1, times=1)
        assert get(session, a).status_code == 429
        assert get(session, a).status_code == 200
        assert [(r.status, r.fault) for r in a.requests] == [(429, "status"), (200, None)]
        assert a.count(status=429) == 1 and all(a.api_key not in repr(r) for r in a.requests)
        a.set_latency(0.01)
        a.clear_faults()
        with pytest.raises(ValueError, match="process=False"):
            a.inject("transform", fn=lambda b: b)
        with pytest.raises(ValueError):
            a.advance(updated=1000)
    assert proc.poll() is not None
    with demo.serve(events=30, customers=3, seed=9) as b:
        b.advance(new=2, updated=1, deleted=1, purged=1)
        assert b.records() == recs


def _child(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("ANALYTICS_KIT_DEMO_API_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "analytics_kit.demo", "--port", "0", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def test_cli_prints_url_and_generated_key_and_exits_on_stdin_eof(session):
    proc = _child("--events", "5", "--exit-on-stdin-eof")
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group()
        key_line = proc.stdout.readline()
        assert "key" in key_line.lower()
        key = key_line.split()[-1]
        r = session.get(url + "/v1/events", params={"api_key": key}, timeout=10)
        assert r.json()["total"] == 5
        proc.stdin.close()  # what happens when the parent dies
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_cli_given_key_is_not_printed():
    proc = _child("--events", "5", "--api-key", "s3cret-demo", "--exit-on-stdin-eof")
    try:
        first = proc.stdout.readline()
        assert "http://127.0.0.1:" in first
        proc.stdin.close()
        assert proc.wait(10) == 0
        assert "s3cret-demo" not in first + proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_build_parser_defaults():
    args = build_parser().parse_args(["--port", "0", "--events", "3", "--latency", "0.5"])
    assert (args.port, args.events, args.customers, args.seed, args.key_param, args.latency) == (
        0, 3, 50, 7, "api_key", 0.5)
