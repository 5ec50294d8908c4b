"""Malformed requests, size limits, unknown routes and methods, and the last-resort 500."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from poolwatch import PoolManager
from poolwatch.http import create_app


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"{", "not valid JSON"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b'{"name": NaN, "max_workers": 1}', "NaN is not valid JSON"),
        (b'{"max_workers": Infinity}', "Infinity"),
        (b"\xff\xfe", "UTF-8"),
        (b"[" * 20000 + b"]" * 20000, ""),
    ],
)
def test_malformed_json_is_400(client, assert_error, content: bytes, words: str) -> None:
    response = client.post(
        "/api/pools", content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json", words)


def test_oversized_body_is_413_by_content_length(make_client, assert_error) -> None:
    client = make_client(max_body_bytes=100)
    body = b'{"name": "x", "max_workers": 1, "pad": "' + b"a" * 200 + b'"}'
    response = client.post("/api/pools", content=body, headers={"content-type": "application/json"})
    assert_error(response, 413, "payload_too_large", "100 bytes")


def test_oversized_streamed_body_is_413(make_client, assert_error) -> None:
    client = make_client(max_body_bytes=100)

    def chunks():
        yield b'{"name": "x", '
        for _ in range(20):
            yield b'"pad": "aaaaaaaaaa", '
        yield b'"max_workers": 1}'

    response = client.post(
        "/api/pools", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.request.headers.get("content-length") is None
    assert_error(response, 413, "payload_too_large")


def test_default_limit_is_64_kib(client, manager: PoolManager, assert_error) -> None:
    manager.create_pool("p", max_workers=1)
    body = b'{"task": "' + b"a" * (65 * 1024) + b'"}'
    response = client.post(
        "/api/pools/p/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


def test_bad_content_length_is_400(client, assert_error) -> None:
    response = client.post("/api/pools", content=b"{}", headers={"content-length": "abc"})
    assert response.status_code in (400, 422)


def test_unknown_route_is_json_404(client, assert_error) -> None:
    assert_error(client.get("/nope"), 404, "not_found", "/nope")
    assert_error(client.get("/api/pools/a/b/c"), 404, "not_found")
    assert_error(client.get("/console/missing.js"), 404, "not_found")


def test_wrong_method_is_json_405_with_allow(client, assert_error) -> None:
    response = client.put("/api/pools")
    assert_error(response, 405, "method_not_allowed", "PUT", "GET")
    assert "POST" in response.headers["allow"]
    assert_error(client.delete("/api/tasks"), 405, "method_not_allowed")
    assert_error(client.post("/metrics"), 405, "method_not_allowed")
    assert_error(client.get("/api/pools/x/tasks"), 405, "method_not_allowed")


def test_unexpected_error_is_logged_json_500(caplog) -> None:
    class BrokenManager:
        tracer_provider = None
        registry = CollectorRegistry()

        def pools(self):
            raise RuntimeError("engine exploded")

    app = create_app(BrokenManager(), bind_host="127.0.0.1")  # type: ignore[arg-type]
    with (
        caplog.at_level(logging.ERROR, logger="poolwatch.http"),
        TestClient(app, raise_server_exceptions=False) as client,
    ):
        response = client.get("/api/pools")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "engine exploded" not in response.text
    assert "Traceback" not in response.text
    assert any("engine exploded" in (r.exc_text or "") for r in caplog.records)


def test_create_app_checks_its_arguments(manager: PoolManager) -> None:
    with pytest.raises(ValueError, match="token is empty"):
        create_app(manager, token="")
    with pytest.raises(ValueError, match="max_body_bytes must be an integer >= 1"):
        create_app(manager, max_body_bytes=0)
