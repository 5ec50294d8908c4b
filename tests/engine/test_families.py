"""Pool families: executors that share a derived name are one pool to observe and control."""

from __future__ import annotations

import concurrent.futures
import gc
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolExistsError, PoolFamily, PoolManager, PoolState, TaskState
from poolwatch.metrics import render_metrics
from support import wait_until

STDLIB = concurrent.futures.thread.ThreadPoolExecutor


@pytest.fixture
def mgr() -> Any:
    manager = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    yield manager
    manager.shutdown(wait=True, cancel_futures=True)


def square(x: int) -> int:
    if x % 10 == 7:
        raise ValueError(f"no square for {x}")
    return x * x


def handle_request(manager: PoolManager, n: int, **settings: Any) -> int:
    """What a request handler written for the stdlib does: an executor per call."""
    with poolwatch.ThreadPoolExecutor(max_workers=2, manager=manager, **settings) as ex:
        futures = [ex.submit(square, n * 3 + i) for i in range(3)]
        done = [f for f in futures if f.exception() is None]
        return sum(f.result() for f in done)


def series(manager: PoolManager) -> set[str]:
    """The names and labels of every poolwatch series on a /metrics scrape."""
    body, _ = render_metrics(manager)
    lines = body.decode().splitlines()
    return {ln.rsplit(" ", 1)[0] for ln in lines if ln.startswith("poolwatch_")}


def expected(calls: range) -> tuple[int, int]:
    values = [n * 3 + i for n in calls for i in range(3)]
    failed = sum(1 for v in values if v % 10 == 7)
    return len(values) - failed, failed


class TestOneFamily:
    def test_thousands_of_instances_are_one_pool_with_exact_counts(self, mgr: Any) -> None:
        handle_request(mgr, 0)
        (name,) = [p.name for p in mgr.pools()]
        assert name.endswith("handle_request")
        before = series(mgr)
        threads, calls = 8, 250
        with STDLIB(threads) as callers:  # concurrent requests, each with its own executor
            chunks = [range(t * calls + 1, (t + 1) * calls + 1) for t in range(threads)]
            list(callers.map(lambda r: [handle_request(mgr, n) for n in r], chunks))
        family = mgr.get_pool(name)
        assert isinstance(family, PoolFamily)
        assert [p.name for p in mgr.pools()] == [name]
        ok, failed = expected(range(threads * calls + 1))
        s = family.stats()
        assert (s.submitted, s.succeeded, s.failed, s.cancelled) == (ok + failed, ok, failed, 0)
        assert (s.workers, s.active, s.queued, s.max_workers) == (0, 0, 0, 0)
        assert family.instances() == 0
        assert series(mgr) == before, "the same series, however many instances came and went"
        get = mgr.registry.get_sample_value
        assert get("poolwatch_tasks_submitted_total", {"pool": name}) == ok + failed
        task = f"{__name__}.square"
        for outcome, count in (("succeeded", ok), ("failed", failed)):
            labels = {"pool": name, "task": task, "outcome": outcome}
            assert get("poolwatch_tasks_completed_total", labels) == count

    def test_counters_never_go_back_while_instances_come_and_go(self, mgr: Any) -> None:
        stop = threading.Event()
        handle_request(mgr, 0)
        family = mgr.get_pool(mgr.pools()[0].name)
        seen: list[int] = []

        def watch() -> None:
            while not stop.is_set():
                seen.append(family.stats().succeeded)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with STDLIB(4) as callers:
                list(callers.map(lambda n: handle_request(mgr, n), range(1, 400)))
        finally:
            stop.set()
            watcher.join()
        assert len(seen) > 10
        assert seen == sorted(seen), "a fold never loses or double-counts an instance"
        assert family.stats().succeeded == expected(range(400))[0]

    def test_gauges_add_up_over_live_instances(self, mgr: Any) -> None:
        gate = threading.Event()
        pools = [poolwatch.ThreadPoolExecutor(2, "Gauged", manager=mgr) for _ in range(3)]
        try:
            for p in pools:
                p.submit(gate.wait)
                p.submit(gate.wait)
                p.submit(gate.wait)  # queued behind two running
            family = mgr.get_pool("Gauged")
            wait_until(lambda: family.stats().active == 6, message=lambda: str(family.stats()))
            s = family.stats()
            assert (s.max_workers, s.workers, s.queued, s.submitted) == (6, 6, 3, 9)
            assert family.instances() == 3
            assert mgr.registry.get_sample_value("poolwatch_pool_active_workers",
                                                 {"pool": "Gauged"}) == 6  # fmt: skip
        finally:
            gate.set()
            for p in pools:
                p.shutdown()
        assert mgr.get_pool("Gauged").stats().succeeded == 9

    def test_memory_stays_bounded(self, mgr: Any) -> None:
        def burst(start: int, count: int) -> None:
            with STDLIB(4) as callers:
                rng = range(start, start + count)
                list(callers.map(lambda n: handle_request(mgr, n, history_size=64), rng))

        burst(0, 300)  # warm up: the archive fills, the task label and caches exist
        gc.collect()
        # Only what poolwatch's own code allocates: other threads of the session (a test
        # cluster's, say) allocate meanwhile too.
        mine = [tracemalloc.Filter(True, f"{os.path.dirname(poolwatch.__file__)}{os.sep}*")]
        tracemalloc.start()
        try:
            burst(300, 100)
            gc.collect()
            base = tracemalloc.take_snapshot().filter_traces(mine)
            burst(400, 2000)
            gc.collect()
            after = tracemalloc.take_snapshot().filter_traces(mine)
        finally:
            tracemalloc.stop()
        grown = sum(stat.size_diff for stat in after.compare_to(base, "filename"))
        family = mgr.pools()[0]
        assert family.stats().submitted == 2400 * 3
        # 2,000 instances more; a leak of even 50 bytes each would show.
        assert grown < 100_000, f"memory grew by {grown} bytes over 2,000 instances"
        page = mgr.tasks(pool=family.name, limit=10_000)
        assert page.total == 64, "the archive keeps one instance's history_size"


class TestRecords:
    def test_tasks_of_ended_instances_stay_findable(self, mgr: Any) -> None:
        ids = []
        for n in range(5):
            with poolwatch.ThreadPoolExecutor(1, "Kept", manager=mgr) as ex:
                ids.append(ex.submit(square, n).task_id)
        assert len(set(ids)) == 5
        for task_id in ids:
            info = mgr.get_task(task_id)
            assert (info.id, info.pool, info.state) == (task_id, "Kept", TaskState.SUCCEEDED)
            assert info.worker is not None
            assert info.worker.startswith("Kept_")
        family = mgr.get_pool("Kept")
        assert family.cancel(ids[0]) == "finished"
        page = mgr.tasks(pool="Kept")
        assert [i.id for i in page.items] == ids[::-1], "newest first"
        assert page.total == 5
        assert mgr.tasks(pool="Kept", state="failed").total == 0
        assert [i.id for i in mgr.tasks(offset=1, limit=2).items] == ids[3:1:-1]
        with pytest.raises(KeyError):
            family.cancel("ffff-1")

    def test_live_and_archived_tasks_page_together(self, mgr: Any) -> None:
        with poolwatch.ThreadPoolExecutor(1, "Mixed", manager=mgr) as ex:
            done = ex.submit(square, 2).task_id
        gate = threading.Event()
        live = poolwatch.ThreadPoolExecutor(1, "Mixed", manager=mgr)
        try:
            running = live.submit(gate.wait)
            wait_until(running.running, message="the task starts")
            page = mgr.tasks(pool="Mixed")
            assert [(i.id, i.state) for i in page.items] == [
                (running.task_id, TaskState.RUNNING),
                (done, TaskState.SUCCEEDED),
            ]
            assert mgr.get_pool("Mixed").cancel(running.task_id) == "requested"
            assert mgr.task_stack(running.task_id).thread.startswith("Mixed_")
        finally:
            gate.set()
            live.shutdown()


class TestControl:
    def test_settings_changed_on_the_family_reach_every_instance(self, mgr: Any) -> None:
        first = poolwatch.ThreadPoolExecutor(2, "Tuned", manager=mgr)
        family = mgr.get_pool("Tuned")
        family.configure(max_workers=5, run_timeout=30)
        assert first.stats().max_workers == 5
        later = poolwatch.ThreadPoolExecutor(2, "Tuned", manager=mgr)
        assert (later.stats().max_workers, later.stats().run_timeout) == (5, 30.0)
        assert (family.stats().max_workers, family.stats().run_timeout) == (10, 30.0)
        first.shutdown()
        later.shutdown()

    def test_a_paused_family_starts_instances_paused(self, mgr: Any) -> None:
        warm = poolwatch.ThreadPoolExecutor(1, "Held", manager=mgr)
        family = mgr.get_pool("Held")
        family.pause()
        assert warm.state is PoolState.PAUSED
        warm.shutdown()
        ex = poolwatch.ThreadPoolExecutor(1, "Held", manager=mgr)
        assert ex.state is PoolState.PAUSED
        assert family.state is PoolState.PAUSED
        future = ex.submit(square, 3)
        assert family.stats().queued == 1
        assert not future.done()
        family.resume()
        assert future.result(timeout=10) == 9
        ex.shutdown()

    def test_a_family_runs_nothing_itself(self, mgr: Any) -> None:
        with poolwatch.ThreadPoolExecutor(1, "Viewed", manager=mgr):
            family = mgr.get_pool("Viewed")
            with pytest.raises(RuntimeError, match="family of executors"):
                family.submit(square, 1)

    def test_remove_pool_shuts_instances_down_and_forgets_the_family(self, mgr: Any) -> None:
        ex = poolwatch.ThreadPoolExecutor(1, "Gone", manager=mgr)
        assert ex.submit(square, 2).result(timeout=10) == 4
        final = mgr.remove_pool("Gone")
        assert (final.state, final.succeeded) == (PoolState.TERMINATED, 1)
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.submit(square, 2)
        assert "Gone" not in mgr
        with poolwatch.ThreadPoolExecutor(1, "Gone", manager=mgr) as again:
            again.submit(square, 3).result(timeout=10)
        assert mgr.get_pool("Gone").stats().succeeded == 1, "a new family, from zero"

    def test_refusals_after_an_instance_ended_still_count(self, mgr: Any) -> None:
        with poolwatch.ThreadPoolExecutor(1, "Late", manager=mgr) as ex:
            ex.submit(square, 1).result(timeout=10)
        family = mgr.get_pool("Late")
        assert family.instances() == 0  # folded into the family
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.submit(square, 1)
        assert family.stats().rejected == 1
        assert (
            mgr.registry.get_sample_value(
                "poolwatch_tasks_rejected_total", {"pool": "Late", "reason": "shutdown"}
            )
            == 1
        )

    def test_explicit_names_stay_unique(self, mgr: Any) -> None:
        with poolwatch.ThreadPoolExecutor(1, "Shared", manager=mgr), pytest.raises(PoolExistsError):
            mgr.create_pool("Shared")
        mgr.create_pool("Taken", max_workers=1)
        with poolwatch.ThreadPoolExecutor(1, "Taken", manager=mgr) as ex:
            assert ex.name == "Taken-2", "a derived name never joins an explicit pool"
        poolwatch.ThreadPoolExecutor(1, name="Mine", manager=mgr).shutdown()
        keep = poolwatch.ThreadPoolExecutor(1, name="Mine2", manager=mgr)
        with pytest.raises(PoolExistsError):
            poolwatch.ThreadPoolExecutor(1, name="Mine2", manager=mgr)
        keep.shutdown()


def test_derived_names_are_the_same_on_every_run() -> None:
    script = textwrap.dedent(
        """
        import poolwatch
        from prometheus_client import CollectorRegistry

        mgr = poolwatch.PoolManager(registry=CollectorRegistry())

        def handler():
            with poolwatch.ThreadPoolExecutor(manager=mgr) as ex:
                ex.submit(print, end="")

        class Service:
            def work(self):
                with poolwatch.ThreadPoolExecutor(manager=mgr) as ex:
                    ex.submit(print, end="")

        for _ in range(3):
            handler()
            Service().work()
        print(" ".join(p.name for p in mgr.pools()))
        mgr.shutdown()
        """
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs[0] == runs[1] == "main.handler main.Service.work"
