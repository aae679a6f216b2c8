"""An answer's body past the cap (``fetch/answer_size``): a gzip bomb or an endless body stops the load, named and
not asked for again, before it fills the memory (helper-146); a large body under the cap loads."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from pathlib import Path

import pytest

import analytics_kit as ak

RECORD = {"id": 1, "customer_id": "c1", "timestamp": "2026-01-01T00:00:00Z", "event_type": "click", "value": 1.0,
          "properties": {}, "updated_at": "2026-01-01T00:00:00Z", "deleted": False}


class RawAPI:
    """Answers every request on 127.0.0.1 with ``answer(request_number)``: bytes sent whole, or a callable given the
    socket (an endless body). Counts the requests."""

    def __init__(self, answer) -> None:
        self.answer, self.requests, self.stop = answer, 0, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while conn.recv(65536).find(b"\r\n\r\n") < 0:
                    pass
                self.requests += 1
                answer = self.answer(self.requests)
                conn.sendall(answer) if isinstance(answer, bytes) else answer(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def _response(body: bytes, gzipped: bool = False) -> bytes:
    if gzipped:
        body = gzip.compress(body, 9)
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return (head + ("Content-Encoding: gzip\r\n" if gzipped else "") + "\r\n").encode() + body


def _endless(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\n{\"a\":\r\n")
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    while not stop.is_set():
        conn.sendall(chunk)


@pytest.fixture
def capped(monkeypatch):
    monkeypatch.setenv("ANALYTICS_KIT_MAX_ANSWER_MB", "1")
    monkeypatch.setenv("API_KEY", "answer-size-key")


def _config(api: RawAPI) -> dict:
    config = ak.guide_config(api.base_url, resources=("events",))
    config["resources"][0]["endpoint"]["error_handler"].update(backoff_factor=0.01, timeout=30)
    return config


@pytest.mark.parametrize("answer", [lambda n: _response(b'{"data": [], "total": 0' + b" " * 3_000_000 + b"}", True),
                                    lambda n: _endless], ids=["gzip bomb", "endless body"])
def test_a_body_past_the_cap_stops_the_load_at_once_unretried(capped, tmp_path: Path, answer):
    api = RawAPI(answer)
    try:
        started = time.monotonic()
        with pytest.raises(ak.LoadError) as caught:
            ak.load(_config(api), database=tmp_path / "a.duckdb", progress=False)
        assert time.monotonic() - started < 15  # not the attempt's 30 s deadline, nor 4 attempts of it
    finally:
        api.close()
    text = str(caught.value)
    assert "with a body of more than 1 MB (once decompressed)" in text and "ANALYTICS_KIT_MAX_ANSWER_MB" in text, text
    assert "answer-size-key" not in text
    assert api.requests == 1


def test_a_large_body_under_the_cap_loads(capped, tmp_path: Path):
    records = [dict(RECORD, id=i, event_type="x" * 4000) for i in range(1, 201)]  # 0.8 MB, 0.01 MB sent
    api = RawAPI(lambda n: _response(json.dumps({"data": records if n == 1 else [], "total": 200}).encode(), True))
    try:
        config = _config(api)
        config["resources"][0]["endpoint"]["paginator"]["limit"] = 200
        report = ak.load(config, database=tmp_path / "a.duckdb", progress=False)
    finally:
        api.close()
    assert report.rows == {"events": 200}


@pytest.mark.parametrize("value", ["0", "-5", "lots", "nan"])
def test_a_cap_that_is_no_positive_number_is_refused_before_any_request(monkeypatch, tmp_path: Path, value):
    monkeypatch.setenv("ANALYTICS_KIT_MAX_ANSWER_MB", value)
    monkeypatch.setenv("API_KEY", "answer-size-key")
    api = RawAPI(lambda n: _response(b'{"data": [], "total": 0}'))
    try:
        with pytest.raises(ak.ConfigError, match="ANALYTICS_KIT_MAX_ANSWER_MB: got"):
            ak.load(_config(api), database=tmp_path / "a.duckdb", progress=False)
    finally:
        api.close()
    assert api.requests == 0
