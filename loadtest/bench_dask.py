"""The ``dask`` rows of ``bench.py``: a ``kind="dask"`` pool against Dask's own
``Client.get_executor()`` on the same ``LocalCluster`` (two worker processes of one
thread each, on loopback), the same tasks, in alternating rounds.

    python loadtest/bench.py --only dask

Three kinds of task: trivial ones (Dask's own overhead per task is all there is),
10 ms waits (I/O-like: the cluster's two threads are the limit, 200 tasks/s ideal) and
5 ms of pure-Python work (CPU-bound; the cluster's workers share this machine's CPUs with
the scheduler and the client). Then one task at a time (a round trip each), and the
pool at 2 to 64 tasks in flight per cluster thread: the measurements behind the default
``max_workers``. The machine's load average is given too: the client, the scheduler and
both workers share its CPUs with whatever else runs.

Run by bench.py; the workers import this module by name (it sits on their sys.path,
inherited from the bench's process).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

from distributed import Client
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch.dask_demo import local_cluster

THREADS = 2  # the cluster's: two workers of one thread
PER_THREAD = (2, 4, 8, 16, 32, 64)  # tasks in flight per cluster thread, in the sweep


def add_one(x: int) -> int:
    return x + 1


def wait_10ms(x: int) -> int:
    time.sleep(0.01)
    return x


def crunch_5ms(x: int) -> int:
    """About 5 ms of pure-Python work."""
    end = time.perf_counter() + 0.005
    n = 0
    while time.perf_counter() < end:
        n += 1
    return x


@contextmanager
def cluster() -> Iterator[Any]:
    with local_cluster() as lc, Client(lc, set_as_default=False) as client:
        client.wait_for_workers(2)
        yield client


def _rate(executor: Executor, fn: Callable[[int], int], n: int) -> float:
    start = time.perf_counter()
    futures = [executor.submit(fn, i) for i in range(n)]
    for f in futures:
        f.result()
    return n / (time.perf_counter() - start)


def _one_at_a_time(executor: Executor, n: int) -> float:
    """Tasks per second with one trivial task in flight: the inverse of a round trip."""
    start = time.perf_counter()
    for i in range(n):
        executor.submit(add_one, i).result()
    return n / (time.perf_counter() - start)


def round_trips(client: Any, bench: Any, repeats: int) -> list[dict[str, Any]]:
    """One trivial task at a time (100 of them): Dask's round trip, and the pool's."""

    def pool_trips() -> float:
        with poolwatch.PoolManager(registry=CollectorRegistry()) as manager:
            pool = manager.create_pool("bench", kind="dask", client=client, max_workers=1)
            return _one_at_a_time(pool, 100)

    fns: dict[str, Callable[[], float]] = {
        "dask": lambda: _one_at_a_time(client.get_executor(pure=False), 100),
        "pool": pool_trips,
    }
    samples = bench.rounds(repeats, fns)
    label = "dask one trivial task at a time x100"
    return [
        bench.baseline_row(f"{label}: Client.get_executor()", samples["dask"], "tasks/s"),
        bench.compared_row(f"{label}: poolwatch kind=dask", samples["pool"], samples["dask"],
                           "tasks/s", None),
    ]  # fmt: skip


def dask_rate(client: Any, fn: Callable[[int], int], n: int) -> float:
    """Tasks per second through ``client.get_executor()`` (``pure=False``: no key hashing,
    the quicker way), every task submitted at once, results waited for in order."""
    return _rate(client.get_executor(pure=False), fn, n)


def pool_rate(client: Any, fn: Callable[[int], int], n: int, max_workers: int | None) -> float:
    """The same through a fresh ``kind="dask"`` pool on the same client."""
    with poolwatch.PoolManager(registry=CollectorRegistry()) as manager:
        pool = manager.create_pool("bench", kind="dask", client=client, max_workers=max_workers)
        return _rate(pool, fn, n)


def bench_dask(args: argparse.Namespace, bench: Any) -> list[dict[str, Any]]:
    """The rows; ``bench`` is the runner's module, for its rounds and rows."""
    rounds, row = bench.rounds, bench.row
    baseline_row, compared_row = bench.baseline_row, bench.compared_row
    quick = args.quick
    tasks = {
        "trivial": (add_one, 500 if quick else 2000),
        "10 ms wait": (wait_10ms, 200 if quick else 600),
        "5 ms CPU": (crunch_5ms, 200 if quick else 600),
    }
    rows = []
    load_before = os.getloadavg()[0]
    with cluster() as client:
        for label, (fn, n) in tasks.items():
            fns: dict[str, Callable[[], float]] = {
                "dask": lambda fn=fn, n=n: dask_rate(client, fn, n),  # type: ignore[misc]
                "pool": lambda fn=fn, n=n: pool_rate(client, fn, n, None),  # type: ignore[misc]
            }
            samples = rounds(args.repeats, fns)
            base = samples["dask"]
            rows.append(baseline_row(f"dask {label} x{n}: Client.get_executor()", base, "tasks/s"))
            rows.append(compared_row(f"dask {label} x{n}: poolwatch kind=dask (default)",
                                     samples["pool"], base, "tasks/s", ">= 0.9x"))  # fmt: skip
        rows += round_trips(client, bench, max(3, args.repeats // 2))
        rows += _in_flight_sweep(client, args, bench)
    load_after = os.getloadavg()[0]
    rows.append(row("dask rows: load average (1 min) before", load_before, "", None, None))
    rows.append(row("dask rows: load average (1 min) after", load_after, "", None, None))
    return rows


def _in_flight_sweep(client: Any, args: argparse.Namespace, bench: Any) -> list[dict[str, Any]]:
    """The pool at 2 to 64 tasks in flight per cluster thread, against Dask."""
    rounds, compared_row = bench.rounds, bench.compared_row
    rows = []
    for label, fn, n in (("trivial", add_one, 1000), ("10 ms wait", wait_10ms, 300)):

        def dask_round(fn: Callable[[int], int] = fn, n: int = n) -> float:
            return dask_rate(client, fn, n)

        fns: dict[str, Callable[[], float]] = {"dask": dask_round}
        for per in PER_THREAD:

            def pool_round(fn: Callable[[int], int] = fn, n: int = n, per: int = per) -> float:
                return pool_rate(client, fn, n, per * THREADS)

            fns[f"x{per}"] = pool_round
        samples = rounds(max(3, args.repeats // 2), fns)
        for per in PER_THREAD:
            rows.append(compared_row(
                f"dask {label} x{n}: pool max_workers={per * THREADS} ({per} per thread)",
                samples[f"x{per}"], samples["dask"], "tasks/s", None,
            ))  # fmt: skip
    return rows
