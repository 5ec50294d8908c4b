"""``instrument()``: every ThreadPoolExecutor made afterwards is a managed pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread
import json
import subprocess
import sys
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
    assert issubclass(concurrent.futures.ThreadPoolExecutor, poolwatch.ThreadPoolExecutor)
    assert concurrent.futures.ThreadPoolExecutor is not STDLIB
    poolwatch.uninstrument()
    poolwatch.uninstrument()
    assert concurrent.futures.ThreadPoolExecutor is STDLIB
    assert concurrent.futures.thread.ThreadPoolExecutor is STDLIB
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        assert not isinstance(ex, poolwatch.ManagedPool)
    assert instrumented.pools() == []


def test_checks_against_the_patched_name_accept_every_thread_pool(instrumented: Any) -> None:
    early = STDLIB(1)  # the stdlib's own, as code that imported it first still makes
    made = concurrent.futures.ThreadPoolExecutor(1)

    class Derived(poolwatch.ThreadPoolExecutor):
        pass

    derived = Derived(1, name="derived", manager=instrumented)
    pools = [early, made, derived, instrumented.create_pool("mine", max_workers=1)]
    try:
        for name in (concurrent.futures, concurrent.futures.thread):
            patched = name.ThreadPoolExecutor
            assert [isinstance(p, patched) for p in pools] == [True] * 4
            assert [issubclass(type(p), patched) for p in pools] == [True] * 4
            assert issubclass(poolwatch.ManagedPool, patched)
            assert not isinstance(object(), patched)
            assert not issubclass(concurrent.futures.ProcessPoolExecutor, patched)
            assert not issubclass(poolwatch.ProcessPoolExecutor, patched)
        # poolwatch's own class is not widened: a stdlib executor is not a managed pool.
        assert not isinstance(early, poolwatch.ThreadPoolExecutor)
    finally:
        for pool in pools:
            pool.shutdown()


def test_a_class_derived_from_the_patched_name_checks_as_usual(instrumented: Any) -> None:
    class Library(concurrent.futures.ThreadPoolExecutor):
        pass

    with Library(1, thread_name_prefix="library") as mine, STDLIB(1) as stdlib:
        assert isinstance(mine, Library)
        assert isinstance(mine, poolwatch.ManagedPool)
        assert mine.submit(pow, 3, 2).result(timeout=10) == 9
        assert not isinstance(stdlib, Library)
        assert not issubclass(STDLIB, Library)
        assert issubclass(Library, concurrent.futures.ThreadPoolExecutor)


@pytest.mark.parametrize("source", ["create_pool", "stdlib", "patched name"])
def test_set_default_executor_takes_every_thread_pool(instrumented: Any, source: str) -> None:
    def make() -> concurrent.futures.Executor:
        if source == "create_pool":
            return instrumented.create_pool("loop", max_workers=1, thread_name_prefix="loop")
        if source == "stdlib":
            return STDLIB(1, thread_name_prefix="loop")
        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="loop")

    async def main() -> str:
        asyncio.get_running_loop().set_default_executor(make())
        return (await asyncio.to_thread(threading.current_thread)).name

    assert in_fresh_thread(lambda: asyncio.run(main())).startswith("loop")


_OWN_MANAGER_FIRST = """
import concurrent.futures, json, poolwatch
from prometheus_client import REGISTRY, generate_latest
own = poolwatch.PoolManager()  # the program's own, on the global registry
poolwatch.instrument()
with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="lib") as ex:
    assert ex.submit(pow, 2, 5).result() == 32
text = generate_latest(REGISTRY).decode()
print(json.dumps({
    "same": poolwatch.default_manager() is own,
    "pools": [p.name for p in own.pools()],
    "series": 'poolwatch_tasks_submitted_total{pool="lib"} 1.0' in text,
}))
"""


def test_executors_join_the_programs_own_manager_on_the_global_registry() -> None:
    """A program that made its own manager on the global registry before a library's
    executor: the executor joins it (the registry takes one), instead of failing."""
    # A process of its own: the suite's global registry stays free.
    out = subprocess.run(
        [sys.executable, "-c", _OWN_MANAGER_FIRST],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"same": True, "pools": ["lib"], "series": True}


def test_a_second_manager_on_the_global_registry_is_told_to_use_the_default() -> None:
    code = (
        "import poolwatch\n"
        "poolwatch.default_manager()\n"
        "try:\n    poolwatch.PoolManager()\n"
        "except ValueError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "poolwatch.default_manager(): use it" in out.stdout
