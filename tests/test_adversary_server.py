"""Checks of the adversarial test server itself (tests/adversary.py), with plain ``requests``.

If these fail, tests that point the loader at the adversary would prove nothing.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from adversary import (HONEST, MISSING, START, Adversary, Catcher, default_records, iso,
                       parse_instant)

T = (2, 2)  # connect/read timeouts for requests that should succeed


@pytest.fixture
def adv():
    with Adversary(n=250) as server:
        yield server


def get(server: Adversary, offset: int | None = 0, limit: int | None = None, **params):
    params = {"api_key": server.key, **params}
    if offset is not None:
        params["offset"] = offset
    if limit is not None:
        params["limit"] = limit
    return requests.get(server.base_url + server.path, params=params, timeout=T)


def ids(resp: requests.Response) -> list:
    return [r["id"] for r in resp.json()["data"]]


# -- the honest contract -----------------------------------------------------------------------

def test_iso_and_default_records():
    assert iso(START, z=True) == "2026-03-01T00:00:00Z"
    assert iso(START) == "2026-03-01T00:00:00+00:00"
    assert iso(START, 300) == "2026-03-01T05:00:00+05:00"
    assert iso(START, -90) == "2026-02-28T22:30:00-01:30"
    assert iso(START + 0.25, frac=3, z=True) == "2026-03-01T00:00:00.250Z"
    assert parse_instant(iso(START, 300)) == parse_instant("2026-03-01T00:00:00Z")
    recs = default_records(3)
    assert [r["id"] for r in recs] == [1, 2, 3]
    assert recs[1]["updated_at"] == "2026-03-01T00:01:00Z"
    assert all(isinstance(r["value"], float) and isinstance(r["kind"], str) for r in recs)


def test_paging_total_and_keep_alive(adv):
    seen, offset = [], 0
    with requests.Session() as s:
        while True:
            r = s.get(adv.base_url + adv.path, params={"api_key": adv.key, "offset": offset,
                                                      "limit": 100}, timeout=T)
            assert r.status_code == 200 and r.headers["Content-Length"] == str(len(r.content))
            body = r.json()
            assert (body["total"], body["offset"], body["limit"]) == (250, offset, 100)
            if not body["data"]:
                break
            seen += [x["id"] for x in body["data"]]
            offset += len(body["data"])
    assert seen == list(range(1, 251))
    # one keep-alive connection carried every page
    assert len({req.client for req in adv.requests}) == 1 and adv.count(adv.path) == 4


def test_limits_errors_and_log(adv):
    assert len(get(adv, limit=None).json()["data"]) == 100   # default
    r = get(adv, limit=500)                                    # clamped, not rejected
    assert r.status_code == 200 and r.json()["limit"] == 100 and len(r.json()["data"]) == 100
    assert get(adv, limit=0).json()["limit"] == 1
    assert get(adv, offset="x").status_code == 400
    assert get(adv, updated_since="yesterday").status_code == 400
    bad = requests.get(adv.base_url + adv.path, params={"api_key": "nope"}, timeout=T)
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    assert requests.get(adv.base_url + adv.path, timeout=T).status_code == 401
    missing = requests.get(adv.base_url + "/v1/nothing", timeout=T)
    assert missing.status_code == 404 and "error" in missing.json()
    last = adv.requests[-1]
    assert (last.path, last.status, last.raw_target) == ("/v1/nothing", 404, "/v1/nothing")
    assert adv.requests[0].params["api_key"] == adv.key and adv.count() == 8


def test_key_in_header():
    with Adversary(n=5, key_header="X-API-Key") as adv:
        url = adv.base_url + adv.path
        assert requests.get(url, headers={"x-api-key": adv.key}, timeout=T).status_code == 200
        # the query no longer counts
        assert requests.get(url, params={"api_key": adv.key}, timeout=T).status_code == 401


def test_records_helpers(adv):
    before = adv.records()
    before[0]["value"] = "mutated"                     # a copy: the server is untouched
    assert adv.records()[0]["value"] != "mutated"
    rec = adv.update_record(3, value=-1.0)
    assert rec["updated_at"] == iso(START + 60 * 250, z=True)
    assert get(adv, offset=249).json()["data"] == [rec]  # now the newest
    adv.add_records([{"id": 1000, "updated_at": "2020-01-01T00:00:00Z", "value": 1.0, "kind": "x"}])
    assert ids(get(adv, limit=1)) == [1000]
    adv.delete_records(1000, 3)
    assert get(adv).json()["total"] == 249


def test_updated_since_mixed_offsets():
    # the same kind of instants written in different zones, naive and with fractions
    recs = [{"id": 1, "updated_at": "2026-03-01T05:00:00+05:00"},   # 00:00Z
            {"id": 2, "updated_at": "2026-03-01T00:30:00Z"},        # 00:30Z
            {"id": 3, "updated_at": "2026-02-28T23:45:00-01:00"},   # 00:45Z
            {"id": 4, "updated_at": "2026-03-01T00:10:00"},         # naive: 00:10Z
            {"id": 5, "updated_at": "2026-03-01T00:10:00.500Z"},
            {"id": 6, "updated_at": "2026-03-01T00:10:00+00:00"}]   # ties with 4: id decides
    with Adversary(recs) as adv:
        assert ids(get(adv)) == [1, 4, 6, 5, 2, 3]
        since = iso(START + 600, 300)                           # 05:10+05:00 = 00:10Z, inclusive
        assert ids(get(adv, updated_since=since)) == [4, 6, 5, 2, 3]
        # an unencoded '+' arrives as a space and is repaired
        raw = f"{adv.base_url}{adv.path}?api_key={adv.key}&updated_since={since}"
        assert "+" in raw
        r = requests.get(raw, timeout=T)
        assert ids(r) == [4, 6, 5, 2, 3] and r.json()["total"] == 5
        assert adv.requests[-1].params["updated_since"] == since.replace("+", " ")
        assert ids(get(adv, updated_since="2026-02-28T23:40:00-01:00")) == [3]
        assert get(adv, updated_since="2026-03-01").json()["total"] == 6  # a date: midnight UTC


# -- misbehaviours ----------------------------------------------------------------------------

@pytest.mark.parametrize("lie", [150, -5, "abc", 10**12, None, 1.5])
def test_total_constant_lies(adv, lie):
    adv.total = lie
    assert get(adv).json()["total"] == lie


def test_total_callable_missing_and_reset(adv):
    adv.total = lambda true, offset: true + offset
    assert get(adv, offset=100).json()["total"] == 350
    adv.total = MISSING
    assert "total" not in get(adv).json()
    adv.total = lambda true, offset: MISSING if offset else true
    assert get(adv).json()["total"] == 250 and "total" not in get(adv, offset=100).json()
    adv.reset()
    assert adv.total is HONEST and get(adv).json()["total"] == 250


def test_page_cap_and_ignore_offset(adv):
    adv.page_cap = 7
    body = get(adv, offset=10, limit=100).json()
    assert [x["id"] for x in body["data"]] == list(range(11, 18)) and body["limit"] == 100
    adv.page_cap = None
    adv.ignore_offset = True
    body = get(adv, offset=200).json()
    assert [x["id"] for x in body["data"]] == list(range(1, 101)) and body["offset"] == 200


def test_transform_and_status_script(adv):
    def page2_strings(body, offset):
        if offset == 100:
            for rec in body["data"]:
                rec["value"] = "abc"
        return body

    adv.transform = page2_strings
    assert isinstance(get(adv).json()["data"][0]["value"], float)
    assert {x["value"] for x in get(adv, offset=100).json()["data"]} == {"abc"}
    assert isinstance(adv.records()[100]["value"], float)      # the records are untouched
    adv.transform = lambda body, offset: b'{"data": [1, 2'      # raw text goes out verbatim
    assert get(adv).content == b'{"data": [1, 2'
    adv.transform = None

    adv.fail(503, offset=100, headers={"Retry-After": "0"})
    assert get(adv).status_code == 200
    first = get(adv, offset=100)
    assert first.status_code == 503 and first.headers["Retry-After"] == "0" and "error" in first.json()
    assert get(adv, offset=100).status_code == 200               # only the first attempt
    adv.status_script = lambda req: 429 if req.params.get("limit") == "7" else None
    assert get(adv, limit=7).status_code == 429 and get(adv, limit=8).status_code == 200


def test_redirect_cross_origin_leaks_key_to_catcher(adv):
    with Catcher() as catcher:
        adv.redirect_to(catcher.base_url, times=1)
        r = get(adv, offset=0)
        assert r.history and r.history[0].status_code == 302
        assert r.url.startswith(catcher.base_url) and r.json() == Catcher.PAGE
        assert adv.requests[0].status == 302 and adv.requests[0].faults == ["redirect"]
        hit = catcher.requests[0]
        assert hit.path == adv.path and f"api_key={adv.key}" in hit.raw_target
        assert catcher.leaked(adv.key) == [hit]
        assert get(adv).status_code == 200 and catcher.count() == 1  # times=1: used up

    # requests drops only Authorization on a cross-host redirect: a custom key header follows
    with Adversary(n=5, key_header="X-API-Key") as adv2, Catcher() as catcher:
        adv2.redirect_to(catcher.base_url)
        requests.get(adv2.base_url + adv2.path, headers={"X-API-Key": adv2.key}, timeout=T)
        assert catcher.leaked(adv2.key)


def test_redirect_same_origin_and_by_offset(adv):
    adv.redirect_same_origin("/v2/events", offset=100)
    r = get(adv, offset=0)
    assert not r.history and ids(r)[0] == 1
    r = get(adv, offset=100)
    assert [h.status_code for h in r.history] == [302] and r.url.startswith(adv.base_url + "/v2/events?")
    assert ids(r)[0] == 101 and r.json()["total"] == 250
    assert adv.count("/v2/events") == 1 and adv.count(adv.path) == 2
    # the redirect target is served but not redirected, even at the gated offset
    direct = requests.get(adv.base_url + "/v2/events", params={"api_key": adv.key, "offset": 100},
                          timeout=T)
    assert direct.status_code == 200 and not direct.history


def test_trickle_beats_read_timeout(adv):
    # the read timeout is per socket read, so a trickle slower overall than it still succeeds
    adv.set_trickle(100, 0.05)
    start = time.monotonic()
    r = requests.get(adv.base_url + adv.path, params={"api_key": adv.key, "limit": 20},
                     timeout=(1, 0.3))
    elapsed = time.monotonic() - start
    assert r.status_code == 200 and ids(r) == list(range(1, 21))
    assert elapsed > 0.5 and len(r.content) > 1000
    adv.trickle = None
    assert get(adv).status_code == 200


def test_trickle_headers(adv):
    adv.set_trickle_headers(0.002, times=1)
    start = time.monotonic()
    r = get(adv, limit=1)
    assert r.status_code == 200 and ids(r) == [1] and time.monotonic() - start > 0.2
    assert adv.requests[0].faults == ["trickle_headers"]
    assert get(adv).status_code == 200 and adv.requests[-1].faults == []


def test_endless_trickle_until_client_leaves(adv):
    adv.set_trickle(50, 0.01, endless=True)
    r = requests.get(adv.base_url + adv.path, params={"api_key": adv.key, "limit": 1},
                     timeout=(1, 0.5), stream=True)
    assert int(r.headers["Content-Length"]) >= 10**12
    got, deadline = b"", time.monotonic() + 0.6
    for chunk in r.iter_content(1):
        got += chunk
        if time.monotonic() > deadline:
            break
    r.close()
    # the whole page, then a space every interval (~50 of them in 0.6 s)
    page, _, tail = got.partition(b"}],")
    assert page.startswith(b'{"data":[{"id":1,') and b'"limit":1} ' in got
    assert tail.rstrip(b" ").endswith(b'"limit":1}') and 10 < len(tail) - len(tail.rstrip()) < 100
    # the server notices the hang-up and lets the connection go
    deadline = time.monotonic() + 2
    while adv.open_connections() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert adv.open_connections() == 0


def test_stall_headers_times_out(adv):
    adv.set_stall_headers(times=1)
    with pytest.raises(requests.Timeout):
        get_with(adv, timeout=(1, 0.3))
    assert adv.requests[0].status is None
    assert get(adv).status_code == 200  # times=1: the retry is served


def test_stall_body_times_out(adv):
    # requests reports a read timeout while reading the body as ConnectionError, not Timeout
    adv.set_stall_body(offset=100)
    assert get(adv).status_code == 200
    with pytest.raises(requests.ConnectionError) as info:
        get_with(adv, timeout=(1, 0.3), offset=100)
    assert "Read timed out" in str(info.value)
    assert adv.requests[-1].status == 200 and adv.requests[-1].faults == ["stall_body"]
    # with stream=True the headers arrive, and the body read is what times out
    r = requests.get(adv.base_url + adv.path, params={"api_key": adv.key, "offset": 100},
                     timeout=(1, 0.3), stream=True)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) > 1000
    with pytest.raises(requests.ConnectionError):
        r.content
    r.close()


def get_with(adv: Adversary, timeout, offset: int = 0) -> requests.Response:
    return requests.get(adv.base_url + adv.path, params={"api_key": adv.key, "offset": offset},
                        timeout=timeout)


@pytest.mark.parametrize("how", ["stall_headers", "stall_body", "endless"])
def test_close_is_prompt_with_stalled_clients(how):
    adv = Adversary(n=50)
    if how == "endless":
        adv.set_trickle(1, 0.05, endless=True)
    else:
        setattr(adv, how, True)
    errors: list = []

    def client():
        try:
            requests.get(adv.base_url + adv.path, params={"api_key": adv.key},
                         timeout=(1, 10)).content
        except requests.RequestException as e:
            errors.append(e)

    t = threading.Thread(target=client, daemon=True)
    t.start()
    deadline = time.monotonic() + 2
    while not adv.count() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # let the stall begin
    start = time.monotonic()
    adv.close()
    assert time.monotonic() - start < 2
    t.join(2)
    assert not t.is_alive() and errors  # the client was cut off, not left hanging
    adv.close()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(adv.base_url + adv.path, timeout=(0.5, 0.5))


def test_catcher_logs_bodies():
    with Catcher() as catcher:
        r = requests.post(catcher.base_url + "/anything?x=1", data=b"secret-in-body", timeout=T)
        assert r.status_code == 200 and r.json()["data"][0]["id"] == 9999
        req = catcher.requests[0]
        assert (req.method, req.raw_target, req.body) == ("POST", "/anything?x=1", b"secret-in-body")
        assert catcher.leaked("secret-in-body") == [req] and catcher.count("/anything") == 1
