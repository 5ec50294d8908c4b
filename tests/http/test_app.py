"""Health, readiness, metrics, the OpenAPI document, the console and mounting."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from poolwatch import PoolManager
from poolwatch.http import Lifecycle, create_app


def test_healthz(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_turns_503_when_shutdown_begins(make_client, manager, assert_error) -> None:
    lifecycle = Lifecycle()
    manager.create_pool("p", max_workers=1)
    client = make_client(lifecycle=lifecycle)
    assert client.get("/readyz").json() == {"status": "ready"}
    lifecycle.begin_shutdown()
    assert_error(client.get("/readyz"), 503, "shutting_down")
    response = client.post("/api/pools/p/tasks", json={"task": "pwtest.echo", "args": [1]})
    assert_error(response, 503, "shutting_down")
    assert response.headers["retry-after"] == "1"
    assert_error(client.post("/api/pools", json={"name": "q", "max_workers": 1}), 503)
    assert client.get("/healthz").status_code == 200
    assert client.patch("/api/pools/p", json={"paused": True}).status_code == 200


def test_metrics_prometheus_text(client, manager: PoolManager) -> None:
    manager.create_pool("m", max_workers=2)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'poolwatch_pool_max_workers{pool="m"} 2.0' in response.text
    assert "# EOF" not in response.text


def test_metrics_openmetrics_negotiated(client, manager: PoolManager) -> None:
    manager.create_pool("m", max_workers=2)
    response = client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_openapi_document_covers_every_api_route(client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": "/"}]
    expected = {
        ("/api/info", "get"),
        ("/api/pools", "get"),
        ("/api/pools", "post"),
        ("/api/pools/{name}", "get"),
        ("/api/pools/{name}", "patch"),
        ("/api/pools/{name}", "delete"),
        ("/api/pools/{name}/tasks", "post"),
        ("/api/tasks", "get"),
        ("/api/tasks/{task_id}", "get"),
        ("/api/tasks/{task_id}/cancel", "post"),
        ("/api/tasks/{task_id}/stack", "get"),
        ("/api/samples", "get"),
        ("/api/latency", "get"),
        ("/api/console", "get"),
        ("/api/task-types", "get"),
        ("/api/stats", "get"),
    }
    found = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert found == expected
    create = doc["paths"]["/api/pools"]["post"]
    schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["name", "max_workers"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["max_workers"]["minimum"] == 1
    assert set(create["responses"]) == {"201", "400", "401", "403", "409", "413", "422", "503"}
    per_page = next(
        p for p in doc["paths"]["/api/tasks"]["get"]["parameters"] if p["name"] == "per_page"
    )
    assert per_page["schema"]["maximum"] == 200


def test_console_index_and_assets(client) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "console/app.js" in index.text
    asset = client.get("/console/app.js")
    assert asset.status_code == 200
    assert "javascript" in asset.headers["content-type"]


def test_mounted_under_a_prefix(manager: PoolManager) -> None:
    manager.create_pool("p", max_workers=1)
    inner = create_app(manager, bind_host="127.0.0.1")
    outer = Starlette(routes=[Mount("/pw", app=inner)])
    with TestClient(outer, base_url="http://127.0.0.1") as client:
        assert client.get("/pw/api/pools").json()["data"][0]["name"] == "p"
        assert client.get("/pw/").status_code == 200
        assert client.get("/pw/console/app.js").status_code == 200
        assert client.get("/pw/openapi.json").json()["servers"] == [{"url": "/pw"}]
        response = client.post("/pw/api/pools/p/tasks", json={"task": "pwtest.echo", "args": [1]})
        assert response.status_code == 202
        assert response.headers["location"].startswith("/pw/api/tasks/")
        assert client.get(response.headers["location"]).status_code == 200


def test_head_is_answered_like_get(client) -> None:
    for url in ("/api/pools", "/healthz", "/metrics", "/"):
        response = client.head(url)
        assert response.status_code == 200, url
        assert response.content == b""
