"""asyncio cancelling the coroutine that awaits a running task requests its cooperative cancel."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolManager, TaskState
from support import in_fresh_thread


@pytest.fixture
def mgr() -> Iterator[PoolManager]:
    manager = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    yield manager
    manager.shutdown(wait=True, cancel_futures=True)


class Cooperative:
    """A task that works until asked to stop, and says whether it was asked."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.asked = threading.Event()
        self.ids: list[str] = []

    def __call__(self) -> str:
        task = poolwatch.current_task()
        if task is not None:
            self.ids.append(task.task_id)
        self.started.set()
        deadline = time.monotonic() + 10
        pause = threading.Event()
        while time.monotonic() < deadline:  # a task doing work in slices
            if poolwatch.cancel_requested():
                self.asked.set()
                poolwatch.raise_if_cancel_requested()
            pause.wait(0.002)
        return "never asked"


def run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return in_fresh_thread(lambda: asyncio.run(make()))


@pytest.mark.parametrize("how", ["to_thread", "run_in_executor"])
def test_task_cancel_requests_a_cooperative_cancel(mgr: PoolManager, how: str) -> None:
    job = Cooperative()

    async def main(pool: poolwatch.ManagedPool) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)  # asyncio.run shuts it down at the end
        if how == "to_thread":
            task = asyncio.ensure_future(asyncio.to_thread(job))
        else:
            task = asyncio.ensure_future(loop.run_in_executor(pool, job))
        await asyncio.to_thread(job.started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(job.asked.wait, 10)

    for i in range(5):  # a race between the cancel and the task's start would show
        job.started.clear()
        job.asked.clear()
        pool = mgr.create_pool(f"aio-{i}", max_workers=2)
        run(lambda pool=pool: main(pool))
        assert job.asked.is_set()
        info = mgr.get_task(job.ids[-1])
        assert (info.state, info.cancel_requested) == (TaskState.CANCELLED, True)


def test_asyncio_timeout_requests_a_cooperative_cancel(mgr: PoolManager) -> None:
    poolwatch.instrument(mgr)
    job = Cooperative()
    try:

        async def main() -> None:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await asyncio.to_thread(job)  # on the default executor, a pool
            await asyncio.to_thread(job.asked.wait, 10)

        run(main)
    finally:
        poolwatch.uninstrument()
    assert job.asked.is_set()
    family = mgr.get_pool("asyncio")
    assert family.stats().cancelled == 1


def test_future_cancel_on_a_running_task_returns_false_and_requests_nothing(
    mgr: PoolManager,
) -> None:
    pool = mgr.create_pool("direct", max_workers=1)
    job = Cooperative()
    future = pool.submit(job)
    assert job.started.wait(10)
    assert future.cancel() is False, "as the stdlib's: a running future is not cancelled"
    assert not future.info().cancel_requested
    assert not future.done()
    assert pool.cancel(future.task_id) == "requested"  # the explicit way
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=10)
    assert job.asked.is_set()


def test_cancel_racing_the_task_start_never_loses_the_request(mgr: PoolManager) -> None:
    """asyncio cancels the awaiting coroutine just as a worker takes the task: the task is
    either cancelled while queued or, once running, asked to stop; never neither."""
    pool = mgr.create_pool("race", max_workers=1)
    outcomes = {"cancelled": 0, "requested": 0, "missed": 0}

    def job(cancel_done: threading.Event) -> bool:
        assert cancel_done.wait(10)
        return poolwatch.cancel_requested()

    async def once() -> None:
        gate = threading.Event()
        cancel_done = threading.Event()
        pool.submit(gate.wait, 10)
        raced = pool.submit(job, cancel_done)
        awaited = asyncio.wrap_future(raced)
        gate.set()  # the worker now takes `raced` while asyncio cancels it
        for _ in range(spin):  # a varying head start for the worker
            pass
        awaited.cancel()
        await asyncio.sleep(0)  # asyncio passes the cancel on to `raced` here
        cancel_done.set()
        try:
            asked = await asyncio.wrap_future(raced)
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
            return
        outcomes["requested" if asked else "missed"] += 1

    spin = 0

    async def main() -> None:
        nonlocal spin
        deadline = time.monotonic() + 2  # some 20,000 races
        while time.monotonic() < deadline:
            await once()
            spin = (spin + 7) % 200

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the race shows within a second
    try:
        run(main)
    finally:
        sys.setswitchinterval(old)
    assert outcomes["missed"] == 0, outcomes
    assert outcomes["requested"] >= 100, f"the race was hardly ever run: {outcomes}"
    assert outcomes["cancelled"] >= 100, f"the race was hardly ever run: {outcomes}"
