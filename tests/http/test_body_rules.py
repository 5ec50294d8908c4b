"""What a request body must be: declared JSON, a sane Content-Length, and JSON that
means one thing (no repeated keys, no numbers past float or int limits)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest

from poolwatch import PoolManager
from poolwatch.http import create_app

JSON = {"content-type": "application/json"}


@pytest.fixture(autouse=True)
def pool(manager: PoolManager):
    return manager.create_pool("p", max_workers=1)


async def _asgi_post(app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes):
    """One request straight through the ASGI interface, as a server (or a mount) calls it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if requested:
            return {"type": "http.disconnect"}
        requested = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(payload)


@pytest.mark.parametrize(
    "value",
    [
        b"\xb2",  # "²" once decoded as Latin-1: str.isdigit() says yes, int() says no
        b"\xd9\xa1",  # Arabic-Indic digits, as Latin-1 text
        b"1" * 5000,  # past the interpreter's int-from-text digit limit
        b"12345678901234567890",  # 20 digits: more than any body
        b"-1",
        b"+2",
        b"0x10",
    ],
)
def test_malformed_content_length_is_400_through_plain_asgi(manager: PoolManager, value) -> None:
    app = create_app(manager, bind_host="127.0.0.1")
    headers = [(b"content-type", b"application/json"), (b"content-length", value)]
    # In a thread of its own: an earlier test (the browser's driver) may have left an
    # event loop set in this one.
    with ThreadPoolExecutor(1) as thread:
        status, body = thread.submit(
            anyio.run, _asgi_post, app, "/api/pools", headers, b"{}"
        ).result(timeout=30)
    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert "Content-Length" in body["error"]["message"]
    assert "ASCII digits" in body["error"]["message"]


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        (None, "got none"),
        ("text/plain", 'got "text/plain"'),
        ("text/plain;charset=UTF-8", 'got "text/plain;charset=UTF-8"'),
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("multipart/form-data; boundary=x", "multipart/form-data"),
        ("application/jsonp", "application/jsonp"),
        ("application/json-seq", "application/json-seq"),
        ("text/json", "text/json"),
    ],
)
def test_body_must_be_declared_json(
    client, manager: PoolManager, assert_error, content_type, shown
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    body = b'{"name": "x", "max_workers": 1}'
    for method, url in (("POST", "/api/pools"), ("PATCH", "/api/pools/p")):
        response = client.request(method, url, content=body, headers=headers)
        assert_error(
            response,
            400,
            "unsupported_media_type",
            "request body must be sent with Content-Type: application/json",
            shown,
        )
    response = client.post(
        "/api/pools/p/tasks", content=b'{"task": "pwtest.echo", "args": [1]}', headers=headers
    )
    assert_error(response, 400, "unsupported_media_type")
    assert [pool.name for pool in manager.pools()] == ["p"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/merge-patch+json",
        "application/vnd.poolwatch+json; charset=utf-8",
    ],
)
def test_json_media_types_are_accepted(client, content_type) -> None:
    response = client.patch(
        "/api/pools/p", content=b'{"paused": true}', headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "paused"


def test_bodyless_mutations_need_no_content_type(client) -> None:
    assert client.post("/api/tasks/unknown/cancel").status_code == 404
    assert client.delete("/api/pools/p").status_code == 200


@pytest.mark.parametrize("digits", [5000, 4301, 20_000])
def test_number_with_too_many_digits_says_so(client, assert_error, digits) -> None:
    body = b'{"name": "x", "max_workers": ' + b"9" * digits + b"}"
    message = assert_error(
        client.post("/api/pools", content=body, headers=JSON),
        400,
        "invalid_json",
        "a number in the request body has too many digits",
    )
    assert "sys.set_int_max_str_digits" not in message
    negative = b'{"task": "pwtest.echo", "args": [-' + b"1" * digits + b"]}"
    response = client.post("/api/pools/p/tasks", content=negative, headers=JSON)
    assert_error(response, 400, "invalid_json", "too many digits")


@pytest.mark.parametrize(
    ("url", "body", "key"),
    [
        ("/api/pools", b'{"name": "a", "max_workers": 1, "name": "b"}', '"name"'),
        ("/api/pools/p/tasks", b'{"task": "pwtest.echo", "task": "pwtest.fail"}', '"task"'),
        (
            "/api/pools/p/tasks",
            b'{"task": "pwtest.echo", "kwargs": {"value": 1, "value": 2}}',
            '"value"',
        ),
    ],
)
def test_repeated_keys_are_refused_naming_the_key(
    client, manager: PoolManager, assert_error, url, body, key
) -> None:
    response = client.post(url, content=body, headers=JSON)
    assert_error(response, 400, "invalid_json", key, "more than once", "send each key once")
    assert [pool.name for pool in manager.pools()] == ["p"]
    assert manager.tasks().total == 0


@pytest.mark.parametrize("number", [b"1e309", b"-1e309", b"1.5e400"])
def test_numbers_past_float_range_are_refused_anywhere(
    client, manager: PoolManager, assert_error, number
) -> None:
    cases = [
        ("/api/pools/p/tasks", b'{"task": "pwtest.echo", "args": [' + number + b"]}"),
        ("/api/pools/p/tasks", b'{"task": "pwtest.echo", "kwargs": {"x": [' + number + b"]}}"),
        ("/api/pools", b'{"name": "x", "max_workers": 1, "queue_timeout": ' + number + b"}"),
    ]
    for url, body in cases:
        response = client.post(url, content=body, headers=JSON)
        assert_error(response, 400, "invalid_json", number.decode(), "send a finite number")
    assert manager.tasks().total == 0
