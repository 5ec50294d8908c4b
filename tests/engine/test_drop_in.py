"""A true ``ThreadPoolExecutor``: the class, the constructor and the stdlib's semantics.

CPython's own executor tests run against poolwatch in ``tests/cpython``; these are the
same promises checked on this interpreter, with poolwatch's records as evidence.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
from concurrent.futures.thread import BrokenThreadPool
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolManager, TaskState
from support import in_fresh_thread, wait_until


@pytest.fixture
def own_manager() -> Any:
    mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    yield mgr
    mgr.shutdown(wait=True, cancel_futures=True)


def threads_named(pattern: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if re.fullmatch(pattern, t.name)]


class TestTheClass:
    def test_pools_are_thread_pool_executors(self, own_manager: Any) -> None:
        made = own_manager.create_pool("made", max_workers=1)
        built = poolwatch.ThreadPoolExecutor(1, manager=own_manager)
        for pool in (made, built):
            assert isinstance(pool, concurrent.futures.ThreadPoolExecutor)
            assert isinstance(pool, poolwatch.ManagedPool)
        assert isinstance(built, poolwatch.ThreadPoolExecutor)
        built.shutdown()

    def test_asyncio_accepts_it_as_the_default_executor(self, own_manager: Any) -> None:
        pool = own_manager.create_pool("asyncio-default", max_workers=2)

        async def main() -> str:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(pool)  # warns (an error here) for a non-TPE
            via_loop = await loop.run_in_executor(None, threading.current_thread)
            via_to_thread = await asyncio.to_thread(threading.current_thread)
            return f"{via_loop.name} {via_to_thread.name}"

        names = in_fresh_thread(lambda: asyncio.run(main())).split()
        assert all(re.fullmatch(r"asyncio-default_[01]", n) for n in names), names
        assert pool.stats().succeeded == 2

    def test_constructor_takes_the_stdlib_arguments_and_settings(self, own_manager: Any) -> None:
        seen: list[tuple[str, int]] = []
        with poolwatch.ThreadPoolExecutor(
            2, "Special", seen.append, (("init", 1),), manager=own_manager,
            queue_capacity=5, run_timeout=30,
        ) as pool:  # fmt: skip
            assert pool.name == "Special"
            assert pool.submit(threading.current_thread).result(timeout=10).name == "Special_0"
            s = pool.stats()
            assert (s.max_workers, s.queue_capacity, s.run_timeout) == (2, 5, 30.0)
        assert seen == [("init", 1)]

    def test_names_derive_from_the_creating_code(self, own_manager: Any) -> None:
        pool = poolwatch.ThreadPoolExecutor(manager=own_manager)
        assert pool.name.endswith("TestTheClass.test_names_derive_from_the_creating_code")
        again = poolwatch.ThreadPoolExecutor(manager=own_manager)
        assert again.name == pool.name, "instances of one site share its name (a family)"
        assert again is not pool
        assert isinstance(own_manager.get_pool(pool.name), poolwatch.PoolFamily)
        assert pool.stats().max_workers == min(32, (os.cpu_count() or 1) + 4)
        pool.shutdown()
        again.shutdown()

    def test_subclass_init_is_skipped_when_naming(self, own_manager: Any) -> None:
        class Custom(poolwatch.ThreadPoolExecutor):
            def __init__(self) -> None:
                super().__init__(1, manager=own_manager)

        pool = Custom()
        assert pool.name.endswith("test_subclass_init_is_skipped_when_naming")
        assert pool.submit(pow, 2, 3).result(timeout=10) == 8
        pool.shutdown()

    @pytest.mark.parametrize("bad", [0, -1])
    def test_max_workers_below_one_has_the_stdlib_message(self, own_manager: Any, bad: int) -> None:
        for make in (
            lambda: poolwatch.ThreadPoolExecutor(bad, manager=own_manager),
            lambda: own_manager.create_pool("bad", max_workers=bad),
        ):
            with pytest.raises(ValueError, match="max_workers must be greater than 0"):
                make()
        assert own_manager.pools() == []


class TestThreadNames:
    def test_prefix_and_default_names_have_the_stdlib_shape(self, own_manager: Any) -> None:
        gate = threading.Event()
        prefixed = poolwatch.ThreadPoolExecutor(3, "Shape", manager=own_manager)
        plain = poolwatch.ThreadPoolExecutor(3, manager=own_manager)
        made = own_manager.create_pool("named", max_workers=3)
        try:
            for pool in (prefixed, plain, made):
                for _ in range(3):
                    pool.submit(gate.wait)
            wait_until(lambda: len(threads_named(r"Shape_[0-2]")) == 3, message="prefixed")
            assert len(threads_named(r"ThreadPoolExecutor-\d+_[0-2]")) >= 3
            assert len(threads_named(r"named_[0-2]")) == 3
        finally:
            gate.set()
            for pool in (prefixed, plain, made):
                pool.shutdown()

    def test_names_stay_bounded_as_workers_come_and_go(self, own_manager: Any) -> None:
        pool = own_manager.create_pool("churn", max_workers=4, history_size=100_000)
        for _ in range(50):
            gates = [threading.Event() for _ in range(4)]
            futures = [pool.submit(g.wait) for g in gates]
            wait_until(lambda: pool.stats().active == 4, message="four workers busy")
            pool.configure(max_workers=1)  # the busy workers retire as they finish
            for g in gates:
                g.set()
            for f in futures:
                f.result(timeout=10)
            wait_until(lambda: pool.stats().workers <= 1, message="surplus workers retired")
            pool.configure(max_workers=4)
        workers = {t.worker for t in pool_tasks(own_manager, "churn")}
        assert workers <= {f"churn_{i}" for i in range(4)}, workers


def pool_tasks(manager: Any, pool: str) -> list[Any]:
    return list(manager.tasks(pool=pool, limit=10_000).items)


class TestDroppedWithoutShutdown:
    def test_idle_workers_exit_and_the_manager_forgets_it(self, own_manager: Any) -> None:
        pool = poolwatch.ThreadPoolExecutor(3, "Dropped", manager=own_manager)
        results = pool.map(abs, range(-5, 5))
        assert list(results) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        assert threads_named(r"Dropped_\d")
        del pool, results
        gc.collect()
        wait_until(lambda: not threads_named(r"Dropped_\d"), message="idle workers exit")
        # The instance is gone; its family keeps its counts (counters never reset).
        family = own_manager.get_pool("Dropped")
        assert family.instances() == 0
        assert (family.stats().succeeded, family.stats().workers) == (10, 0)

    def test_explicitly_named_pools_are_forgotten_when_dropped(self, own_manager: Any) -> None:
        pool = poolwatch.ThreadPoolExecutor(2, name="Forgotten", manager=own_manager)
        assert pool.submit(pow, 2, 5).result(timeout=10) == 32
        del pool
        gc.collect()
        wait_until(lambda: "Forgotten" not in own_manager, message="the manager forgets it")
        assert own_manager.pools() == []

    def test_queued_work_still_runs_after_the_pool_is_dropped(self, own_manager: Any) -> None:
        gate = threading.Event()
        pool = poolwatch.ThreadPoolExecutor(1, "Draining", manager=own_manager)
        first = pool.submit(gate.wait)
        later = [pool.submit(pow, 2, i) for i in range(5)]
        del pool
        gc.collect()
        gate.set()
        assert first.result(timeout=10) is True
        assert [f.result(timeout=10) for f in later] == [1, 2, 4, 8, 16]
        wait_until(lambda: not threads_named(r"Draining_\d"), message="the worker exits")

    def test_pools_from_create_pool_are_kept(self, own_manager: Any) -> None:
        own_manager.create_pool("kept", max_workers=1)
        gc.collect()
        assert own_manager.get_pool("kept").submit(pow, 3, 2).result(timeout=10) == 9


class TestInitializer:
    def test_runs_once_per_worker_thread(self, own_manager: Any) -> None:
        local = threading.local()
        ran: list[str] = []

        def init(tag: str) -> None:
            local.tag = tag
            ran.append(threading.current_thread().name)

        gate = threading.Event()
        pool = own_manager.create_pool("init", max_workers=2, initializer=init, initargs=("x",))
        blockers = [pool.submit(gate.wait) for _ in range(2)]
        wait_until(lambda: pool.stats().active == 2, message="both workers started")
        gate.set()
        tags = [pool.submit(lambda: local.tag).result(timeout=10) for _ in range(6)]
        assert tags == ["x"] * 6
        assert all(f.result(timeout=10) for f in blockers)
        assert sorted(ran) == ["init_0", "init_1"]

    def test_a_failing_initializer_breaks_the_pool(
        self, own_manager: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        started = threading.Event()
        release = threading.Event()

        def init() -> None:
            started.set()
            release.wait(10)
            raise ValueError("error in initializer")

        pool = own_manager.create_pool("broken", max_workers=1, initializer=init)
        with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
            queued = [pool.submit(pow, 2, i) for i in range(3)]
            assert started.wait(10)
            release.set()
            for f in queued:
                with pytest.raises(BrokenThreadPool, match="initializer failed"):
                    f.result(timeout=10)
        assert any(
            "ValueError: error in initializer" in r.getMessage()
            or (r.exc_info and "error in initializer" in str(r.exc_info[1]))
            for r in caplog.records
        )
        with pytest.raises(BrokenThreadPool):
            pool.submit(pow, 2, 2)
        s = pool.stats()
        assert (s.failed, s.succeeded, s.submitted) == (3, 0, 3)
        assert all(t.state is TaskState.FAILED and t.error_type == "BrokenThreadPool"
                   for t in pool_tasks(own_manager, "broken"))  # fmt: skip
        wait_until(lambda: pool.stats().state is poolwatch.PoolState.TERMINATED,
                   message="a broken pool ends")  # fmt: skip


class TestWaitingForItself:
    @pytest.mark.parametrize("repeat", range(5))
    def test_shutdown_from_own_tasks_raises_while_workers_start(
        self, own_manager: Any, repeat: int
    ) -> None:
        pool = own_manager.create_pool(f"self-wait-{repeat}", max_workers=64)
        gate = threading.Event()
        refused: list[str] = []
        lock = threading.Lock()

        def task() -> None:
            gate.wait(10)
            try:
                pool.shutdown(wait=True)
            except RuntimeError as exc:
                with lock:
                    refused.append(str(exc))

        def submitter() -> None:
            pool.submit_many(task, [()] * 16)

        threads = [threading.Thread(target=submitter) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        gate.set()
        wait_until(lambda: pool.stats().succeeded == 64, message="every task returned")
        assert len(refused) == 64
        assert all("it would wait for itself" in m for m in refused)
        assert pool.state is poolwatch.PoolState.RUNNING


_FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp
    from prometheus_client import CollectorRegistry
    import poolwatch

    manager = poolwatch.PoolManager(registry=CollectorRegistry())
    pool = manager.create_pool("forked", max_workers=2)
    hold = threading.Event()
    busy = pool.submit(hold.wait)          # a worker busy in the parent
    def again():                            # and one resubmitting itself, taking the lock
        try:
            pool.submit(again)
        except RuntimeError:
            pass
    pool.submit(again)
    assert pool.stats().submitted >= 2

    pid = os.fork()
    if pid == 0:
        s = pool.stats()
        ok = (s.submitted, s.workers, s.active, s.queued) == (0, 0, 0, 0)
        ok = ok and pool.submit(pow, 2, 5).result(timeout=10) == 32
        ok = ok and pool.stats().submitted == 1
        manager.shutdown()
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    with ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as workers:
        assert workers.submit(pow, 3, 3).result(timeout=30) == 27
    hold.set()
    manager.shutdown()
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_clean_pools() -> None:
    # In a fresh interpreter: forking a process that runs threads is only sound there.
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", _FORK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_pool_dropped_by_its_own_task_does_not_wedge_its_worker() -> None:
    # The last reference to the pool is the task's argument, dropped by the worker as it
    # records the task: the pool is collected right there, inside the engine's lock.
    mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    try:
        gate = threading.Event()
        pool = poolwatch.ThreadPoolExecutor(1, "SelfHeld", manager=mgr)
        fut = pool.submit(lambda p: gate.wait(10), pool)
        del pool
        gate.set()
        assert fut.result(timeout=10) is True
        wait_until(lambda: not threads_named(r"SelfHeld_\d"), message="the worker exits")
    finally:
        mgr.shutdown(wait=True)


def test_a_thread_that_cannot_start_fails_the_submit_and_strands_nothing(
    own_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = own_manager.create_pool("no-threads", max_workers=2)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        pool.submit(pow, 2, 2)
    monkeypatch.undo()
    s = pool.stats()
    assert (s.queued, s.workers, s.failed, s.submitted) == (0, 0, 1, 1)
    assert pool.submit(pow, 2, 3).result(timeout=10) == 8
