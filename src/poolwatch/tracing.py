"""One OpenTelemetry span per executed task, parented to the context current at submit.

Tracing is off, and costs one attribute read and a float comparison per task, until a
real tracer provider is present: the one given to ``PoolManager`` or the global one once
an SDK provider is installed (looked up at most once a second until then).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from ._version import __version__

if TYPE_CHECKING:
    from .history import ErrorInfo
    from .work import WorkItem

__all__ = ["Tracing", "records_spans"]

log = logging.getLogger("poolwatch")

_OFF_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def records_spans(provider: trace.TracerProvider) -> bool:
    """Whether ``provider`` records spans: not the API's no-op or proxy (the global one
    before an SDK provider is installed)."""
    return not isinstance(provider, _OFF_PROVIDERS)


_RECHECK_SECONDS = 1.0


class Tracing:
    """Finds the tracer to use and starts and ends the spans of tasks."""

    __slots__ = ("_explicit", "_next_check", "_tracer", "wall_offset")

    def __init__(self, provider: trace.TracerProvider | None, wall_offset: float) -> None:
        self._explicit = provider
        self._tracer: trace.Tracer | None = None
        self._next_check = 0.0
        self.wall_offset = wall_offset
        if provider is not None and records_spans(provider):
            self._tracer = provider.get_tracer("poolwatch", __version__)

    @property
    def provider(self) -> trace.TracerProvider | None:
        return self._explicit

    def tracer(self, now: float) -> trace.Tracer | None:
        """The tracer, or ``None`` while tracing is off. ``now`` is the monotonic time."""
        tracer = self._tracer
        if tracer is not None or now < self._next_check:
            return tracer
        return self._resolve(now)

    def _resolve(self, now: float) -> trace.Tracer | None:
        self._next_check = now + _RECHECK_SECONDS
        if self._explicit is not None:
            return None  # an explicit no-op provider: tracing stays off
        provider = trace.get_tracer_provider()
        if not records_spans(provider):
            return None
        self._tracer = provider.get_tracer("poolwatch", __version__)
        return self._tracer

    def start(
        self, tracer: trace.Tracer, task: WorkItem, pool: str, thread: str, queue_wait: float
    ) -> tuple[trace.Span, object] | None:
        """Open a task's span and make it current; ``None`` if that failed (the task runs
        untraced: a sampler or span processor that raises must not stop the pool)."""
        try:
            span = tracer.start_span(
                task.kind.name,
                context=task.trace_ctx,
                attributes={
                    "poolwatch.pool.name": pool,
                    "poolwatch.task.name": task.kind.name,
                    "poolwatch.task.id": task.task_id,
                    "poolwatch.task.queue_wait_seconds": queue_wait,
                    "thread.name": thread,
                },
                # poolwatch records the task's outcome itself (see end()).
                record_exception=False,
                set_status_on_exception=False,
            )
        except Exception:
            self._failed("start")
            return None
        # On top of the submitter's context, so baggage and other values travel too.
        token = otel_context.attach(trace.set_span_in_context(span, task.trace_ctx))
        return span, token

    def end(
        self,
        span: trace.Span,
        token: object,
        task: WorkItem,
        failed: BaseException | None,
        cancelled: bool,
    ) -> int:
        """Close a task's span; returns its trace id (0 when not sampled). Never raises:
        the task has run, and its result must reach its future whatever tracing does."""
        try:
            if task.overdue_at:
                span.add_event(
                    "poolwatch.task.run_timeout",
                    _stack_attributes(task.overdue_stack),
                    timestamp=self._ns(task.overdue_at),
                )
            if task.cancel_requested_at:
                span.add_event(
                    "poolwatch.task.cancel_requested",
                    timestamp=self._ns(task.cancel_requested_at),
                )
            if cancelled:
                span.add_event("poolwatch.task.cancelled")
            elif failed is not None and task.error is not None:
                _record_failure(span, failed, task.error)
        except Exception:
            self._failed("end")
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
        try:
            span.end()  # runs the span processors' on_end
            ctx = span.get_span_context()
        except Exception:
            self._failed("end")
            return 0
        return ctx.trace_id if ctx.trace_flags.sampled else 0

    def _ns(self, monotonic: float) -> int:
        return int((monotonic + self.wall_offset) * 1e9)

    @staticmethod
    def _failed(step: str) -> None:
        log.warning(
            "tracing could not %s a task's span; the task itself is unaffected",
            step,
            exc_info=True,
        )


def _stack_attributes(stack: Any) -> dict[str, str]:
    """The stack a task had when it passed its run timeout, as span event attributes."""
    if stack is None:
        return {}
    lines = [f'File "{f.file}", line {f.line}, in {f.function}' for f in stack.frames]
    return {"poolwatch.task.stack": _encodable("\n".join(lines))}


def _record_failure(span: trace.Span, exc: BaseException, error: ErrorInfo) -> None:
    """The ``exception`` event and the error status, from the task's own ``ErrorInfo``:
    its message is safe from a failing ``__str__`` and its traceback is already formatted
    (from the task's first frame, bounded)."""
    cls = type(exc)
    type_name = cls.__qualname__  # named as the SDK's own record_exception names it
    if cls.__module__ not in (None, "builtins"):
        type_name = f"{cls.__module__}.{type_name}"
    span.add_event(
        "exception",
        {
            "exception.type": type_name,
            "exception.message": _encodable(error.message),
            "exception.stacktrace": _encodable(error.traceback),
        },
    )
    span.set_status(Status(StatusCode.ERROR, _encodable(f"{cls.__qualname__}: {error.message}")))


def _encodable(text: str) -> str:
    """``text`` as OTLP can send it. Python strings may hold unpaired surrogates (from a
    ``\\udXXX`` escape or undecodable bytes), which UTF-8 cannot encode: the exporter would
    drop the attribute, or for a status the whole batch of spans. Each is written as its
    ``\\uXXXX`` escape instead."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def capture_context() -> Any:
    """The OpenTelemetry context current in this thread (or task, in asyncio)."""
    return otel_context.get_current()
