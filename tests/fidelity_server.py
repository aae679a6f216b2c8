"""A small REST API on 127.0.0.1 for ``test_fidelity.py``: one endpoint per paginator,
auth and parent/child shape of dlt's ``rest_api`` config language, and a request log.

    with FidelityAPI() as api:
        requests.get(f"{api.base_url}/items/offset", params={"offset": 0, "limit": 5})
        api.requests  # [("GET", "/items/offset")]

Records are small and deterministic. ``/secure`` answers only with a credential and says
in its records where the credential came from (``query:api_key``, ``header:x-api-key``,
``bearer``, ...), never the credential itself, so rows show how a client authenticated.
The log holds methods and paths only: no query strings, headers or bodies.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Test credentials: made up for these tests, accepted only by this server.
API_KEY = "fid-key-4d1c9e"
TOKEN = "fid-token-77b2a0"
USERNAME, PASSWORD = "fid-user", "fid-pass-5e8f31"
SIGNING_TOKEN = "fid-signing-0c4b"  # for the custom auth: sent as ``X-Signature: sig-<token>``
CLIENT_ID, CLIENT_SECRET = "fid-client", "fid-client-secret-93aa"
ACCESS_TOKEN = "fid-access-1f0d"  # what /oauth/token hands out
SECRETS = (API_KEY, TOKEN, PASSWORD, SIGNING_TOKEN, CLIENT_SECRET, ACCESS_TOKEN)

PAGE = 5  # records per page where the client does not say
ITEMS = [{"id": i, "name": f"item {i}", "group": i % 3, "score": i * 1.5, "active": i % 2 == 0, "version": i}
         for i in range(1, 24)]
PARENTS = [{"id": p, "name": f"parent {p}", "region": "north" if p % 2 else "south"} for p in range(1, 5)]
CHILDREN = {p["id"]: [{"id": p["id"] * 100 + c, "parent_id": p["id"], "label": f"child {p['id']}.{c}"}
                      for c in range(1, p["id"] % 3 + 2)] for p in PARENTS}
NO_CHILDREN = 4  # /parents/4/children is a 404; /parents lists 1-3, /all-parents 1-4
# A change feed: one record in several versions (dlt's merge keeps the last, or dedup_sort's pick).
FEED = [{"id": i % 7 + 1, "version": i, "note": f"v{i}"} for i in range(1, 24)]
# Field names in camelCase: dlt normalises them (userId -> user_id), and hints may use either.
CAMEL = [{"userId": i, "updatedAt": f"2026-01-{i:02d}T10:00:00Z", "displayName": f"user {i}"} for i in range(1, 12)]
# Shapes the Arrow fast path must hand to dlt's normaliser rather than refuse.
ODD = {
    "values": [1, 2, 3],
    "lists": [[1, "a"], [2, "b"]],
    "colliding": [{"id": 1, "a b": 1, "a_b": 2}, {"id": 2, "a b": 3, "a_b": 4}],
    "empty-key": [{"id": 1, "": "x"}, {"id": 2, "": "y"}],
    "prices": [{"id": 1, "price": 0.125}, {"id": 2, "price": 2.5}, {"id": 3, "price": 1.005}],
    "instants": [{"id": 1, "seen_at": "2025-02-01T10:00:00.123456Z", "at": "10:00:00.123456"},
                 {"id": 2, "seen_at": "2025-02-01T10:00:00.5Z", "at": "10:00:00.5"},
                 {"id": 3, "seen_at": "2025-02-01T10:00:00.9996+01:00", "at": "23:59:59.9996"},
                 {"id": 4, "seen_at": "1969-12-31T23:59:59.9995Z", "at": "00:00:00.0005"},  # helper-156
                 {"id": 5, "seen_at": -1.5, "at": None},
                 {"id": 6, "seen_at": 1700000000.6789, "at": "12:00:00.45"},  # the year was 1970 (helper-157)
                 {"id": 7, "seen_at": "1969-12-31T13:33:02.3615-11:00", "at": None}],  # 1970 in UTC (helper-158)
}


class FidelityAPI:
    """The server, running in a thread until ``close()`` (or the end of a ``with`` block)."""

    def __init__(self) -> None:
        self._log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fidelity-api", daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self._log.append((method, path))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FidelityAPI":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(api: FidelityAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # keep-alive requests otherwise stall ~40 ms each

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            api.record(method, parts.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            try:
                status, body, headers = route(method, parts.path, query, raw, self.headers, api.base_url)
            except Exception as error:  # noqa: BLE001 - a bug here shows as a 500 with its type
                status, body, headers = 500, {"error": type(error).__name__}, {}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _int(query: dict[str, str], name: str, default: int) -> int:
    value = query.get(name)
    return int(value) if value not in (None, "") else default


def _after(cursor: Any) -> int:
    """Records after the record id ``cursor`` (0 or empty: from the start)."""
    return int(cursor) if cursor not in (None, "", "None") else 0


def _slice_after(start: int, size: int = PAGE) -> tuple[list[dict], int | None]:
    chunk = ITEMS[start:start + size]
    return chunk, (start + size if start + size < len(ITEMS) else None)


def credential(query: dict[str, str], headers: Any) -> str | None:
    """Where a valid credential came from, or None."""
    for name, value in query.items():
        if value == API_KEY:
            return f"query:{name}"
    for name, value in headers.items():
        if value == API_KEY:
            return f"header:{name.lower()}"
    for part in (headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if value == API_KEY:
            return f"cookie:{name}"
    auth = headers.get("Authorization") or ""
    if auth == f"Bearer {TOKEN}":
        return "bearer"
    if auth == f"Bearer {ACCESS_TOKEN}":
        return "oauth2"
    if auth == "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode():
        return "basic"
    if headers.get("X-Signature") == f"sig-{SIGNING_TOKEN}":
        return "signature"
    return None


def route(method: str, path: str, query: dict[str, str], raw: bytes, headers: Any,
          base_url: str) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, extra headers) for one request."""
    body = json.loads(raw) if raw and "json" in (headers.get("Content-Type") or "") else {}
    segments = [s for s in path.split("/") if s]
    if path == "/items/offset" or (path == "/items/search" and method == "POST"):
        paging = body.get("paging", {}) if method == "POST" else query
        offset, limit = int(paging.get("offset", 0)), int(paging.get("limit", PAGE))
        records = [r for r in ITEMS if "group" not in body or r["group"] == body["group"]]
        return 200, {"data": records[offset:offset + limit], "total": len(records)}, {}
    if path == "/items/page":
        page, size = _int(query, "page", 1), _int(query, "page_size", PAGE)
        return 200, {"data": ITEMS[(page - 1) * size:page * size], "total_pages": math.ceil(len(ITEMS) / size)}, {}
    if path == "/items/cursor":
        cursor = body.get("cursor") if method == "POST" else query.get("cursor")
        chunk, following = _slice_after(_after(cursor))
        return 200, {"data": chunk, "next_cursor": str(following) if following else None}, {}
    if path in ("/items/link", "/items/header-link"):
        chunk, following = _slice_after(_after(query.get("after")))
        link = f"{base_url}{path}?after={following}" if following else None
        if path == "/items/link":
            return 200, {"data": chunk, "next": link}, {}
        return 200, {"data": chunk}, ({"Link": f'<{link}>; rel="next"'} if link else {})
    if path == "/items/header-cursor":
        chunk, following = _slice_after(_after(query.get("cursor")))
        return 200, {"data": chunk}, ({"next": str(following)} if following else {})
    if path == "/items/numbered":  # the custom paginator's: ?p=0,1,2...; empty past the end
        page = _int(query, "p", 0)
        return 200, {"data": ITEMS[page * PAGE:(page + 1) * PAGE]}, {}
    if path == "/items/all":
        return 200, {"data": ITEMS}, {}
    if path in ("/feed", "/camel"):
        records = FEED if path == "/feed" else CAMEL
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", PAGE))
        return 200, {"data": records[offset:offset + limit], "total": len(records)}, {}
    if len(segments) == 2 and segments[0] == "odd" and segments[1] in ODD:
        return 200, {"data": ODD[segments[1]]}, {}
    if path == "/items/nested":
        return 200, {"result": {"items": ITEMS, "count": len(ITEMS)}}, {}
    if path == "/items/since":
        since = _int(query, "since", 0)
        return 200, {"data": [r for r in ITEMS if r["version"] > since]}, {}
    if path == "/secure":
        where = credential(query, headers)
        if where is None:
            return 401, {"error": "missing or wrong credential"}, {}
        return 200, {"data": [{"id": 1, "credential": where}, {"id": 2, "credential": where}]}, {}
    if path == "/oauth/token" and method == "POST":
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client"}, {}
        return 200, {"access_token": ACCESS_TOKEN, "expires_in": 3600}, {}
    if path == "/echo-headers":
        shown = {"x_client": headers.get("X-Client"), "x_endpoint": headers.get("X-Endpoint"),
                 "accept": headers.get("Accept")}
        return 200, {"data": [{"id": 1, **shown}]}, {}
    if path in ("/parents", "/all-parents"):
        listed = PARENTS if path == "/all-parents" else [p for p in PARENTS if p["id"] != NO_CHILDREN]
        return 200, {"data": listed}, {}
    if len(segments) == 2 and segments[0] == "parents":
        parent = next((p for p in PARENTS if str(p["id"]) == segments[1]), None)
        if parent is None:
            return 404, {"error": "no such parent"}, {}
        return 200, {**parent, "detail": f"about {parent['name']}"}, {}
    if len(segments) == 3 and segments[0] == "parents" and segments[2] == "children":
        parent_id = int(segments[1])
        if parent_id == NO_CHILDREN or parent_id not in CHILDREN:
            return 404, {"error": "no children"}, {}
        return 200, {"data": CHILDREN[parent_id]}, {}
    if path == "/children":
        parent_id = int(body["parent_id"]) if method == "POST" else _int(query, "parent_id", 0)
        return 200, {"data": CHILDREN.get(parent_id, [])}, {}
    return 404, {"error": f"no route {method} {path}"}, {}
