"""The process rows of ``bench.py`` (``--only process``): poolwatch's ``kind="process"``
beside ``ProcessPoolExecutor`` and loky on the same start method, and beside the ideal.

Two loads on two workers: trivial tasks (the cost of a round trip to a child), and
2,000 tasks of about 5 ms of pure-Python work each (the ideal is work / workers). Every
executor is started and warmed (all its children up) before it is timed.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry

import poolwatch

WORKERS = 2
CPU_TASKS = 2_000
CPU_SECONDS = 0.005


def spin(loops: int) -> int:
    """Pure-Python work: ``loops`` iterations of integer arithmetic."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def noop(x: int) -> int:
    return x


def calibrate(seconds: float) -> int:
    """The loop count ``spin`` needs for ``seconds`` here (the best of a few tries)."""
    loops = 20_000
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        spin(loops)
        best = min(best, time.perf_counter() - start)
    return max(1, int(loops * seconds / best))


def _stdlib() -> Executor:
    return ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("forkserver"))


def _loky() -> Executor:
    import loky

    return loky.ProcessPoolExecutor(WORKERS)


def _poolwatch() -> tuple[Executor, Callable[[], None]]:
    manager = poolwatch.PoolManager(registry=CollectorRegistry())
    pool = manager.create_pool("bench", kind="process", max_workers=WORKERS)
    return pool, manager.shutdown


def _warm(ex: Executor) -> None:
    """Every child up and answering before the clock starts."""
    for _ in range(3):
        list(ex.map(time.sleep, [0.05] * WORKERS))


def rate(make: Callable[[], Any], fn: Callable[[int], Any], arg: int, n: int) -> float:
    """Tasks per second of ``n`` ``fn(arg)`` submitted and waited for, warm."""
    made = make()
    ex, close = made if isinstance(made, tuple) else (made, made.shutdown)
    try:
        _warm(ex)
        start = time.perf_counter()
        futures = [ex.submit(fn, arg) for _ in range(n)]
        for f in futures:
            f.result()
        return n / (time.perf_counter() - start)
    finally:
        close()


def bench_process(
    args: Any,
    rounds: Callable[[int, dict[str, Callable[[], float]]], dict[str, list[float]]],
    row: Callable[..., dict[str, Any]],
    baseline_row: Callable[..., dict[str, Any]],
    compared_row: Callable[..., dict[str, Any]],
) -> list[dict[str, Any]]:
    trivial = 2_000 if args.quick else 10_000
    loops = calibrate(CPU_SECONDS)
    makers = {"stdlib": _stdlib, "loky": _loky, "poolwatch": _poolwatch}
    rows = []
    for label, fn, arg, n in (
        ("trivial tasks", noop, 1, trivial),
        (f"{CPU_TASKS} x 5 ms CPU", spin, loops, CPU_TASKS),
    ):
        fns: dict[str, Callable[[], float]] = {
            key: lambda make=make, fn=fn, arg=arg, n=n: rate(make, fn, arg, n)  # type: ignore[misc]
            for key, make in makers.items()
        }
        samples = rounds(args.repeats, fns)
        base = samples["stdlib"]
        rows.append(baseline_row(f"process, {label}: ProcessPoolExecutor(2)", base, "tasks/s"))
        rows.append(compared_row(f"process, {label}: loky(2)", samples["loky"], base,
                                 "tasks/s", None))  # fmt: skip
        rows.append(compared_row(f"process, {label}: poolwatch kind=process(2)",
                                 samples["poolwatch"], base, "tasks/s", ">= 1.0x"))  # fmt: skip
        if fn is spin:
            got = statistics.median(samples["poolwatch"])
            ideal = WORKERS / CPU_SECONDS
            rows.append(row(f"process, {label}: poolwatch vs ideal (work / workers)", got,
                            "tasks/s", got / ideal, ">= 0.95x"))  # fmt: skip
    return rows
