"""Task records: TaskInfo contents, task names, bounded history, released references."""

from __future__ import annotations

import dataclasses
import functools
import gc
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any
from unittest.mock import Mock

import pytest

from poolwatch import TaskInfo, TaskState, current_task, task
from support import wait_until

INFO_FIELDS = {
    "id",
    "pool",
    "name",
    "state",
    "submitted_at",
    "started_at",
    "finished_at",
    "queue_wait",
    "run_time",
    "error_type",
    "error_message",
    "traceback",
    "cancel_requested",
    "worker",
    "trace_id",
    "overdue_stack",
}


def noop() -> None:
    return None


def explode(message: str) -> None:
    raise LookupError(message)


@task("engine-tests.named")
def named_task(x: int) -> int:
    return x + 1


class Payload:
    """Something a weak reference can point at."""

    def describe(self) -> str:
        return "payload"


class Handler:
    """A callable object whose ``func`` has nothing to do with what it runs."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self) -> str:
        return "handled"


def task_factory(name: str, run_timeout: float | None) -> Callable[[], bool]:
    """Makes closures that share one code object and one __qualname__, named apart."""

    @task(name, run_timeout=run_timeout)
    def job() -> bool:
        # Returns whether a cancel was requested (a run timeout does that) within 10 s.
        ctx = current_task()
        assert ctx is not None
        until = time.monotonic() + (10 if run_timeout is not None else 0)
        pause = threading.Event()
        while not ctx.cancel_requested and time.monotonic() < until:
            pause.wait(0.005)
        return ctx.cancel_requested

    return job


class TestTaskInfo:
    def test_fields_are_the_contract(self, pool: Any) -> None:
        fut = pool.submit(noop)
        fut.result(timeout=10)
        info = fut.info()
        assert isinstance(info, TaskInfo)
        assert {f.name for f in dataclasses.fields(info)} == INFO_FIELDS
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.state = TaskState.FAILED

    def test_succeeded(self, pool: Any) -> None:
        before = time.time()
        fut = pool.submit(lambda: threading.current_thread().name)
        worker_name = fut.result(timeout=10)
        wait_until(lambda: fut.info().state is TaskState.SUCCEEDED)
        after = time.time()
        info = fut.info()
        assert (info.id, info.pool) == (fut.task_id, "p")
        assert info.submitted_at is not None
        assert info.started_at is not None
        assert info.finished_at is not None
        assert before <= info.submitted_at <= info.started_at <= info.finished_at <= after
        assert info.queue_wait is not None
        assert info.run_time is not None
        assert 0 <= info.queue_wait <= after - before
        assert 0 <= info.run_time <= after - before
        assert (info.error_type, info.error_message, info.traceback) == (None, None, None)
        assert info.cancel_requested is False
        assert info.worker == worker_name
        assert info.trace_id is None

    def test_queued_and_running(self, make_pool: Any, blocker: Any) -> None:
        pool = make_pool(1)
        b = blocker()
        running = pool.submit(b)
        assert b.started.wait(10)
        queued = pool.submit(noop)
        q = queued.info()
        assert q.state is TaskState.QUEUED
        assert (q.started_at, q.finished_at, q.queue_wait, q.run_time, q.worker) == (
            None,
            None,
            None,
            None,
            None,
        )
        r = running.info()
        assert r.state is TaskState.RUNNING
        assert r.started_at is not None
        assert r.finished_at is None
        assert r.queue_wait is not None
        assert r.queue_wait >= 0
        assert r.worker == b.thread_name
        b.release()
        queued.result(timeout=10)

    def test_failed(self, pool: Any) -> None:
        fut = pool.submit(explode, "no such row")
        assert isinstance(fut.exception(timeout=10), LookupError)
        wait_until(lambda: fut.info().state is TaskState.FAILED)
        info = fut.info()
        assert info.error_type is not None
        assert info.error_type.endswith("LookupError")
        assert info.error_message == "no such row"
        assert info.traceback is not None
        assert "explode" in info.traceback
        assert "LookupError" in info.traceback
        assert "no such row" in info.traceback
        assert info.finished_at is not None
        assert info.run_time is not None

    def test_traceback_is_bounded(self, pool: Any) -> None:
        fut = pool.submit(explode, "x" * 1_000_000)
        fut.exception(timeout=10)
        wait_until(lambda: fut.info().state is TaskState.FAILED)
        info = fut.info()
        assert info.traceback is not None
        assert 0 < len(info.traceback) < 100_000
        assert info.error_message is not None
        assert len(info.error_message) < 100_000

    def test_deep_traceback_is_bounded(self, pool: Any) -> None:
        def dive(n: int, step: int) -> None:
            # Alternating call sites keep the traceback printer from folding the frames.
            if n == 0:
                raise RecursionError("bottom")
            if step:
                dive(n - 1, 0)
            else:
                dive(n - 1, 1)

        fut = pool.submit(dive, 900, 0)
        error = fut.exception(timeout=10)
        assert error is not None
        full = "".join(traceback.format_exception(error))
        wait_until(lambda: fut.info().state is TaskState.FAILED)
        tb = fut.info().traceback
        assert tb is not None
        assert "RecursionError" in tb
        assert len(tb) < len(full) / 2, f"{len(tb)} characters kept of a {len(full)} traceback"

    def test_info_is_a_snapshot(self, pool: Any, blocker: Any) -> None:
        b = blocker()
        fut = pool.submit(b)
        assert b.started.wait(10)
        snapshot = fut.info()
        b.release()
        fut.result(timeout=10)
        assert snapshot.state is TaskState.RUNNING
        assert snapshot.finished_at is None


class TestTaskNames:
    def test_decorated_task_has_its_name(self, pool: Any) -> None:
        fut = pool.submit(named_task, 1)
        assert fut.result(timeout=10) == 2
        assert fut.info().name == "engine-tests.named"

    def test_default_name_is_module_and_qualname(self, pool: Any) -> None:
        def local() -> None:
            return None

        assert pool.submit(noop).info().name == f"{__name__}.noop"
        assert pool.submit(local).info().name == f"{__name__}.{local.__qualname__}"
        assert "<locals>" in local.__qualname__
        method = pool.submit(Payload().describe).info().name
        assert method == f"{__name__}.Payload.describe"

    def test_partial_is_named_after_its_function(self, pool: Any) -> None:
        fut = pool.submit(functools.partial(explode, "p"))
        fut.exception(timeout=10)
        assert fut.info().name == f"{__name__}.explode"

    def test_mock_is_named_after_its_type(self, pool: Any) -> None:
        fut = pool.submit(Mock(return_value=1))
        assert fut.result(timeout=10) == 1
        assert fut.info().name == "unittest.mock.Mock"

    def test_callable_object_is_named_after_its_class_not_its_func(self, pool: Any) -> None:
        fut = pool.submit(Handler(explode))
        assert fut.result(timeout=10) == "handled"
        assert fut.info().name == f"{__name__}.Handler"

    def test_closures_from_one_factory_keep_their_own_task_types(self, make_pool: Any) -> None:
        plain = task_factory("engine-tests.factory.plain", None)
        timed = task_factory("engine-tests.factory.timed", 0.05)
        assert plain.__code__ is timed.__code__
        assert plain.__qualname__ is timed.__qualname__
        pool = make_pool(1)
        for _ in range(2):  # the second round runs on the cached kinds
            first = pool.submit(plain)
            assert first.result(timeout=10) is False
            assert first.info().name == "engine-tests.factory.plain"
            second = pool.submit(timed)
            assert second.result(timeout=20) is True, "its own run_timeout applied"
            assert second.info().name == "engine-tests.factory.timed"
        assert pool.stats().overdue == 0


class TestHistory:
    @pytest.mark.parametrize("size", [1, 63, 64, 65, 200])
    def test_every_task_found_across_growth_and_wrap(
        self, make_pool: Any, manager: Any, size: int
    ) -> None:
        # The ring grows in steps before it is full: tasks on either side of each step and
        # of the wrap-around are found, evicted ones are not, and the counts agree.
        pool = make_pool(1, history_size=size)
        futures = [pool.submit(noop) for _ in range(2 * size + 3)]
        failed = pool.submit(explode, "last")
        failed.exception(timeout=10)
        for f in futures:
            f.result(timeout=10)
        kept = [*futures, failed][-size:]
        for f in kept:
            assert f.info().id == f.task_id
        for f in [*futures, failed][:-size]:
            with pytest.raises(KeyError):
                f.info()
        assert failed.info().error_type == "LookupError"
        page = manager.tasks(pool=pool.name, limit=size)
        assert page.total == size
        assert [t.id for t in page.items] == [f.task_id for f in reversed(kept)]

    def test_history_size_zero_keeps_no_record_and_runs_every_task(
        self, make_pool: Any, manager: Any
    ) -> None:
        pool = make_pool(2, history_size=0)
        futures = [pool.submit(noop) for _ in range(50)]
        failed = pool.submit(explode, "last")
        assert isinstance(failed.exception(timeout=10), LookupError)
        for f in futures:
            f.result(timeout=10)
        with pytest.raises(KeyError):
            futures[0].info()
        assert manager.tasks(pool=pool.name).total == 0
        s = pool.stats()
        assert (s.succeeded, s.failed, s.active) == (50, 1, 0)

    def test_task_number_zero_is_never_found(self, make_pool: Any, manager: Any) -> None:
        # The history reserves slots ahead of use; an id naming task 0 finds none of them.
        pool = make_pool(1, history_size=1000)
        fut = pool.submit(noop)
        fut.result(timeout=10)
        uid = fut.task_id.split("-")[0]
        assert manager.get_task(fut.task_id).id == fut.task_id
        with pytest.raises(KeyError):
            manager.get_task(f"{uid}-0")

    def test_bounded_with_counters_intact(self, make_pool: Any, manager: Any) -> None:
        pool = make_pool(1, history_size=5)
        futures = [pool.submit(noop) for _ in range(9)]
        futures.append(pool.submit(explode, "e"))
        futures += [pool.submit(noop) for _ in range(2)]
        for f in futures:
            f.exception(timeout=10)
        s = pool.stats()
        assert (s.submitted, s.succeeded, s.failed) == (12, 11, 1)
        page = manager.tasks(pool=pool.name, limit=100)
        assert page.total == 5
        assert [t.id for t in page.items] == [f.task_id for f in reversed(futures[-5:])]
        for f in futures[:7]:
            with pytest.raises(KeyError):
                manager.get_task(f.task_id)
        for f in futures[-5:]:
            assert manager.get_task(f.task_id).id == f.task_id

    def test_live_tasks_are_never_evicted(self, make_pool: Any, manager: Any, blocker: Any) -> None:
        pool = make_pool(2, history_size=2)
        b = blocker()
        running = pool.submit(b)
        assert b.started.wait(10)
        for f in [pool.submit(noop) for _ in range(10)]:
            f.result(timeout=10)
        assert manager.get_task(running.task_id).state is TaskState.RUNNING
        b.release()
        running.result(timeout=10)
        assert manager.get_task(running.task_id).state is TaskState.SUCCEEDED


class TestReleasedReferences:
    """A finished task keeps its record but lets go of its function, arguments and result."""

    @staticmethod
    def _gone(ref: weakref.ref[Any]) -> bool:
        gc.collect()
        return ref() is None

    def test_argument_and_function_die_while_the_future_is_kept(
        self, pool: Any, manager: Any
    ) -> None:
        class Job:
            def __call__(self, p: Payload) -> str:
                return "done"

        job, arg = Job(), Payload()
        job_ref, arg_ref = weakref.ref(job), weakref.ref(arg)
        fut = pool.submit(job, arg)
        assert fut.result(timeout=10) == "done"
        del job, arg
        wait_until(lambda: self._gone(arg_ref), message="argument released")
        wait_until(lambda: self._gone(job_ref), message="callable released")
        assert fut.result() == "done"
        assert manager.get_task(fut.task_id).state is TaskState.SUCCEEDED

    def test_result_dies_with_the_future(self, pool: Any, manager: Any) -> None:
        result_refs: list[weakref.ref[Payload]] = []

        def work() -> Payload:
            out = Payload()
            result_refs.append(weakref.ref(out))
            return out

        fut = pool.submit(work)
        assert isinstance(fut.result(timeout=10), Payload)
        task_id = fut.task_id
        del fut
        wait_until(lambda: self._gone(result_refs[0]), message="result released")
        assert manager.get_task(task_id).state is TaskState.SUCCEEDED

    def test_failed_task_releases_its_arguments(self, pool: Any, manager: Any) -> None:
        arg = Payload()
        arg_ref = weakref.ref(arg)

        def fail_with(p: Payload) -> None:
            raise ValueError("bad payload")

        fut = pool.submit(fail_with, arg)
        assert isinstance(fut.exception(timeout=10), ValueError)
        task_id = fut.task_id
        del arg, fut
        wait_until(lambda: self._gone(arg_ref), message="argument of a failed task released")
        info = manager.get_task(task_id)
        assert info.state is TaskState.FAILED
        assert info.error_message == "bad payload"

    def test_cancelled_task_releases_its_arguments(self, make_pool: Any, manager: Any) -> None:
        pool = make_pool(1)
        pool.pause()
        arg = Payload()
        arg_ref = weakref.ref(arg)
        fut = pool.submit(noop_with, arg)
        assert pool.cancel(fut.task_id) == "cancelled"
        del arg
        wait_until(lambda: self._gone(arg_ref), message="argument of a cancelled task released")
        assert fut.cancelled()
        assert manager.get_task(fut.task_id).state is TaskState.CANCELLED


def noop_with(_: object) -> None:
    return None
