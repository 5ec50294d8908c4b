"""One span per executed task, parented to the submitter's context."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import CancelledError

import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
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
    assert str(attrs["thread.name"]) in {"tp_0", "tp_1"}
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


def test_exception_event_names_the_type_as_the_sdk_does(
    traced: PoolManager, spans: InMemorySpanExporter
) -> None:
    pool = traced.create_pool("parse", max_workers=1)

    def parse() -> None:
        json.loads("{")

    with pytest.raises(json.JSONDecodeError):
        pool.submit(parse).result()
    (span,) = finished_spans(spans, 1)
    attributes = span.events[0].attributes
    assert attributes is not None
    assert attributes["exception.type"] == "json.decoder.JSONDecodeError"
    assert attributes["exception.message"] == (
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )
    stacktrace = str(attributes["exception.stacktrace"])
    assert "in parse" in stacktrace  # starts in the task's own code
    assert "_execute" not in stacktrace  # not in the worker's
    assert stacktrace.rstrip().endswith(str(attributes["exception.message"]))


class _BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def test_an_exception_whose_str_fails_still_fails_its_task_only(
    traced: PoolManager, spans: InMemorySpanExporter
) -> None:
    pool = traced.create_pool("odd", max_workers=1)

    def odd() -> None:
        raise _BrokenStr

    for _ in range(3):  # one worker: it must survive each of them
        with pytest.raises(_BrokenStr):
            pool.submit(odd).result(timeout=10)
    assert pool.submit(traced_task, 4).result(timeout=10) == 8
    done = finished_spans(spans, 4)
    failed = [s for s in done if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 3
    assert failed[0].status.description == "_BrokenStr: <the exception's __str__ failed>"
    assert pool.stats().failed == 3


def test_unpaired_surrogates_in_an_error_do_not_break_the_export(
    traced: PoolManager, spans: InMemorySpanExporter
) -> None:
    pool = traced.create_pool("surrogates", max_workers=1)

    def bad_bytes() -> None:
        # What decoding undecodable bytes with surrogateescape gives, as os and sys do.
        raise ValueError(b"caf\xe9".decode("utf-8", "surrogateescape"))

    with pytest.raises(ValueError, match="caf"):
        pool.submit(bad_bytes).result()
    assert pool.submit(traced_task, 1).result() == 2
    done = finished_spans(spans, 2)
    # The OTLP encoder refuses strings UTF-8 cannot encode: a status among them fails
    # the whole batch. Every span here must encode, the bad one with its text escaped.
    encoded = encode_spans(done).SerializeToString()
    (failed,) = [s for s in done if s.status.status_code is StatusCode.ERROR]
    attributes = failed.events[0].attributes
    assert attributes is not None
    assert attributes["exception.message"] == "caf\\udce9"
    assert failed.status.description == "ValueError: caf\\udce9"
    assert b"caf\\udce9" in encoded


class _FailingProcessor(SpanProcessor):
    def __init__(self, when: str) -> None:
        self.when = when

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.when == "start":
            raise RuntimeError("on_start failed")

    def on_end(self, span: ReadableSpan) -> None:
        if self.when == "end":
            raise RuntimeError("on_end failed")


@pytest.mark.parametrize("when", ["start", "end"])
def test_a_failing_span_processor_does_not_stop_the_pool(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture, when: str
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(_FailingProcessor(when))
    manager = PoolManager(registry=registry, tracer_provider=provider)
    try:
        pool = manager.create_pool("fragile", max_workers=1)
        with caplog.at_level(logging.WARNING, logger="poolwatch"):
            results = [pool.submit(traced_task, i) for i in range(5)]
            assert [f.result(timeout=10) for f in results] == [0, 2, 4, 6, 8]
        assert pool.stats().succeeded == 5
        assert f"could not {when} a task's span" in caplog.text
    finally:
        manager.shutdown(cancel_futures=True)
        provider.shutdown()


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
