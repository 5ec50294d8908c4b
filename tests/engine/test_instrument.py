"""``instrument()``: every ThreadPoolExecutor made afterwards is a managed pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolManager
from support import in_fresh_thread

STDLIB = concurrent.futures.thread.ThreadPoolExecutor


@pytest.fixture
def instrumented() -> Iterator[PoolManager]:
    mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    poolwatch.instrument(mgr)
    try:
        yield mgr
    finally:
        poolwatch.uninstrument()
        mgr.shutdown(wait=True)


def test_every_way_of_naming_the_class_gets_a_managed_pool(instrumented: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor  # imported after instrument()

    for make in (
        ThreadPoolExecutor,
        concurrent.futures.ThreadPoolExecutor,
        concurrent.futures.thread.ThreadPoolExecutor,
    ):
        with make(max_workers=2, thread_name_prefix="lib") as ex:
            assert isinstance(ex, poolwatch.ManagedPool)
            assert isinstance(ex, STDLIB)
            assert ex.submit(pow, 2, 4).result(timeout=10) == 16
            assert instrumented.get_pool(ex.name).instances() == 1
        assert ex.stats().succeeded == 1
    # Three executors made with one prefix: one family, counting all three.
    assert [p.name for p in instrumented.pools()] == ["lib"]
    assert instrumented.get_pool("lib").stats().succeeded == 3


def test_asyncio_default_executor_is_a_pool_named_asyncio(instrumented: Any) -> None:
    async def main() -> str:
        return (await asyncio.to_thread(threading.current_thread)).name

    seen: list[Any] = []

    async def run() -> str:
        name = await main()
        seen.extend(instrumented.pools())  # while the loop's executor is alive
        return name

    thread_name = in_fresh_thread(lambda: asyncio.run(run()))
    assert thread_name.startswith("asyncio_")
    assert [p.name for p in seen] == ["asyncio"]
    assert seen[0].stats().succeeded == 1


def test_uninstrument_restores_the_stdlib_and_is_idempotent(instrumented: Any) -> None:
    poolwatch.instrument(instrumented)  # again: no change
    assert concurrent.futures.ThreadPoolExecutor is poolwatch.ThreadPoolExecutor
    poolwatch.uninstrument()
    poolwatch.uninstrument()
    assert concurrent.futures.ThreadPoolExecutor is STDLIB
    assert concurrent.futures.thread.ThreadPoolExecutor is STDLIB
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        assert not isinstance(ex, poolwatch.ManagedPool)
    assert instrumented.pools() == []
