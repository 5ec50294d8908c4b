"""PoolManager: pool names and options, lookup, removal, task queries, scale."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

from poolwatch import (
    ManagedPool,
    PoolExistsError,
    PoolManager,
    PoolState,
    PoolStats,
    TaskInfo,
    TaskPage,
    TaskState,
    current_task,
)
from support import wait_until

VALID_NAMES = ["a", "Z", "0", "api", "a_b.c-d", "web-1.2", "A" * 64, "9lives", "x__", "a.-_"]
INVALID_NAMES = [
    "",
    "-a",
    "_a",
    ".a",
    "a b",
    "a/b",
    "a:b",
    "a\n",
    "\na",
    "A" * 65,
    "caf\u00e9",
    "a\u0000",
    'a"b',
    "a{b}",
]


def noop() -> None:
    return None


def fail() -> None:
    raise ValueError("nope")


class TestNames:
    @pytest.mark.parametrize("name", VALID_NAMES)
    def test_valid_names_are_accepted(self, manager: Any, name: str) -> None:
        pool = manager.create_pool(name, max_workers=1)
        assert isinstance(pool, ManagedPool)
        assert pool.name == name
        assert manager.get_pool(name) is pool

    @pytest.mark.parametrize("name", INVALID_NAMES)
    def test_invalid_names_raise_value_error(self, manager: Any, name: str) -> None:
        with pytest.raises(ValueError, match="name") as caught:
            manager.create_pool(name, max_workers=1)
        assert not isinstance(caught.value, PoolExistsError)
        assert manager.pools() == []

    @pytest.mark.parametrize("name", [None, 7, b"bytes"])
    def test_non_string_names_are_refused(self, manager: Any, name: Any) -> None:
        with pytest.raises((TypeError, ValueError)):
            manager.create_pool(name, max_workers=1)
        assert manager.pools() == []

    def test_duplicate_name_raises_pool_exists_error(self, manager: Any) -> None:
        first = manager.create_pool("dup", max_workers=1)
        with pytest.raises(PoolExistsError, match="dup") as caught:
            manager.create_pool("dup", max_workers=3)
        assert isinstance(caught.value, ValueError)
        assert manager.pools() == [first]
        assert manager.get_pool("dup").stats().max_workers == 1
        assert first.submit(lambda: 5).result(timeout=10) == 5

    def test_name_is_free_again_after_remove(self, manager: Any) -> None:
        manager.create_pool("again", max_workers=1)
        manager.remove_pool("again")
        pool = manager.create_pool("again", max_workers=2)
        assert pool.submit(lambda: "ok").result(timeout=10) == "ok"


class TestOptions:
    @pytest.mark.parametrize("max_workers", [0, -1, -100])
    def test_max_workers_below_one(self, manager: Any, max_workers: int) -> None:
        with pytest.raises(ValueError, match="max_workers"):
            manager.create_pool("p", max_workers=max_workers)
        assert manager.pools() == []

    def test_max_workers_none_is_the_stdlib_default(self, manager: Any) -> None:
        cpus = getattr(os, "process_cpu_count", os.cpu_count)() or 1
        pool = manager.create_pool("defaulted")
        assert pool.stats().max_workers == min(32, cpus + 4)

    @pytest.mark.parametrize("max_workers", ["2", 2.5])
    def test_max_workers_wrong_type(self, manager: Any, max_workers: Any) -> None:
        with pytest.raises((TypeError, ValueError), match="max_workers"):
            manager.create_pool("p", max_workers=max_workers)
        assert manager.pools() == []

    def test_unknown_setting_is_refused(self, manager: Any) -> None:
        with pytest.raises(TypeError):
            manager.create_pool("p", max_wokers=2)
        assert manager.pools() == []

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("queue_capacity", -1),
            ("rejection_policy", "drop_everything"),
            ("queue_timeout", -1.0),
            ("run_timeout", -0.5),
            ("history_size", -1),
        ],
    )
    def test_bad_values_raise_value_error_naming_the_option(
        self, manager: Any, option: str, value: Any
    ) -> None:
        with pytest.raises(ValueError, match=option):
            manager.create_pool("p", max_workers=1, **{option: value})
        assert manager.pools() == []

    def test_unknown_policy_message_lists_the_valid_ones(self, manager: Any) -> None:
        with pytest.raises(ValueError, match="rejection_policy") as caught:
            manager.create_pool("p", max_workers=1, rejection_policy="drop")
        message = str(caught.value)
        for policy in ("abort", "caller_runs", "discard", "discard_oldest"):
            assert policy in message

    def test_options_show_in_stats(self, manager: Any) -> None:
        pool = manager.create_pool(
            "opts",
            max_workers=3,
            queue_capacity=7,
            rejection_policy="discard_oldest",
            queue_timeout=2.5,
            run_timeout=4,
        )
        s = pool.stats()
        assert (s.max_workers, s.queue_capacity, s.rejection_policy) == (3, 7, "discard_oldest")
        assert (s.queue_timeout, s.run_timeout) == (2.5, 4)

    def test_defaults(self, manager: Any) -> None:
        s = manager.create_pool("d", max_workers=1).stats()
        assert s.queue_capacity is None
        assert s.rejection_policy == "abort"
        assert s.queue_timeout is None
        assert s.run_timeout is None


class TestLookup:
    def test_get_pool_and_pools(self, manager: Any) -> None:
        a = manager.create_pool("a", max_workers=1)
        b = manager.create_pool("b", max_workers=1)
        assert manager.get_pool("a") is a
        assert manager.get_pool("b") is b
        assert sorted(p.name for p in manager.pools()) == ["a", "b"]
        assert isinstance(manager.pools(), list)

    def test_get_pool_unknown_raises_key_error(self, manager: Any) -> None:
        with pytest.raises(KeyError):
            manager.get_pool("missing")

    def test_pools_is_a_copy(self, manager: Any) -> None:
        manager.create_pool("a", max_workers=1)
        listing = manager.pools()
        listing.clear()
        assert len(manager.pools()) == 1


class TestRemovePool:
    def test_remove_drops_and_shuts_down(self, manager: Any) -> None:
        pool = manager.create_pool("gone", max_workers=1)
        fut = pool.submit(lambda: 3)
        final = manager.remove_pool("gone")
        assert isinstance(final, PoolStats)
        assert final.state is PoolState.TERMINATED
        assert final.succeeded == 1
        assert fut.result() == 3
        assert pool.state is PoolState.TERMINATED
        with pytest.raises(KeyError):
            manager.get_pool("gone")
        assert manager.pools() == []
        with pytest.raises(RuntimeError):
            pool.submit(noop)

    def test_remove_unknown_raises_key_error(self, manager: Any) -> None:
        with pytest.raises(KeyError):
            manager.remove_pool("never")

    def test_remove_waits_for_running_tasks(self, manager: Any, blocker: Any) -> None:
        pool = manager.create_pool("w", max_workers=1)
        b = blocker("finished")
        fut = pool.submit(b)
        assert b.started.wait(10)
        result: list[PoolStats] = []
        remover = threading.Thread(target=lambda: result.append(manager.remove_pool("w")))
        remover.start()
        remover.join(0.05)
        assert remover.is_alive(), "remove_pool(wait=True) returned while a task was running"
        b.release()
        remover.join(10)
        assert fut.result() == "finished"
        assert result[0].succeeded == 1

    def test_remove_with_cancel_futures(self, manager: Any, blocker: Any) -> None:
        pool = manager.create_pool("c", max_workers=1)
        b = blocker()
        running = pool.submit(b)
        assert b.started.wait(10)
        queued = [pool.submit(noop) for _ in range(3)]
        remover = threading.Thread(
            target=manager.remove_pool, args=("c",), kwargs={"cancel_futures": True}
        )
        remover.start()
        wait_until(lambda: all(f.cancelled() for f in queued), message="queued tasks cancelled")
        assert not running.done()
        b.release()
        remover.join(10)
        assert running.done()
        assert pool.stats().cancelled == 3

    def test_remove_without_waiting(self, manager: Any, blocker: Any) -> None:
        pool = manager.create_pool("nw", max_workers=1)
        b = blocker("late")
        fut = pool.submit(b)
        assert b.started.wait(10)
        manager.remove_pool("nw", wait=False)
        assert not fut.done()
        with pytest.raises(KeyError):
            manager.get_pool("nw")
        b.release()
        assert fut.result(timeout=10) == "late"

    def test_run_timeout_still_applies_while_it_drains(self, manager: Any, gates: Any) -> None:
        pool = manager.create_pool("drain", max_workers=1, run_timeout=0.1)
        gate = gates.new()  # opened at teardown, should the run timeout never come
        started = threading.Event()

        def until_cancelled() -> None:
            ctx = current_task()
            assert ctx is not None
            started.set()
            while not ctx.cancel_requested and not gate.is_set():
                gate.wait(0.005)
            ctx.raise_if_cancel_requested()

        fut = pool.submit(until_cancelled)
        assert started.wait(10)
        remover = threading.Thread(target=manager.remove_pool, args=("drain",))
        remover.start()
        try:
            remover.join(10)
            assert not remover.is_alive(), "remove_pool waits on a task its run_timeout stops"
        finally:
            gate.set()
            remover.join()
        assert fut.cancelled()
        assert pool.stats().state is PoolState.TERMINATED

    @pytest.mark.parametrize("how", ["remove_pool", "manager.shutdown"])
    def test_queue_timeout_still_applies_after_shutdown_without_waiting(
        self, manager: Any, blocker: Any, how: str
    ) -> None:
        pool = manager.create_pool("drain", max_workers=1, queue_timeout=0.05)
        b = blocker()
        running = pool.submit(b)
        assert b.started.wait(10)
        late = pool.submit(noop)
        if how == "remove_pool":
            manager.remove_pool("drain", wait=False)
        else:
            assert manager.shutdown(wait=False) is False
        wait_until(late.cancelled, message="the queue timeout applies while the pool drains")
        assert pool.state is PoolState.SHUTTING_DOWN
        b.release()
        running.result(timeout=10)
        wait_until(lambda: pool.state is PoolState.TERMINATED, message="the pool terminates")

    def test_metric_series_disappear(self, manager: Any, registry: CollectorRegistry) -> None:
        pool = manager.create_pool("m", max_workers=2)
        pool.submit(noop).result(timeout=10)
        labels = {"pool": "m"}
        assert registry.get_sample_value("poolwatch_pool_max_workers", labels) == 2
        manager.remove_pool("m")
        assert registry.get_sample_value("poolwatch_pool_max_workers", labels) is None
        assert registry.get_sample_value("poolwatch_tasks_submitted_total", labels) is None


class TestManagerLifecycle:
    def test_context_manager_shuts_every_pool_down(self) -> None:
        with PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider()) as mgr:
            a = mgr.create_pool("a", max_workers=2)
            b = mgr.create_pool("b", max_workers=1)
            futures = [a.submit(pow, 2, i) for i in range(5)] + [b.submit(noop)]
        assert all(f.done() for f in futures)
        assert a.state is PoolState.TERMINATED
        assert b.state is PoolState.TERMINATED
        with pytest.raises(RuntimeError):
            a.submit(noop)

    def test_shutdown_cancel_futures(self, gates: Any, blocker: Any) -> None:
        mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
        try:
            pool = mgr.create_pool("a", max_workers=1)
            b = blocker()
            running = pool.submit(b)
            assert b.started.wait(10)
            queued = pool.submit(noop)
            closer = threading.Thread(target=mgr.shutdown, kwargs={"cancel_futures": True})
            closer.start()
            wait_until(queued.cancelled, message="queued task cancelled by shutdown")
            assert not running.done()
            b.release()
            closer.join(10)
            assert not closer.is_alive()
            assert running.result() is None
        finally:
            gates.release_all()
            mgr.shutdown()

    def test_shutdown_with_timeout_reports_unfinished_work(self, blocker: Any) -> None:
        mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
        b = blocker()
        try:
            pool = mgr.create_pool("slow", max_workers=1)
            fut = pool.submit(b)
            assert b.started.wait(10)
            started = time.monotonic()
            assert mgr.shutdown(timeout=0.05) is False
            assert time.monotonic() - started < 5
            assert fut.info().cancel_requested
        finally:
            b.release()
            assert mgr.shutdown(timeout=10) is True

    def test_shutdown_with_timeout_true_when_idle(self) -> None:
        mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
        mgr.create_pool("idle", max_workers=1).submit(noop).result(timeout=10)
        assert mgr.shutdown(timeout=5) is True


class TestTaskQueries:
    def test_get_task_across_pools(self, manager: Any) -> None:
        a = manager.create_pool("a", max_workers=1)
        b = manager.create_pool("b", max_workers=1)
        fa, fb = a.submit(noop), b.submit(fail)
        fa.result(timeout=10)
        fb.exception(timeout=10)
        ia, ib = manager.get_task(fa.task_id), manager.get_task(fb.task_id)
        assert isinstance(ia, TaskInfo)
        assert (ia.id, ia.pool, ia.state) == (fa.task_id, "a", TaskState.SUCCEEDED)
        assert (ib.id, ib.pool, ib.state) == (fb.task_id, "b", TaskState.FAILED)

    @pytest.mark.parametrize("task_id", ["", "nope", "../../etc", "0" * 200])
    def test_get_task_unknown_raises_key_error(self, manager: Any, task_id: str) -> None:
        manager.create_pool("a", max_workers=1).submit(noop).result(timeout=10)
        with pytest.raises(KeyError):
            manager.get_task(task_id)

    def test_tasks_newest_first_with_total(self, manager: Any) -> None:
        pool = manager.create_pool("a", max_workers=1)
        ids = [pool.submit(noop).task_id for _ in range(7)]
        pool.submit(noop).result(timeout=10)
        page = manager.tasks(pool="a", limit=50)
        assert isinstance(page, TaskPage)
        assert page.total == 8
        assert [t.id for t in page.items][1:] == list(reversed(ids))
        stamps = [t.submitted_at for t in page.items]
        assert stamps == sorted(stamps, reverse=True)

    def test_tasks_pagination(self, manager: Any) -> None:
        pool = manager.create_pool("a", max_workers=2)
        futures = [pool.submit(noop) for _ in range(23)]
        for f in futures:
            f.result(timeout=10)
        everything = manager.tasks(limit=100).items
        assert len(everything) == 23
        pages = [manager.tasks(offset=o, limit=5) for o in range(0, 25, 5)]
        assert [len(p.items) for p in pages] == [5, 5, 5, 5, 3]
        assert all(p.total == 23 for p in pages)
        assert [t.id for p in pages for t in p.items] == [t.id for t in everything]
        beyond = manager.tasks(offset=100, limit=5)
        assert beyond.items == []
        assert beyond.total == 23
        assert len(manager.tasks().items) == 23  # default limit is 50

    def test_tasks_default_limit_is_50(self, manager: Any) -> None:
        pool = manager.create_pool("a", max_workers=2)
        pool.submit_many(noop, [()] * 60)
        pool.shutdown(wait=True)
        page = manager.tasks()
        assert len(page.items) == 50
        assert page.total == 60

    def test_tasks_filters(self, manager: Any, blocker: Any) -> None:
        a = manager.create_pool("a", max_workers=1)
        b = manager.create_pool("b", max_workers=1)
        done = [a.submit(noop) for _ in range(3)] + [b.submit(fail) for _ in range(2)]
        for f in done:
            f.exception(timeout=10)
        blk = blocker()
        running = b.submit(blk)
        assert blk.started.wait(10)
        queued = b.submit(noop)

        assert manager.tasks(pool="a").total == 3
        assert manager.tasks(pool="b").total == 4
        assert manager.tasks(pool="nope").total == 0
        failed = manager.tasks(state=TaskState.FAILED)
        assert failed.total == 2
        assert {t.state for t in failed.items} == {TaskState.FAILED}
        assert manager.tasks(state="failed").items == failed.items
        assert [t.id for t in manager.tasks(state="running").items] == [running.task_id]
        assert [t.id for t in manager.tasks(state="queued").items] == [queued.task_id]
        noop_name = f"{noop.__module__}.{noop.__qualname__}"
        assert manager.tasks(name=noop_name).total == 4
        assert manager.tasks(name=noop_name, pool="b").total == 1
        assert manager.tasks(name=noop_name, state="succeeded").total == 3
        assert manager.tasks(name="no.such.task").total == 0
        blk.release()

    def test_tasks_rejects_unknown_state(self, manager: Any) -> None:
        with pytest.raises(ValueError, match="state"):
            manager.tasks(state="exploded")

    @pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, -1)])
    def test_tasks_rejects_negative_paging(self, manager: Any, offset: int, limit: int) -> None:
        with pytest.raises(ValueError, match=r"offset|limit"):
            manager.tasks(offset=offset, limit=limit)


class TestIdentifiers:
    def test_task_ids_are_url_safe_and_unique(self, manager: Any) -> None:
        pools = [manager.create_pool(f"p{i}", max_workers=2) for i in range(3)]
        futures = [p.submit(noop) for p in pools for _ in range(300)]
        ids = [f.task_id for f in futures]
        assert len(set(ids)) == len(ids)
        for task_id in ids:
            assert isinstance(task_id, str)
            assert task_id
            assert quote(task_id, safe="") == task_id, f"{task_id!r} is not URL-safe"
        for f in futures:
            f.result(timeout=10)


class TestScale:
    def test_a_thousand_pools(self) -> None:
        started = time.monotonic()
        mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
        try:
            pools = [mgr.create_pool(f"pool-{i}", max_workers=2) for i in range(1000)]
            futures = [p.submit(pow, i, 2) for i, p in enumerate(pools)]
            assert [f.result(timeout=30) for f in futures] == [i * i for i in range(1000)]
            assert len(mgr.pools()) == 1000
            assert mgr.tasks(limit=1).total == 1000
        finally:
            mgr.shutdown(wait=True)
        assert all(p.state is PoolState.TERMINATED for p in pools)
        elapsed = time.monotonic() - started
        assert elapsed < 15, f"1,000 pools took {elapsed:.1f}s"


def test_tasks_newest_first_across_pools(manager: Any, blocker: Any) -> None:
    """Live tasks first, newest submission first; then finished ones, latest finish first."""
    a = manager.create_pool("a", max_workers=1)
    b = manager.create_pool("b", max_workers=1)
    futures = [(a if i % 2 else b).submit(noop) for i in range(12)]
    for f in futures:
        f.result(timeout=10)
    blockers = [blocker(), blocker()]
    running = [a.submit(blockers[0]), b.submit(blockers[1])]
    for blk in blockers:
        assert blk.started.wait(10)
    queued = [a.submit(noop), b.submit(noop), a.submit(noop)]

    items = manager.tasks(limit=100).items
    live = [f.task_id for f in reversed(running + queued)]
    assert [t.id for t in items[:5]] == live
    finished = items[5:]
    assert {t.id for t in finished} == {f.task_id for f in futures}
    ends = [t.finished_at for t in finished]
    assert ends == sorted(ends, reverse=True)  # type: ignore[type-var]
    for blk in blockers:
        blk.release()


def _non_increasing(values: list[Any]) -> bool:
    # Wall times are monotonic times plus one offset: equal within float rounding.
    return all(a >= b - 1e-6 for a, b in itertools.pairwise(values))


def test_pages_across_pools_merge_each_pools_own_order(manager: Any, blocker: Any) -> None:
    """Across pools, pages are each pool's own listing merged: every task once, live ones
    first, newest first, and consistent however they are paged."""
    pools = [
        manager.create_pool(f"m{i}", max_workers=1, history_size=size)
        for i, size in enumerate([5, 40, 1000, 1000, 3])
    ]
    futures = [pools[(i * 7) % 5].submit(fail if i % 3 == 0 else noop) for i in range(150)]
    for f in futures:
        f.exception(timeout=10)
    blockers = [blocker(), blocker()]
    running = [pools[2].submit(blockers[0]), pools[1].submit(blockers[1])]
    for blk in blockers:
        assert blk.started.wait(10)
    # Live tasks in two pools (held behind the blockers), interleaved in time.
    queued = [pools[i].submit(noop) for i in (2, 1, 2, 2, 1)]
    assert pools[2].cancel(queued[0].task_id) == "cancelled"
    noop_name = f"{noop.__module__}.{noop.__qualname__}"
    filters: list[dict[str, Any]] = [
        {}, {"state": "failed"}, {"state": "succeeded"}, {"state": "cancelled"},
        {"state": "queued"}, {"state": "running"}, {"name": noop_name},
        {"name": noop_name, "state": "succeeded"}, {"name": "no.such.task"},
    ]  # fmt: skip
    for query in filters:
        full = manager.tasks(limit=10_000, **query)
        assert full.total == len(full.items), query
        assert len({t.id for t in full.items}) == len(full.items), query
        for size in (1, 3, 7, 50):
            pages = [
                manager.tasks(offset=o, limit=size, **query)
                for o in range(0, full.total + size, size)
            ]
            assert [t.id for p in pages for t in p.items] == [t.id for t in full.items], query
            assert {p.total for p in pages} == {full.total}, query
        for pool in pools:
            own = manager.tasks(pool=pool.name, limit=10_000, **query).items
            mine = [t.id for t in full.items if t.pool == pool.name]
            assert mine == [t.id for t in own], (query, pool.name)
        live = [t for t in full.items if not t.state.finished]
        assert full.items[: len(live)] == live, query
        assert _non_increasing([t.submitted_at for t in live]), query
        assert _non_increasing([t.finished_at for t in full.items[len(live) :]]), query
    everything = manager.tasks(limit=10_000).items
    assert [t.id for t in everything[:6]] == [f.task_id for f in reversed(running + queued[1:])]
    for blk in blockers:
        blk.release()


def test_pages_across_pools_while_tasks_finish_and_leave_history(manager: Any) -> None:
    """Paging while workers finish tasks and small histories evict them: no error, no
    task twice in a page, and never more items than the page or the total allows."""
    pools = [manager.create_pool(f"h{i}", max_workers=2, history_size=4) for i in range(4)]
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            for pool in pools:
                pool.submit_many(noop, [()] * 20)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        pages = 0
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline or pages < 500:
            for offset, limit in ((0, 5), (3, 7), (10, 50)):
                page = manager.tasks(offset=offset, limit=limit)
                ids = [t.id for t in page.items]
                assert len(ids) == len(set(ids))
                assert len(ids) <= limit
                pages += 1
    finally:
        stop.set()
        feeder.join()
    assert pages >= 500
