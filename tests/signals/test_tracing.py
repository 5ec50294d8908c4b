"""One span per executed task, parented to the submitter's context."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolManager, current_task
from support import wait_until


@poolwatch.task("signals.traced")
def traced_task(x: int) -> int:
    return x * 2


def finished_spans(spans: InMemorySpanExporter, count: int) -> list:  # type: ignore[type-arg]
    return wait_until(
        lambda: (s := spans.get_finished_spans()) and len(s) >= count and list(s),
        message=f"{count} spans exported",
    )


def test_span_is_child_of_the_submitting_span(
    traced: PoolManager, provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    pool = traced.create_pool("tp", max_workers=2)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as parent:
        fut = pool.submit(traced_task, 21)
    assert fut.result() == 42
    task_span = next(s for s in finished_spans(spans, 2) if s.name == "signals.traced")
    assert task_span.parent is not None
    assert task_span.parent.span_id == parent.get_span_context().span_id
    assert task_span.context.trace_id == parent.get_span_context().trace_id
    attrs = dict(task_span.attributes or {})
    assert attrs["poolwatch.pool.name"] == "tp"
    assert attrs["poolwatch.task.name"] == "signals.traced"
    assert attrs["poolwatch.task.id"] == fut.task_id
    assert str(attrs["thread.name"]).startswith("poolwatch-tp-")
    assert float(attrs["poolwatch.task.queue_wait_seconds"]) >= 0  # type: ignore[arg-type]
    assert fut.info().trace_id == f"{task_span.context.trace_id:032x}"


def test_task_submitted_from_a_task_is_its_child(
    traced: PoolManager, spans: InMemorySpanExporter
) -> None:
    pool = traced.create_pool("nest", max_workers=2)

    def outer() -> int:
        return pool.submit(traced_task, 1).result()

    assert pool.submit(outer).result() == 2
    done = finished_spans(spans, 2)
    inner = next(s for s in done if s.name == "signals.traced")
    outer_span = next(s for s in done if s.name != "signals.traced")
    assert outer_span.parent is None  # nothing was current at submit: a root span
    assert inner.parent is not None
    assert inner.parent.span_id == outer_span.context.span_id


def test_failure_records_the_exception_with_status_error(
    traced: PoolManager, spans: InMemorySpanExporter
) -> None:
    pool = traced.create_pool("bad", max_workers=1)

    def explode() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        pool.submit(explode).result()
    (span,) = finished_spans(spans, 1)
    assert span.status.status_code is StatusCode.ERROR
    assert "KeyError" in (span.status.description or "")
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"] == "KeyError"  # type: ignore[index]


def test_cancel_request_and_run_timeout_are_span_events(
    traced: PoolManager, spans: InMemorySpanExporter
) -> None:
    pool = traced.create_pool("late", max_workers=2, run_timeout=0.05)
    started = threading.Event()
    pause = threading.Event()

    def cooperative() -> None:
        started.set()
        task = current_task()
        assert task is not None
        while True:
            task.raise_if_cancel_requested()
            pause.wait(0.005)

    overdue = pool.submit(cooperative)  # its run timeout requests the cancel
    with pytest.raises(CancelledError):
        overdue.result(5)
    (span,) = finished_spans(spans, 1)
    names = [e.name for e in span.events]
    assert names == [
        "poolwatch.task.run_timeout",
        "poolwatch.task.cancel_requested",
        "poolwatch.task.cancelled",
    ]
    assert span.status.status_code is not StatusCode.ERROR
    assert overdue.info().state is poolwatch.TaskState.CANCELLED


def test_queued_cancel_makes_no_span(traced: PoolManager, spans: InMemorySpanExporter) -> None:
    pool = traced.create_pool("q", max_workers=1)
    pool.pause()
    fut = pool.submit(traced_task, 1)
    assert pool.cancel(fut.task_id) == "cancelled"
    pool.resume()
    pool.submit(traced_task, 2).result()
    assert [s.name for s in finished_spans(spans, 1)] == ["signals.traced"]


def test_without_a_provider_nothing_is_traced() -> None:
    with PoolManager(registry=CollectorRegistry()) as manager:
        fut = manager.create_pool("plain", max_workers=1).submit(traced_task, 1)
        assert fut.result() == 2
        assert fut.info().trace_id is None


def test_baggage_of_the_submitter_reaches_the_task(traced: PoolManager) -> None:
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    pool = traced.create_pool("bag", max_workers=1)
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        fut = pool.submit(lambda: baggage.get_baggage("tenant"))
    finally:
        otel_context.detach(token)
    assert fut.result() == "acme"
