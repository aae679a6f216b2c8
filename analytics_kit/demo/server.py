"""The HTTP side of the demo API: a stdlib ThreadingHTTPServer bound to 127.0.0.1.

    GET /v1/events | /v1/customers | /v1/resource (= events)
        ?<key_param>=KEY  (missing/wrong: 401)
        &offset=0.. (default 0)  &limit=1..100 (default 100)
        &updated_since=ISO-8601 (Z, +00:00 or a date; naive = UTC; INCLUSIVE: updated_at >= it)
    -> {"data": [...], "total": <records matching the filter>, "offset": o, "limit": l}
       ordered by (updated_at, id). Bad parameters: 400; other paths: 404; other methods: 405;
       all errors {"error": {"code": ..., "message": ...}}. Unknown parameters are ignored.

Keep-alive (HTTP/1.1, always a Content-Length) and Nagle disabled, because otherwise every
keep-alive request stalls ~40 ms on delayed ACKs. Each response is written with one send.
Every error is a JSON body; no input produces a 500. ``/_admin/*`` endpoints (key protected,
not logged, no faults) let a parent process drive a server running in a subprocess.
"""

from __future__ import annotations

import hmac
import io
import json
import re
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from analytics_kit.demo.faults import Fault

if TYPE_CHECKING:
    from analytics_kit.demo.api import DemoAPI

ROUTES = {"/v1/events": "events", "/v1/customers": "customers", "/v1/resource": "resource"}
MAX_BODY = 1 << 20
_TZ_SPACE = re.compile(r" (\d\d(:?\d\d)?)$")  # '+00:00' arrives as ' 00:00' if not %-encoded
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
             b"<h1>Bad Gateway</h1><p>The upstream server is temporarily unavailable."
             b" Please try again later.</p></body></html>")


@dataclass(frozen=True)
class RequestRecord:
    """One logged API request; the key's value is always replaced by ``***``."""

    method: str
    path: str
    params: dict
    status: int | None  # None: the connection was reset without a response
    fault: str | None
    started: float


class BadRequest(Exception):
    pass


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _encode(obj: Any) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()


def _parse_int(params: dict, name: str, default: int, lo: int, hi: int | None, msg: str) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 100:
        raise BadRequest(msg)
    v = int(raw)
    if v < lo or (hi is not None and v > hi):
        raise BadRequest(msg)
    return v


def parse_since(raw: str) -> float:
    """ISO-8601 timestamp or date to epoch seconds; naive values are UTC."""
    try:
        text = _TZ_SPACE.sub(r"+\1", raw.strip())
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    except (ValueError, OverflowError, TypeError):
        raise BadRequest("updated_since must be an ISO-8601 timestamp such as "
                         "2026-01-03T10:15:07Z or a date such as 2026-01-03") from None


STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 408: "timeout", 429: "rate_limited",
                500: "internal_error", 502: "bad_gateway", 503: "unavailable",
                504: "gateway_timeout"}


ERROR_TEXT = {400: "malformed HTTP request", 405: "method not allowed; only GET is supported",
              414: "request line too long", 431: "request headers too large"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "DemoAnalyticsAPI/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are dropped eventually
    server: "DemoHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # silence per-request stderr logging; the request log is api.requests

    # -- plumbing -------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def _log(self, status: int | None) -> None:
        # log before the response goes out, so a client that got it also finds it in the log
        hook, self.log_hook = self.log_hook, None
        if hook is not None:
            hook(status)

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict | None = None, length: int | None = None) -> None:
        self._log(status)
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('Error',))[0]}",
                 f"Server: {self.server_version}", f"Date: {self.date_time_string()}",
                 f"Content-Type: {ctype}",
                 f"Content-Length: {len(body) if length is None else length}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def _json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self._send(status, _encode(obj), headers=headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # the stdlib's own errors (bad request line, unknown method, ...) as JSON, always with a
        # status line, and never with the stdlib's message: it quotes the request line (the key)
        self.close_connection = True
        if code == 501:
            code = 405
        text = ERROR_TEXT.get(code) or self.responses.get(code, ("error",))[0].lower()
        self._json(code, _error(STATUS_CODES.get(code, "error"), text))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # not worth parsing chunked bodies: just hang up after
            return b""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(n) if n else b""

    def _reset(self) -> None:
        # SO_LINGER 0 turns close() into a RST; the makefile()s hold references, so close them
        self._log(None)
        self.close_connection = True
        conn = self.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except OSError:
                pass
        conn.close()
        # the stdlib still flushes/closes these after the handler returns
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()

    # -- dispatch -------------------------------------------------------------------------
    log_hook: Callable[[int | None], None] | None = None

    def do_GET(self) -> None:
        self.log_hook = None
        api = self.server.api
        split = urlsplit(self.path)
        path = unquote(split.path)
        body = self._read_body()
        try:
            pairs = parse_qs(split.query, keep_blank_values=True, max_num_fields=200)
            params = {k: v[-1] for k, v in pairs.items()}
        except ValueError:
            params = None
        if path.startswith("/_admin/"):
            return self._admin(api, path, params, body)
        api._handle(self, path, params)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_TRACE = do_GET

    def api_response(self, api: "DemoAPI", path: str, params: dict | None,
                     raw: bool = False) -> tuple[int, Any, dict]:
        """The normal (unfaulted) response: status, JSON body, extra headers.

        With ``raw`` a 200 body is already-encoded bytes (the fast path without transforms).
        """
        resource = ROUTES.get(path)
        if resource is None:
            return 404, _error("not_found", "no such endpoint; try /v1/events or /v1/customers"), {}
        if self.command not in ("GET", "HEAD"):
            return 405, _error("method_not_allowed", "only GET is supported"), {"Allow": "GET, HEAD"}
        if params is None:
            return 400, _error("bad_request", "malformed or too many query parameters"), {}
        given = params.get(api.key_param)
        if given is None or not hmac.compare_digest(given.encode("utf-8", "replace"),
                                                    api.api_key.encode()):
            return 401, _error("unauthorized", f"missing or invalid API key; pass it in the "
                               f"'{api.key_param}' query parameter"), {}
        try:
            limit = _parse_int(params, "limit", 100, 1, 100,
                               "limit must be an integer between 1 and 100")
            offset = _parse_int(params, "offset", 0, 0, None,
                                "offset must be an integer >= 0")
            given_since = params.get("updated_since")
            since = None if given_since is None else parse_since(given_since)
        except BadRequest as e:
            return 400, _error("bad_request", str(e)), {}
        data, total = api._data.page(resource, offset, limit, since, raw)
        if raw:
            text = f'{{"data":[{",".join(data)}],"total":{total},"offset":{offset},"limit":{limit}}}'
            return 200, text.encode(), {}
        return 200, {"data": data, "total": total, "offset": offset, "limit": limit}, {}

    def serve_fault(self, fault: Fault, normal: Callable[[], tuple[int, Any, dict]]) -> int | None:
        """Perform a terminal fault; returns the status sent (None for a reset)."""
        kind = fault.kind
        if kind == "status":
            code = fault.status
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            self._json(code, _error(STATUS_CODES.get(code, "error"),
                                    f"injected fault: HTTP {code}"), headers)
            return code
        if kind == "reset":
            self._reset()
            return None
        if kind == "html":
            self._send(200, HTML_PAGE, ctype="text/html; charset=utf-8")
            return 200
        if kind == "echo_401":
            url = f"{self.server.api.base_url}{self.path}"
            self._json(401, {"error": {"code": "unauthorized",
                                       "message": f"invalid API key in request '{self.requestline}'",
                                       "url": url}})
            return 401
        status, obj, headers = normal()
        text = _encode(obj)
        cut = text[: max(1, len(text) // 2)]
        if kind == "truncated_json":
            self._send(status, cut, headers=headers)
        else:  # short_body: promise the whole body, deliver half, hang up
            self.close_connection = True
            self._send(status, cut, headers=headers, length=len(text))
        return status

    # -- admin ----------------------------------------------------------------------------
    def _admin(self, api: "DemoAPI", path: str, params: dict | None, body: bytes) -> None:
        given = (params or {}).get(api.key_param, "")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), api.api_key.encode()):
            return self._json(401, _error("unauthorized", "admin endpoints need the API key"))
        try:
            args = json.loads(body) if body else {}
            if not isinstance(args, dict):
                raise ValueError("the request body must be a JSON object")
            route = (self.command, path)
            if route == ("POST", "/_admin/advance"):
                return self._json(200, asdict(api.advance(**args)))
            if route == ("POST", "/_admin/inject"):
                api.inject(args.pop("kind", None), **args)
                return self._json(200, {"ok": True})
            if route == ("POST", "/_admin/clear"):
                api.clear_faults()
                return self._json(200, {"ok": True})
            if route == ("POST", "/_admin/latency"):
                api.set_latency(args.get("seconds"))
                return self._json(200, {"ok": True})
            if route == ("GET", "/_admin/log"):
                return self._json(200, {"requests": [asdict(r) for r in api.requests]})
            if route == ("DELETE", "/_admin/log"):
                api.clear_log()
                return self._json(200, {"ok": True})
            if route == ("GET", "/_admin/records"):
                incl = (params or {}).get("include_deleted", "true").lower() not in ("0", "false")
                recs = api.records((params or {}).get("resource", "events"), include_deleted=incl)
                return self._json(200, {"data": recs})
        except (TypeError, ValueError) as e:
            return self._json(400, _error("bad_request", str(e)))
        return self._json(404, _error("not_found", "no such admin endpoint"))


class DemoHTTPServer(ThreadingHTTPServer):
    """Tracks open connections so stop() can close idle keep-alive sockets and join threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, api: "DemoAPI", port: int) -> None:
        self.api = api
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are not errors
            super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._run, args=(request, client_address), daemon=True)
        with self._lock:
            self._workers.add(t)
        t.start()

    def _run(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        with self._lock:
            conns, threads = list(self._conns), list(self._workers)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

