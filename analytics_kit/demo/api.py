"""``serve()`` and the ``DemoAPI`` control object, in a thread or in a subprocess.

Thread mode is the default (cheap, and ``transform``/``callback`` faults can run Python
functions). ``process=True`` runs the same server as ``python -m analytics_kit.demo`` so a
benchmark measures the loader's memory and CPU alone; the object then drives the child through
the key-protected ``/_admin/*`` endpoints. The child exits with the context, and also when the
parent dies (it watches its stdin for EOF).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

from analytics_kit.demo.data import AdvanceResult, DemoData
from analytics_kit.demo.faults import FN_KINDS, FaultPlan, make_fault, normalize_path
from analytics_kit.demo.server import DemoHTTPServer, Handler, RequestRecord

KEY_ENV = "ANALYTICS_KIT_DEMO_API_KEY"  # how a parent hands the key to a child (not argv: ps shows it)


def _check_common(api_key: str | None, key_param: str, latency: float) -> str:
    if api_key is None:
        api_key = secrets.token_urlsafe(16)
    if not isinstance(api_key, str) or not api_key:
        raise ValueError("api_key must be a non-empty string or None (generate one)")
    if not isinstance(key_param, str) or not key_param:
        raise ValueError("key_param must be a non-empty string")
    _check_latency(latency)
    return api_key


def _check_latency(seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 3600:
        raise ValueError("latency must be a number of seconds >= 0")
    return float(seconds)


class DemoAPI:
    """A running demo API; use as a context manager (or call ``close()``)."""

    def __init__(self, *, events: int = 1000, customers: int = 50, seed: int = 7,
                 api_key: str | None = None, key_param: str = "api_key", latency: float = 0.0,
                 port: int = 0) -> None:
        self.api_key = _check_common(api_key, key_param, latency)
        self.key_param = key_param
        self.seed = seed
        self._data = DemoData(events, customers, seed)
        self._faults = FaultPlan(seed)
        self._latency = float(latency)
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._server = DemoHTTPServer(self, port)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"demo-api-{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"

    def __enter__(self) -> "DemoAPI":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving: close the listening and open sockets, join the threads."""
        if self._closed:
            return
        self._closed = True
        self._server.stop()
        self._thread.join(5)

    # -- control ------------------------------------------------------------------------
    def advance(self, new: int = 10, updated: int = 5, deleted: int = 0, purged: int = 0,
                resource: str = "events", seconds: int = 3600) -> AdvanceResult:
        """Move the clock ``seconds`` ahead and change data inside that window (see data.py)."""
        return self._data.advance(new, updated, deleted, purged, resource, seconds)

    def records(self, resource: str = "events", include_deleted: bool = True) -> list[dict]:
        """Exactly what the API would serve now, in served order."""
        return self._data.records(resource, include_deleted)

    def inject(self, kind: str, *, path: str | None = None, times: int | None = 1, skip: int = 0,
               offset: int | None = None, status: int = 503, retry_after: int | str | None = None,
               rate: float | None = None, seconds: float | None = None,
               fn: Callable[..., Any] | None = None) -> None:
        """Add a fault (see faults.py for the kinds and the matching rules)."""
        self._faults.add(make_fault(kind, path=path, times=times, skip=skip, offset=offset,
                                    status=status, retry_after=retry_after, rate=rate,
                                    seconds=seconds, fn=fn))

    def set_latency(self, seconds: float) -> None:
        self._latency = _check_latency(seconds)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """Logged API requests, optionally only those to ``path`` and/or with ``status``."""
        path = normalize_path(path)
        return sum(1 for r in self.requests
                   if (path is None or r.path == path) and (status is None or r.status == status))

    # -- request handling (called from server threads) -----------------------------------
    def _handle(self, h: Handler, path: str, params: dict | None) -> None:
        started = time.time()
        offset = None
        given = "0" if params is None else params.get("offset", "0")
        if given.isascii() and given.isdigit() and len(given) <= 100:
            offset = int(given)
        mods, terminal = self._faults.pick(path, offset)
        applied = [f.kind for f in mods] + ([terminal.kind] if terminal else [])
        fault = "+".join(applied) or None
        h.log_hook = lambda status: self._record(h.command, path, params, status, fault, started)
        try:
            delay = self._latency + sum(f.seconds for f in mods if f.kind == "latency")
            if delay > 0:
                self._server.stopping.wait(delay)
            for f in mods:
                if f.kind == "callback":
                    f.fn(self)
            if terminal is not None:
                h.serve_fault(terminal, lambda: h.api_response(self, path, params, True))
            else:
                transforms = [f.fn for f in mods if f.kind == "transform"]
                status, obj, headers = h.api_response(self, path, params, raw=not transforms)
                for fn in transforms:
                    obj = fn(obj)
                h._json(status, obj, headers)
        except OSError:
            h.close_connection = True  # the client went away
            h._log(None)
        except Exception as e:  # an injected fn failed: report it, don't kill the connection
            what = f"injected {fault} fault" if fault else "demo API"
            h._json(500, {"error": {"code": "internal_error",
                                    "message": f"{what} raised {type(e).__name__}"}})

    def _record(self, method: str, path: str, params: dict | None, status: int | None,
                fault: str | None, started: float) -> None:
        key = self.api_key

        def scrub(s: str) -> str:
            return s.replace(key, "***") if key in s else s

        clean = {scrub(k): ("***" if k == self.key_param else scrub(v))
                 for k, v in (params or {}).items()}
        rec = RequestRecord(method, scrub(path), clean, status, fault, started)
        with self._log_lock:
            self._log.append(rec)


class ProcessDemoAPI(DemoAPI):
    """The same API served by a child process, driven through ``/_admin/*``."""

    def __init__(self, *, events: int = 1000, customers: int = 50, seed: int = 7,
                 api_key: str | None = None, key_param: str = "api_key", latency: float = 0.0,
                 port: int = 0, startup_timeout: float = 60.0) -> None:
        self.api_key = _check_common(api_key, key_param, latency)
        self.key_param = key_param
        self.seed = seed
        self._closed = False
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, **{KEY_ENV: self.api_key})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "analytics_kit.demo", "--port", str(port),
               "--events", str(events), "--customers", str(customers), "--seed", str(seed),
               "--key-param", key_param, "--latency", str(latency), "--exit-on-stdin-eof"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                      text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        try:
            self.base_url = self._wait_for_url(startup_timeout)
        except BaseException:
            self.close()
            raise
        self.port = int(self.base_url.rsplit(":", 1)[1])

    def _drain(self) -> None:
        for line in self._proc.stdout:  # keep reading so the child never blocks on a full pipe
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"demo API subprocess did not start within {timeout:g} s") from None
            if line is None:
                raise RuntimeError(f"demo API subprocess exited (code {self._proc.wait()}) "
                                   "before serving; see its stderr above")
            for word in line.split():
                if word.startswith("http://127.0.0.1:"):
                    return word.rstrip("/")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(5)
        self._proc.stdout.close()

    def _admin(self, method: str, path: str, body: dict | None = None, **query: Any) -> Any:
        if self._closed:
            raise RuntimeError("the demo API has been closed")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            url = f"/_admin/{path}?{urlencode({self.key_param: self.api_key, **query})}"
            payload = None if body is None else json.dumps(body)
            conn.request(method, url, body=payload,
                         headers={"Content-Type": "application/json"} if payload else {})
            resp = conn.getresponse()
            data = json.loads(resp.read() or b"{}")
        finally:
            conn.close()
        if resp.status == 400:
            raise ValueError(data["error"]["message"])
        if resp.status != 200:
            raise RuntimeError(f"demo API admin call {path} failed with HTTP {resp.status}")
        return data

    def advance(self, new: int = 10, updated: int = 5, deleted: int = 0, purged: int = 0,
                resource: str = "events", seconds: int = 3600) -> AdvanceResult:
        return AdvanceResult(**self._admin("POST", "advance", dict(
            new=new, updated=updated, deleted=deleted, purged=purged, resource=resource,
            seconds=seconds)))

    def records(self, resource: str = "events", include_deleted: bool = True) -> list[dict]:
        return self._admin("GET", "records", resource=resource,
                           include_deleted="true" if include_deleted else "false")["data"]

    def inject(self, kind: str, *, path: str | None = None, times: int | None = 1, skip: int = 0,
               offset: int | None = None, status: int = 503, retry_after: int | str | None = None,
               rate: float | None = None, seconds: float | None = None,
               fn: Callable[..., Any] | None = None) -> None:
        if kind in FN_KINDS or fn is not None:
            raise ValueError(f"inject(kind={kind!r}, fn=...) runs a Python function inside the "
                             "server, which only works with serve(process=False)")
        make_fault(kind, path=path, times=times, skip=skip, offset=offset, status=status,
                   retry_after=retry_after, rate=rate, seconds=seconds)  # fail early, locally
        self._admin("POST", "inject", dict(kind=kind, path=path, times=times, skip=skip,
                                           offset=offset, status=status, retry_after=retry_after,
                                           rate=rate, seconds=seconds))

    def set_latency(self, seconds: float) -> None:
        self._admin("POST", "latency", {"seconds": _check_latency(seconds)})

    def clear_faults(self) -> None:
        self._admin("POST", "clear", {})

    @property
    def requests(self) -> list[RequestRecord]:
        return [RequestRecord(**r) for r in self._admin("GET", "log")["requests"]]

    def clear_log(self) -> None:
        self._admin("DELETE", "log")


def serve(events: int = 1000, customers: int = 50, seed: int = 7, api_key: str | None = None,
          key_param: str = "api_key", latency: float = 0.0, port: int = 0,
          process: bool = False) -> DemoAPI:
    """Start the demo API on 127.0.0.1 and return it; use ``with demo.serve() as api:``.

    ``port=0`` picks a free port (see ``api.base_url``). ``api_key=None`` generates a throwaway
    key (``api.api_key``). ``process=True`` serves from a subprocess (see ProcessDemoAPI).
    """
    cls = ProcessDemoAPI if process else DemoAPI
    return cls(events=events, customers=customers, seed=seed, api_key=api_key,
               key_param=key_param, latency=latency, port=port)


__all__ = ["DemoAPI", "ProcessDemoAPI", "serve", "AdvanceResult", "RequestRecord"]
