"""Ways of keeping trivial tasks in flight on one LocalCluster, against Dask's own
``Client.get_executor()`` (every task in flight): what a bounded number in flight costs
when each task is submitted on its own, and what sending them in batches saves.

    python loadtest/dask_models.py [--tasks 1500] [--rounds 4]

Rows, each a median of alternating rounds and its ratio to Dask's executor:

- ``pool``: a ``kind="dask"`` pool, ``max_workers`` 16 and 64.
- ``threads``: plain threads, each ``client.submit(...).result()`` in turn (no poolwatch).
- ``window``: one thread keeping 16 in flight through ``distributed.as_completed``.
- ``waves``: ``Client.map`` of 16 or 64 tasks, then one gather of the wave.

The cluster is the benchmark's (two worker processes of one thread each, on loopback);
its scheduler runs in this process, on the client's event loop.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from distributed import Client, as_completed
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch.dask_demo import local_cluster


def noop(x: int) -> int:
    return x


def executor_rate(ex: Executor, n: int) -> float:
    start = time.perf_counter()
    futures = [ex.submit(noop, i) for i in range(n)]
    for f in futures:
        f.result()
    return n / (time.perf_counter() - start)


def threads_rate(client: Any, n: int, threads: int) -> float:
    numbers = iter(range(n))
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                i = next(numbers, None)
            if i is None:
                return
            client.submit(noop, i, pure=False).result()

    start = time.perf_counter()
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return n / (time.perf_counter() - start)


def window_rate(client: Any, n: int, size: int) -> float:
    start = time.perf_counter()
    numbers = iter(range(n))
    first = [client.submit(noop, i, pure=False) for i in itertools.islice(numbers, size)]
    done = as_completed(first, loop=client.loop)
    for f in done:
        f.result()
        i = next(numbers, None)
        if i is not None:
            done.add(client.submit(noop, i, pure=False))
    return n / (time.perf_counter() - start)


def waves_rate(client: Any, n: int, size: int) -> float:
    start = time.perf_counter()
    for low in range(0, n, size):
        client.gather(client.map(noop, range(low, min(n, low + size)), pure=False))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    n = args.tasks
    with local_cluster() as lc, Client(lc, set_as_default=False) as client:
        client.wait_for_workers(2)
        manager = poolwatch.PoolManager(registry=CollectorRegistry())
        pools = {
            size: manager.create_pool(f"p{size}", kind="dask", client=client, max_workers=size)
            for size in (16, 64)
        }
        dask = client.get_executor(pure=False)
        fns: dict[str, Callable[[], float]] = {
            "Client.get_executor()": lambda: executor_rate(dask, n),
            "pool max_workers=16": lambda: executor_rate(pools[16], n),
            "pool max_workers=64": lambda: executor_rate(pools[64], n),
            "threads x16, submit+result": lambda: threads_rate(client, n, 16),
            "threads x64, submit+result": lambda: threads_rate(client, n, 64),
            "window of 16, as_completed": lambda: window_rate(client, n, 16),
            "waves of 16, Client.map": lambda: waves_rate(client, n, 16),
            "waves of 64, Client.map": lambda: waves_rate(client, n, 64),
        }
        for fn in fns.values():  # warm up
            fn()
        samples: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(args.rounds):
            order = list(fns.items())
            for name, fn in order if r % 2 else reversed(order):
                samples[name].append(fn())
        base = samples["Client.get_executor()"]
        for name, values in samples.items():
            ratios = [v / b for v, b in zip(values, base, strict=True)]
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
            rate, ratio = statistics.median(values), statistics.median(ratios)
            print(f"{name:28s} {rate:7.0f} tasks/s  {ratio:.2f}x ({spread})")
        manager.shutdown()


if __name__ == "__main__":
    main()
