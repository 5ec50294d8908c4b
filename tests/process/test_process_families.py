"""Process pools with a derived name form a pool family, as thread pools do."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolFamily, PoolManager


@pytest.fixture
def mgr() -> Iterator[PoolManager]:
    manager = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    yield manager
    manager.shutdown(wait=True, cancel_futures=True)


def handler(manager: PoolManager, n: int) -> tuple[str, bool]:
    """A request handler written for the stdlib: a process pool per call."""
    with poolwatch.ProcessPoolExecutor(1, manager=manager) as ex:
        assert ex.submit(abs, -n).result(timeout=60) == n
        return ex.name, isinstance(ex, ProcessPoolExecutor)


def both_kinds(manager: PoolManager) -> tuple[str, str]:
    """Code making a thread pool and a process pool, both named after it."""
    with poolwatch.ThreadPoolExecutor(1, manager=manager) as threads:
        threads.submit(abs, 1).result()
    with poolwatch.ProcessPoolExecutor(1, manager=manager) as processes:
        processes.submit(abs, 1).result(timeout=60)
    return threads.name, processes.name


def test_process_pools_made_in_one_place_are_one_family(mgr: PoolManager) -> None:
    get = mgr.registry.get_sample_value
    names = set()
    for n in range(3):
        name, is_process_pool = handler(mgr, n)
        gc.collect()
        names.add(name)
        assert is_process_pool
        assert get("poolwatch_tasks_submitted_total", {"pool": name}) == n + 1, "never reset"
    (name,) = names
    assert name.endswith("handler")
    family = mgr.get_pool(name)
    assert isinstance(family, PoolFamily)
    assert family.kind == "process"
    assert family.metrics_snapshot().kind == "process"
    assert get("poolwatch_pool_info", {"pool": name, "kind": "process"}) == 1.0
    assert [p.name for p in mgr.pools()] == [name]
    assert (family.stats().succeeded, family.instances()) == (3, 0)
    assert mgr.tasks(pool=name).total == 3


def test_a_family_holds_pools_of_one_kind(mgr: PoolManager) -> None:
    names = {both_kinds(mgr) for _ in range(2)}
    ((thread_name, process_name),) = names
    assert thread_name.endswith("both_kinds")
    assert process_name == f"{thread_name}-2", "the other kind takes the next free name"
    threads, processes = mgr.get_pool(thread_name), mgr.get_pool(process_name)
    assert (threads.kind, processes.kind) == ("thread", "process")
    assert threads.stats().succeeded == processes.stats().succeeded == 2
