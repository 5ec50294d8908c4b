"""Pool and task life cycles: pause and resume, cancellation, task context, shutdown."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from poolwatch import PoolState, RejectedError, TaskCancelledError, TaskState, current_task
from support import wait_until


def noop() -> None:
    return None


class TestPauseResume:
    def test_paused_pool_accepts_but_starts_nothing(self, make_pool: Any, invariant: Any) -> None:
        pool = make_pool(2, queue_capacity=3)
        pool.pause()
        assert pool.state is PoolState.PAUSED
        assert pool.stats().state is PoolState.PAUSED
        ran = threading.Semaphore(0)
        futures = [pool.submit(ran.release) for _ in range(3)]
        with pytest.raises(RejectedError):
            pool.submit(ran.release)
        s = pool.stats()
        assert (s.active, s.queued, s.submitted, s.rejected) == (0, 3, 3, 1)
        assert not any(f.running() or f.done() for f in futures)
        assert not ran.acquire(timeout=0.05), "a paused pool started a task"
        pool.resume()
        assert pool.state is PoolState.RUNNING
        for f in futures:
            f.result(timeout=10)
        s = pool.stats()
        assert (s.succeeded, s.queued) == (3, 0)
        invariant(s)

    def test_running_tasks_finish_while_paused(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(1)
        b = blocker("finished")
        running = pool.submit(b)
        assert b.started.wait(10)
        pool.pause()
        queued = pool.submit(lambda: "after resume")
        b.release()
        assert running.result(timeout=10) == "finished"
        wait_until(lambda: pool.stats().active == 0)
        assert pool.stats().queued == 1
        assert not queued.running()
        assert not queued.done()
        pool.resume()
        assert queued.result(timeout=10) == "after resume"

    def test_pause_then_cancel_queued(self, make_pool: Any) -> None:
        pool = make_pool(1)
        pool.pause()
        fut = pool.submit(noop)
        assert pool.cancel(fut.task_id) == "cancelled"
        assert fut.cancelled()
        pool.resume()
        assert pool.submit(lambda: 1).result(timeout=10) == 1
        assert pool.stats().cancelled == 1

    def test_shutdown_cancel_futures_while_paused(self, make_pool: Any) -> None:
        pool = make_pool(1)
        pool.pause()
        futures = [pool.submit(noop) for _ in range(3)]
        pool.shutdown(wait=True, cancel_futures=True)
        assert all(f.cancelled() for f in futures)
        assert pool.state is PoolState.TERMINATED

    def test_pause_after_shutdown_leaves_it_terminated(self, make_pool: Any) -> None:
        pool = make_pool(1)
        pool.shutdown()
        with contextlib.suppress(RuntimeError):
            pool.pause()
        assert pool.state is PoolState.TERMINATED


class TestCancelById:
    def test_queued_task_is_cancelled(self, make_pool: Any, blocker: Any, invariant: Any) -> None:
        pool = make_pool(1)
        b = blocker()
        pool.submit(b)
        assert b.started.wait(10)
        ran = threading.Event()
        fut = pool.submit(ran.set)
        assert pool.cancel(fut.task_id) == "cancelled"
        assert fut.cancelled()
        info = fut.info()
        assert info.state is TaskState.CANCELLED
        assert info.started_at is None
        assert info.finished_at is not None
        b.release()
        wait_until(lambda: pool.stats().active == 0)
        assert not ran.is_set()
        s = pool.stats()
        assert (s.cancelled, s.succeeded, s.queued) == (1, 1, 0)
        invariant(s)

    def test_running_task_gets_a_request(self, pool: Any, blocker: Any) -> None:
        b = blocker("ignored the request")
        fut = pool.submit(b)
        assert b.started.wait(10)
        assert pool.cancel(fut.task_id) == "requested"
        assert fut.info().cancel_requested
        assert fut.info().state is TaskState.RUNNING
        b.release()
        assert fut.result(timeout=10) == "ignored the request"
        assert fut.info().state is TaskState.SUCCEEDED
        assert fut.info().cancel_requested

    def test_finished_task(self, pool: Any) -> None:
        fut = pool.submit(noop)
        fut.result(timeout=10)
        assert pool.cancel(fut.task_id) == "finished"
        assert fut.info().state is TaskState.SUCCEEDED
        assert pool.stats().cancelled == 0

    def test_already_cancelled_task_is_finished(self, make_pool: Any) -> None:
        pool = make_pool(1)
        pool.pause()
        fut = pool.submit(noop)
        assert pool.cancel(fut.task_id) == "cancelled"
        assert pool.cancel(fut.task_id) == "finished"
        assert pool.stats().cancelled == 1

    @pytest.mark.parametrize("task_id", ["", "unknown", "x" * 100])
    def test_unknown_id(self, pool: Any, task_id: str) -> None:
        with pytest.raises(KeyError):
            pool.cancel(task_id)

    def test_id_from_another_pool_is_unknown(self, make_pool: Any) -> None:
        a, b = make_pool(1), make_pool(1)
        fut = a.submit(noop)
        fut.result(timeout=10)
        with pytest.raises(KeyError):
            b.cancel(fut.task_id)

    def test_future_cancel_is_recorded(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(1)
        b = blocker()
        pool.submit(b)
        assert b.started.wait(10)
        fut = pool.submit(noop)
        assert fut.cancel()
        assert fut.info().state is TaskState.CANCELLED
        assert pool.stats().cancelled == 1
        assert pool.stats().queued == 0
        assert pool.cancel(fut.task_id) == "finished"
        b.release()


class TestCooperativeCancel:
    def test_raise_if_cancel_requested_ends_cancelled(
        self, pool: Any, gates: Any, invariant: Any
    ) -> None:
        gate = gates.new()
        started = threading.Event()

        def cooperative() -> str:
            ctx = current_task()
            assert ctx is not None
            started.set()
            gate.wait()
            ctx.raise_if_cancel_requested()
            return "not cancelled"

        fut = pool.submit(cooperative)
        assert started.wait(10)
        assert pool.cancel(fut.task_id) == "requested"
        gate.set()
        wait_until(fut.done)
        assert fut.cancelled() or isinstance(fut.exception(), TaskCancelledError)
        info = fut.info()
        assert info.state is TaskState.CANCELLED
        assert info.cancel_requested
        assert info.error_type is None or "TaskCancelledError" in info.error_type
        s = pool.stats()
        assert (s.cancelled, s.failed) == (1, 0)
        invariant(s)

    def test_context_sees_the_request(self, pool: Any, gates: Any) -> None:
        gate = gates.new()
        ready = threading.Event()
        flags: list[bool] = []

        def watch() -> None:
            ctx = current_task()
            assert ctx is not None
            flags.append(ctx.cancel_requested)
            ready.set()
            gate.wait()
            flags.append(ctx.cancel_requested)

        fut = pool.submit(watch)
        assert ready.wait(10)
        pool.cancel(fut.task_id)
        gate.set()
        fut.result(timeout=10)
        assert flags == [False, True]

    def test_no_request_no_raise(self, pool: Any) -> None:
        def check() -> str:
            ctx = current_task()
            assert ctx is not None
            ctx.raise_if_cancel_requested()
            return "fine"

        fut = pool.submit(check)
        assert fut.result(timeout=10) == "fine"
        assert fut.info().state is TaskState.SUCCEEDED

    def test_task_cancelled_error_without_a_request_is_a_failure(self, pool: Any) -> None:
        def liar() -> None:
            raise TaskCancelledError("nobody asked")

        fut = pool.submit(liar)
        assert isinstance(fut.exception(timeout=10), TaskCancelledError)
        assert fut.info().state is TaskState.FAILED
        assert pool.stats().failed == 1
        assert pool.stats().cancelled == 0

    def test_other_error_after_a_request_is_a_failure(self, pool: Any, gates: Any) -> None:
        gate = gates.new()
        started = threading.Event()

        def crash() -> None:
            started.set()
            gate.wait()
            raise OSError("disk gone")

        fut = pool.submit(crash)
        assert started.wait(10)
        assert pool.cancel(fut.task_id) == "requested"
        gate.set()
        assert isinstance(fut.exception(timeout=10), OSError)
        assert fut.info().state is TaskState.FAILED


class TestCurrentTask:
    def test_none_outside_tasks(self, pool: Any) -> None:
        assert current_task() is None
        pool.submit(noop).result(timeout=10)
        assert current_task() is None
        seen: list[object] = []
        t = threading.Thread(target=lambda: seen.append(current_task()))
        t.start()
        t.join()
        assert seen == [None]

    def test_inside_a_task(self, pool: Any) -> None:
        fut = pool.submit(current_task)
        ctx = fut.result(timeout=10)
        assert ctx is not None
        assert ctx.task_id == fut.task_id
        assert ctx.cancel_requested is False

    def test_cleared_between_tasks_on_the_same_worker(self, make_pool: Any) -> None:
        pool = make_pool(1)
        ids = [pool.submit(lambda: current_task().task_id).result(timeout=10) for _ in range(3)]
        assert len(set(ids)) == 3

    def test_cleared_after_a_failing_task(self, make_pool: Any) -> None:
        pool = make_pool(1)
        bad = pool.submit(lambda: 1 / 0)
        bad.exception(timeout=10)
        ok = pool.submit(lambda: current_task().task_id)
        assert ok.result(timeout=10) == ok.task_id

    def test_a_task_run_by_caller_runs_inside_a_worker(self, make_pool: Any, blocker: Any) -> None:
        # A task of pool A submits to a full pool B whose policy runs the task in A's
        # worker: inside it, current_task() is B's task; after it, A's task again.
        inner = make_pool(1, queue_capacity=1, rejection_policy="caller_runs")
        gate = blocker()
        busy = inner.submit(gate)  # B's worker is busy
        assert gate.started.wait(10)
        inner.submit(noop)  # and its queue is full
        inner_pool = busy.task_id.split("-")[0]

        def outer_task() -> tuple[str, str, str]:
            nested = inner.submit(lambda: current_task().task_id)
            return current_task().task_id, nested.result(timeout=10), nested.task_id

        outer = make_pool(1)
        for _ in range(3):
            fut = outer.submit(outer_task)
            after, seen_inside, nested_id = fut.result(timeout=10)
            assert after == fut.task_id
            assert seen_inside == nested_id
            assert nested_id.split("-")[0] == inner_pool != after.split("-")[0]
        gate.release()
        assert busy.result(timeout=10) is None


class TestShutdownStates:
    def test_shutting_down_then_terminated(self, pool: Any, blocker: Any) -> None:
        b = blocker()
        fut = pool.submit(b)
        assert b.started.wait(10)
        pool.shutdown(wait=False)
        assert pool.state is PoolState.SHUTTING_DOWN
        assert pool.stats().state is PoolState.SHUTTING_DOWN
        b.release()
        fut.result(timeout=10)
        wait_until(lambda: pool.state is PoolState.TERMINATED, message="pool terminates")

    def test_idle_pool_terminates_at_once(self, pool: Any) -> None:
        pool.submit(noop).result(timeout=10)
        pool.shutdown(wait=True)
        s = pool.stats()
        assert s.state is PoolState.TERMINATED
        assert (s.workers, s.active, s.queued) == (0, 0, 0)

    def test_cancel_futures_counts_cancellations(
        self, make_pool: Any, blocker: Any, invariant: Any
    ) -> None:
        pool = make_pool(1)
        b = blocker()
        running = pool.submit(b)
        assert b.started.wait(10)
        queued = [pool.submit(noop) for _ in range(4)]
        pool.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in queued)
        assert all(f.info().state is TaskState.CANCELLED for f in queued)
        b.release()
        running.result(timeout=10)
        pool.shutdown(wait=True)
        s = pool.stats()
        assert (s.cancelled, s.succeeded, s.queued, s.active) == (4, 1, 0, 0)
        invariant(s)

    def test_configure_after_shutdown_is_refused_or_harmless(self, pool: Any) -> None:
        pool.shutdown()
        with contextlib.suppress(RuntimeError):
            pool.configure(max_workers=4)
        assert pool.state is PoolState.TERMINATED
        with pytest.raises(RuntimeError):
            pool.submit(noop)


class TestShutdownFromItsOwnTasks:
    """Waiting for a pool to end from inside it would wait forever: it raises instead."""

    @pytest.mark.parametrize("how", ["pool.shutdown", "manager.shutdown", "remove_pool"])
    def test_from_a_task_raises_and_changes_nothing(
        self, manager: Any, make_pool: Any, how: str
    ) -> None:
        pool = make_pool(2, name="own")
        other = make_pool(1, name="other")
        calls = {
            "pool.shutdown": lambda: pool.shutdown(wait=True),
            "manager.shutdown": lambda: manager.shutdown(wait=True),
            "remove_pool": lambda: manager.remove_pool("own", wait=True),
        }
        error = pool.submit(calls[how]).exception(timeout=10)
        assert isinstance(error, RuntimeError)
        assert "'own'" in str(error)
        assert "own tasks" in str(error)
        assert "wait=False" in str(error)
        assert pool.state is PoolState.RUNNING
        assert other.state is PoolState.RUNNING
        assert manager.get_pool("own") is pool
        assert pool.submit(pow, 2, 3).result(timeout=10) == 8
        pool.shutdown(wait=True)  # from outside it is fine
        assert pool.state is PoolState.TERMINATED

    def test_from_a_done_callback_in_a_worker(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(1)
        b = blocker()
        fut = pool.submit(b)
        assert b.started.wait(10)
        outcome: list[tuple[str, BaseException | None]] = []
        called = threading.Event()

        def callback(f: Any) -> None:
            try:
                pool.shutdown(wait=True)
            except RuntimeError as exc:
                outcome.append((threading.current_thread().name, exc))
            else:
                outcome.append((threading.current_thread().name, None))
            finally:
                called.set()

        fut.add_done_callback(callback)
        b.release()
        assert called.wait(10), "shutdown(wait=True) in a worker's callback hung"
        [(thread, error)] = outcome
        assert thread == b.thread_name, "the callback ran in the pool's worker"
        assert isinstance(error, RuntimeError)
        assert pool.state is PoolState.RUNNING
        assert pool.submit(pow, 2, 2).result(timeout=10) == 4

    def test_from_a_task_run_by_caller_runs(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(1, queue_capacity=1, rejection_policy="caller_runs")
        b = blocker()
        pool.submit(b)
        assert b.started.wait(10)
        queued = pool.submit(noop)
        fut = pool.submit(lambda: pool.shutdown(wait=True))
        assert fut.done(), "caller_runs ran it in this thread"
        assert isinstance(fut.exception(), RuntimeError)
        assert pool.state is PoolState.RUNNING
        b.release()
        queued.result(timeout=10)

    def test_wait_false_from_a_task_shuts_down(self, pool: Any) -> None:
        pool.submit(lambda: pool.shutdown(wait=False)).result(timeout=10)
        wait_until(lambda: pool.state is PoolState.TERMINATED, message="pool terminates")

    def test_interpreter_exit_does_not_hang(self) -> None:
        script = textwrap.dedent(
            """
            from opentelemetry.trace import NoOpTracerProvider
            from prometheus_client import CollectorRegistry
            from poolwatch import PoolManager

            m = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())

            def task():
                try:
                    m.shutdown(wait=True)
                except RuntimeError as exc:
                    print("refused:", exc, flush=True)

            m.create_pool("p", max_workers=1).submit(task)
            # The main thread ends here: the at-exit hook shuts the manager down.
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "refused: cannot wait for pool 'p'" in done.stdout


class TestPausedConfiguration:
    def test_growing_a_paused_pool_starts_nothing(self, make_pool: Any) -> None:
        pool = make_pool(1)
        pool.pause()
        ran = threading.Semaphore(0)
        futures = [pool.submit(ran.release) for _ in range(3)]
        pool.configure(max_workers=4)
        assert pool.stats().active == 0
        assert not ran.acquire(timeout=0.05), "configure started a task on a paused pool"
        pool.resume()
        for f in futures:
            f.result(timeout=10)

    def test_shutdown_wait_drains_a_paused_pool(self, make_pool: Any) -> None:
        pool = make_pool(2)
        pool.pause()
        futures = [pool.submit(pow, 2, i) for i in range(6)]
        pool.shutdown(wait=True)
        assert [f.result(timeout=0) for f in futures] == [2**i for i in range(6)]
        assert pool.state is PoolState.TERMINATED
