"""Many threads driving one pool at once, then an exact reconciliation of the books.

Each round runs thousands of operations (submit, cancel by future and by id, resize,
change capacity, pause and resume, and a shutdown racing the rest) from several
threads, then checks that every future ended and that ``stats()`` and the task records
agree with the futures' outcomes one for one.
"""

from __future__ import annotations

import contextlib
import random
import threading
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

import pytest

from poolwatch import PoolState, RejectedError, TaskCancelledError, TaskState, current_task
from support import wait_until

THREADS = 6
OPS_PER_THREAD = 500

pytestmark = pytest.mark.usefixtures("fast_thread_switching")


@dataclass
class Ledger:
    """What one driver thread did, merged at the end."""

    futures: list[Future[Any]] = field(default_factory=list)
    rejected_full: int = 0
    rejected_shutdown: int = 0
    errors: list[BaseException] = field(default_factory=list)


def work(kind: int, hold: threading.Event) -> int:
    if kind == 0:
        raise ValueError("planned failure")
    if kind == 1:
        # Blocks until the hold opens; honours cooperative cancel once it does.
        hold.wait()
        ctx = current_task()
        if ctx is not None:
            ctx.raise_if_cancel_requested()
    return kind


def drive(
    pool: Any,
    seed: int,
    hold: threading.Event,
    start: threading.Barrier,
    ledger: Ledger,
    *,
    closer: bool,
) -> None:
    rng = random.Random(seed)
    start.wait()
    try:
        for i in range(OPS_PER_THREAD):
            if closer and i == OPS_PER_THREAD // 2:
                hold.set()
            if closer and i == OPS_PER_THREAD - 40:
                pool.shutdown(wait=False, cancel_futures=rng.random() < 0.5)
            op = rng.random()
            if op < 0.60:
                try:
                    ledger.futures.append(pool.submit(work, rng.randrange(6), hold))
                except RejectedError as exc:
                    if exc.reason == "shutdown":
                        ledger.rejected_shutdown += 1
                    else:
                        ledger.rejected_full += 1
            elif op < 0.72 and ledger.futures:
                rng.choice(ledger.futures).cancel()
            elif op < 0.82 and ledger.futures:
                result = pool.cancel(rng.choice(ledger.futures).task_id)
                assert result in {"cancelled", "requested", "finished"}
            elif op < 0.88:
                pool.configure(max_workers=rng.randint(1, 4))
            elif op < 0.93:
                pool.configure(queue_capacity=rng.choice([None, 1, 3, 10, 40]))
            elif op < 0.965:
                pool.pause()
            else:
                pool.resume()
    except BaseException as exc:  # reported by the test, not lost in the thread
        if not isinstance(exc, RuntimeError) or pool.state not in {
            PoolState.SHUTTING_DOWN,
            PoolState.TERMINATED,
        }:
            ledger.errors.append(exc)


def outcome(fut: Future[Any]) -> TaskState:
    if fut.cancelled():
        return TaskState.CANCELLED
    try:
        exc = fut.exception(timeout=0)
    except CancelledError:
        return TaskState.CANCELLED
    if exc is None:
        return TaskState.SUCCEEDED
    if isinstance(exc, TaskCancelledError):
        return TaskState.CANCELLED
    return TaskState.FAILED


@pytest.mark.parametrize("seed", range(12))
def test_storm_then_exact_reconciliation(
    make_pool: Any, manager: Any, gates: Any, invariant: Any, seed: int
) -> None:
    pool = make_pool(3, queue_capacity=25, history_size=THREADS * OPS_PER_THREAD + 10)
    hold = gates.new()
    start = threading.Barrier(THREADS)
    ledgers = [Ledger() for _ in range(THREADS)]
    threads = [
        threading.Thread(
            target=drive,
            args=(pool, seed * 100 + n, hold, start, ledgers[n]),
            kwargs={"closer": n == 0},
            name=f"driver-{n}",
        )
        for n in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    errors = [e for ledger in ledgers for e in ledger.errors]
    assert not errors, errors

    # Whatever state the storm left, the pool must drain: resuming a pool that is
    # shutting down is refused or harmless, and shutdown(wait=True) finishes the rest.
    with contextlib.suppress(RuntimeError):
        pool.resume()
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True})
    closer.start()
    closer.join(20)
    assert not closer.is_alive(), f"shutdown(wait=True) does not return; {pool.stats()}"
    assert pool.state is PoolState.TERMINATED

    futures = [f for ledger in ledgers for f in ledger.futures]
    assert all(f.done() for f in futures), "shutdown(wait=True) returned with futures pending"
    counts = dict.fromkeys(TaskState, 0)
    for f in futures:
        counts[outcome(f)] += 1
    rejected = sum(ledger.rejected_full + ledger.rejected_shutdown for ledger in ledgers)

    s = pool.stats()
    invariant(s)
    assert (s.queued, s.active, s.workers) == (0, 0, 0)
    assert s.submitted == len(futures)
    assert s.succeeded == counts[TaskState.SUCCEEDED]
    assert s.failed == counts[TaskState.FAILED]
    assert s.cancelled == counts[TaskState.CANCELLED]
    assert s.rejected == rejected
    assert len({f.task_id for f in futures}) == len(futures)  # type: ignore[attr-defined]

    # The records agree with the futures one for one.
    for f in futures:
        assert manager.get_task(f.task_id).state is outcome(f), f.task_id  # type: ignore[attr-defined]
    for state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED):
        assert manager.tasks(pool=pool.name, state=state).total == counts[state]
    assert manager.tasks(pool=pool.name, state=TaskState.QUEUED).total == 0
    assert manager.tasks(pool=pool.name, state=TaskState.RUNNING).total == 0


@pytest.mark.parametrize("policy", ["discard", "discard_oldest", "caller_runs"])
def test_policies_under_contention(make_pool: Any, gates: Any, invariant: Any, policy: str) -> None:
    pool = make_pool(2, queue_capacity=4, rejection_policy=policy)
    hold = gates.new()
    start = threading.Barrier(4)
    results: list[list[Future[Any]]] = [[] for _ in range(4)]

    def submitter(n: int) -> None:
        rng = random.Random(n)
        start.wait()
        for _ in range(300):
            results[n].append(pool.submit(work, rng.randrange(1, 6), hold))

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    # Hold the blocking tasks until the queue has overflowed at least once; with
    # caller_runs the submitters themselves may be the ones waiting on the hold.
    wait_until(
        lambda: pool.stats().rejected > 0 or not any(t.is_alive() for t in threads),
        message="the queue overflows",
    )
    hold.set()
    for t in threads:
        t.join(30)
    futures = [f for batch in results for f in batch]
    assert len(futures) == 1200
    for f in futures:
        wait_until(f.done, message=f"{policy}: every future ends")
    pool.shutdown(wait=True)
    s = pool.stats()
    invariant(s)
    succeeded = sum(1 for f in futures if outcome(f) is TaskState.SUCCEEDED)
    cancelled = sum(1 for f in futures if outcome(f) is TaskState.CANCELLED)
    assert succeeded + cancelled == 1200
    assert s.rejected > 0, "the storm never filled the queue; the test proves nothing"
    assert s.failed == 0
    if policy == "caller_runs":
        assert cancelled == 0
        assert s.succeeded >= 1200 - s.rejected
    elif policy == "discard":
        # A discarded task was refused: it is counted as rejected, never as submitted.
        assert s.rejected == cancelled
        assert (s.submitted, s.succeeded, s.cancelled) == (1200 - cancelled, succeeded, 0)
    else:
        # Each refusal cancels the oldest queued task, which had been submitted.
        assert s.rejected == cancelled
        assert (s.submitted, s.succeeded, s.cancelled) == (1200, succeeded, cancelled)


def _race_cancels(pool: Any, target: Any, *, racers: int) -> list[Any]:
    """Cancel ``target`` from ``racers`` threads at once, by future and by id in turn."""
    start = threading.Barrier(racers)
    answers: list[Any] = []
    lock = threading.Lock()

    def race(n: int) -> None:
        start.wait()
        answer = target.cancel() if n % 2 else pool.cancel(target.task_id)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return answers


def test_concurrent_cancel_of_the_same_task(make_pool: Any, blocker: Any) -> None:
    """Exactly one of many racing cancels of one queued task reports ``"cancelled"``."""
    for _ in range(30):
        pool = make_pool(1)
        b = blocker()
        pool.submit(b)
        assert b.started.wait(10)
        target = pool.submit(lambda: None)
        answers = _race_cancels(pool, target, racers=8)
        wins = answers.count("cancelled")
        # Future.cancel() answers True when the future is (already) cancelled.
        assert wins <= 1
        assert target.cancelled()
        assert pool.stats().cancelled == 1
        b.release()
        pool.shutdown(wait=True)
        assert pool.stats().cancelled == 1


def test_many_submitters_count_exactly(make_pool: Any, invariant: Any) -> None:
    pool = make_pool(4)
    start = threading.Barrier(8)
    per_thread = 500
    futures: list[list[Future[Any]]] = [[] for _ in range(8)]

    def submit_all(n: int) -> None:
        start.wait()
        futures[n].extend(pool.submit(pow, n, 2) for _ in range(per_thread // 2))
        futures[n].extend(pool.submit_many(pow, [(n, 2)] * (per_thread // 2)))

    threads = [threading.Thread(target=submit_all, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for n, batch in enumerate(futures):
        assert len(batch) == per_thread
        assert all(f.result(timeout=10) == n * n for f in batch)
    s = pool.stats()
    assert (s.submitted, s.succeeded) == (8 * per_thread, 8 * per_thread)
    invariant(s)
