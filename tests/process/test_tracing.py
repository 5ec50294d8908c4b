"""Spans across the process boundary: the task's span in the parent, parented to the
submitter; spans the task makes in its child process are children of the task's span."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager
from process import proctasks


@pytest.fixture
def traced() -> Iterator[tuple[PoolManager, InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=provider)
    yield mgr, exporter, provider
    mgr.shutdown()
    provider.shutdown()


def test_spans_in_the_child_are_children_of_the_task_span(
    traced: tuple[PoolManager, InMemorySpanExporter, TracerProvider],
) -> None:
    mgr, exporter, provider = traced
    pool = mgr.create_pool(
        "traced", kind="process", max_workers=2, initializer=proctasks.init_tracing
    )
    with provider.get_tracer("tests").start_as_current_span("request") as request:
        futures = [pool.submit(proctasks.traced_work) for _ in range(6)]
    inside = [f.result(timeout=60) for f in futures]
    spans = {s.context.span_id: s for s in exporter.get_finished_spans()}
    for future, (trace_id, parent_id, _) in zip(futures, inside, strict=True):
        task_span = spans[parent_id]  # the child's span's parent is a span of the parent
        assert task_span.name == "process.proctasks.traced_work"
        assert task_span.attributes is not None
        assert task_span.attributes["poolwatch.task.id"] == future.task_id
        assert task_span.parent is not None
        assert task_span.parent.span_id == request.get_span_context().span_id
        assert trace_id == request.get_span_context().trace_id
        assert future.info().trace_id == format(trace_id, "032x")
