"""Requests generated from the OpenAPI document (valid, nearly valid and junk): never a 5xx.

Every answer must be a documented status (or 404/405 for a mangled path), and every
error must have the ``{"error": {"code", "message"}}`` shape.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import quote, unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from poolwatch import PoolManager
from poolwatch.http import create_app
from poolwatch.http.protocol import ConnectionLimits, protocol_class

# st.text() leaves out unpaired surrogates; JSON's "\ud800" escapes still produce them.
TEXT = st.text() | st.text(alphabet=st.sampled_from("\ud800\udc00\udfffa\u00e9"), min_size=1)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
JUNK_JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def from_schema(doc: dict[str, Any], schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that satisfy ``schema`` (the OpenAPI 3.0 subset this API uses)."""
    schema = _resolve(doc, schema)
    kind = schema.get("type")
    strategy: st.SearchStrategy[Any]
    if "enum" in schema:
        strategy = st.sampled_from(schema["enum"])
    elif kind == "integer":
        strategy = st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    elif kind == "number":
        low = schema.get("minimum")
        strategy = st.floats(
            min_value=low,
            max_value=schema.get("maximum"),
            exclude_min=bool(schema.get("exclusiveMinimum")),
            allow_nan=False,
            allow_infinity=False,
        )
    elif kind == "string":
        if "pattern" in schema:
            strategy = st.from_regex(schema["pattern"], fullmatch=True)
        else:
            strategy = st.text(max_size=schema.get("maxLength", 40))
    elif kind == "boolean":
        strategy = st.booleans()
    elif kind == "array":
        strategy = st.lists(JSON_SCALARS, max_size=4)
    elif kind == "object" and "properties" in schema:
        props = {name: from_schema(doc, sub) for name, sub in schema["properties"].items()}
        required = set(schema.get("required", []))
        strategy = st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required},
        )
    else:
        strategy = st.dictionaries(st.text(max_size=10), JSON_SCALARS, max_size=4)
    if schema.get("nullable"):
        strategy = st.none() | strategy
    return strategy


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@st.composite
def requests(draw: st.DrawFn, doc: dict[str, Any], pool: str, task_id: str) -> dict[str, Any]:
    operations = [
        (path, method, op, item.get("parameters", []))
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    ]
    path, method, op, shared = draw(st.sampled_from(operations))
    url = path
    for param in [*shared, *op.get("parameters", [])]:
        if param["in"] == "path":
            known = pool if param["name"] == "name" else task_id
            value = draw(st.sampled_from([known]) | from_schema(doc, param["schema"]) | st.text())
            url = url.replace("{" + param["name"] + "}", quote(str(value), safe=""))
    query: dict[str, str] = {}
    for param in op.get("parameters", []):
        if param["in"] == "query" and draw(st.booleans()):
            value = draw(from_schema(doc, param["schema"]) | st.text(max_size=8))
            query[param["name"]] = _query_text(value)
    if draw(st.integers(0, 9)) == 0:
        query[draw(st.text(min_size=1, max_size=6))] = draw(st.text(max_size=6))
    content: bytes | None = None
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        choice = draw(st.integers(0, 5))
        if choice <= 2:
            content = json.dumps(draw(from_schema(doc, schema))).encode()
        elif choice == 3:
            content = json.dumps(draw(JUNK_JSON)).encode()
        elif choice == 4:
            valid = draw(from_schema(doc, schema))
            valid[draw(st.text(max_size=8))] = draw(JUNK_JSON)
            content = json.dumps(valid).encode()
        else:
            content = draw(st.binary(max_size=64))
    return {
        "method": method.upper(),
        "url": url,
        "params": query,
        "content": content,
        "documented": {int(code) for code in op["responses"]},
    }


def _check(response: Any, documented: set[int], request: dict[str, Any]) -> None:
    status = response.status_code
    assert status < 500, (request, response.text)
    if status == 307:  # an empty path parameter: Starlette redirects "/x/" to "/x"
        path = unquote(request["url"])
        assert path.endswith("/") or "//" in path, request
        return
    assert status in documented | {404, 405}, (request, status, response.text)
    if status >= 400:
        assert response.headers["content-type"].startswith("application/json"), (
            request,
            response.headers,
            response.text,
        )
        body = response.json()
        assert set(body) == {"error"}, body
        assert isinstance(body["error"]["code"], str)
        assert isinstance(body["error"]["message"], str)
        assert body["error"]["message"]


def test_generated_requests_never_fail_the_server(make_client, manager: PoolManager) -> None:
    pool = manager.create_pool("fz", max_workers=2, queue_capacity=4)
    task_id = pool.submit(int, "1")
    task_id.result(timeout=5)
    client: TestClient = make_client()
    doc = client.get("/openapi.json").json()

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(requests(doc, "fz", task_id.task_id))
    def run(request: dict[str, Any]) -> None:
        response = client.request(
            request["method"],
            request["url"],
            params=request["params"],
            content=request["content"],
            follow_redirects=False,
        )
        _check(response, request["documented"], request)

    run()


def test_generated_requests_with_a_token_never_fail(make_client, manager: PoolManager) -> None:
    manager.create_pool("fz", max_workers=1)
    client: TestClient = make_client(token="t0ken", bind_host="0.0.0.0")
    doc = client.get("/openapi.json").json()
    headers = st.sampled_from(
        [
            {},
            {"Authorization": "Bearer t0ken"},
            {"Authorization": "Bearer x"},
            {"Authorization": "x"},
        ]
    )

    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(requests(doc, "fz", "none"), headers)
    def run(request: dict[str, Any], header: dict[str, str]) -> None:
        response = client.request(
            request["method"],
            request["url"],
            params=request["params"],
            content=request["content"],
            headers=header,
            follow_redirects=False,
        )
        _check(response, request["documented"], request)

    run()


ACCEPT = st.one_of(
    st.text(max_size=60),
    st.builds(
        "application/openmetrics-text; version={}".format,
        st.text(alphabet="0123456789.ax-", max_size=8),
    ),
    st.sampled_from(["*/*", "text/plain;version=0.0.4", "application/openmetrics-text"]),
)


def test_any_accept_header_gets_a_scrape(client, manager: PoolManager) -> None:
    manager.create_pool("fz", max_workers=1)

    @settings(max_examples=200, deadline=None, database=None)
    @given(ACCEPT)
    def run(accept: str) -> None:
        try:
            header = accept.strip().encode("latin-1")
        except UnicodeEncodeError:
            return  # not sendable as a header value
        if any(b < 0x20 or b == 0x7F for b in header):
            return  # control characters: not a header value either
        response = client.get("/metrics", headers={"Accept": header})
        assert response.status_code == 200, (accept, response.text)
        assert "poolwatch_pool_max_workers" in response.text

    run()


TOKENS = st.sampled_from(
    [b"GET", b"POST", b"PATCH", b" ", b"/", b"/api/pools", b"HTTP/1.1", b"HTTP/1.0", b"\r\n",
     b":", b"Host: x", b"Content-Length: 3", b"Transfer-Encoding: chunked", b"\x00", b"\xff",
     b"?a=b", b"%", b"0\r\n\r\n", b"{}"]
)  # fmt: skip
RAW = st.lists(TOKENS | st.binary(max_size=8), max_size=12).map(b"".join)


def _json_answers(raw: bytes) -> list[int]:
    """The statuses of the answers in ``raw``; each must have a JSON body if it is an error."""
    statuses = []
    while raw.startswith(b"HTTP/1.1 "):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        body, raw = rest[:length], rest[length:]
        if status >= 400:
            assert headers["content-type"].startswith("application/json"), (status, head, body)
            assert set(json.loads(body)["error"]) == {"code", "message"}
        statuses.append(status)
    assert raw == b"", raw
    return statuses


def test_raw_request_bytes_never_get_a_plain_text_error(live_server, manager) -> None:
    limits = ConnectionLimits(header_timeout=0.3, max_connections=50)
    server = live_server(
        create_app(manager, bind_host="127.0.0.1", body_timeout=0.3), http=protocol_class(limits)
    )

    @settings(max_examples=150, deadline=None, database=None)
    @given(RAW)
    def run(data: bytes) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(data + b"\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert all(status < 500 for status in _json_answers(received)), received

    run()
