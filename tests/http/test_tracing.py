"""A server span per request, parent of the tasks that request submits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from poolwatch import PoolManager
from poolwatch.http import create_app
from support import wait_until


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(exporter: InMemorySpanExporter) -> Iterator[tuple[PoolManager, TestClient]]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    manager = PoolManager(registry=CollectorRegistry(), tracer_provider=provider)
    manager.create_pool("p", max_workers=1)
    try:
        app = create_app(manager, bind_host="127.0.0.1")
        with TestClient(app, base_url="http://127.0.0.1") as client:
            yield manager, client
    finally:
        manager.shutdown(wait=True)
        provider.shutdown()


def test_task_span_is_child_of_request_span(traced, exporter: InMemorySpanExporter) -> None:
    manager, client = traced
    response = client.post("/api/pools/p/tasks", json={"task": "pwtest.echo", "args": [1]})
    assert response.status_code == 202
    task_id = response.json()["id"]
    spans = wait_until(
        lambda: [s for s in exporter.get_finished_spans() if s.kind is SpanKind.INTERNAL],
        message="task span exported",
    )
    (task_span,) = spans
    (server,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.name == "POST /api/pools/{name}/tasks"
    assert server.attributes["http.route"] == "/api/pools/{name}/tasks"
    assert server.attributes["http.response.status_code"] == 202
    assert task_span.parent is not None
    assert task_span.parent.span_id == server.context.span_id
    assert task_span.context.trace_id == server.context.trace_id
    assert task_span.attributes["poolwatch.task.id"] == task_id
    assert manager.get_task(task_id).trace_id == format(server.context.trace_id, "032x")


def test_incoming_traceparent_is_continued(traced, exporter: InMemorySpanExporter) -> None:
    _, client = traced
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    header = f"00-{trace_id}-00f067aa0ba902b7-01"
    assert client.get("/api/pools", headers={"traceparent": header}).status_code == 200
    (server,) = exporter.get_finished_spans()
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert server.name == "GET /api/pools"


def test_error_statuses_are_recorded(traced, exporter: InMemorySpanExporter) -> None:
    _, client = traced
    assert client.get("/api/pools/missing").status_code == 404
    (server,) = exporter.get_finished_spans()
    assert server.attributes["http.response.status_code"] == 404
    assert server.name == "GET /api/pools/{name}"


def test_global_provider_installed_later_is_used(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a provider the middleware passes requests through; one installed
    # globally after the app was made is used from the next request on.
    manager = PoolManager(registry=CollectorRegistry())
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        app = create_app(manager, bind_host="127.0.0.1")
        with TestClient(app, base_url="http://127.0.0.1") as client:
            assert client.get("/healthz").status_code == 200
            assert exporter.get_finished_spans() == ()
            monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
            assert client.get("/api/pools").status_code == 200
        spans = exporter.get_finished_spans()
        assert [(s.name, s.kind) for s in spans] == [("GET /api/pools", SpanKind.SERVER)]
    finally:
        manager.shutdown(wait=True)
        provider.shutdown()
