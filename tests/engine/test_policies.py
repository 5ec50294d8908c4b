"""Bounded queues, rejection policies, and the queue and run timeouts."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from poolwatch import RejectedError, TaskState, current_task, task
from support import wait_until


def noop() -> None:
    return None


@task("engine-tests.overdue", run_timeout=0.05)
def overdue_task(gate: threading.Event) -> str:
    gate.wait()
    return "finished late"


def full_pool(make_pool: Any, blocker: Any, policy: str, capacity: int = 2) -> tuple[Any, Any]:
    """A one-worker pool whose worker is blocked and whose queue holds ``capacity`` tasks."""
    pool = make_pool(1, queue_capacity=capacity, rejection_policy=policy)
    b = blocker("first")
    pool.submit(b)
    assert b.started.wait(10)
    return pool, b


class TestAbort:
    def test_full_queue_raises_rejected_error(
        self, make_pool: Any, blocker: Any, invariant: Any
    ) -> None:
        pool, b = full_pool(make_pool, blocker, "abort")
        queued = [pool.submit(noop) for _ in range(2)]
        ran = threading.Event()
        with pytest.raises(RejectedError, match="2") as caught:
            pool.submit(ran.set)
        assert isinstance(caught.value, RuntimeError)
        assert caught.value.reason == "queue_full"
        assert caught.value.pool == pool.name
        s = pool.stats()
        assert (s.submitted, s.queued, s.rejected) == (3, 2, 1)
        invariant(s)
        b.release()
        for f in queued:
            f.result(timeout=10)
        assert not ran.is_set()
        assert pool.stats().rejected == 1

    def test_room_again_once_the_queue_drains(self, make_pool: Any, blocker: Any) -> None:
        pool, b = full_pool(make_pool, blocker, "abort", capacity=1)
        pool.submit(noop)
        with pytest.raises(RejectedError):
            pool.submit(noop)
        b.release()
        wait_until(lambda: pool.stats().queued == 0)
        assert pool.submit(lambda: "fits").result(timeout=10) == "fits"

    def test_map_on_a_full_queue_raises(self, make_pool: Any, blocker: Any) -> None:
        pool, b = full_pool(make_pool, blocker, "abort", capacity=1)
        with pytest.raises(RejectedError):
            pool.map(str, range(5))
        b.release()


class TestCallerRuns:
    def test_runs_in_the_submitting_thread(self, make_pool: Any, blocker: Any) -> None:
        pool, b = full_pool(make_pool, blocker, "caller_runs", capacity=1)
        queued = pool.submit(threading.get_ident)
        fut = pool.submit(threading.get_ident)
        assert fut.done(), "caller_runs runs the task before submit returns"
        assert fut.result() == threading.get_ident()
        assert pool.stats().rejected == 1
        b.release()
        assert queued.result(timeout=10) != threading.get_ident()

    def test_task_context_inside_and_none_after(self, make_pool: Any, blocker: Any) -> None:
        pool, b = full_pool(make_pool, blocker, "caller_runs", capacity=1)
        pool.submit(noop)
        fut = pool.submit(current_task)
        ctx = fut.result(timeout=10)
        assert ctx is not None
        assert ctx.task_id == fut.task_id
        assert current_task() is None
        b.release()

    def test_from_another_thread(self, make_pool: Any, blocker: Any) -> None:
        pool, b = full_pool(make_pool, blocker, "caller_runs", capacity=1)
        pool.submit(noop)
        seen: list[int] = []

        def submitter() -> None:
            seen.append(pool.submit(threading.get_ident).result(timeout=10))

        t = threading.Thread(target=submitter)
        t.start()
        t.join(10)
        assert seen == [t.ident]
        b.release()


class TestDiscard:
    def test_returns_an_already_cancelled_future(
        self, make_pool: Any, blocker: Any, invariant: Any
    ) -> None:
        pool, b = full_pool(make_pool, blocker, "discard")
        queued = [pool.submit(noop) for _ in range(2)]
        ran = threading.Event()
        fut = pool.submit(ran.set)
        assert fut.cancelled()
        assert fut.done()
        assert pool.stats().rejected == 1
        b.release()
        for f in queued:
            f.result(timeout=10)
        assert not ran.is_set()
        s = pool.stats()
        assert s.rejected == 1
        invariant(s)


class TestDiscardOldest:
    def test_cancels_the_oldest_queued_task(
        self, make_pool: Any, blocker: Any, invariant: Any
    ) -> None:
        pool, b = full_pool(make_pool, blocker, "discard_oldest")
        oldest, middle = pool.submit(lambda: "oldest"), pool.submit(lambda: "middle")
        newest = pool.submit(lambda: "newest")
        assert oldest.cancelled()
        assert oldest.info().state is TaskState.CANCELLED
        assert not middle.done()
        assert not newest.done()
        assert pool.stats().rejected == 1
        assert pool.stats().queued == 2
        another = pool.submit(lambda: "another")
        assert middle.cancelled()
        assert pool.stats().rejected == 2
        b.release()
        assert newest.result(timeout=10) == "newest"
        assert another.result(timeout=10) == "another"
        invariant(pool.stats())


class TestRejectionAccounting:
    @pytest.mark.parametrize("policy", ["abort", "caller_runs", "discard", "discard_oldest"])
    def test_every_rejection_is_counted(
        self, make_pool: Any, blocker: Any, policy: str, registry: CollectorRegistry
    ) -> None:
        pool, b = full_pool(make_pool, blocker, policy, capacity=1)
        pool.submit(noop)
        for _ in range(5):
            with contextlib.suppress(RejectedError):
                pool.submit(noop)
        assert pool.stats().rejected == 5
        sample = registry.get_sample_value(
            "poolwatch_tasks_rejected_total", {"pool": pool.name, "reason": "queue_full"}
        )
        assert sample == 5
        b.release()

    def test_submit_after_shutdown_is_a_counted_rejection(self, pool: Any) -> None:
        pool.shutdown()
        with pytest.raises(RejectedError, match="shut") as caught:
            pool.submit(noop)
        assert caught.value.reason == "shutdown"
        assert pool.stats().rejected == 1
        assert pool.stats().submitted == 0


class TestQueueCapacityChanges:
    def test_shrinking_below_the_backlog_keeps_queued_tasks(
        self, make_pool: Any, blocker: Any, invariant: Any
    ) -> None:
        pool = make_pool(1, queue_capacity=5)
        blockers = [blocker(i) for i in range(6)]
        futures = [pool.submit(b) for b in blockers]
        assert blockers[0].started.wait(10)
        assert pool.stats().queued == 5
        pool.configure(queue_capacity=2)
        s = pool.stats()
        assert (s.queue_capacity, s.queued, s.cancelled) == (2, 5, 0)
        with pytest.raises(RejectedError):
            pool.submit(noop)
        # Drain one at a time: new work fits only once fewer than two are queued.
        for i in range(4):
            blockers[i].release()
            assert blockers[i + 1].started.wait(10)
            queued = pool.stats().queued
            assert queued == 4 - i
            if queued >= 2:
                with pytest.raises(RejectedError):
                    pool.submit(noop)
        extra = pool.submit(lambda: "room")
        assert pool.stats().queued == 2
        for b in blockers:
            b.release()
        assert [f.result(timeout=10) for f in futures] == list(range(6))
        assert extra.result(timeout=10) == "room"
        s = pool.stats()
        assert s.rejected == 4
        invariant(s)

    def test_growing_admits_more(self, make_pool: Any, blocker: Any) -> None:
        pool, b = full_pool(make_pool, blocker, "abort", capacity=1)
        pool.submit(noop)
        with pytest.raises(RejectedError):
            pool.submit(noop)
        pool.configure(queue_capacity=3)
        pool.submit(noop)
        pool.submit(noop)
        assert pool.stats().queued == 3
        pool.configure(queue_capacity=None)
        more = [pool.submit(noop) for _ in range(50)]
        b.release()
        for f in more:
            f.result(timeout=10)

    def test_switching_policy_takes_effect(self, make_pool: Any, blocker: Any) -> None:
        pool, b = full_pool(make_pool, blocker, "abort", capacity=1)
        pool.submit(noop)
        with pytest.raises(RejectedError):
            pool.submit(noop)
        pool.configure(rejection_policy="discard")
        assert pool.submit(noop).cancelled()
        assert pool.stats().rejected == 2
        b.release()


class TestQueueTimeout:
    def test_cancels_a_task_that_waited_too_long(
        self, make_pool: Any, blocker: Any, registry: CollectorRegistry, invariant: Any
    ) -> None:
        pool = make_pool(1, queue_timeout=0.05)
        b = blocker("first")
        first = pool.submit(b)
        assert b.started.wait(10)
        ran = threading.Event()
        late = pool.submit(ran.set)
        submitted = time.monotonic()
        wait_until(lambda: time.monotonic() - submitted > 0.2, message="queue timeout passes")
        b.release()
        assert first.result(timeout=10) == "first", "a started task is not subject to it"
        wait_until(late.done, message="the late task ends")
        assert late.cancelled()
        assert not ran.is_set()
        info = late.info()
        assert info.state is TaskState.CANCELLED
        assert info.started_at is None
        s = pool.stats()
        assert (s.cancelled, s.succeeded) == (1, 1)
        assert (s.queue_timeouts, s.run_timeouts) == (1, 0)
        invariant(s)
        labels = {"pool": pool.name, "kind": "queue"}
        assert registry.get_sample_value("poolwatch_tasks_timeouts_total", labels) == 1

    def test_tasks_that_start_in_time_run(self, make_pool: Any) -> None:
        pool = make_pool(2, queue_timeout=30)
        assert [f.result(timeout=10) for f in [pool.submit(pow, 3, i) for i in range(20)]] == [
            3**i for i in range(20)
        ]
        assert pool.stats().cancelled == 0


class TestRunTimeout:
    def test_marks_overdue_and_requests_cancel_without_killing(
        self, make_pool: Any, gates: Any, registry: CollectorRegistry, invariant: Any
    ) -> None:
        pool = make_pool(1, run_timeout=0.05)
        gate = gates.new()
        seen_request = threading.Event()

        def slow() -> str:
            gate.wait()
            ctx = current_task()
            assert ctx is not None
            if ctx.cancel_requested:
                seen_request.set()
            return "ran to the end"

        fut = pool.submit(slow)
        wait_until(
            lambda: fut.info().cancel_requested, message="overdue task gets a cancel request"
        )
        assert pool.stats().overdue == 1
        assert fut.running(), "a task past its run_timeout keeps running"
        labels = {"pool": pool.name, "kind": "run"}
        assert registry.get_sample_value("poolwatch_tasks_timeouts_total", labels) == 1
        gate.set()
        assert fut.result(timeout=10) == "ran to the end"
        assert seen_request.is_set()
        assert fut.info().state is TaskState.SUCCEEDED
        s = pool.stats()
        assert (s.overdue, s.succeeded) == (0, 1)
        assert (s.queue_timeouts, s.run_timeouts) == (0, 1)
        invariant(s)

    def test_task_type_timeout_applies_without_a_pool_timeout(
        self, make_pool: Any, gates: Any
    ) -> None:
        pool = make_pool(1)
        gate = gates.new()
        fut = pool.submit(overdue_task, gate)
        wait_until(lambda: fut.info().cancel_requested, message="task-type run_timeout applies")
        assert pool.stats().overdue == 1
        gate.set()
        assert fut.result(timeout=10) == "finished late"
        assert fut.info().name == "engine-tests.overdue"

    def test_applies_to_a_task_run_by_caller_runs(
        self, make_pool: Any, blocker: Any, registry: CollectorRegistry
    ) -> None:
        pool = make_pool(1, queue_capacity=1, rejection_policy="caller_runs", run_timeout=0.05)
        b = blocker()
        pool.submit(b)
        assert b.started.wait(10)
        queued = pool.submit(noop)
        seen: list[tuple[bool, int]] = []

        def slow() -> None:
            ctx = current_task()
            assert ctx is not None
            until = time.monotonic() + 10
            pause = threading.Event()
            while not ctx.cancel_requested and time.monotonic() < until:
                pause.wait(0.005)
            seen.append((ctx.cancel_requested, pool.stats().overdue))
            ctx.raise_if_cancel_requested()

        fut = pool.submit(slow)  # the queue is full: runs here, in this thread
        # Overdue with it: the worker's task, which started earlier.
        assert seen == [(True, 2)], "the caller's task was flagged overdue"
        assert fut.cancelled()
        assert fut.info().state is TaskState.CANCELLED
        labels = {"pool": pool.name, "kind": "run"}
        assert registry.get_sample_value("poolwatch_tasks_timeouts_total", labels) == 2
        assert pool.stats().overdue == 1
        b.release()
        queued.result(timeout=10)

    def test_quick_tasks_are_never_overdue(self, make_pool: Any) -> None:
        pool = make_pool(2, run_timeout=30)
        futures = [pool.submit(noop) for _ in range(20)]
        for f in futures:
            f.result(timeout=10)
        assert not any(f.info().cancel_requested for f in futures)
        assert pool.stats().overdue == 0


class TestTimeoutChanges:
    def test_run_timeout_set_while_a_task_runs(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(1)
        b = blocker("done")
        fut = pool.submit(b)
        assert b.started.wait(10)
        pool.configure(run_timeout=0.05)
        wait_until(lambda: fut.info().cancel_requested, message="a new run_timeout applies at once")
        assert pool.stats().overdue == 1
        b.release()
        assert fut.result(timeout=10) == "done"

    def test_queue_timeout_set_while_tasks_wait(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(1)
        b = blocker()
        pool.submit(b)
        assert b.started.wait(10)
        waiting = pool.submit(noop)
        pool.configure(queue_timeout=0.05)
        wait_until(waiting.cancelled, message="a new queue_timeout applies to waiting tasks")
        b.release()

    def test_queue_timeout_applies_while_paused(self, make_pool: Any) -> None:
        pool = make_pool(1, queue_timeout=0.05)
        pool.pause()
        fut = pool.submit(noop)
        wait_until(fut.cancelled, message="a paused pool still times out its queue")
        assert pool.stats().queued == 0
        assert pool.stats().cancelled == 1


class TestSubmitManyOnABoundedQueue:
    def test_abort_refuses_a_batch_that_does_not_fit_whole(
        self, make_pool: Any, blocker: Any, invariant: Any
    ) -> None:
        pool, b = full_pool(make_pool, blocker, "abort", capacity=3)
        pool.submit(noop)
        with pytest.raises(RejectedError):
            pool.submit_many(noop, [()] * 3)
        s = pool.stats()
        assert (s.queued, s.submitted) == (1, 2), "nothing of a refused batch is queued"
        assert s.rejected >= 1
        assert len(pool.submit_many(noop, [()] * 2)) == 2
        b.release()
        invariant(pool.stats())

    @pytest.mark.parametrize("policy", ["abort", "caller_runs", "discard", "discard_oldest"])
    def test_empty_batch_on_a_full_queue(self, make_pool: Any, blocker: Any, policy: str) -> None:
        pool, b = full_pool(make_pool, blocker, policy, capacity=2)
        pool.submit_many(noop, [(), ()])
        for capacity in (2, 1):  # full, then holding more than it now may
            pool.configure(queue_capacity=capacity)
            assert pool.submit_many(noop, []) == []
            assert pool.submit_many(noop, iter(())) == []
        s = pool.stats()
        assert (s.submitted, s.queued, s.rejected) == (3, 2, 0)
        b.release()
        pool.shutdown(wait=True)
        with pytest.raises(RejectedError, match="after shutdown"):
            pool.submit_many(noop, [])

    def test_discard_applies_task_by_task(self, make_pool: Any, blocker: Any) -> None:
        pool, b = full_pool(make_pool, blocker, "discard", capacity=2)
        futures = pool.submit_many(noop, [()] * 5)
        assert [f.cancelled() for f in futures] == [False, False, True, True, True]
        assert pool.stats().rejected == 3
        b.release()
        for f in futures[:2]:
            f.result(timeout=10)
