"""ManagedPool: workers, resizing, statistics, futures, batches and hostile tasks."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Executor, Future
from typing import Any

import pytest

from poolwatch import PoolState, PoolStats, TaskFuture, TaskInfo, TaskState
from support import wait_until

STATS_FIELDS = {
    "name",
    "state",
    "max_workers",
    "workers",
    "active",
    "idle",
    "queued",
    "queue_capacity",
    "rejection_policy",
    "queue_timeout",
    "run_timeout",
    "submitted",
    "succeeded",
    "failed",
    "cancelled",
    "rejected",
    "overdue",
    "oldest_queued_age",
    "queue_timeouts",
    "run_timeouts",
}


def noop() -> None:
    return None


class TestStats:
    def test_fields_are_the_contract(self, pool: Any) -> None:
        s = pool.stats()
        assert isinstance(s, PoolStats)
        assert {f.name for f in dataclasses.fields(s)} == STATS_FIELDS
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.submitted = 99

    def test_fresh_pool(self, pool: Any) -> None:
        s = pool.stats()
        assert s.name == "p"
        assert s.state is PoolState.RUNNING
        assert pool.state is PoolState.RUNNING
        assert pool.name == "p"
        assert s.max_workers == 2
        counts = (s.workers, s.active, s.idle, s.queued, s.submitted, s.succeeded)
        assert counts == (0, 0, 0, 0, 0, 0)
        assert (s.failed, s.cancelled, s.rejected, s.overdue) == (0, 0, 0, 0)
        assert s.oldest_queued_age == 0

    def test_busy_pool(self, make_pool: Any, blocker: Any, invariant: Any) -> None:
        pool = make_pool(2)
        blockers = [blocker(i) for i in range(5)]
        futures = [pool.submit(b) for b in blockers]
        wait_until(lambda: pool.stats().active == 2, message="two tasks running")
        s = pool.stats()
        assert (s.workers, s.active, s.idle, s.queued, s.submitted) == (2, 2, 0, 3, 5)
        invariant(s)
        wait_until(lambda: pool.stats().oldest_queued_age > 0, message="queue age grows")
        first_age = pool.stats().oldest_queued_age
        wait_until(lambda: pool.stats().oldest_queued_age > first_age, message="age keeps growing")
        for b in blockers:
            b.release()
        assert [f.result(timeout=10) for f in futures] == list(range(5))
        s = pool.stats()
        assert (s.active, s.queued, s.succeeded, s.oldest_queued_age) == (0, 0, 5, 0)
        assert s.idle == s.workers
        invariant(s)

    def test_counts_each_outcome(self, pool: Any, invariant: Any) -> None:
        ok = [pool.submit(noop) for _ in range(4)]
        bad = [pool.submit(int, "not a number") for _ in range(3)]
        for f in ok + bad:
            f.exception(timeout=10)
        s = pool.stats()
        assert (s.submitted, s.succeeded, s.failed, s.cancelled, s.rejected) == (7, 4, 3, 0, 0)
        invariant(s)


class TestWorkers:
    def test_no_worker_before_the_first_task(self, make_pool: Any) -> None:
        # Let any manager-wide machinery start first, so only the new pool is measured.
        make_pool(1).submit(noop).result(timeout=10)
        threads_before = threading.active_count()
        pool = make_pool(8)
        assert pool.stats().workers == 0
        assert threading.active_count() == threads_before, "creating a pool started threads"
        pool.submit(noop).result(timeout=10)
        assert pool.stats().workers == 1

    def test_grows_on_demand_up_to_max(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(3)
        blockers = [blocker() for _ in range(6)]
        for i, b in enumerate(blockers):
            pool.submit(b)
            expected = min(i + 1, 3)
            wait_until(
                lambda e=expected: pool.stats().active == e, message=f"{expected} tasks running"
            )
            assert pool.stats().workers == expected
        assert pool.stats().queued == 3
        for b in blockers:
            b.release()

    def test_an_idle_worker_is_reused(self, make_pool: Any) -> None:
        pool = make_pool(4)
        names = set()
        for _ in range(20):
            names.add(pool.submit(lambda: threading.current_thread().name).result(timeout=10))
            wait_until(lambda: pool.stats().idle == pool.stats().workers)
        assert len(names) == 1
        assert pool.stats().workers == 1

    def test_worker_threads_are_named_after_the_pool(self, make_pool: Any) -> None:
        pool = make_pool(1, name="billing")
        name = pool.submit(lambda: threading.current_thread().name).result(timeout=10)
        assert "billing" in name


class TestConfigureWorkers:
    def test_grow_starts_waiting_work_at_once(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(1)
        blockers = [blocker() for _ in range(4)]
        for b in blockers:
            pool.submit(b)
        wait_until(lambda: pool.stats().active == 1)
        pool.configure(max_workers=3)
        assert pool.stats().max_workers == 3
        wait_until(
            lambda: pool.stats().active == 3, message="grown pool starts queued work without help"
        )
        assert pool.stats().queued == 1
        for b in blockers:
            b.release()

    def test_shrink_never_interrupts_running_tasks(
        self, make_pool: Any, blocker: Any, invariant: Any
    ) -> None:
        pool = make_pool(3)
        running = [blocker(i) for i in range(3)]
        running_futures = [pool.submit(b) for b in running]
        for b in running:
            assert b.started.wait(10)
        pool.configure(max_workers=1)
        s = pool.stats()
        assert s.max_workers == 1
        assert s.active == 3, "shrinking must not stop a running task"
        later = blocker("later")
        later_future = pool.submit(later)

        running[0].release()
        assert running_futures[0].result(timeout=10) == 0
        wait_until(lambda: pool.stats().active == 2)
        assert pool.stats().queued == 1, "two tasks still run on a pool of one: nothing starts"
        assert not later.started.is_set()

        running[1].release()
        running[2].release()
        assert [f.result(timeout=10) for f in running_futures[1:]] == [1, 2]
        assert later.started.wait(10)
        wait_until(lambda: pool.stats().workers == 1, message="surplus workers retire when idle")
        later.release()
        assert later_future.result(timeout=10) == "later"
        invariant(pool.stats())

    def test_after_shrink_at_most_max_run_at_once(
        self, make_pool: Any, blocker: Any, gates: Any
    ) -> None:
        pool = make_pool(4)
        first = [blocker() for _ in range(4)]
        for b in first:
            pool.submit(b)
        wait_until(lambda: pool.stats().active == 4)
        for b in first:
            b.release()
        wait_until(lambda: pool.stats().active == 0)
        pool.configure(max_workers=2)
        lock = threading.Lock()
        current = 0
        peak = 0
        gate = gates.new()

        def measure() -> None:
            nonlocal current, peak
            with lock:
                current += 1
                peak = max(peak, current)
            gate.wait()
            with lock:
                current -= 1

        futures = [pool.submit(measure) for _ in range(8)]
        wait_until(lambda: pool.stats().active == 2)
        gate.set()
        for f in futures:
            f.result(timeout=10)
        assert peak == 2

    @pytest.mark.parametrize("value", [0, -3])
    def test_configure_rejects_bad_max_workers(self, pool: Any, value: int) -> None:
        with pytest.raises(ValueError, match="max_workers"):
            pool.configure(max_workers=value)
        assert pool.stats().max_workers == 2

    def test_configure_rejects_unknown_options(self, pool: Any) -> None:
        with pytest.raises(TypeError):
            pool.configure(max_threads=4)

    def test_configure_is_all_or_nothing(self, pool: Any) -> None:
        with pytest.raises(ValueError, match="rejection_policy"):
            pool.configure(max_workers=5, rejection_policy="bogus")
        s = pool.stats()
        assert (s.max_workers, s.rejection_policy) == (2, "abort")

    def test_configure_each_option(self, pool: Any) -> None:
        pool.configure(
            max_workers=5,
            queue_capacity=9,
            rejection_policy="caller_runs",
            queue_timeout=1.5,
            run_timeout=3.0,
        )
        s = pool.stats()
        assert (s.max_workers, s.queue_capacity, s.rejection_policy) == (5, 9, "caller_runs")
        assert (s.queue_timeout, s.run_timeout) == (1.5, 3.0)
        pool.configure(queue_capacity=None, queue_timeout=None, run_timeout=None)
        s = pool.stats()
        assert (s.queue_capacity, s.queue_timeout, s.run_timeout) == (None, None, None)
        assert s.max_workers == 5


class TestFutures:
    def test_submit_returns_a_task_future(self, pool: Any) -> None:
        fut = pool.submit(noop)
        assert isinstance(fut, TaskFuture)
        assert isinstance(fut, Future)
        assert isinstance(pool, Executor)
        assert isinstance(fut.task_id, str)
        fut.result(timeout=10)
        info = fut.info()
        assert isinstance(info, TaskInfo)
        assert (info.id, info.pool, info.state) == (fut.task_id, "p", TaskState.SUCCEEDED)

    def test_info_follows_the_task(self, pool: Any, blocker: Any) -> None:
        b = blocker()
        fut = pool.submit(b)
        assert b.started.wait(10)
        assert fut.info().state is TaskState.RUNNING
        b.release()
        fut.result(timeout=10)
        assert fut.info().state is TaskState.SUCCEEDED

    def test_map_returns_results_through_task_futures(self, pool: Any) -> None:
        assert list(pool.map(str, [1, 2, 3])) == ["1", "2", "3"]
        assert pool.stats().succeeded == 3


class TestSubmitMany:
    def test_futures_in_order(self, pool: Any, invariant: Any) -> None:
        futures = pool.submit_many(pow, [(2, i) for i in range(50)])
        assert isinstance(futures, list)
        assert all(isinstance(f, TaskFuture) for f in futures)
        assert [f.result(timeout=10) for f in futures] == [2**i for i in range(50)]
        assert len({f.task_id for f in futures}) == 50
        s = pool.stats()
        assert (s.submitted, s.succeeded) == (50, 50)
        invariant(s)

    def test_accepts_any_iterable_of_tuples(self, pool: Any) -> None:
        futures = pool.submit_many(divmod, ((i, 3) for i in range(5)))
        assert [f.result(timeout=10) for f in futures] == [divmod(i, 3) for i in range(5)]

    def test_empty_batch(self, pool: Any) -> None:
        assert pool.submit_many(noop, []) == []
        assert pool.stats().submitted == 0

    def test_after_shutdown(self, pool: Any) -> None:
        pool.shutdown()
        with pytest.raises(RuntimeError):
            pool.submit_many(noop, [()])

    def test_submitted_once_a_slow_generator_is_read(self, pool: Any) -> None:
        delay = 0.1
        before = time.time()

        def slow_args() -> Any:
            yield (1,)
            until = time.monotonic() + delay
            pause = threading.Event()
            while time.monotonic() < until:  # the caller's own slowness, not a wait on us
                pause.wait(0.005)
            yield (2,)

        futures = pool.submit_many(abs, slow_args())
        assert [f.result(timeout=10) for f in futures] == [1, 2]
        for f in futures:
            waited = f.info().submitted_at - before
            assert waited >= delay / 2, f"submitted before its batch was read ({waited:.3f}s)"


class TestBaseExceptions:
    @pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
    def test_recorded_failed_and_pool_keeps_full_capacity(
        self, make_pool: Any, blocker: Any, exc_type: type[BaseException], invariant: Any
    ) -> None:
        pool = make_pool(2)

        def hostile() -> None:
            raise exc_type("stop")

        futures = [pool.submit(hostile) for _ in range(4)]
        for f in futures:
            assert isinstance(f.exception(timeout=10), exc_type)
            assert f.info().state is TaskState.FAILED
            assert f.info().error_type is not None
            assert exc_type.__name__ in f.info().error_type
        s = pool.stats()
        assert (s.failed, s.succeeded, s.active) == (4, 0, 0)
        invariant(s)
        # Both workers are still there to serve: two blocking tasks run side by side.
        blockers = [blocker(i) for i in range(2)]
        running = [pool.submit(b) for b in blockers]
        for b in blockers:
            assert b.started.wait(10), "the pool lost a worker to a BaseException"
        assert pool.stats().active == 2
        for b in blockers:
            b.release()
        assert [f.result(timeout=10) for f in running] == [0, 1]
        assert pool.stats().workers <= 2

    @pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
    def test_done_callback_raising_one_is_logged_and_the_pool_goes_on(
        self,
        make_pool: Any,
        blocker: Any,
        exc_type: type[BaseException],
        caplog: pytest.LogCaptureFixture,
        invariant: Any,
    ) -> None:
        pool = make_pool(1)

        def hostile(f: Any) -> None:
            raise exc_type("from a callback")

        def logged(fut: Any) -> bool:
            return any(
                fut.task_id in r.getMessage()
                and r.exc_info is not None
                and isinstance(r.exc_info[1], exc_type)
                for r in caplog.records
            )

        with caplog.at_level(logging.ERROR, logger="poolwatch"):
            # The worker has taken its next task when the callback runs...
            b = blocker("first")
            first = pool.submit(b)
            assert b.started.wait(10)
            queued = pool.submit(pow, 2, 5)
            after = threading.Event()
            first.add_done_callback(hostile)
            first.add_done_callback(lambda f: after.set())
            b.release()
            assert queued.result(timeout=10) == 32
            assert after.wait(10), "the callbacks after the raising one still run"
            assert first.result() == "first"
            assert logged(first)
            # ...or has booked itself idle: either way it serves the next task.
            b = blocker("second")
            second = pool.submit(b)
            assert b.started.wait(10)
            second.add_done_callback(hostile)
            b.release()
            wait_until(lambda: logged(second), message="the callback's error is logged")
            assert pool.submit(pow, 3, 2).result(timeout=10) == 9
        pool.shutdown(wait=True)
        s = pool.stats()
        assert (s.state, s.workers, s.active, s.succeeded) == (PoolState.TERMINATED, 0, 0, 4)
        invariant(s)

    def test_exception_whose_str_raises_still_fails_the_task(
        self, make_pool: Any, invariant: Any
    ) -> None:
        class Unprintable(Exception):
            def __str__(self) -> str:
                raise KeyboardInterrupt

        def hostile() -> None:
            raise Unprintable

        pool = make_pool(1)
        fut = pool.submit(hostile)
        assert isinstance(fut.exception(timeout=10), Unprintable)
        info = fut.info()
        assert info.state is TaskState.FAILED
        assert info.error_type is not None
        assert info.error_type.endswith("Unprintable")
        assert info.error_message is not None
        assert "__str__ failed" in info.error_message
        assert pool.submit(pow, 2, 2).result(timeout=10) == 4
        s = pool.stats()
        assert (s.workers, s.failed, s.succeeded) == (1, 1, 1), "the worker survived"
        invariant(s)
