"""A model-based test of one pool's state machine, driven by hypothesis.

The model is a FIFO queue, a set of running tasks, a worker limit, a queue capacity
and a paused flag. After every step the test waits for the pool to settle (tasks start
and finish on worker threads) and then requires the pool to match the model exactly:
every future's state, every counter in ``stats()``, every task record.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager, PoolState, RejectedError, TaskState, current_task
from support import wait_until

QUEUED, RUNNING = TaskState.QUEUED, TaskState.RUNNING
SUCCEEDED, CANCELLED = TaskState.SUCCEEDED, TaskState.CANCELLED


def gated(gate: threading.Event, value: int) -> int:
    gate.wait()
    ctx = current_task()
    if ctx is not None:
        ctx.raise_if_cancel_requested()
    return value


def instant(value: int) -> int:
    return value


@dataclass
class ModelTask:
    index: int
    future: Any
    gate: threading.Event | None  # None: an instant task
    state: TaskState = QUEUED
    cancel_requested: bool = False

    @property
    def can_finish(self) -> bool:
        return self.gate is None or self.gate.is_set()


@dataclass
class Model:
    max_workers: int = 2
    capacity: int | None = 3
    paused: bool = False
    queue: list[ModelTask] = field(default_factory=list)
    running: list[ModelTask] = field(default_factory=list)
    tasks: list[ModelTask] = field(default_factory=list)
    rejected: int = 0

    def count(self, state: TaskState) -> int:
        return sum(1 for t in self.tasks if t.state is state)

    def finish(self, t: ModelTask) -> None:
        t.state = CANCELLED if t.cancel_requested else SUCCEEDED

    def promote(self) -> None:
        """Start queued tasks, oldest first, while a worker slot is free."""
        while not self.paused and len(self.running) < self.max_workers and self.queue:
            t = self.queue.pop(0)
            if t.can_finish:
                self.finish(t)
            else:
                t.state = RUNNING
                self.running.append(t)


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.manager = PoolManager(
            registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider()
        )
        self.model = Model()
        self.pool = self.manager.create_pool(
            "model", max_workers=self.model.max_workers, queue_capacity=self.model.capacity
        )

    # -- rules ---------------------------------------------------------------

    def _submit(self, gate: threading.Event | None) -> None:
        m = self.model
        index = len(m.tasks)
        full = m.capacity is not None and len(m.queue) >= m.capacity

        def submit() -> Any:
            if gate is None:
                return self.pool.submit(instant, index)
            return self.pool.submit(gated, gate, index)

        if full:
            with pytest.raises(RejectedError) as caught:
                submit()
            assert caught.value.reason == "queue_full"
            m.rejected += 1
            return
        fut = submit()
        t = ModelTask(index, fut, gate)
        m.tasks.append(t)
        m.queue.append(t)
        m.promote()

    @rule()
    def submit_blocking(self) -> None:
        self._submit(threading.Event())

    @rule()
    def submit_instant(self) -> None:
        self._submit(None)

    @precondition(lambda self: any(t.gate and not t.gate.is_set() for t in self.model.tasks))
    @rule(pick=st.integers(min_value=0))
    def release(self, pick: int) -> None:
        m = self.model
        closed = [t for t in m.tasks if t.gate is not None and not t.gate.is_set()]
        t = closed[pick % len(closed)]
        assert t.gate is not None
        t.gate.set()
        if t.state is RUNNING:
            m.running.remove(t)
            m.finish(t)
            m.promote()

    @precondition(lambda self: self.model.tasks)
    @rule(pick=st.integers(min_value=0))
    def cancel_by_id(self, pick: int) -> None:
        m = self.model
        t = m.tasks[pick % len(m.tasks)]
        answer = self.pool.cancel(t.future.task_id)
        if t.state is QUEUED:
            assert answer == "cancelled"
            m.queue.remove(t)
            t.state = CANCELLED
        elif t.state is RUNNING:
            assert answer == "requested"
            t.cancel_requested = True
        else:
            assert answer == "finished"

    @precondition(lambda self: self.model.tasks)
    @rule(pick=st.integers(min_value=0))
    def cancel_future(self, pick: int) -> None:
        m = self.model
        t = m.tasks[pick % len(m.tasks)]
        answer = t.future.cancel()
        if t.state is QUEUED:
            assert answer is True
            m.queue.remove(t)
            t.state = CANCELLED
        elif t.state is RUNNING:
            assert answer is False
        else:
            assert answer is (t.state is CANCELLED and t.future.cancelled())

    @precondition(lambda self: not self.model.paused)
    @rule()
    def pause(self) -> None:
        self.pool.pause()
        self.model.paused = True

    @precondition(lambda self: self.model.paused)
    @rule()
    def resume(self) -> None:
        self.pool.resume()
        self.model.paused = False
        self.model.promote()

    @rule(n=st.integers(min_value=1, max_value=4))
    def set_max_workers(self, n: int) -> None:
        self.pool.configure(max_workers=n)
        self.model.max_workers = n
        self.model.promote()

    @rule(capacity=st.none() | st.integers(min_value=1, max_value=4))
    def set_queue_capacity(self, capacity: int | None) -> None:
        self.pool.configure(queue_capacity=capacity)
        self.model.capacity = capacity

    # -- checks --------------------------------------------------------------

    def _matches(self) -> bool:
        m = self.model
        for t in m.tasks:
            f = t.future
            if t.state is QUEUED and (f.running() or f.done()):
                return False
            if t.state is RUNNING and not f.running():
                return False
            if t.state.finished and not f.done():
                return False
        s = self.pool.stats()
        return (
            s.active == len(m.running)
            and s.queued == len(m.queue)
            and s.succeeded == m.count(SUCCEEDED)
            and s.cancelled == m.count(CANCELLED)
            and s.active <= s.workers <= max(m.max_workers, s.active)
            and s.idle == s.workers - s.active
        )

    @invariant()
    def pool_matches_model(self) -> None:
        try:
            wait_until(self._matches, timeout=5, message="pool settles into the model's state")
        except pytest.fail.Exception as exc:
            detail = f"{exc}\nmodel={self._describe()}\nstats={self.pool.stats()}"
            raise AssertionError(detail) from None
        m = self.model
        s = self.pool.stats()
        assert s.state is (PoolState.PAUSED if m.paused else PoolState.RUNNING)
        assert (s.max_workers, s.queue_capacity) == (m.max_workers, m.capacity)
        assert s.submitted == len(m.tasks)
        assert s.failed == 0
        assert s.rejected == m.rejected
        assert s.idle == s.workers - s.active
        assert s.submitted == s.succeeded + s.failed + s.cancelled + s.queued + s.active
        for t in m.tasks:
            assert t.future.info().state is t.state, (t.index, t.future.info(), t)
            if t.state is SUCCEEDED:
                assert t.future.result() == t.index
            if t.state is RUNNING:
                assert t.future.info().cancel_requested is t.cancel_requested

    def _describe(self) -> str:
        m = self.model
        return (
            f"max_workers={m.max_workers} capacity={m.capacity} paused={m.paused} "
            f"queue={[t.index for t in m.queue]} running={[t.index for t in m.running]}"
        )

    def teardown(self) -> None:
        for t in self.model.tasks:
            if t.gate is not None:
                t.gate.set()
        self.manager.shutdown(wait=True, cancel_futures=True)


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
