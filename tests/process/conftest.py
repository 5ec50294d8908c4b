"""Fixtures for the process pool tests: managers, gates children can wait on, and a
check that no test module leaves a child process behind."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager
from poolwatch.options import default_mp_context

try:
    import psutil
except ImportError:  # pragma: no cover - psutil comes with the dev extra
    psutil = None


def _descendants() -> set[int]:
    """Child processes of this one (but multiprocessing's own servers)."""
    found = {p.pid for p in multiprocessing.active_children()}
    if psutil is not None:
        for p in psutil.Process(os.getpid()).children(recursive=True):
            try:
                command = " ".join(p.cmdline())
                if "forkserver" not in command and "resource_tracker" not in command:
                    found.add(p.pid)
            except psutil.NoSuchProcess:
                continue
    return found


@pytest.fixture(scope="module", autouse=True)
def no_leaked_processes() -> Iterator[None]:
    before = _descendants()
    yield
    leaked = _descendants() - before
    if leaked:
        pytest.fail(f"test module left child processes behind: {sorted(leaked)}", pytrace=False)


@pytest.fixture(scope="module")
def mp_context() -> Any:
    return default_mp_context()


@pytest.fixture(scope="module")
def gate(mp_context: Any) -> Iterator[Any]:
    """An Event children get through their initializer; opened at teardown."""
    event = mp_context.Event()
    yield event
    event.set()


@pytest.fixture(scope="module")
def module_manager() -> Iterator[PoolManager]:
    mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    yield mgr
    mgr.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def manager(gate: Any) -> Iterator[PoolManager]:
    mgr = PoolManager(registry=CollectorRegistry(), tracer_provider=NoOpTracerProvider())
    yield mgr
    gate.set()
    mgr.shutdown(wait=True, cancel_futures=True)
    gate.clear()


@pytest.fixture
def make_pool(manager: PoolManager, gate: Any) -> Callable[..., Any]:
    """A process pool on ``manager`` whose children can wait on ``gate``."""
    from process.proctasks import init_gate

    names = iter(range(1_000))

    def make(max_workers: int = 1, **settings: Any) -> Any:
        return manager.create_pool(
            f"procs-{next(names)}", kind="process", max_workers=max_workers,
            initializer=init_gate, initargs=(gate,), **settings,
        )  # fmt: skip

    return make
