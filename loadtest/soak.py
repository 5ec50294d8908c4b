"""Soak test: minutes of sustained load with continuous resizes, pauses and cancels.

    python loadtest/soak.py --minutes 5

Checks, and exits non-zero when one fails:
- resident memory stays flat: after a warm-up (a quarter of the run) it grows by less
  than ``--rss-growth`` percent (history is bounded, so it must level off);
- the books balance exactly at the end: for every pool, ``submitted`` equals
  ``succeeded + failed + cancelled``, the futures' outcomes agree one for one, and the
  Prometheus counters agree with ``stats()``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from concurrent.futures import CancelledError, Future
from typing import Any

from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch import PoolManager, RejectedError

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def work(kind: int, spin: int) -> int:
    task = poolwatch.current_task()
    if kind == 0:
        raise ValueError("planned failure")
    total = 0
    for i in range(spin):
        total += i
        if task is not None and i % 256 == 0:
            task.raise_if_cancel_requested()
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--pools", type=int, default=4)
    parser.add_argument("--rss-growth", type=float, default=10.0, help="percent allowed")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.minutes * 60
    registry = CollectorRegistry()
    manager = PoolManager(registry=registry)
    pools = [
        manager.create_pool(
            f"soak{i}",
            max_workers=4,
            queue_capacity=200,
            rejection_policy=("abort", "discard_oldest", "discard", "caller_runs")[i % 4],
            run_timeout=0.5,
            history_size=5_000,
        )
        for i in range(args.pools)
    ]
    stop = threading.Event()
    lock = threading.Lock()
    outcomes = {"succeeded": 0, "failed": 0, "cancelled": 0, "rejected": 0}
    recent: list[Future[Any]] = []

    def count(fut: Future[Any]) -> None:
        try:
            fut.result()
            key = "succeeded"
        except CancelledError:
            key = "cancelled"
        except Exception:
            key = "failed"
        with lock:
            outcomes[key] += 1

    def submitter(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            pool = rng.choice(pools)
            try:
                fut = pool.submit(work, rng.randrange(10), rng.choice((10, 100, 2_000, 20_000)))
            except RejectedError:
                with lock:
                    outcomes["rejected"] += 1
                continue
            fut.add_done_callback(count)
            with lock:
                recent.append(fut)
                del recent[:-500]

    def controller(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.wait(0.002):
            pool = rng.choice(pools)
            op = rng.random()
            if op < 0.3:
                pool.configure(max_workers=rng.randint(1, 8))
            elif op < 0.4:
                pool.configure(queue_capacity=rng.choice((10, 50, 200, None)))
            elif op < 0.5:
                pool.pause()
            elif op < 0.7:
                pool.resume()
            else:
                with lock:
                    victim = rng.choice(recent) if recent else None
                if victim is None:
                    continue
                if op < 0.85:
                    victim.cancel()
                else:
                    owner = manager.get_pool(victim.info().pool)  # type: ignore[attr-defined]
                    owner.cancel(victim.task_id)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=controller, args=(99,)))
    for t in threads:
        t.start()
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - start, rss_mib()))
        print(f"{samples[-1][0]:7.1f}s  rss {samples[-1][1]:7.1f} MiB  {outcomes}", flush=True)
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    stop.set()
    for t in threads:
        t.join()
    for pool in pools:
        pool.resume()
    manager.shutdown(wait=True)

    failures: list[str] = []
    warm = [rss for at, rss in samples if at >= args.minutes * 60 / 4]
    if len(warm) >= 2:
        growth = (max(warm) - warm[0]) / warm[0] * 100
        print(f"rss after warm-up: {warm[0]:.1f} -> {max(warm):.1f} MiB ({growth:+.1f} %)")
        if growth > args.rss_growth:
            failures.append(f"resident memory grew {growth:.1f} % after warm-up")
    totals = {"submitted": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    refused = dict.fromkeys(("abort", "discard_oldest", "discard", "caller_runs"), 0)
    for pool in pools:
        s = pool.stats()
        if s.submitted != s.succeeded + s.failed + s.cancelled or s.queued or s.active:
            failures.append(f"pool {s.name} does not balance: {s}")
        for key in totals:
            totals[key] += getattr(s, key)
        refused[s.rejection_policy] += s.rejected
    print(f"pools: {totals}; rejections by policy: {refused}; futures: {outcomes}")
    # abort raises; discard hands back a cancelled future; the other two still run a task.
    if refused["abort"] != outcomes["rejected"]:
        failures.append(f"{outcomes['rejected']} RejectedError != {refused['abort']} counted")
    if (totals["succeeded"], totals["failed"]) != (outcomes["succeeded"], outcomes["failed"]):
        failures.append("succeeded/failed futures differ from the pools' counts")
    if totals["cancelled"] + refused["discard"] != outcomes["cancelled"]:
        failures.append(
            f"cancelled futures {outcomes['cancelled']} != pools' cancelled "
            f"{totals['cancelled']} + discarded {refused['discard']}"
        )
    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    print("soak", "FAILED" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
