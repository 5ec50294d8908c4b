"""Pool families stay consistent while instances come and go: every read sees each task
once, counters never go back, and settings reach every instance."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolManager
from support import wait_until


@pytest.fixture
def mgr() -> Iterator[PoolManager]:
    manager = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    yield manager
    manager.shutdown(wait=True, cancel_futures=True)


def churning(
    mgr: PoolManager, name: str, **settings: Any
) -> tuple[threading.Event, threading.Thread]:
    """A thread making, using and ending executors of family ``name`` until told to stop."""
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            with poolwatch.ThreadPoolExecutor(1, name, manager=mgr, **settings) as ex:
                ex.submit(abs, 1)

    thread = threading.Thread(target=churn, name="churn")
    thread.start()
    return stop, thread


def for_a_while(seconds: float, step: Callable[[], None]) -> int:
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        step()
        n += 1
    return n


@pytest.mark.usefixtures("fast_thread_switching")
def test_task_pages_list_each_task_once_while_instances_end(mgr: PoolManager) -> None:
    stop, thread = churning(mgr, "Churned", history_size=5)
    pages_with_repeats: list[list[str]] = []

    def read() -> None:
        for kw in ({"pool": "Churned"}, {}):
            page = mgr.tasks(limit=100, **kw)
            ids = [i.id for i in page.items]
            if len(ids) != len(set(ids)) or page.total != len(ids):
                pages_with_repeats.append(ids)

    try:
        with poolwatch.ThreadPoolExecutor(1, "Churned", manager=mgr, history_size=5) as ex:
            ex.submit(abs, 1).result()  # the family exists and has an archive
        n = for_a_while(2.0, read)
    finally:
        stop.set()
        thread.join()
    assert n > 1000
    assert not pages_with_repeats, (
        f"{len(pages_with_repeats)} of {n} pages: {pages_with_repeats[0]}"
    )


def task_a() -> None:
    pass


def task_b() -> None:
    pass


def task_c() -> None:
    pass


def test_task_label_series_never_change_whichever_instance_ends_first() -> None:
    mgr = PoolManager(
        registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider(), task_label_limit=2
    )
    seen: dict[str, int] = {}

    def check(step: str) -> None:
        labels = {row[0]: row[1] for row in mgr.get_pool("Capped").metrics_snapshot().labels}
        for label, count in seen.items():
            assert labels.get(label, -1) >= count, f"{step}: {label} went from {count} to {labels}"
        seen.update(labels)

    try:
        with poolwatch.ThreadPoolExecutor(1, "Capped", manager=mgr) as ex:
            ex.submit(task_a).result()
        first = poolwatch.ThreadPoolExecutor(1, "Capped", manager=mgr)
        first.submit(task_b).result()
        second = poolwatch.ThreadPoolExecutor(1, "Capped", manager=mgr)
        second.submit(task_c).result()
        check("both live")
        second.shutdown()  # the later instance ends first
        check("the second ended")
        first.submit(task_c).result()
        first.shutdown()
        check("both ended")
    finally:
        mgr.shutdown()
    a, b = (f"{__name__}.task_{x}" for x in "ab")
    assert seen == {a: 1, b: 1, "_other": 2}, "the first two names seen keep their labels"


def frames_of(thread: threading.Thread) -> list[str]:
    frame = sys._current_frames().get(thread.ident or 0)  # the stdlib's own
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def test_folding_an_ended_instance_in_holds_no_lock_of_the_manager(mgr: PoolManager) -> None:
    other = mgr.create_pool("other", max_workers=1)
    ended = poolwatch.ThreadPoolExecutor(2, "Folded", manager=mgr)
    ended.submit_many(abs, [(i,) for i in range(500)])[-1].result()
    ended.shutdown()
    made: list[poolwatch.ThreadPoolExecutor] = []
    with ended.engine.lock:  # the fold, taking the ended instance's numbers, waits here
        maker = threading.Thread(
            target=lambda: made.append(poolwatch.ThreadPoolExecutor(1, "Folded", manager=mgr))
        )
        maker.start()
        wait_until(lambda: "final_snapshot" in frames_of(maker), message="the fold waits")
        reader = threading.Thread(target=lambda: (mgr.get_pool("other"), mgr.pools()))
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the manager was held while an instance was folded in"
    maker.join(10)
    family = mgr.get_pool("Folded")
    assert family.stats().succeeded == 500
    assert mgr.tasks(pool="Folded", limit=1000).total == 500
    made[0].shutdown()
    assert other.stats().submitted == 0


def test_dropped_executors_with_a_given_name_leave_nothing_behind(mgr: PoolManager) -> None:
    before = set(threading.enumerate())

    def pool_threads() -> list[str]:
        """Threads of the dropped pools still running (workers, or stopping them)."""
        return [
            t.name
            for t in set(threading.enumerate()) - before
            if t.name.startswith("ThreadPoolExecutor-") or t.name.endswith("-abandoned")
        ]

    def drop(n: int) -> None:
        for i in range(n):
            ex = poolwatch.ThreadPoolExecutor(1, name="req", manager=mgr)
            ex.submit(abs, 1).result()
            del ex  # dropped without shutdown, as stdlib code may
            if i % 100 == 99:
                gc.collect()
        # A dropped pool's engine stops from a thread of its own: wait until every one
        # has, so that what is measured is what stays, not what is still being freed.
        gc.collect()
        wait_until(
            lambda: not pool_threads(),
            timeout=30,
            message=lambda: f"threads left: {pool_threads()}",
        )
        gc.collect()

    drop(200)  # warm up
    # Only what poolwatch's own code allocates: other threads of the session (a test
    # cluster's, say) allocate meanwhile too.
    mine = [tracemalloc.Filter(True, f"{os.path.dirname(poolwatch.__file__)}{os.sep}*")]
    tracemalloc.start()
    try:
        base = tracemalloc.take_snapshot().filter_traces(mine)
        drop(1500)
        after = tracemalloc.take_snapshot().filter_traces(mine)
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(base, "filename"))
    assert "req" not in mgr
    # 1,500 executors more; a table entry kept for each (some 100 bytes) would show.
    assert grown < 60_000, f"memory grew by {grown} bytes over 1,500 dropped executors"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_counts_refusals_of_an_ended_instance_it_holds(mgr: PoolManager) -> None:
    ended = poolwatch.ThreadPoolExecutor(1, "Forked", manager=mgr)
    ended.submit(abs, 1).result()
    ended.shutdown()
    family = mgr.get_pool("Forked")
    assert family.stats().succeeded == 1  # read: the ended instance is folded in
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one late refusal, counted by the child's family
        code = 1
        try:
            try:
                ended.submit(abs, 2)
            except RuntimeError:
                code = 0 if family.stats().rejected == 1 else 2
            os.write(write, str(family.stats().rejected).encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child's family counted {said} refusals"
    assert family.stats().rejected == 0, "the parent's count is its own"


def fails_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(x)
    return x


def test_archived_pages_keep_their_order_and_totals_with_filters(mgr: PoolManager) -> None:
    ids = []
    for n in range(12):
        with poolwatch.ThreadPoolExecutor(1, "Paged", manager=mgr) as ex:
            ids.append(ex.submit(fails_on_odd, n).task_id)
    newest = ids[::-1]
    for offset, limit in ((0, 5), (3, 4), (10, 5), (12, 3)):
        page = mgr.tasks(pool="Paged", offset=offset, limit=limit)
        assert [i.id for i in page.items] == newest[offset : offset + limit]
        assert page.total == 12
    failed = mgr.tasks(pool="Paged", state="failed", offset=1, limit=2)
    assert [i.id for i in failed.items] == newest[::2][1:3]
    assert failed.total == 6


@pytest.mark.usefixtures("fast_thread_switching")
def test_concurrent_configure_leaves_every_instance_with_the_familys_settings(
    mgr: PoolManager,
) -> None:
    live = [poolwatch.ThreadPoolExecutor(1, "Tuned", manager=mgr) for _ in range(10)]
    family = mgr.get_pool("Tuned")
    mismatches = []
    try:
        for _ in range(40):
            start = threading.Barrier(2)

            def tune(workers: int, start: threading.Barrier = start) -> None:
                start.wait(10)
                for _ in range(50):
                    family.configure(max_workers=workers)

            threads = [threading.Thread(target=tune, args=(n,)) for n in (2, 3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            with poolwatch.ThreadPoolExecutor(1, "Tuned", manager=mgr) as fresh:
                recorded = fresh.stats().max_workers  # what the family gives new instances
            got = [ex.stats().max_workers for ex in live]
            if got != [recorded] * len(live):
                mismatches.append((recorded, got))
    finally:
        for ex in live:
            ex.shutdown()
    assert not mismatches, f"{len(mismatches)} of 40 rounds: {mismatches[:3]}"
