"""Requests generated from the OpenAPI document (valid, nearly valid and junk): never a 5xx.

Every answer must be a documented status (or 404/405 for a mangled path), and every
error must have the ``{"error": {"code", "message"}}`` shape.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from poolwatch import PoolManager

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
