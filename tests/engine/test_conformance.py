"""Executor conformance: every test runs against ``ThreadPoolExecutor`` and ``ManagedPool``.

The stdlib executor is the reference. A test here that passes for ``thread`` and fails
for ``managed`` is a place where code written for ``ThreadPoolExecutor`` would break.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    CancelledError,
    Future,
    as_completed,
    wait,
)
from typing import Any

import pytest

from support import wait_until


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


class TestSubmit:
    def test_result(self, executor_factory: Any) -> None:
        ex = executor_factory(2)
        fut = ex.submit(pow, 2, 10)
        assert isinstance(fut, Future)
        assert fut.result(timeout=10) == 1024
        assert fut.done()
        assert not fut.cancelled()
        assert fut.exception() is None

    def test_args_and_kwargs(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        fut = ex.submit(lambda *a, **kw: (a, kw), 1, 2, x=3)
        assert fut.result(timeout=10) == ((1, 2), {"x": 3})

    def test_exception_reraised_from_result_and_exception(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        error = ValueError("boom")

        def raise_it() -> None:
            raise error

        fut = ex.submit(raise_it)
        with pytest.raises(ValueError, match="boom") as caught:
            fut.result(timeout=10)
        assert caught.value is error
        assert fut.exception(timeout=10) is error
        assert fut.done()
        assert not fut.cancelled()

    def test_result_returned_by_identity(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        obj = object()
        big = list(range(1000))
        assert ex.submit(lambda: obj).result(timeout=10) is obj
        assert ex.submit(lambda: big).result(timeout=10) is big

    def test_kwargs_named_fn_and_self(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        fut = ex.submit(lambda **kw: kw, fn=1, self=2)
        assert fut.result(timeout=10) == {"fn": 1, "self": 2}

    def test_fn_is_positional_only(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        with pytest.raises(TypeError):
            ex.submit(fn=square)  # type: ignore[call-arg]

    def test_result_timeout(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(1)
        b = blocker("late")
        fut = ex.submit(b)
        with pytest.raises(TimeoutError):
            fut.result(timeout=0.01)
        b.release()
        assert fut.result(timeout=10) == "late"

    def test_submit_from_inside_a_task(self, executor_factory: Any) -> None:
        ex = executor_factory(2)

        def outer() -> Future[int]:
            return ex.submit(square, 7)

        inner = ex.submit(outer).result(timeout=10)
        assert inner.result(timeout=10) == 49

    def test_task_waits_on_a_task_it_submitted(self, executor_factory: Any) -> None:
        ex = executor_factory(2)

        def outer() -> int:
            return ex.submit(square, 5).result(timeout=10) + 1

        assert ex.submit(outer).result(timeout=10) == 26


class TestReferences:
    def test_arguments_released_while_the_future_is_kept(self, executor_factory: Any) -> None:
        class Arg:
            pass

        ex = executor_factory(1)
        arg = Arg()
        ref = weakref.ref(arg)
        fut = ex.submit(id, arg)
        assert fut.result(timeout=10) == id(arg)
        del arg

        def gone() -> bool:
            gc.collect()
            return ref() is None

        wait_until(gone, message="the executor let go of the task's argument")
        assert fut.done()


class TestMap:
    def test_order_is_input_order(self, executor_factory: Any) -> None:
        ex = executor_factory(4)
        assert list(ex.map(square, range(200))) == [x * x for x in range(200)]

    def test_order_holds_when_completion_order_is_reversed(
        self, executor_factory: Any, gates: Any
    ) -> None:
        ex = executor_factory(4)
        events = gates.many(4)
        finished: list[int] = []
        lock = threading.Lock()

        def step(i: int) -> int:
            events[i].wait()
            with lock:
                finished.append(i)
            if i > 0:
                events[i - 1].set()
            return i * 10

        results = ex.map(step, range(4))
        events[3].set()
        assert list(results) == [0, 10, 20, 30]
        assert finished == [3, 2, 1, 0]

    def test_several_iterables_of_unequal_length(self, executor_factory: Any) -> None:
        ex = executor_factory(2)
        assert list(ex.map(pow, [2, 3, 4], [5, 6])) == [32, 729]
        assert list(ex.map(lambda *xs: sum(xs), [1, 2, 3], [10, 20, 30, 40], [100])) == [111]

    def test_empty_iterable(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        assert list(ex.map(square, [])) == []

    def test_exception_raised_when_its_result_is_reached(self, executor_factory: Any) -> None:
        ex = executor_factory(2)

        def maybe_fail(x: int) -> int:
            if x == 2:
                raise ValueError("two")
            return x

        results = ex.map(maybe_fail, range(4))
        assert next(results) == 0
        assert next(results) == 1
        with pytest.raises(ValueError, match="two"):
            next(results)

    def test_timeout_raises_timeout_error(self, executor_factory: Any, gates: Any) -> None:
        ex = executor_factory(2)
        gate = gates.new()

        def gated(x: int) -> int:
            if x == 1:
                gate.wait()
            return x

        results = ex.map(gated, range(3), timeout=0.05)
        try:
            assert next(results) == 0
            with pytest.raises(TimeoutError):
                next(results)
        finally:
            gate.set()

    def test_chunksize_is_ignored_for_threads(self, executor_factory: Any) -> None:
        ex = executor_factory(3)
        assert list(ex.map(square, range(10), chunksize=4)) == [x * x for x in range(10)]
        assert list(ex.map(square, range(10), chunksize=1000)) == [x * x for x in range(10)]

    def test_map_is_submitted_eagerly(self, executor_factory: Any, gates: Any) -> None:
        ex = executor_factory(3)
        started = threading.Semaphore(0)
        gate = gates.new()

        def record(x: int) -> int:
            started.release()
            gate.wait()
            return x

        results = ex.map(record, range(3))
        # All three start although nothing has been consumed from the iterator yet.
        for _ in range(3):
            assert started.acquire(timeout=10)
        gate.set()
        assert list(results) == [0, 1, 2]


class TestWait:
    def test_first_completed(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(3)
        b1, b2 = blocker(1), blocker(2)
        slow = [ex.submit(b1), ex.submit(b2)]
        quick = ex.submit(square, 3)
        done, not_done = wait([*slow, quick], timeout=10, return_when=FIRST_COMPLETED)
        assert quick in done
        assert set(slow) <= not_done
        b1.release()
        b2.release()

    def test_first_exception(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(3)
        b = blocker()
        slow = ex.submit(b)
        ok = ex.submit(square, 2)
        assert ok.result(timeout=10) == 4
        bad = ex.submit(fail, "first")
        done, not_done = wait([slow, ok, bad], timeout=10, return_when=FIRST_EXCEPTION)
        assert {ok, bad} <= done
        assert not_done == {slow}
        b.release()

    def test_first_exception_without_exceptions_waits_for_all(self, executor_factory: Any) -> None:
        ex = executor_factory(2)
        futures = [ex.submit(square, i) for i in range(5)]
        done, not_done = wait(futures, timeout=10, return_when=FIRST_EXCEPTION)
        assert done == set(futures)
        assert not not_done

    def test_all_completed(self, executor_factory: Any) -> None:
        ex = executor_factory(2)
        futures = [ex.submit(square, i) for i in range(10)]
        futures.append(ex.submit(fail, "x"))
        done, not_done = wait(futures, timeout=10, return_when=ALL_COMPLETED)
        assert done == set(futures)
        assert not not_done

    def test_timeout_returns_not_done(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(1)
        b = blocker()
        fut = ex.submit(b)
        done, not_done = wait([fut], timeout=0.02)
        assert not done
        assert not_done == {fut}
        b.release()


class TestAsCompleted:
    def test_yields_in_completion_order(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(3)
        blockers = [blocker(i) for i in range(3)]
        futures = [ex.submit(b) for b in blockers]
        order = [2, 0, 1]
        seen: list[int] = []
        iterator = as_completed(futures, timeout=10)
        for i in order:
            blockers[i].release()
            seen.append(next(iterator).result())
        assert seen == order
        with pytest.raises(StopIteration):
            next(iterator)

    def test_already_done_futures_come_first(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(2)
        done = ex.submit(square, 4)
        assert done.result(timeout=10) == 16
        b = blocker()
        pending = ex.submit(b)
        iterator = as_completed([pending, done], timeout=10)
        assert next(iterator) is done
        b.release()
        assert next(iterator) is pending

    def test_timeout(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(2)
        quick = ex.submit(square, 2)
        b = blocker()
        slow = ex.submit(b)
        iterator = as_completed([quick, slow], timeout=0.05)
        assert next(iterator) is quick
        with pytest.raises(TimeoutError):
            next(iterator)
        b.release()


class TestCallbacks:
    def test_called_once_with_the_future(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(1)
        b = blocker("v")
        fut = ex.submit(b)
        calls: list[Future[Any]] = []
        called = threading.Event()

        def callback(f: Future[Any]) -> None:
            calls.append(f)
            called.set()

        fut.add_done_callback(callback)
        assert calls == []
        b.release()
        assert called.wait(10)
        assert fut.result(timeout=10) == "v"
        # A second task completing must not call the first task's callback again.
        ex.submit(square, 1).result(timeout=10)
        assert calls == [fut]

    def test_called_immediately_when_already_done(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        fut = ex.submit(square, 3)
        fut.result(timeout=10)
        caller: list[threading.Thread] = []
        fut.add_done_callback(lambda f: caller.append(threading.current_thread()))
        assert caller == [threading.current_thread()]

    def test_raising_callback_is_logged_not_raised(
        self, executor_factory: Any, blocker: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        ex = executor_factory(1)
        b = blocker(5)
        fut = ex.submit(b)
        after = threading.Event()

        def bad(f: Future[Any]) -> None:
            raise RuntimeError("callback exploded")

        with caplog.at_level(logging.ERROR):
            fut.add_done_callback(bad)
            fut.add_done_callback(lambda f: after.set())
            b.release()
            assert after.wait(10), "a raising callback must not stop later callbacks"
            assert fut.result(timeout=10) == 5
            # Already done: add_done_callback calls it at once and must still not raise.
            fut.add_done_callback(bad)
            wait_until(
                lambda: sum(_mentions_failure(r) for r in caplog.records) >= 2,
                timeout=5,
                message="both callback failures logged",
            )
        # The pool keeps working afterwards.
        assert ex.submit(square, 6).result(timeout=10) == 36


def _mentions_failure(record: logging.LogRecord) -> bool:
    if "callback exploded" in record.getMessage():
        return True
    return bool(record.exc_info and "callback exploded" in str(record.exc_info[1]))


class TestCancel:
    def test_cancel_queued_future(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(1)
        b = blocker()
        running = ex.submit(b)
        assert b.started.wait(10)
        ran = threading.Event()
        queued = ex.submit(ran.set)
        assert queued.cancel() is True
        assert queued.cancelled()
        assert queued.done()
        with pytest.raises(CancelledError):
            queued.result(timeout=10)
        with pytest.raises(CancelledError):
            queued.exception(timeout=10)
        b.release()
        running.result(timeout=10)
        # Later work still runs, the cancelled one never does.
        assert ex.submit(square, 2).result(timeout=10) == 4
        assert not ran.is_set()

    def test_cancel_running_future_returns_false(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(1)
        b = blocker("done")
        fut = ex.submit(b)
        assert b.started.wait(10)
        assert fut.running()
        assert fut.cancel() is False
        assert not fut.cancelled()
        b.release()
        assert fut.result(timeout=10) == "done"

    def test_cancel_done_future_returns_false(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        fut = ex.submit(square, 2)
        fut.result(timeout=10)
        assert fut.cancel() is False
        assert fut.result() == 4


class TestShutdown:
    def test_wait_true_waits_for_running_and_queued(
        self, executor_factory: Any, blocker: Any
    ) -> None:
        ex = executor_factory(1)
        b = blocker("first")
        first = ex.submit(b)
        assert b.started.wait(10)
        rest = [ex.submit(square, i) for i in range(5)]
        observed: list[bool] = []

        def shut() -> None:
            ex.shutdown(wait=True)
            observed.append(first.done() and all(f.done() for f in rest))

        closer = threading.Thread(target=shut)
        closer.start()
        closer.join(0.05)
        assert closer.is_alive(), "shutdown(wait=True) returned while a task was running"
        b.release()
        closer.join(10)
        assert not closer.is_alive()
        assert observed == [True]
        assert first.result() == "first"
        assert [f.result() for f in rest] == [i * i for i in range(5)]

    def test_wait_false_returns_at_once(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(1)
        b = blocker("still ran")
        fut = ex.submit(b)
        assert b.started.wait(10)
        queued = ex.submit(square, 3)
        ex.shutdown(wait=False)
        assert not fut.done()
        b.release()
        assert fut.result(timeout=10) == "still ran"
        assert queued.result(timeout=10) == 9

    def test_cancel_futures_cancels_queued(self, executor_factory: Any, blocker: Any) -> None:
        ex = executor_factory(1)
        b = blocker("ran")
        running = ex.submit(b)
        assert b.started.wait(10)
        queued = [ex.submit(square, i) for i in range(4)]
        ex.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in queued)
        b.release()
        assert running.result(timeout=10) == "ran"

    def test_submit_after_shutdown_raises_runtime_error(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        ex.shutdown(wait=True)
        with pytest.raises(RuntimeError, match=r"(?i)after shutdown|shut down"):
            ex.submit(square, 1)

    def test_map_after_shutdown_raises_runtime_error(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        ex.shutdown(wait=True)
        with pytest.raises(RuntimeError):
            ex.map(square, [1, 2])

    def test_shutdown_twice_is_harmless(self, executor_factory: Any) -> None:
        ex = executor_factory(2)
        fut = ex.submit(square, 3)
        ex.shutdown(wait=True)
        ex.shutdown(wait=True)
        ex.shutdown(wait=False, cancel_futures=True)
        assert fut.result() == 9

    def test_context_manager_shuts_down(self, executor_factory: Any) -> None:
        ex = executor_factory(2)
        with ex as entered:
            assert entered is ex
            futures = [ex.submit(square, i) for i in range(10)]
        assert all(f.done() for f in futures)
        assert [f.result() for f in futures] == [i * i for i in range(10)]
        with pytest.raises(RuntimeError):
            ex.submit(square, 1)

    def test_context_manager_does_not_swallow_exceptions(self, executor_factory: Any) -> None:
        ex = executor_factory(1)
        with pytest.raises(KeyError), ex:
            raise KeyError("inside")
        with pytest.raises(RuntimeError):
            ex.submit(square, 1)


@pytest.mark.usefixtures("fast_thread_switching")
class TestNoLostWakeups:
    """Waiting on a future just as it completes must never miss the completion."""

    @pytest.mark.parametrize("how", ["result", "wait", "as_completed", "callback"])
    def test_waiting_races_completion(self, executor_factory: Any, how: str) -> None:
        ex = executor_factory(2)
        start = threading.Barrier(3)
        missed: list[int] = []

        def waiter(n: int) -> None:
            start.wait()
            for i in range(300):
                fut = ex.submit(square, i)
                if not _waits_for(fut, how, timeout=5):
                    missed.append(i)
                    return

        threads = [threading.Thread(target=waiter, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert missed == []


def _waits_for(fut: Future[Any], how: str, *, timeout: float) -> bool:
    """Wait for ``fut`` in one of the stdlib's ways; whether it was seen to complete."""
    if how == "result":
        try:
            fut.result(timeout=timeout)
        except TimeoutError:
            return False
        return True
    if how == "wait":
        done, _ = wait([fut], timeout=timeout)
        return fut in done
    if how == "as_completed":
        try:
            return list(as_completed([fut], timeout=timeout)) == [fut]
        except TimeoutError:
            return False
    called = threading.Event()
    fut.add_done_callback(lambda f: called.set())
    return called.wait(timeout)
