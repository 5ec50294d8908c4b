"""kind="process" on real child processes: results, failures, crashes, kills, cancels."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
from collections.abc import Callable
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool, _RemoteTraceback
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolManager, ProcessCrashedError, TaskState
from process import proctasks
from support import wait_until


@pytest.fixture(scope="module")
def shared(module_manager: PoolManager, gate: Any) -> Any:
    """One pool of two children for the tests that only run tasks on it, its workers
    started up front (so that no test sees them start)."""
    pool = module_manager.create_pool(
        "shared", kind="process", max_workers=2, initializer=proctasks.init_gate,
        initargs=(gate,),
    )  # fmt: skip
    blocked = [pool.submit(proctasks.wait_gate) for _ in range(2)]
    wait_until(lambda: pool.stats().active == 2)
    gate.set()
    assert len({f.result(timeout=60) for f in blocked}) == 2
    gate.clear()
    return pool


def test_results_and_map_with_chunks(shared: Any) -> None:
    assert isinstance(shared, ProcessPoolExecutor)
    assert shared.kind == "process"
    assert shared.submit(proctasks.square, 7).result(timeout=30) == 49
    assert list(shared.map(proctasks.square, range(50), chunksize=7)) == [x * x for x in range(50)]
    pids = {f.result(timeout=30) for f in [shared.submit(proctasks.pid) for _ in range(20)]}
    assert os.getpid() not in pids
    assert pids <= set(shared._processes)  # the stdlib's attribute, for code that reads it


def test_a_failure_keeps_the_childs_traceback(shared: Any) -> None:
    future = shared.submit(proctasks.fail, "bad input")
    with pytest.raises(ValueError, match="bad input") as caught:
        future.result(timeout=30)
    cause = caught.value.__cause__
    assert type(cause) is _RemoteTraceback  # as ProcessPoolExecutor reports it
    assert "raise ValueError(message)  # the line the traceback must show" in cause.tb
    info = future.info()
    assert info.state is TaskState.FAILED
    assert info.error_type == "ValueError"
    assert info.error_message == "bad input"
    assert info.traceback is not None
    assert "the line the traceback must show" in info.traceback


def test_what_cannot_be_pickled_fails_that_task_only(shared: Any) -> None:
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        shared.submit(lambda: 1).result(timeout=30)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        shared.submit(proctasks.unpicklable_result).result(timeout=30)
    assert shared.submit(proctasks.square, 3).result(timeout=30) == 9


def test_the_task_id_and_current_task_reach_the_child(shared: Any) -> None:
    future = shared.submit(proctasks.task_id)
    assert future.result(timeout=30) == future.task_id


@pytest.mark.parametrize(
    ("task", "args", "how"),
    [
        (proctasks.exit_now, (3,), "exited with code 3"),
        (proctasks.kill_self, (), "killed by signal 9 (SIGKILL)"),
        (proctasks.segfault, (), "killed by signal 11 (SIGSEGV)"),
    ],
    ids=["os._exit", "sigkill", "segfault"],
)
def test_a_crash_fails_its_own_task_and_the_pool_goes_on(
    shared: Any, task: Callable[..., Any], args: tuple[Any, ...], how: str
) -> None:
    before = shared.stats()
    others = [shared.submit(proctasks.square, i) for i in range(20)]
    crashed = shared.submit(task, *args)
    more = [shared.submit(proctasks.square, i) for i in range(20)]
    with pytest.raises(ProcessCrashedError, match=re.escape(how)) as caught:
        crashed.result(timeout=30)
    assert isinstance(caught.value, BrokenProcessPool)
    assert "shared_" in str(caught.value)  # names the worker
    assert [f.result(timeout=30) for f in others + more] == [i * i for i in range(20)] * 2
    after = shared.stats()
    assert after.failed - before.failed == 1
    assert after.succeeded - before.succeeded == 40
    assert after.state is poolwatch.PoolState.RUNNING
    assert crashed.info().error_type == "ProcessCrashedError"
    assert caught.value.pid not in shared._processes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_crashed_child_is_replaced_at_once(make_pool: Callable[..., Any], gate: Any) -> None:
    """Back to full strength as the crashed task reports, before any more work comes."""
    pool = make_pool(2)
    blocked = [pool.submit(proctasks.wait_gate) for _ in range(2)]
    wait_until(lambda: pool.stats().active == 2)
    gate.set()
    assert len({f.result(timeout=60) for f in blocked}) == 2
    for attempt in range(3):
        before = set(pool.worker_pids())
        assert len(before) == 2, attempt
        with pytest.raises(ProcessCrashedError) as caught:
            pool.submit(proctasks.exit_now, 3).result(timeout=60)
        now = set(pool.worker_pids())
        assert len(now) == 2, (attempt, now)
        assert caught.value.pid in before - now
        (new,) = now - before
        assert _alive(new)
        assert pool.stats().queued == pool.stats().active == 0  # no work waited for it
    assert pool.submit(proctasks.square, 4).result(timeout=60) == 16
    assert pool.stats().failed == 3


def test_accounting_is_exact_over_mixed_outcomes(shared: Any) -> None:
    before = shared.stats()
    futures = [
        shared.submit(proctasks.fail, "x") if i % 5 == 0 else shared.submit(proctasks.square, i)
        for i in range(200)
    ]
    results = [f.exception(timeout=60) for f in futures]
    after = shared.stats()
    assert sum(r is not None for r in results) == 40
    assert after.submitted - before.submitted == 200
    assert after.failed - before.failed == 40
    assert after.succeeded - before.succeeded == 160
    assert after.active == after.queued == 0


def test_metrics_say_the_kind(shared: Any, module_manager: PoolManager) -> None:
    registry = module_manager.registry
    assert (
        registry.get_sample_value("poolwatch_pool_info", {"pool": "shared", "kind": "process"}) == 1
    )
    submitted = registry.get_sample_value("poolwatch_tasks_submitted_total", {"pool": "shared"})
    assert submitted == shared.stats().submitted


def test_kill_on_run_timeout_cancels_the_task_and_replaces_its_child(
    make_pool: Callable[..., Any],
) -> None:
    # Long enough for a new child to start within it, on a loaded machine too.
    pool = make_pool(1, run_timeout=2.5, on_run_timeout="kill")
    first = pool.submit(proctasks.pid).result(timeout=60)
    stuck = pool.submit(proctasks.sleep_forever)
    with pytest.raises(CancelledError):
        stuck.result(timeout=30)
    info = stuck.info()
    assert info.state is TaskState.CANCELLED
    assert info.cancel_requested
    assert info.error_type == "TaskInterruptedError"
    assert info.error_message is not None
    assert "run timeout" in info.error_message
    (replacement,) = pool.worker_pids()  # started as the task ended, not on demand
    assert replacement != first
    assert pool.submit(proctasks.pid).result(timeout=60) == replacement
    stats = pool.stats()
    assert (stats.cancelled, stats.failed, stats.succeeded, stats.run_timeouts) == (1, 0, 2, 1)


def test_a_cooperative_cancel_reaches_the_child(make_pool: Callable[..., Any]) -> None:
    pool = make_pool(1)
    running = pool.submit(proctasks.until_cancelled, 30.0)
    wait_until(lambda: pool.stats().active == 1)
    assert pool.cancel(running.task_id) == "requested"
    with pytest.raises(CancelledError):
        running.result(timeout=30)
    assert running.info().state is TaskState.CANCELLED
    # The child lives on, and the next task is not taken for the cancelled one.
    assert pool.submit(proctasks.until_cancelled, 0.05).result(timeout=30) == "never asked"


def test_resize_starts_and_retires_children(make_pool: Callable[..., Any], gate: Any) -> None:
    pool = make_pool(1)
    blocked = [pool.submit(proctasks.wait_gate) for _ in range(3)]
    wait_until(lambda: pool.stats().active == 1)
    pool.configure(max_workers=3)
    wait_until(lambda: pool.stats().active == 3, timeout=60)
    assert len(pool._processes) == 3
    gate.set()
    assert len({f.result(timeout=30) for f in blocked}) == 3
    pool.configure(max_workers=1)
    wait_until(lambda: len(pool._processes) == 1, message="surplus children kept")
    assert pool.submit(proctasks.square, 5).result(timeout=30) == 25


def test_pause_queue_capacity_and_policies(make_pool: Callable[..., Any], gate: Any) -> None:
    pool = make_pool(1, queue_capacity=1, rejection_policy="abort")
    busy = pool.submit(proctasks.wait_gate)
    wait_until(lambda: pool.stats().active == 1)
    queued = pool.submit(proctasks.square, 2)
    with pytest.raises(poolwatch.RejectedError):
        pool.submit(proctasks.square, 3)
    pool.configure(rejection_policy="discard")
    assert pool.submit(proctasks.square, 4).cancelled()
    pool.configure(rejection_policy="discard_oldest")
    newest = pool.submit(proctasks.square, 5)
    assert queued.cancelled()
    pool.configure(rejection_policy="caller_runs")
    assert pool.submit(proctasks.square, 6).result(timeout=5) == 36  # in this process
    pool.pause()
    gate.set()
    busy.result(timeout=30)
    assert pool.stats().queued == 1
    assert not newest.done()
    pool.resume()
    assert newest.result(timeout=30) == 25
    stats = pool.stats()
    assert (stats.rejected, stats.cancelled, stats.succeeded) == (4, 1, 3)


def test_a_failing_initializer_breaks_the_pool(manager: PoolManager) -> None:
    pool = manager.create_pool(
        "broken", kind="process", max_workers=1, initializer=proctasks.fail, initargs=("init",)
    )
    with pytest.raises(BrokenProcessPool):
        pool.submit(proctasks.square, 2).result(timeout=60)
    wait_until(lambda: pool._broken)
    with pytest.raises(BrokenProcessPool):
        pool.submit(proctasks.square, 2)


def test_an_initializer_failing_in_a_later_child_fails_the_tasks_after_it(
    manager: PoolManager, tmp_path: Any
) -> None:
    # One task per child: the pool's first child runs the initializer, its replacement's
    # initializer fails.
    pool = manager.create_pool(
        "later", kind="process", max_workers=1, max_tasks_per_child=1,
        initializer=proctasks.init_once, initargs=(str(tmp_path / "ran"),),
    )  # fmt: skip
    assert pool.submit(proctasks.square, 2).result(timeout=60) == 4
    with pytest.raises(BrokenProcessPool, match="this initializer ran before"):
        pool.submit(proctasks.square, 3).result(timeout=60)
    # From then on every task fails so, instead of starting children in a loop.
    for future in [pool.submit(proctasks.square, 4) for _ in range(3)]:
        with pytest.raises(BrokenProcessPool, match="this initializer ran before"):
            future.result(timeout=60)
    assert pool.worker_pids() == []
    assert pool.stats().failed == 4


def test_max_tasks_per_child_replaces_the_child(make_pool: Callable[..., Any]) -> None:
    pool = make_pool(1, max_tasks_per_child=2)
    pids = [pool.submit(proctasks.pid).result(timeout=60) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    # The child after the fourth task started as that task ended.
    assert pool.worker_pids() == [pids[4]]
    pool.submit(proctasks.pid).result(timeout=60)
    (next_child,) = pool.worker_pids()
    assert next_child not in pids


def test_bad_kind_options_are_refused_by_name(manager: PoolManager) -> None:
    with pytest.raises(ValueError, match="on_run_timeout must be one of"):
        manager.create_pool("p", kind="process", on_run_timeout="later")
    with pytest.raises(ValueError, match="max_tasks_per_child must be"):
        manager.create_pool("p", kind="process", max_tasks_per_child=0)
    with pytest.raises(ValueError, match="mp_context must be"):
        manager.create_pool("p", kind="process", mp_context="teleport")
    with pytest.raises(TypeError, match="'client'"):
        manager.create_pool("p", kind="process", client=None)
    assert "p" not in manager


def test_the_stdlib_constructor() -> None:
    mgr = PoolManager(registry=CollectorRegistry())
    try:
        with poolwatch.ProcessPoolExecutor(2, manager=mgr) as ex:
            assert isinstance(ex, ProcessPoolExecutor)
            assert ex.name.endswith("test_process_pool.test_the_stdlib_constructor")
            assert ex._mp_context.get_start_method() == "forkserver"
            assert list(ex.map(proctasks.square, range(5))) == [0, 1, 4, 9, 16]
        assert ex.state is poolwatch.PoolState.TERMINATED
        assert ex._processes == {}
    finally:
        mgr.shutdown()


def test_the_constructor_applies_the_kinds_rules() -> None:
    """poolwatch.ProcessPoolExecutor refuses what create_pool(kind="process") refuses,
    with the same words, and makes no pool."""
    mgr = PoolManager(registry=CollectorRegistry())
    try:
        fork = multiprocessing.get_context("fork")
        with pytest.raises(ValueError, match="incompatible with the 'fork'") as caught:
            poolwatch.ProcessPoolExecutor(1, mp_context=fork, max_tasks_per_child=2, manager=mgr)
        with pytest.raises(ValueError, match="fork") as same:
            mgr.create_pool("p", kind="process", max_workers=1, mp_context="fork",
                            max_tasks_per_child=2)  # fmt: skip
        assert str(caught.value) == str(same.value)
        with pytest.raises(ValueError, match="on_run_timeout"):
            poolwatch.ProcessPoolExecutor(1, on_run_timeout="explode", manager=mgr)
        assert mgr.pools() == []
    finally:
        mgr.shutdown()
