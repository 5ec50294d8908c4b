"""The demo's tasks and load generator, in-process."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager, TaskState
from poolwatch.demo import DEMO_POOLS, LoadGenerator, create_demo_pools, crunch, flaky, hang, sleep
from poolwatch.tasks import get_task_type
from support import wait_until


def test_demo_tasks_are_registered_with_parameters() -> None:
    assert list(get_task_type("demo.sleep").signature.parameters) == ["seconds"]
    assert list(get_task_type("demo.crunch").signature.parameters) == ["n"]
    assert list(get_task_type("demo.flaky").signature.parameters) == ["fail_ratio", "seconds"]
    assert list(get_task_type("demo.hang").signature.parameters) == ["seconds", "linger"]


def test_demo_tasks_compute_and_check_their_arguments() -> None:
    assert crunch(10) == sum(i * i for i in range(10))
    assert sleep(0) == 0
    assert flaky(0.0, 0) == "ok"
    with pytest.raises(ValueError, match="seconds must be between 0 and 300"):
        sleep(-1)
    with pytest.raises(ValueError, match="fail_ratio must be between 0 and 1"):
        flaky(2.0)
    with pytest.raises(ValueError, match="n must be between"):
        crunch(-5)


def test_flaky_fails_with_realistic_errors() -> None:
    with pytest.raises((ConnectionResetError, TimeoutError, ValueError, KeyError)):
        flaky(1.0, 0)


def test_hang_stops_when_cancel_is_requested() -> None:
    with PoolManager(registry=CollectorRegistry()) as manager:
        pool = manager.create_pool("h", max_workers=1)
        future = pool.submit(hang, 60.0)
        wait_until(lambda: future.info().state is TaskState.RUNNING, message="hang running")
        assert pool.cancel(future.task_id) == "requested"
        wait_until(lambda: future.info().state.finished, message="hang stopped")
        assert future.info().state is TaskState.CANCELLED


def test_hang_lingers_after_a_cancel_request() -> None:
    with PoolManager(registry=CollectorRegistry()) as manager:
        pool = manager.create_pool("h", max_workers=1)
        future = pool.submit(hang, 60.0, 0.3)
        wait_until(lambda: future.info().state is TaskState.RUNNING, message="hang running")
        pool.cancel(future.task_id)
        wait_until(lambda: future.info().state.finished, message="hang stopped")
        info = future.info()
        assert info.state is TaskState.CANCELLED
        assert info.run_time is not None
        assert info.run_time >= 0.3


def test_crunch_stops_when_cancel_is_requested() -> None:
    with PoolManager(registry=CollectorRegistry()) as manager:
        pool = manager.create_pool("c", max_workers=1)
        future = pool.submit(crunch, 50_000_000)
        wait_until(lambda: future.info().state is TaskState.RUNNING, message="crunch running")
        pool.cancel(future.task_id)
        wait_until(lambda: future.info().state is TaskState.CANCELLED, message="crunch stopped")


def test_demo_pools_match_their_description() -> None:
    by_name = {p.name: p for p in DEMO_POOLS}
    assert by_name["io"].max_workers == 16
    assert by_name["cpu"].max_workers == 2
    assert by_name["flaky"].max_workers == 4
    assert (by_name["bounded"].max_workers, by_name["bounded"].queue_capacity) == (2, 8)
    assert by_name["bounded"].rejection_policy == "abort"
    assert (by_name["slow"].max_workers, by_name["slow"].run_timeout) == (2, 1.0)
    assert by_name["slow"].queue_timeout == 4.0


def test_load_generator_feeds_every_pool_and_bursts_get_rejected() -> None:
    manager = PoolManager(registry=CollectorRegistry())
    create_demo_pools(manager)
    generator = LoadGenerator(manager, burst_every=0.2, tick=0.02, seed=1)
    try:
        generator.start()
        assert generator.running
        for name in ("io", "cpu", "flaky", "bounded", "slow"):
            wait_until(
                lambda name=name: manager.get_pool(name).stats().submitted > 0,
                message=f"{name} gets tasks",
            )
        wait_until(
            lambda: manager.get_pool("bounded").stats().rejected > 0,
            message="a burst overflows the bounded pool",
        )
    finally:
        generator.stop()
        manager.shutdown(wait=True, cancel_futures=True)
    assert not generator.running
