"""A real Dask cluster for the ``kind="dask"`` tests: two worker processes on loopback.

One ``LocalCluster`` serves every test (starting one takes seconds); each test
gets a fresh ``PoolManager`` on its own registry. The cluster is warmed up before the
first test so that the threads Dask starts lazily (its offload and callback threads)
are not taken for threads a test leaked.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager
from poolwatch.dask_demo import local_cluster
from support import fail_on_leaked_threads

# The workers import the tasks by name, as a real deployment's workers import its code:
# they are spawned with this process's sys.path.
sys.path.insert(0, str(Path(__file__).parent))
try:
    import dasktasks
    import distributed
    import psutil

    import dask
except ImportError:  # without the [dask] extra: each test module skips (fails under CI)
    pass

# Threads the cluster starts when its nanny replaces a worker process that died: the
# session's cluster owns them, not the test that killed the worker.
_CLUSTER_THREADS = ("AsyncProcess Dask Worker process", "QueueFeederThread")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """As for every test, but for the threads of replaced worker processes."""
    before = set(threading.enumerate())
    yield
    fail_on_leaked_threads(before, owned_elsewhere=lambda t: t.name.startswith(_CLUSTER_THREADS))


# A worker that dies mid-task gets its task retried once, then KilledWorker.
ALLOWED_FAILURES = 1


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    me = psutil.Process()
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        lc = local_cluster()
    try:
        yield lc
    finally:
        workers = _worker_processes(me)  # as now: a test may have had some replaced
        assert len(workers) >= 2, workers
        lc.close()
        _gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"Dask worker processes left running: {alive}"


def _worker_processes(parent: psutil.Process) -> list[psutil.Process]:
    """The cluster's worker processes: children started by multiprocessing's spawn (its
    resource tracker, also a child, outlives clusters by design)."""
    found = []
    for child in parent.children(recursive=True):
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(scope="session")
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster, set_as_default=False) as c:
        _warm_up(c)
        yield c


def _warm_up(c: Any) -> None:
    """Start what Dask starts on first use, and check the cluster is whole."""
    c.wait_for_workers(2, timeout=60)
    assert c.submit(dasktasks.square, 3, pure=False).result() == 9
    f = c.submit(dasktasks.fail_deep, "warm-up", pure=False)
    assert isinstance(f.exception(60), ValueError)
    f.cancel()
    distributed.Event("warm-up", client=c).set()
    c.gather(c.submit(dasktasks.square, 2, pure=False), asynchronous=False)


@pytest.fixture
def dask_client(client: Any) -> Any:
    """The session's client, with both workers up (a test may have killed one)."""
    client.wait_for_workers(2, timeout=60)
    return client


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def manager(registry: CollectorRegistry) -> Iterator[PoolManager]:
    mgr = PoolManager(registry=registry, tracer_provider=NoOpTracerProvider())
    try:
        yield mgr
    finally:
        mgr.shutdown(wait=True, timeout=30)


_tokens = itertools.count()


@pytest.fixture
def token() -> str:
    """A name no other test's cluster-wide events share."""
    return f"t{next(_tokens)}"


class Gate:
    """Opens and watches a ``dasktasks.gated`` task's cluster-wide events."""

    def __init__(self, client: Any, token: str) -> None:
        self.token = token
        self._started = distributed.Event(f"started-{token}", client=client)
        self._gate = distributed.Event(f"gate-{token}", client=client)

    def wait_started(self, timeout: float = 30) -> None:
        assert self._started.wait(timeout), f"task {self.token} did not start"

    def open(self) -> None:
        self._gate.set()


@pytest.fixture
def gates(dask_client: Any) -> Iterator[Any]:
    """``gates(token)`` -> a ``Gate``; every gate is opened at teardown."""
    made: list[Gate] = []

    def new(token: str) -> Gate:
        gate = Gate(dask_client, token)
        made.append(gate)
        return gate

    try:
        yield new
    finally:
        for gate in made:
            gate.open()
