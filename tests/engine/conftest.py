"""Fixtures for the pool engine tests: gates, managers and pools that always clean up.

Every pool or executor a test builds comes from a fixture here, so teardown can open
every gate first and then shut everything down; a failing test never leaves a worker
thread blocked on an event nobody will set.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolManager


class Gates:
    """Hands out ``threading.Event`` gates and opens all of them at teardown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[threading.Event] = []

    def new(self) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events.append(event)
        return event

    def many(self, n: int) -> list[threading.Event]:
        return [self.new() for _ in range(n)]

    def release_all(self) -> None:
        with self._lock:
            events = list(self._events)
        for event in events:
            event.set()


class Blocker:
    """A task body that reports when it starts and returns ``value`` once its gate opens."""

    def __init__(self, gate: threading.Event, value: Any = None) -> None:
        self.gate = gate
        self.value = value
        self.started = threading.Event()
        self.thread_name: str | None = None

    def __call__(self) -> Any:
        self.thread_name = threading.current_thread().name
        self.started.set()
        self.gate.wait()
        return self.value

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def gates() -> Iterator[Gates]:
    g = Gates()
    yield g
    g.release_all()


@pytest.fixture
def blocker(gates: Gates) -> Callable[..., Blocker]:
    """``blocker(value=None)``: a fresh :class:`Blocker` whose gate opens at teardown."""

    def make(value: Any = None) -> Blocker:
        return Blocker(gates.new(), value)

    return make


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Switch threads every few microseconds instead of every 5 ms, to interleave more."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def manager(gates: Gates, registry: CollectorRegistry) -> Iterator[Any]:
    """A ``PoolManager`` on a fresh registry with tracing explicitly off.

    Teardown opens every gate before shutting down, so a test that fails while tasks
    are blocked still ends without leaving threads behind.
    """
    mgr = PoolManager(registry=registry, tracer_provider=NoOpTracerProvider())
    yield mgr
    gates.release_all()
    mgr.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def make_pool(manager: Any) -> Callable[..., Any]:
    """``make_pool(max_workers=2, **options)``: a pool with a unique name in ``manager``."""
    counter = itertools.count()

    def make(max_workers: int = 2, *, name: str | None = None, **options: Any) -> Any:
        pool_name = name if name is not None else f"pool-{next(counter)}"
        return manager.create_pool(pool_name, max_workers=max_workers, **options)

    return make


@pytest.fixture
def pool(make_pool: Callable[..., Any]) -> Any:
    """A two-worker pool with an unbounded queue and the default policy."""
    return make_pool(2, name="p")


def check_invariant(stats: Any) -> None:
    """The accounting identity that holds whenever nothing is in flight."""
    total = stats.succeeded + stats.failed + stats.cancelled + stats.queued + stats.active
    assert stats.submitted == total, (
        f"submitted={stats.submitted} != succeeded+failed+cancelled+queued+active={total} "
        f"in {stats!r}"
    )


@pytest.fixture
def invariant() -> Callable[[Any], None]:
    """``invariant(stats)`` asserts ``submitted == succeeded+failed+cancelled+queued+active``."""
    return check_invariant


ExecutorFactory = Callable[[int], Executor]


@pytest.fixture(params=["thread", "managed", "constructor"])
def executor_factory(request: pytest.FixtureRequest, gates: Gates) -> Iterator[ExecutorFactory]:
    """Builds a stdlib ``ThreadPoolExecutor``, a ``ManagedPool`` from ``create_pool``, or
    one from ``poolwatch.ThreadPoolExecutor``, with ``n`` workers.

    The conformance suite runs every test against all three, so any difference from the
    stdlib shows up as a failure on a poolwatch side only.
    """
    executors: list[Executor] = []
    managers: list[Any] = []

    def make(n: int) -> Executor:
        if request.param == "thread":
            executor: Executor = ThreadPoolExecutor(max_workers=n)
        else:
            mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
            managers.append(mgr)
            if request.param == "managed":
                executor = mgr.create_pool("p", max_workers=n)
            else:
                executor = poolwatch.ThreadPoolExecutor(n, manager=mgr)
        executors.append(executor)
        return executor

    yield make
    gates.release_all()
    for executor in executors:
        executor.shutdown(wait=True)
    for mgr in managers:
        mgr.shutdown(wait=True)
