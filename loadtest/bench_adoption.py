"""Rows of ``bench.py`` for adoption without code changes: pool families and instrument().

``family``: what a ``with ThreadPoolExecutor() as ex:`` per call costs under poolwatch
(every instance one more member of a family) against the stdlib's, and how memory, pool
names and metric series grow over many instances. ``adoption``: the start-up time of a
program that uses no executor, plain, with ``instrument()`` and under ``poolwatch run``,
and the cost of one executor (create, one task, shutdown) with ``instrument()`` on.

``kit`` is ``bench.py`` itself: its ``rounds``, ``row``, ``baseline_row`` and
``compared_row``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch.metrics import render_metrics

STDLIB = concurrent.futures.thread.ThreadPoolExecutor
SRC = str(Path(__file__).resolve().parents[1] / "src")


def add_one(x: int) -> int:
    return x + 1


def per_call(manager: poolwatch.PoolManager | None) -> None:
    """A request handler written for the stdlib: an executor per call, one task."""
    if manager is None:
        with STDLIB(2) as ex:
            ex.submit(add_one, 1).result()
    else:
        with poolwatch.ThreadPoolExecutor(2, manager=manager) as ex:
            ex.submit(add_one, 1).result()


def instance_cost(n: int, manager: poolwatch.PoolManager | None) -> float:
    """Microseconds per ``per_call``, over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        per_call(manager)
    return (time.perf_counter() - start) / n * 1e6


def series_count(manager: poolwatch.PoolManager) -> int:
    body, _ = render_metrics(manager)
    return sum(1 for ln in body.decode().splitlines() if ln.startswith("poolwatch_"))


def bench_family(args: argparse.Namespace, kit: Any) -> list[dict[str, Any]]:
    n = 2_000 if args.quick else 5_000
    manager = poolwatch.PoolManager(registry=CollectorRegistry())
    try:
        med = kit.rounds(args.repeats, {
            "stdlib": lambda: instance_cost(n, None),
            "poolwatch": lambda: instance_cost(n, manager),
        })  # fmt: skip
        rows = [
            kit.baseline_row("stdlib: with ThreadPoolExecutor(2) + 1 task, per call",
                             med["stdlib"], "us"),
            kit.compared_row("poolwatch family instance: the same, per call", med["poolwatch"],
                             med["stdlib"], "us", None),
        ]  # fmt: skip
        rows += family_growth(args, kit, manager)
    finally:
        manager.shutdown()
    return rows


def family_growth(args: argparse.Namespace, kit: Any, manager: poolwatch.PoolManager
                  ) -> list[dict[str, Any]]:  # fmt: skip
    total = 20_000 if args.quick else 100_000
    # Traced from the start: the archive (10,000 tasks by default) turns over under
    # tracemalloc first, so records it drops count as freed as well as those it keeps.
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(12_000):
            per_call(manager)
        gc.collect()
        series = series_count(manager)
        before = manager.pools()[0].stats().submitted
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(total):
            per_call(manager)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    pools = manager.pools()
    return [
        kit.row(f"memory growth over {total:,} more instances (tracemalloc)", grown / 1024,
                "KiB", None, "flat"),
        kit.row("pools listed after them all", len(pools), "pools", None, "1"),
        kit.row(f"/metrics series after {total:,} more instances (before: {series})",
                series_count(manager), "series", None, f"{series}"),
        kit.row(f"submitted counted by the family over the {total:,}",
                pools[0].stats().submitted - before, "tasks", None, f"{total:,}"),
    ]  # fmt: skip


# -- adoption: instrument() and poolwatch run -------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _startup(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return (time.perf_counter() - start) * 1e3


def bench_adoption(args: argparse.Namespace, kit: Any) -> list[dict[str, Any]]:
    py = sys.executable
    runs = {
        "plain": lambda: _startup([py, "-c", "pass"]),
        "instrument": lambda: _startup([py, "-c", "import poolwatch; poolwatch.instrument()"]),
        "run": lambda: _startup([py, "-m", "poolwatch", "run", "--quiet", "--port",
                                 str(_free_port()), "--", py, "-c", "pass"]),
    }  # fmt: skip
    med = kit.rounds(max(args.repeats, 5), runs)
    rows = [
        kit.baseline_row("start-up, no executor: python -c pass", med["plain"], "ms"),
        kit.compared_row("start-up: import poolwatch; instrument()", med["instrument"],
                         med["plain"], "ms", None),
        kit.compared_row("start-up: poolwatch run (side port served)", med["run"],
                         med["plain"], "ms", None),
    ]  # fmt: skip
    n = 2_000 if args.quick else 5_000
    manager = poolwatch.PoolManager(registry=CollectorRegistry())
    try:
        costs = kit.rounds(args.repeats, {
            "stdlib": lambda: executor_cost(n, None),
            "instrumented": lambda: executor_cost(n, manager),
        })  # fmt: skip
    finally:
        manager.shutdown()
    rows += [
        kit.baseline_row("stdlib executor: create + 1 task + shutdown", costs["stdlib"], "us"),
        kit.compared_row("instrument() on: the same", costs["instrumented"], costs["stdlib"],
                         "us", None),
    ]  # fmt: skip
    return rows


def executor_cost(n: int, manager: poolwatch.PoolManager | None) -> float:
    """Microseconds per executor made through ``concurrent.futures``, instrumented or not."""
    if manager is not None:
        poolwatch.instrument(manager)
    try:
        start = time.perf_counter()
        for _ in range(n):
            ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            ex.submit(add_one, 1).result()
            ex.shutdown()
        return (time.perf_counter() - start) / n * 1e6
    finally:
        if manager is not None:
            poolwatch.uninstrument()
