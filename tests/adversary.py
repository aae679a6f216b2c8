"""A misbehaving listing API for tests: it serves the same contract as a real paginated API
until it is told to break it, the way third-party APIs do.

Written independently of ``analytics_kit.demo`` on purpose, so a shared misunderstanding of
the contract cannot hide in both. Stdlib only; binds 127.0.0.1 on an ephemeral port.

The contract (honest behaviour)
    GET {path}?api_key=KEY&offset=O&limit=L[&updated_since=ISO]
    -> 200 {"data": [...], "total": N, "offset": O, "limit": L}
    Records are ordered by (updated_at as an instant, id). ``updated_since`` is inclusive and
    compared as an instant: a trailing ``Z`` means UTC, a naive value is UTC, and a ``+HH:MM``
    whose ``+`` arrived as a space (not %-encoded in the query) is repaired. ``total`` counts
    the records matching the filter. ``limit`` defaults to 100 and is clamped to 1..100 (never
    rejected); the echoed ``limit`` is the clamped one. A wrong or missing key is a 401 (the
    key goes in the query, or in ``key_header`` when that is set); bad offset/limit/
    updated_since a 400; other paths a 404; other methods on the listing path a 405. Every
    error is JSON ``{"error": {"code": ..., "message": ...}}``. Every response carries a
    Content-Length, and HTTP/1.1 keep-alive works.

Misbehaviours (attributes of ``Adversary``; set or change them at any time, from any thread;
``reset()`` makes the server honest again):

    total           ``HONEST`` (default), a constant, or ``fn(true_total, offset) -> value``.
                    The value goes into the JSON as-is (150, -5, "abc", 10**12, None, 1.5...);
                    ``MISSING`` (as the constant or returned by fn) omits the key.
    page_cap        None or an int: never more than this many records per page, whatever the
                    ``limit`` asked for (the echoed ``limit`` stays the asked one).
    ignore_offset   True: every request gets the first page (the asked offset is still echoed).
    transform       None or ``fn(body_dict, offset) -> body``, applied to 200 data pages just
                    before encoding: change types, drop keys, reorder... Returning ``bytes`` or
                    ``str`` sends that text verbatim (e.g. invalid JSON).
    status_script   None or ``fn(req) -> None | status | (status, headers)``, asked for every
                    request (after redirects): a status answers that error (JSON body) instead
                    of data. ``fail(503, times=1, offset=100)`` builds a common one.
    redirect        None or ``fn(req_path, query_string) -> location | None``: a location is
                    answered with 302, that Location header and the body ``{}``. Checked before
                    the key. Helpers: ``redirect_to(other_base_url)`` (cross-origin: same path
                    and query on another server) and ``redirect_same_origin("/v2/events")``
                    (the new path is then served like the main one).
    stall_headers   True: read the request, then send nothing, until the client hangs up or
                    the server closes.
    trickle_headers seconds: send the status line and headers one byte per interval.
    trickle         ``(bytes_per_chunk, seconds_between[, endless])``: headers at once (with
                    the real Content-Length), then the body in chunks. With ``endless`` the
                    Content-Length is huge and after the body a space (valid JSON whitespace)
                    follows every interval, forever, until the client hangs up or close().
    stall_body      True: headers with the real Content-Length and half the body, then nothing
                    until the client hangs up or close().

The last five are "gated": they apply to requests on a listing path (the main path and any
same-origin redirect target), and ``limit(name, times=k, offset=o)`` (or the ``set_*`` /
``redirect_*`` helpers' ``times``/``offset`` arguments) restricts one to its first k firings
and/or to requests asking for that offset. Assigning the attribute again resets its gate.
The slow ones combine (trickled headers, then a trickled half body, then a stall...).

Everything is logged in ``requests`` (``Req``: method, path, params, headers, raw_target,
time, status, ...; status None means no status line was sent). ``Catcher`` is a tiny server
that answers anything with a plausible page and logs it, to be the target of a cross-origin
redirect and catch leaked keys.
"""

from __future__ import annotations

import copy
import hmac
import json
import re
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Adversary", "Catcher", "Req", "HONEST", "MISSING", "START", "default_records", "iso",
           "parse_instant"]

START = datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp()  # first default updated_at
MAX_LIMIT = 100
ENDLESS_LENGTH = 10**12  # the Content-Length promised by an endless trickle
_POLL = 0.05  # how often sleeping loops look at the client and at close()
_KINDS = ("click", "view", "purchase", "signup")
_SPACE_OFFSET = re.compile(r"(?<=\d) (\d\d(:?\d\d)?)$")  # '+05:00' arrives as ' 05:00'


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


HONEST = _Sentinel("HONEST")    # total: report the true count
MISSING = _Sentinel("MISSING")  # total: leave the key out of the body


# -- timestamps ---------------------------------------------------------------------------------

def iso(epoch_seconds: float, offset_minutes: int = 0, frac: int | None = None, *,
        z: bool = False) -> str:
    """The instant ``epoch_seconds`` written in the zone ``offset_minutes`` east of UTC.

    ``frac`` is the number of fractional-second digits to print (1..6, truncated; None: none).
    ``z`` writes a UTC offset as 'Z' instead of '+00:00'. ``iso(START, 300)`` is
    '2026-03-01T05:00:00+05:00', the same instant as ``iso(START, z=True)``.
    """
    dt = datetime.fromtimestamp(epoch_seconds, timezone(timedelta(minutes=offset_minutes)))
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{dt.microsecond:06d}"[: max(1, min(6, frac))]
    if z and offset_minutes == 0:
        return text + "Z"
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def parse_instant(text: str) -> datetime:
    """An ISO-8601 timestamp or date as an aware datetime; naive means UTC. Raises ValueError.

    A '+HH:MM' offset whose '+' became a space (an unencoded '+' in a query string) is
    repaired, but only when the text does not parse as it is, so '2026-03-01 05:00' (a space
    as the date/time separator) keeps its meaning.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        dt = datetime.fromisoformat(_SPACE_OFFSET.sub(r"+\1", text))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def default_records(n: int) -> list[dict]:
    """n records, ids 1..n, updated_at every 60 s from START, a float value and a kind."""
    return [{"id": i, "updated_at": iso(START + 60 * (i - 1), z=True),
             "value": round(10 + (i * 7919 % 1000) / 10, 1), "kind": _KINDS[i % len(_KINDS)]}
            for i in range(1, n + 1)]


# -- request log --------------------------------------------------------------------------------

@dataclass
class Req:
    """One request as received. ``status`` is set just before the response goes out (None: no
    status line was ever sent, e.g. a header stall); ``faults`` names the misbehaviours that
    fired for it. Nothing is redacted: tests look for the key here."""

    method: str
    path: str              # %-decoded path, without the query
    params: dict           # last value per name
    headers: dict
    raw_target: str        # the request target exactly as sent, query string included
    time: float            # time.monotonic() on arrival
    status: int | None = None
    body: bytes = b""
    client: tuple = ()     # (host, port): equal ports mean a reused keep-alive connection
    faults: list[str] = field(default_factory=list)

    @property
    def offset(self) -> int | None:
        """The asked offset (0 when absent), None when it is not an integer."""
        raw = self.params.get("offset", "0")
        return int(raw) if raw.isascii() and raw.isdigit() else None


def _error(status: int, message: str) -> dict:
    code = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
            429: "rate_limited", 500: "internal_error", 502: "bad_gateway", 503: "unavailable",
            504: "gateway_timeout"}.get(status, "error")
    return {"error": {"code": code, "message": message}}


def _encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    # NaN/Infinity pass as the (invalid JSON) tokens a sloppy API sends; other odd objects a
    # transform leaves in a page (datetimes, Decimals) go out as their str()
    return json.dumps(body, separators=(",", ":"), default=str).encode()


# -- the HTTP plumbing shared by both servers ---------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # without it keep-alive requests wait ~40 ms on delayed ACKs
    server_version = "AdversaryAPI/0.1"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped eventually
    server: "_HTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the request log is the owner's ``requests``

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # the stdlib's own errors (bad request line, headers too long...) as JSON with a length
        self.close_connection = True
        self.write_response(code, _encode(_error(code, message or "malformed request")))

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        try:
            pairs = parse_qs(split.query, keep_blank_values=True, max_num_fields=200)
        except ValueError:
            pairs = {}
        req = Req(method=self.command, path=unquote(split.path),
                  params={k: v[-1] for k, v in pairs.items()}, headers=dict(self.headers.items()),
                  raw_target=self.path, time=time.monotonic(), body=self._read_body(),
                  client=tuple(self.client_address))
        self.server.owner._log(req)
        self.server.owner._handle(self, req, split.query)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        # read any request body so the next request on this connection parses correctly
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # not worth decoding chunked uploads: hang up after
            return b""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if not 0 <= n <= 1 << 20:
            self.close_connection = True
            return b""
        return self.rfile.read(n) if n else b""

    # -- writing, fast or slow ----------------------------------------------------------------
    @property
    def stopping(self) -> threading.Event:
        return self.server.stopping

    def head_bytes(self, status: int, length: int, headers: dict | None = None) -> bytes:
        reason = self.responses.get(status, ("Unknown",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}",
                 f"Date: {self.date_time_string()}", "Content-Type: application/json",
                 f"Content-Length: {length}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def write_response(self, status: int, body: bytes, headers: dict | None = None) -> None:
        # head and body in one send: a split write costs a delayed-ACK round trip
        self.connection.sendall(self.head_bytes(status, len(body), headers) + body)

    def drip(self, data: bytes, chunk: int, interval: float) -> bool:
        """Send ``data`` ``chunk`` bytes at a time, ``interval`` apart; False if cut short by
        close() or the client hanging up."""
        for i in range(0, len(data), chunk):
            if i and self.stopping.wait(interval):
                return False
            try:
                self.connection.sendall(data[i:i + chunk])
            except OSError:
                return False
        return True

    def abandon(self) -> None:
        # a response cut off half-way leaves the connection in no state to carry another one
        self.close_connection = True

    def wait_for_hangup(self) -> None:
        """Sleep until the client closes the connection or the server closes."""
        conn = self.connection
        while not self.stopping.is_set():
            try:
                ready, _, _ = select.select([conn], [], [], _POLL)
                # anything the client sends now is discarded: this connection is finished
                if ready and not conn.recv(65536):
                    return
            except (OSError, ValueError):  # ValueError: the socket was closed under us
                return


class _HTTPServer(ThreadingHTTPServer):
    """Tracks connections and worker threads so close() can cut stalled clients off."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, owner: "_Base") -> None:
        self.owner = owner
        self.stopping = threading.Event()  # wakes every sleeping loop when close() is called
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

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

    def stop(self, timeout: float = 1.0) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        with self._lock:
            conns, workers = list(self._conns), list(self._workers)
        for conn in conns:  # wakes threads blocked in recv/send on stalled or idle connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))


class _Base:
    """Start/stop, the request log and the context manager, shared by both servers."""

    def __init__(self) -> None:
        self._log_lock = threading.Lock()
        self._requests: list[Req] = []
        self._httpd = _HTTPServer(self)
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": _POLL},
                                        name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    def _log(self, req: Req) -> None:
        with self._log_lock:
            self._requests.append(req)

    @property
    def requests(self) -> list[Req]:
        """Every request received so far, in arrival order (a snapshot list)."""
        with self._log_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def count(self, path: str | None = None) -> int:
        """How many requests arrived (on ``path`` only, when given)."""
        with self._log_lock:
            return sum(1 for r in self._requests if path is None or r.path == path)

    def open_connections(self) -> int:
        """Client connections currently open (a stalled client keeps one)."""
        return self._httpd.open_connections()

    def close(self) -> None:
        """Stop serving and cut every connection, stalled ones included; idempotent."""
        if not self._closed:
            self._closed = True
            self._httpd.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _handle(self, h: _Handler, req: Req, query: str) -> None:
        raise NotImplementedError


# -- gating: "only the first k times", "only at offset o" ----------------------------------------

class _Gate:
    """When a gated misbehaviour fires: on listing paths, at most ``times`` times, at ``offset``."""

    def __init__(self, times: int | None = None, offset: int | None = None) -> None:
        self.times, self.offset, self.fired = times, offset, 0
        self._lock = threading.Lock()

    def take(self, req: Req, fire: Callable[[], Any] = lambda: True) -> Any:
        """``fire()``'s result if the gate is open for ``req`` and it is truthy (counting it as
        a firing), else None. Check and count are one step so concurrent requests cannot
        overshoot ``times``."""
        with self._lock:
            if self.times is not None and self.fired >= self.times:
                return None
            if self.offset is not None and req.offset != self.offset:
                return None
            result = fire()
            if result:
                self.fired += 1
                return result
            return None


def _norm_trickle(value: Any) -> tuple | None:
    if not value:
        return None
    chunk, interval, *rest = value
    if int(chunk) < 1 or float(interval) < 0:
        raise ValueError("trickle needs bytes_per_chunk >= 1 and seconds_between >= 0")
    return int(chunk), float(interval), bool(rest and rest[0])


class _Gated:
    """A misbehaviour attribute whose value sits with a ``_Gate``; assigning resets the gate.

    The (value, gate) pair is replaced as one tuple, so a request never sees a value with
    another value's gate.
    """

    def __init__(self, normalize: Callable[[Any], Any] = lambda v: v) -> None:
        self.normalize = normalize

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else obj._rules[self.name][0]

    def __set__(self, obj: Any, value: Any) -> None:
        obj._rules[self.name] = (self.normalize(value), _Gate())


# -- the adversary ------------------------------------------------------------------------------

class Adversary(_Base):
    """A listing API on 127.0.0.1 that can be told to lie. Use as a context manager."""

    redirect = _Gated()
    stall_headers = _Gated()
    # ``True`` means a default interval, not 1.0 s per byte
    trickle_headers = _Gated(lambda v: None if not v else 0.01 if v is True else float(v))
    trickle = _Gated(_norm_trickle)
    stall_body = _Gated()
    GATED = ("redirect", "stall_headers", "trickle_headers", "trickle", "stall_body")

    def __init__(self, records: list[dict] | None = None, *, n: int = 500,
                 key: str = "adv-key-123456", key_param: str = "api_key",
                 key_header: str | None = None, path: str = "/v1/events") -> None:
        self.key, self.key_param, self.key_header, self.path = key, key_param, key_header, path
        self._data_lock = threading.Lock()
        self._records: list[dict] = []
        self._sorted: list[tuple] | None = None  # cache of (sort key, record), rebuilt on change
        self.set_records(default_records(n) if records is None else records)
        self._aliases: set[str] = set()  # same-origin redirect targets, served like ``path``
        self._rules: dict[str, tuple[Any, _Gate]] = {}
        self.reset()
        super().__init__()

    def reset(self) -> None:
        """Honest again: every misbehaviour off (records and the log are kept)."""
        self.total: Any = HONEST
        self.page_cap: int | None = None
        self.ignore_offset = False
        self.transform: Callable[[Any, int], Any] | None = None
        self.status_script: Callable[[Req], Any] | None = None
        for name in self.GATED:
            setattr(self, name, None)

    # -- records ------------------------------------------------------------------------------
    def records(self) -> list[dict]:
        """A deep copy of the current records, in insertion order."""
        with self._data_lock:
            return copy.deepcopy(self._records)

    def set_records(self, records: list[dict]) -> None:
        with self._data_lock:
            self._records = copy.deepcopy(list(records))
            self._sorted = None

    def add_records(self, records: list[dict]) -> None:
        """Insert records, replacing any with the same id."""
        with self._data_lock:
            index = {r.get("id"): i for i, r in enumerate(self._records)}
            for rec in copy.deepcopy(list(records)):
                if rec.get("id") in index:
                    self._records[index[rec.get("id")]] = rec
                else:
                    index[rec.get("id")] = len(self._records)
                    self._records.append(rec)
            self._sorted = None

    def delete_records(self, *ids: Any) -> None:
        with self._data_lock:
            self._records = [r for r in self._records if r.get("id") not in ids]
            self._sorted = None

    def update_record(self, id: Any, **changes: Any) -> dict:  # noqa: A002 - the field's name
        """Change one record; unless ``updated_at`` is among the changes it is bumped to 60 s
        after the latest updated_at of all records (so the change is the newest). Returns a
        copy of the record. KeyError if there is no such id."""
        with self._data_lock:
            rec = next((r for r in self._records if r.get("id") == id), None)
            if rec is None:
                raise KeyError(id)
            rec.update(copy.deepcopy(changes))
            if "updated_at" not in changes:
                rec["updated_at"] = iso(self._latest() + 60, z=True)
            self._sorted = None
            return copy.deepcopy(rec)

    def _latest(self) -> float:
        instants = []
        for r in self._records:
            try:
                instants.append(parse_instant(r.get("updated_at")).timestamp())
            except (ValueError, OverflowError):
                pass
        return max(instants, default=START - 60)

    @staticmethod
    def _sort_key(rec: dict) -> tuple:
        # by instant (exact: aware datetimes, not float seconds), then id; records whose
        # updated_at does not parse go last, and never pass an updated_since filter
        rid = rec.get("id")
        id_key = (0, rid, "") if isinstance(rid, (int, float)) and not isinstance(rid, bool) \
            else (1, 0, str(rid))
        try:
            return (0, parse_instant(rec.get("updated_at")), id_key)
        except (ValueError, OverflowError):
            return (1, datetime.min.replace(tzinfo=timezone.utc), id_key)

    def _page(self, offset: int, limit: int, since: datetime | None) -> tuple[list[dict], int]:
        with self._data_lock:
            if self._sorted is None:
                self._sorted = sorted(((self._sort_key(r), r) for r in self._records),
                                      key=lambda kr: kr[0])
            rows = self._sorted
            if since is not None:
                rows = [kr for kr in rows if kr[0][0] == 0 and kr[0][1] >= since]
            # deep copies: a transform may edit the page without touching the records
            return copy.deepcopy([r for _, r in rows[offset:offset + limit]]), len(rows)

    # -- misbehaviour helpers -------------------------------------------------------------------
    def limit(self, name: str, *, times: int | None = None, offset: int | None = None) -> "Adversary":
        """Restrict the gated misbehaviour ``name`` (already set) to its first ``times`` firings
        and/or to requests asking for ``offset``."""
        if name not in self.GATED:
            raise ValueError(f"{name!r} is not one of {self.GATED}")
        value, _ = self._rules[name]
        self._rules[name] = (value, _Gate(times, offset))
        return self

    def set_trickle(self, bytes_per_chunk: int = 1, seconds_between: float = 0.01,
                    endless: bool = False, *, times: int | None = None,
                    offset: int | None = None) -> "Adversary":
        self.trickle = (bytes_per_chunk, seconds_between, endless)
        return self.limit("trickle", times=times, offset=offset)

    def set_trickle_headers(self, seconds_between: float = 0.01, *, times: int | None = None,
                            offset: int | None = None) -> "Adversary":
        self.trickle_headers = seconds_between
        return self.limit("trickle_headers", times=times, offset=offset)

    def set_stall_body(self, *, times: int | None = None, offset: int | None = None) -> "Adversary":
        self.stall_body = True
        return self.limit("stall_body", times=times, offset=offset)

    def set_stall_headers(self, *, times: int | None = None, offset: int | None = None) -> "Adversary":
        self.stall_headers = True
        return self.limit("stall_headers", times=times, offset=offset)

    def redirect_to(self, other_base_url: str, keep_query: bool = True, *,
                    times: int | None = None, offset: int | None = None) -> "Adversary":
        """302 requests on the main path to the same path (and query) on another origin."""
        other = other_base_url.rstrip("/")

        def location(req_path: str, query: str) -> str | None:
            if req_path != self.path:
                return None
            return f"{other}{req_path}" + (f"?{query}" if keep_query and query else "")

        self.redirect = location
        return self.limit("redirect", times=times, offset=offset)

    def redirect_same_origin(self, new_path: str, *, times: int | None = None,
                             offset: int | None = None) -> "Adversary":
        """302 requests on the main path to ``new_path`` on this server, query kept; the new
        path is served like the main one (and is not redirected itself)."""
        self._aliases = self._aliases | {new_path}

        def location(req_path: str, query: str) -> str | None:
            if req_path != self.path:
                return None
            return f"{self.base_url}{new_path}" + (f"?{query}" if query else "")

        self.redirect = location
        return self.limit("redirect", times=times, offset=offset)

    def fail(self, status: int = 503, *, times: int | None = 1, offset: int | None = None,
             headers: dict | None = None) -> "Adversary":
        """A status_script: answer ``status`` to the first ``times`` listing requests (at
        ``offset``, when given), e.g. ``fail(503, offset=100)`` fails the first try of page 2."""
        gate = _Gate(times, offset)

        def script(req: Req) -> Any:
            if req.path in self.listing_paths():
                return gate.take(req, lambda: (status, headers or {}))
            return None

        self.status_script = script
        return self

    def listing_paths(self) -> set[str]:
        return {self.path} | self._aliases

    # -- serving --------------------------------------------------------------------------------
    def _fire(self, name: str, req: Req, fire: Callable[[Any], Any] | None = None) -> Any:
        """The gated misbehaviour's value (or ``fire(value)``'s result) if it fires for ``req``,
        else None; a firing is noted in ``req.faults``."""
        value, gate = self._rules[name]  # one read: value and gate always belong together
        if not value:
            return None
        result = gate.take(req, (lambda: fire(value)) if fire else (lambda: value))
        if result:
            req.faults.append(name)
        return result

    def _handle(self, h: _Handler, req: Req, query: str) -> None:
        listing = req.path in self.listing_paths()
        if listing and self._fire("stall_headers", req):
            h.close_connection = True
            h.wait_for_hangup()
            return
        # the slow-delivery decisions are taken up front, whatever the response turns out to be
        slow = {}
        if listing:
            for name in ("trickle_headers", "trickle", "stall_body"):
                value = self._fire(name, req)
                if value:
                    slow[name] = value

        status, body, headers = self._respond(req, query, listing)
        req.status = status  # logged before it is sent: a client that got it finds it logged
        self._deliver(h, status, _encode(body), headers, slow)

    def _respond(self, req: Req, query: str, listing: bool) -> tuple[int, Any, dict]:
        """The response to send (status, body, extra headers), misbehaviours included."""
        if listing:
            location = self._fire("redirect", req, lambda redirect: redirect(req.path, query))
            if location:
                return 302, {}, {"Location": location}
        script = self.status_script
        if script is not None:
            answer = script(req)
            if answer:
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                req.faults.append("status_script")
                return status, _error(status, f"scripted HTTP {status}"), dict(headers)
        if not listing:
            return 404, _error(404, f"no such endpoint; try {self.path}"), {}
        if req.method != "GET":
            return 405, _error(405, "only GET is supported"), {"Allow": "GET"}
        if not self._key_ok(req):
            where = (f"the '{self.key_header}' header" if self.key_header
                     else f"the '{self.key_param}' query parameter")
            return 401, _error(401, f"missing or invalid API key; pass it in {where}"), {}
        try:
            offset, limit, since = self._params(req.params)
        except ValueError as e:
            return 400, _error(400, str(e)), {}
        return 200, self._data_body(offset, limit, since), {}

    def _key_ok(self, req: Req) -> bool:
        if self.key_header:
            given = next((v for k, v in req.headers.items()
                          if k.lower() == self.key_header.lower()), None)
        else:
            given = req.params.get(self.key_param)
        return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"),
                                                         self.key.encode())

    @staticmethod
    def _params(params: dict) -> tuple[int, int, datetime | None]:
        raw_offset, raw_limit = params.get("offset", "0"), params.get("limit")
        if not (raw_offset.isascii() and raw_offset.isdigit()):
            raise ValueError("offset must be an integer >= 0")
        limit = MAX_LIMIT
        if raw_limit is not None:
            try:
                limit = min(MAX_LIMIT, max(1, int(raw_limit)))  # clamp, never reject
            except ValueError:
                raise ValueError("limit must be an integer") from None
        since = None
        if "updated_since" in params:
            try:
                since = parse_instant(params["updated_since"])
            except (ValueError, OverflowError):
                raise ValueError("updated_since must be an ISO-8601 timestamp") from None
        return int(raw_offset), limit, since

    def _data_body(self, offset: int, limit: int, since: datetime | None) -> Any:
        # settings read once each, so a page is built from one consistent snapshot of them
        cap, total, transform = self.page_cap, self.total, self.transform
        size = limit if cap is None else max(0, min(limit, cap))
        data, true_total = self._page(0 if self.ignore_offset else offset, size, since)
        body: dict = {"data": data}
        value = total(true_total, offset) if callable(total) else total
        if value is HONEST:
            value = true_total
        if value is not MISSING:
            body["total"] = value
        body["offset"], body["limit"] = offset, limit
        return transform(body, offset) if transform is not None else body

    def _deliver(self, h: _Handler, status: int, body: bytes, headers: dict, slow: dict) -> None:
        trickle, stall = slow.get("trickle"), slow.get("stall_body")
        endless = bool(trickle and trickle[2]) and not stall  # a stall wins: it never ends either
        if stall or endless:
            h.close_connection = True  # this connection cannot carry another response
        head = h.head_bytes(status, ENDLESS_LENGTH if endless else len(body), headers)

        if not slow:
            h.connection.sendall(head + body)
            return
        if "trickle_headers" in slow:
            if not h.drip(head, 1, slow["trickle_headers"]):
                return h.abandon()
        else:
            h.connection.sendall(head)
        payload = body[: len(body) // 2] if stall else body
        chunk, interval = trickle[:2] if trickle else (max(1, len(payload)), 0.0)
        if not h.drip(payload, chunk, interval):
            return h.abandon()
        if stall:
            h.wait_for_hangup()
        elif endless:
            # then a space per interval: JSON allows trailing whitespace, so what has arrived
            # stays a valid document however long the client waits for the rest
            while not h.stopping.wait(trickle[1]):
                try:
                    h.connection.sendall(b" ")
                except OSError:
                    return


# -- the catcher --------------------------------------------------------------------------------

class Catcher(_Base):
    """Answers every request (any path, any method) with 200 and a plausible one-record page,
    and logs it (raw target, headers, body): the far end of a cross-origin redirect, where a
    test looks for a leaked key with ``leaked(key)``."""

    PAGE = {"data": [{"id": 9999, "updated_at": "2026-03-01T00:00:00Z", "value": 0.0,
                      "kind": "evil"}], "total": 1}

    def _handle(self, h: _Handler, req: Req, query: str) -> None:
        req.status = 200
        h.write_response(200, _encode(self.PAGE))

    def leaked(self, secret: str) -> list[Req]:
        """The logged requests that contain ``secret`` in their target, headers or body."""
        hits = []
        for r in self.requests:
            text = " ".join([r.raw_target, unquote(r.raw_target), *map(str, r.headers.items()),
                             r.body.decode("utf-8", "replace")])
            if secret in text:
                hits.append(r)
        return hits
