"""Futures the engine resolves on its own wake their waiters and run their callbacks.

A task can end without running: cancelled by id, discarded for the oldest policy,
timed out in the queue, or cancelled by shutdown. Each path must behave like
``Future.cancel()``: waiters in ``wait()`` and ``as_completed()`` wake, ``result()``
raises ``CancelledError``, and every done callback runs exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, as_completed, wait
from typing import Any

import pytest

from support import wait_until


def noop() -> None:
    return None


class Watched:
    """A future with a thread blocked in ``wait()`` on it and a counting callback."""

    def __init__(self, fut: Future[Any]) -> None:
        self.fut = fut
        self.calls = 0
        self._lock = threading.Lock()
        self.in_wait = threading.Event()
        self.woke: list[bool] = []
        fut.add_done_callback(self._count)
        self._thread = threading.Thread(target=self._wait)
        self._thread.start()

    def _count(self, _: Future[Any]) -> None:
        with self._lock:
            self.calls += 1

    def _wait(self) -> None:
        self.in_wait.set()
        done, _ = wait([self.fut], timeout=10)
        self.woke.append(self.fut in done)

    def check_cancelled(self) -> None:
        self._thread.join(10)
        assert self.woke == [True], "a thread waiting on the future was not woken"
        assert self.fut.cancelled()
        with pytest.raises(CancelledError):
            self.fut.result(timeout=0)
        wait_until(lambda: self.calls >= 1, timeout=5, message="done callback ran")
        assert self.calls == 1


def _one_queued(make_pool: Any, blocker: Any, **options: Any) -> tuple[Any, Any, Watched]:
    pool = make_pool(1, **options)
    b = blocker()
    pool.submit(b)
    assert b.started.wait(10)
    watched = Watched(pool.submit(noop))
    assert watched.in_wait.wait(10)
    return pool, b, watched


def test_cancel_by_id(make_pool: Any, blocker: Any) -> None:
    pool, b, watched = _one_queued(make_pool, blocker)
    assert pool.cancel(watched.fut.task_id) == "cancelled"  # type: ignore[attr-defined]
    watched.check_cancelled()
    b.release()


def test_discard_oldest(make_pool: Any, blocker: Any) -> None:
    pool, b, watched = _one_queued(
        make_pool, blocker, queue_capacity=1, rejection_policy="discard_oldest"
    )
    newest = pool.submit(lambda: "newest")
    watched.check_cancelled()
    b.release()
    assert newest.result(timeout=10) == "newest"


def test_queue_timeout(make_pool: Any, blocker: Any) -> None:
    _, b, watched = _one_queued(make_pool, blocker, queue_timeout=0.05)
    watched.check_cancelled()
    b.release()


def test_shutdown_cancel_futures(make_pool: Any, blocker: Any) -> None:
    pool, b, watched = _one_queued(make_pool, blocker)
    pool.shutdown(wait=False, cancel_futures=True)
    watched.check_cancelled()
    b.release()


def test_remove_pool_cancel_futures(make_pool: Any, manager: Any, blocker: Any) -> None:
    pool, b, watched = _one_queued(make_pool, blocker)
    manager.remove_pool(pool.name, wait=False, cancel_futures=True)
    watched.check_cancelled()
    b.release()


def test_future_cancel(make_pool: Any, blocker: Any) -> None:
    _, b, watched = _one_queued(make_pool, blocker)
    assert watched.fut.cancel()
    watched.check_cancelled()
    b.release()


@pytest.mark.parametrize(
    "end",
    [
        lambda pool, fut: pool.cancel(fut.task_id),
        lambda pool, fut: pool.shutdown(wait=False, cancel_futures=True),
    ],
    ids=["cancel_by_id", "shutdown"],
)
def test_as_completed_sees_engine_cancellations(
    make_pool: Any, blocker: Any, end: Callable[[Any, Any], Any]
) -> None:
    pool = make_pool(1)
    b = blocker("ran")
    running = pool.submit(b)
    assert b.started.wait(10)
    queued = pool.submit(noop)
    seen: list[Future[Any]] = []
    waiting = threading.Event()

    def consume() -> None:
        iterator = as_completed([queued, running], timeout=10)
        waiting.set()
        seen.extend(iterator)

    t = threading.Thread(target=consume)
    t.start()
    assert waiting.wait(10)
    end(pool, queued)
    wait_until(lambda: len(seen) == 1, message="as_completed yields the cancelled future")
    assert seen == [queued]
    b.release()
    t.join(10)
    assert seen == [queued, running]


@pytest.mark.usefixtures("fast_thread_switching")
def test_waiting_on_many_futures_while_they_finish_and_get_cancelled(make_pool: Any) -> None:
    """``wait()`` on several pending futures locks each in turn; nothing may deadlock or
    miss an ending while workers finish tasks and other threads cancel them."""
    pool = make_pool(3)
    start = threading.Barrier(4)
    problems: list[str] = []

    def waiter(n: int) -> None:
        start.wait()
        for _ in range(150):
            batch = [pool.submit(pow, n, 2) for _ in range(4)]
            batch[n % 4].cancel()
            _, not_done = wait(batch, timeout=10)
            if not_done:
                problems.append(f"waiter {n}: {len(not_done)} futures never ended")
                return
            for fut in as_completed(batch, timeout=10):
                if not fut.cancelled() and fut.result() != n * n:
                    problems.append(f"waiter {n}: wrong result {fut.result()}")

    threads = [threading.Thread(target=waiter, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a waiter is stuck"
    assert problems == []
    s = pool.stats()
    assert s.submitted == 4 * 150 * 4
    assert s.succeeded + s.cancelled == s.submitted
