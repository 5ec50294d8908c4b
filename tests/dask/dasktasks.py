"""Task functions the Dask tests run on the cluster's worker processes.

The workers import this module by name (the conftest puts its folder on the path they
inherit), as a deployment's workers import its code. Tasks synchronise with the test
through Dask's own cluster-wide primitives (``distributed.Event``), never by sleeping.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from distributed import Event, get_worker
from distributed.diagnostics.plugin import SchedulerPlugin
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

WAIT = 60  # seconds a task waits for a gate at most, so a failing test cannot hang a worker


def square(x: int) -> int:
    return x * x


async def square_later(x: int) -> int:
    """A coroutine function: Dask awaits it on the worker's event loop."""
    return x * x


def echo_keywords(*, key: str, priority: int, workers: str) -> tuple[str, int, str]:
    """Keywords that Client.submit would take as its own: they must reach the task."""
    return key, priority, workers


def fail_deep(message: str) -> None:
    _raise_value_error(message)


def _raise_value_error(message: str) -> None:
    raise ValueError(message)


def where() -> tuple[int, str]:
    """The Dask worker process running this task, and its address."""
    return os.getpid(), get_worker().address


def gated(token: str) -> str:
    """Say that it started, then return once the test opens its gate."""
    Event(f"started-{token}").set()
    if not Event(f"gate-{token}").wait(WAIT):
        raise TimeoutError(f"gate {token} was never opened")
    return token


def mark(token: str) -> str:
    """Leave a mark that this task ran."""
    Event(f"ran-{token}").set()
    return token


def die_once(marker: str) -> str:
    """Kill its own worker process the first time it runs; succeed when Dask retries it."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def die() -> None:
    """Kill its own worker process every time."""
    os.kill(os.getpid(), signal.SIGKILL)


def traced_child() -> tuple[int, int, int]:
    """Make a span on the worker with a recording SDK of its own; return its trace id,
    its parent's span id and whether that parent came from another process."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("dask-task").start_as_current_span("inside"):
        pass
    provider.shutdown()
    (span,) = exporter.get_finished_spans()
    parent = span.parent
    assert parent is not None, "the span inside the task has no parent"
    return span.context.trace_id, parent.span_id, int(parent.is_remote)


def current_span_is_valid() -> bool:
    return trace.get_current_span().get_span_context().is_valid


class GraphLog(SchedulerPlugin):
    """On the scheduler: the keys of each graph that reaches it, one list per graph."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.graphs: list[list[str]] = []

    def update_graph(self, scheduler: Any, *, keys: set[Any], **kwargs: Any) -> None:
        self.graphs.append(sorted(str(k) for k in keys))


def graphs_seen(name: str, dask_scheduler: Any) -> list[list[str]]:
    """Run on the scheduler: what the ``GraphLog`` called ``name`` has seen."""
    plugin: GraphLog = dask_scheduler.plugins[name]
    return plugin.graphs
