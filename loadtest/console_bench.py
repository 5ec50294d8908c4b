"""The console's server-side costs: the live-stack endpoint and the sample history.

    python loadtest/console_bench.py                  # all three measurements
    python loadtest/console_bench.py --requests 2000

1. ``GET /api/tasks/{id}/stack`` with 100 tasks running (each ten calls deep, in
   ``threading.Event.wait``), through a real uvicorn server on 127.0.0.1 and an httpx
   client: the latency a caller sees, median and p99, beside ``/healthz`` on the same
   server (the HTTP floor) and ``PoolManager.task_stack`` called directly.
2. The sample history of 100 pools after fifteen minutes (900 samples each, the window
   full): its size by ``tracemalloc`` (what the history's code allocated and holds) and by
   ``SampleHistory.memory_bytes()``, for idle pools, busy pools (queues in the
   hundreds, a few hundred completions a second, noisy) and a worst case of random
   31-bit numbers, which no encoding can store in less than ~4 bytes a value.
3. The sampler's own cost: one sample of 100 pools (the work of one second), and the
   time a real pool takes to run 20,000 tiny tasks with the sampler running and not.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import uvicorn
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager, create_app, samples
from poolwatch.accounting import BUCKETS, PoolSnapshot
from poolwatch.records import PoolState, PoolStats
from poolwatch.samples import SampleHistory


def _nest(depth: int, release: threading.Event) -> None:
    if depth:
        _nest(depth - 1, release)
    else:
        release.wait()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_stack(requests: int) -> None:
    release = threading.Event()
    manager = PoolManager(registry=CollectorRegistry())
    pool = manager.create_pool("bench", max_workers=100)
    futures = [pool.submit(_nest, 10, release) for _ in range(100)]
    while pool.stats().active < 100:
        threading.Event().wait(0.01)
    app = create_app(manager, bind_host="127.0.0.1")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-uvicorn")
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    ids = [f.task_id for f in futures]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:

            def timed(path: Callable[[int], str]) -> list[float]:
                out = []
                for i in range(requests):
                    started = time.perf_counter()
                    response = client.get(path(i))
                    out.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"{path(i)} -> {response.status_code}")
                return out

            timed(lambda i: f"/api/tasks/{ids[i % 100]}/stack")  # warm up
            stack = timed(lambda i: f"/api/tasks/{ids[i % 100]}/stack")
            floor = timed(lambda i: "/healthz")
            frames = len(client.get(f"/api/tasks/{ids[0]}/stack").json()["frames"])
        direct = []
        for i in range(requests):
            started = time.perf_counter()
            manager.task_stack(ids[i % 100])
            direct.append((time.perf_counter() - started) * 1000)
        threads = threading.active_count()
        print(f"stack endpoint, 100 running tasks ({frames} frames each, {threads} threads):")
        for label, values in (
            ("GET /api/tasks/{id}/stack", stack),
            ("GET /healthz (same server)", floor),
            ("PoolManager.task_stack()", direct),
        ):
            print(
                f"  {label:30} median {statistics.median(values):6.3f} ms"
                f"   p99 {_percentile(values, 0.99):6.3f} ms   (n={len(values)})"
            )
    finally:
        server.should_exit = True
        thread.join()
        release.set()
        manager.shutdown()


class _FakePool:
    """A pool as the sampler sees it, with numbers made up by ``step``."""

    def __init__(self, name: str, step: Callable[[random.Random], dict[str, int]]) -> None:
        self.name = name
        self._step = step
        self._rng = random.Random(name)
        self._totals = dict.fromkeys(
            ("succeeded", "failed", "rejected", "queue_timeouts", "run_timeouts"), 0
        )
        self._gauges = {"queued": 0, "workers": 0, "active": 0}

    def advance(self) -> None:
        values = self._step(self._rng)
        for key in self._totals:
            self._totals[key] += values.get(key, 0)
        for key in self._gauges:
            self._gauges[key] = values.get(key, 0)

    def stats(self) -> PoolStats:
        t, g = self._totals, self._gauges
        return PoolStats(
            name=self.name, state=PoolState.RUNNING, max_workers=16, workers=g["workers"],
            active=g["active"], idle=0, queued=g["queued"], queue_capacity=None,
            rejection_policy="abort", queue_timeout=None, run_timeout=None,
            submitted=t["succeeded"] + t["failed"], succeeded=t["succeeded"],
            failed=t["failed"], cancelled=0, rejected=t["rejected"], overdue=0,
            oldest_queued_age=0.0, queue_timeouts=t["queue_timeouts"],
            run_timeouts=t["run_timeouts"],
        )  # fmt: skip

    def metrics_snapshot(self) -> PoolSnapshot:
        n = len(BUCKETS) + 1
        done = self._totals["succeeded"]
        hist = ([done // n] * n, 0.0, [None] * n)
        return PoolSnapshot(
            stats=self.stats(), rejected_full=0, rejected_shutdown=0, timeouts_queue=0,
            timeouts_run=0, queue_wait=hist, labels=[("work", done, 0, 0, hist)],
        )  # fmt: skip


class _FakeSource:
    def __init__(self, pools: list[_FakePool]) -> None:
        self._pools = pools

    def pools(self) -> list[_FakePool]:
        return self._pools


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _idle(rng: random.Random) -> dict[str, int]:
    return {"workers": 4}


def _busy(rng: random.Random) -> dict[str, int]:
    return {
        "queued": max(0, int(rng.gauss(300, 120))),
        "workers": 16,
        "active": rng.randrange(10, 17),
        "succeeded": max(0, int(rng.gauss(300, 60))),
        "failed": max(0, int(rng.gauss(10, 4))),
        "rejected": rng.randrange(0, 30),
        "queue_timeouts": rng.randrange(0, 3),
        "run_timeouts": rng.randrange(0, 2),
    }


def _random(rng: random.Random) -> dict[str, int]:
    top = (1 << 31) - 1
    return {k: rng.randrange(top) for k in ("queued", "workers", "active")} | {
        k: rng.randrange(1 << 20)
        for k in ("succeeded", "failed", "rejected", "queue_timeouts", "run_timeouts")
    }


def bench_memory() -> None:
    print("sample history, 100 pools, 900 samples each (15 minutes at 1 s):")
    for label, step in (("idle", _idle), ("busy", _busy), ("random 31-bit", _random)):
        pools = [_FakePool(f"pool-{i:03d}", step) for i in range(100)]
        source = _FakeSource(pools)
        clock = _Clock()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        history = SampleHistory(source, clock=clock)
        for tick in range(960):  # a minute past the window: old data is being dropped
            for p in pools:
                p.advance()
            clock.now = float(tick)
            history.sample()
        # What the history's own code allocated and still holds (zlib's output
        # included); the fake pools' objects are not the history's.
        mine = [tracemalloc.Filter(True, samples.__file__)]
        after = tracemalloc.take_snapshot().filter_traces(mine)
        tracemalloc.stop()
        traced = sum(s.size_diff for s in after.compare_to(before.filter_traces(mine), "filename"))
        kept = sum(len(s.values["queued"]) for s in history.samples())
        print(
            f"  {label:14} tracemalloc {traced / 1e6:5.2f} MB   memory_bytes() "
            f"{history.memory_bytes() / 1e6:5.2f} MB   ({kept // 100} samples a pool)"
        )
        del history


def bench_sampler() -> None:
    pools = [_FakePool(f"pool-{i:03d}", _busy) for i in range(100)]
    source = _FakeSource(pools)  # the history holds its source weakly
    clock = _Clock()
    history = SampleHistory(source, clock=clock)
    costs = []
    for tick in range(300):
        for p in pools:
            p.advance()
        clock.now = float(tick)
        started = time.perf_counter()
        history.sample()
        costs.append((time.perf_counter() - started) * 1000)
    print(
        f"sampler: one sample of 100 pools median {statistics.median(costs):.2f} ms, "
        f"max {max(costs):.2f} ms (once a second; one in ten also copies histograms)"
    )
    for sampling in (False, True, False, True):
        manager = PoolManager(registry=CollectorRegistry())
        for i in range(100):
            manager.create_pool(f"p{i}", max_workers=1)
        real = SampleHistory(manager, interval=0.01)  # a hundred times the real rate
        if sampling:
            real.start()
        pool = manager.get_pool("p0")
        started = time.perf_counter()
        futures = [pool.submit(int) for _ in range(20_000)]
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - started
        real.stop()
        manager.shutdown()
        state = "sampling 100x/s" if sampling else "no sampler     "
        print(f"  20,000 tasks, {state}: {elapsed * 1000:7.1f} ms")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    args: Any = parser.parse_args(argv)
    if args.requests:
        bench_stack(args.requests)
    bench_memory()
    bench_sampler()


if __name__ == "__main__":
    main()
