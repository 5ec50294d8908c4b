"""Task functions and initializers for the process pool tests: they run in child
processes, so they live in a module the children can import."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from typing import Any

import poolwatch

_gate: Any = None  # a multiprocessing Event handed to each child by its initializer
_spans: Any = None  # the child's in-memory span exporter, when tracing is set up


def init_gate(gate: Any) -> None:
    global _gate
    _gate = gate


def init_once(marker: str) -> None:
    """Succeed in the first process that runs it, fail in every later one."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        raise RuntimeError("this initializer ran before") from None
    os.close(fd)


def wait_gate() -> int:
    """Block until the parent opens the gate; returns this process's pid."""
    if not _gate.wait(30):
        raise TimeoutError("the test never opened the gate")
    return os.getpid()


def square(x: int) -> int:
    return x * x


@poolwatch.task("proctest.pid")
def pid_task() -> int:
    """This process's pid, as a task registered for submission over HTTP."""
    return os.getpid()


def pid() -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)  # the line the traceback must show


def exit_now(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    ctypes.string_at(0)


def unpicklable_result() -> Any:
    return lambda: None


def sleep_forever() -> None:
    threading.Event().wait(3600)  # never set: a task that only ends when its process does


def until_cancelled(limit: float) -> str:
    """Cooperate: wait (up to ``limit`` seconds) for a cancel request, then stop."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        poolwatch.raise_if_cancel_requested()
        time.sleep(0.005)  # ok: simulated work between checks, as a task's own loop does
    return "never asked"


def task_id() -> str | None:
    task = poolwatch.current_task()
    return None if task is None else task.task_id


def init_tracing() -> None:
    """Install an SDK tracer provider in the child, as a service's start-up would."""
    global _spans
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    _spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_spans))
    trace.set_tracer_provider(provider)


def traced_work() -> tuple[int, int, int]:
    """Make a span inside the task; (its trace id, its parent's span id, its span id)."""
    from opentelemetry import trace

    with trace.get_tracer("tests").start_as_current_span("inside") as span:
        ctx = span.get_span_context()
    parent = _spans.get_finished_spans()[-1].parent
    return ctx.trace_id, 0 if parent is None else parent.span_id, ctx.span_id
