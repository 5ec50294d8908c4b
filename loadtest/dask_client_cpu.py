"""CPU per task in the client process (not the cluster's): poolwatch kind=dask vs
Client.get_executor(), same LocalCluster, 2,000 trivial tasks, 3 rounds alternating.

    python loadtest/dask_client_cpu.py
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import Executor, wait
from typing import Any

import psutil
from distributed import Client
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch.dask_demo import local_cluster


def noop(x: int) -> int:
    return x


def client_cpu(ex: Executor, n: int) -> tuple[float, float]:
    """(client CPU in microseconds per task, tasks per second)."""
    me = psutil.Process()
    t = me.cpu_times()
    w = time.perf_counter()
    wait([ex.submit(noop, i) for i in range(n)])
    t2 = me.cpu_times()
    w2 = time.perf_counter()
    return ((t2.user + t2.system) - (t.user + t.system)) / n * 1e6, n / (w2 - w)


def main() -> None:
    with local_cluster() as lc, Client(lc, set_as_default=False) as c:  # type: ignore[no-untyped-call]
        c.wait_for_workers(2)
        m = poolwatch.PoolManager(registry=CollectorRegistry())
        pool = m.create_pool("d", kind="dask", client=c)
        ex = c.get_executor(pure=False)
        client_cpu(ex, 200)
        client_cpu(pool, 200)
        res: dict[str, list[Any]] = {"Client.get_executor()": [], "poolwatch kind=dask": []}
        for _ in range(3):
            res["Client.get_executor()"].append(client_cpu(ex, 2000))
            res["poolwatch kind=dask"].append(client_cpu(pool, 2000))
        for k, v in res.items():
            cpu = statistics.median(x[0] for x in v)
            rate = statistics.median(x[1] for x in v)
            print(f"{k}: client CPU {cpu:,.0f} us/task, {rate:,.0f} tasks/s")
        m.shutdown()


if __name__ == "__main__":
    main()
