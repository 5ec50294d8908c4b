"""Regression tests for the service under hostile or unlucky clients: each defect once seen."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from poolwatch import PoolManager
from poolwatch.http import create_app
from poolwatch.http.blocking import DEFAULT_LIMIT
from poolwatch.http.guards import CONTENT_SECURITY_POLICY
from poolwatch.http.protocol import ConnectionLimits, protocol_class
from support import wait_until


def _error_of(raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers of a raw HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"].startswith("application/json"), raw
    document = json.loads(body)
    assert set(document) == {"error"}, document
    assert set(document["error"]) == {"code", "message"}, document
    return int(lines[0].split()[1]), document, headers


def _read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture
def guarded(live_server: Any, manager: PoolManager) -> Any:
    """A real server with poolwatch's protocol and short limits."""
    limits = ConnectionLimits(header_timeout=0.5, max_connections=4)
    app = create_app(manager, bind_host="127.0.0.1", body_timeout=0.5)
    return live_server(app, http=protocol_class(limits))


def _connect(server: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


# -- /metrics --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["a", "1.a", "x.0.0", "", "1.0.0.0.0", "99"])
def test_unreadable_openmetrics_versions_get_a_scrape(client, manager, version: str) -> None:
    manager.create_pool("p", max_workers=1)
    accept = f"application/openmetrics-text; version={version}"
    response = client.get("/metrics", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert "poolwatch_pool_max_workers" in response.text
    kind = response.headers["content-type"]
    assert kind.startswith(("text/plain", "application/openmetrics-text")), kind


def test_reads_never_wait_behind_draining_deletes(
    live_server: Any, manager: PoolManager, gate: Any
) -> None:
    """45 DELETEs each waiting for a pool to drain leave scrapes and reads unaffected."""
    count = 45
    server = live_server(create_app(manager, bind_host="127.0.0.1"))
    for index in range(count):
        pool = manager.create_pool(f"d{index}", max_workers=1)
        pool.submit(gate("drain").wait)
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="deleter") as deleters:
        deletes = [
            deleters.submit(httpx.delete, f"{server.url}/api/pools/d{i}", timeout=60)
            for i in range(count)
        ]
        try:
            # DEFAULT_LIMIT of them drain at once (the others wait for a turn): far more
            # than enough to have starved every read before.
            wait_until(
                lambda: len(manager.pools()) == count - DEFAULT_LIMIT,
                message="DELETEs are draining their pools",
            )
            for path in ("/metrics", "/healthz", "/readyz", "/api/pools", "/api/stats"):
                started = time.monotonic()
                response = httpx.get(server.url + path, timeout=10)
                took = time.monotonic() - started
                assert response.status_code == 200, (path, response.text)
                assert took < 1.0, f"{path} took {took:.2f}s behind blocked DELETEs"
        finally:
            gate("drain").set()
        assert [d.result().status_code for d in deletes] == [200] * count


# -- request lines, headers and bodies -------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/pools HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_malformed_requests_get_a_json_400(guarded: Any, raw: bytes) -> None:
    with _connect(guarded) as sock:
        sock.sendall(raw)
        status, body, headers = _error_of(_read_all(sock))
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert headers["connection"] == "close"


def test_slow_headers_get_a_json_408_and_the_connection_closes(guarded: Any) -> None:
    with _connect(guarded) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        started = time.monotonic()
        status, body, _ = _error_of(_read_all(sock))
        took = time.monotonic() - started
    assert status == 408
    assert body["error"]["code"] == "header_timeout"
    assert 0.3 < took < 5, took


def test_a_silent_connection_is_closed(guarded: Any) -> None:
    with _connect(guarded) as sock:
        started = time.monotonic()
        assert _read_all(sock) == b""
        assert time.monotonic() - started < 5


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (headers and a Content-Length body) from a kept-alive connection."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_the_header_timer_stops_once_the_headers_are_in(guarded: Any) -> None:
    with _connect(guarded) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
            # Idle past the header timeout (but within keep-alive): time itself is what
            # is tested here, so the test waits for it to pass.
            threading.Event().wait(0.8)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(sock).startswith(b"HTTP/1.1 200")


def test_slow_bodies_get_a_json_408(guarded: Any, manager: PoolManager) -> None:
    with _connect(guarded) as sock:
        sock.sendall(
            b"POST /api/pools HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 40\r\n\r\n{"name":'
        )
        status, body, headers = _error_of(_read_all(sock))
    assert status == 408
    assert body["error"]["code"] == "body_timeout"
    assert headers["connection"] == "close"
    assert manager.pools() == []


def test_connections_past_the_cap_get_a_json_503(guarded: Any) -> None:
    held = [_connect(guarded) for _ in range(4)]
    try:
        for sock in held:  # each one is open and answering
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
        with _connect(guarded) as extra:
            status, body, headers = _error_of(_read_all(extra))
        assert status == 503
        assert body["error"]["code"] == "too_many_connections"
        assert headers["retry-after"] == "1"
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: httpx.get(guarded.url + "/healthz").status_code == 200)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="poolwatch"):
        yield caplog


def test_a_client_leaving_mid_body_is_one_debug_line(
    guarded: Any, manager: PoolManager, debug_logs: pytest.LogCaptureFixture
) -> None:
    with _connect(guarded) as sock:
        sock.sendall(
            b"POST /api/pools HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 400\r\n\r\n{"name": "x"'
        )
    mine = [r for r in debug_logs.records if r.name.startswith("poolwatch")]
    wait_until(lambda: any("disconnected" in r.getMessage() for r in debug_logs.records))
    mine = [r for r in debug_logs.records if r.name.startswith(("poolwatch", "uvicorn"))]
    assert [r.levelno for r in mine if "disconnected" in r.getMessage()] == [logging.DEBUG]
    assert [r.getMessage() for r in mine if r.levelno >= logging.WARNING] == []
    assert all(r.exc_info is None for r in mine)
    assert manager.pools() == []


# -- headers ---------------------------------------------------------------------------


def test_the_console_cannot_be_framed_and_has_a_policy(client) -> None:
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    for path in ("/", "/console/app.js", "/api/pools", "/metrics", "/nope"):
        assert client.get(path).headers["x-content-type-options"] == "nosniff", path
    # A policy applies to documents: JSON and scripts need none.
    assert "content-security-policy" not in client.get("/api/pools").headers
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY


def test_the_blocking_runner_keeps_threads_short_lived(
    client, manager: PoolManager, gate: Any
) -> None:
    manager.create_pool("p", max_workers=1)
    before = {t.name for t in threading.enumerate()}
    assert client.delete("/api/pools/p").status_code == 200
    wait_until(
        lambda: "poolwatch-http-blocking" not in {t.name for t in threading.enumerate()} - before
    )
