"""poolwatch benchmark runner: every row measured beside its baseline in the same run.

    python loadtest/bench.py            # the full table (a few minutes)
    python loadtest/bench.py --quick    # smaller sizes, for a quick look
    python loadtest/bench.py --only throughput,memory
    python loadtest/bench.py --only family,adoption   # see bench_adoption.py
    python loadtest/bench.py --cpus 0   # every thread on one CPU
    python loadtest/bench.py --only process   # process pools vs ProcessPoolExecutor, loky
    python loadtest/bench.py --only dask  # kind="dask" against Dask's own executor

Rows with a ratio run poolwatch and the bare ``ThreadPoolExecutor`` in alternating
rounds (the order flips each round, so drift in the machine's load and warm-up hit both
alike). A value is the median over the rounds; the ratio is the median of the per-round
ratios, and "spread" gives their range (or the value's, as +-% of its median).
Throughput covers every common way of waiting for tasks: ``result()`` in submission
order, ``wait(futures)``, ``as_completed()``, ``map()``, and fire-and-forget followed by
``shutdown(wait=True)``, each with the process's CPU per task and its context switches
beside the rate. The throughput and cost rows take every sample in a fresh interpreter
(``--sample`` and ``--cost`` run one). Results are printed as a table and written to
``loadtest/results/bench.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any

import bench_adoption
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

import poolwatch
from poolwatch.metrics import render_metrics

RESULTS = Path(__file__).resolve().parent / "results"


class NoopExporter(SpanExporter):
    """Accepts spans and drops them: measures the cost of tracing, not of a backend."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def add_one(x: int) -> int:
    return x + 1


# -- ways of waiting ------------------------------------------------------------------


def wait_results(executor: Executor, n: int) -> None:
    futures = [executor.submit(add_one, i) for i in range(n)]
    for f in futures:
        f.result()


def wait_all(executor: Executor, n: int) -> None:
    wait([executor.submit(add_one, i) for i in range(n)])


def wait_as_completed(executor: Executor, n: int) -> None:
    for f in as_completed([executor.submit(add_one, i) for i in range(n)]):
        f.result()


def wait_map(executor: Executor, n: int) -> None:
    for _ in executor.map(add_one, range(n)):
        pass


def fire_and_forget(executor: Executor, n: int) -> None:
    for i in range(n):
        executor.submit(add_one, i)
    executor.shutdown(wait=True)


WAYS: dict[str, Callable[[Executor, int], None]] = {
    "result() in submission order": wait_results,
    "wait(futures)": wait_all,
    "as_completed()": wait_as_completed,
    "map()": wait_map,
    "fire-and-forget, then shutdown(wait=True)": fire_and_forget,
}


def make_executor(side: str, workers: int = 10) -> tuple[Executor, Callable[[], None]]:
    """A fresh executor of ``side`` (stdlib, poolwatch or traced) and how to dispose of it."""
    if side == "stdlib":
        ex = ThreadPoolExecutor(workers)
        return ex, ex.shutdown
    provider = None
    if side == "traced":
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    manager = poolwatch.PoolManager(registry=CollectorRegistry(), tracer_provider=provider)
    pool = manager.create_pool("bench", max_workers=workers, history_size=10_000)

    def close() -> None:
        manager.shutdown()
        if provider is not None:
            provider.shutdown()

    return pool, close


def measure(side: str, way: Callable[[Executor, int], None], n: int) -> dict[str, float]:
    """Tasks per second through a fresh executor of ``side`` waited for by ``way``, the
    process's CPU time per task (every thread, from ``time.process_time``) and its
    voluntary context switches per 1,000 tasks (threads sleeping on a lock or the GIL)."""
    ex, close = make_executor(side)
    try:
        gc.collect()
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
        start, cpu = time.perf_counter(), time.process_time()
        way(ex, n)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches
    finally:
        close()
    return {"rate": n / elapsed, "cpu_us": cpu / n * 1e6, "switches": switches / n * 1000}


def sample(side: str, way_name: str, n: int) -> dict[str, float]:
    """One throughput sample in this interpreter: a warm-up run, then the measured one."""
    measure(side, WAYS[way_name], min(n, 2_000))
    return measure(side, WAYS[way_name], n)


def sample_in_child(side: str, way_name: str, n: int) -> dict[str, float]:
    """``sample`` in a fresh interpreter: no side inherits the other's threads, heap or
    warmed caches, and each starts its workers from nothing."""
    out = subprocess.run(
        [sys.executable, __file__, "--sample", side, way_name, str(n)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# -- rounds -------------------------------------------------------------------------------


def rounds(repeats: int, fns: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """``repeats`` samples of each after a warm-up; the order rotates every round so no
    variant always runs first (with two, they alternate)."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for fn in fns.values():  # one untimed warm-up each: imports, caches, first threads
        fn()
    for r in range(repeats):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            gc.collect()
            samples[key].append(fns[key]())
    return samples


def baseline_row(name: str, samples: list[float], unit: str) -> dict[str, Any]:
    med = statistics.median(samples)
    spread = (max(samples) - min(samples)) / 2 / med * 100 if med else 0.0
    return row(name, med, unit, None, None, spread=f"+-{spread:.0f}%")


def compared_row(
    name: str,
    samples: list[float],
    base: list[float],
    unit: str,
    target: str | None,
    *,
    value: float | None = None,
) -> dict[str, Any]:
    """A row against ``base``: median value (unless given), median and range of the
    per-round ratios."""
    ratios = [s / b for s, b in zip(samples, base, strict=True)]
    shown = statistics.median(samples) if value is None else value
    return row(name, shown, unit, statistics.median(ratios), target,
               spread=f"{min(ratios):.2f}-{max(ratios):.2f}x")  # fmt: skip


# -- rows -----------------------------------------------------------------------------


def bench_throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each way of waiting, stdlib and poolwatch side by side; tracing on ``result()``.

    Every sample runs in a fresh interpreter. Each round takes one sample of every side
    for every way, the sides in an order that flips every round; a value is the median
    of the rounds and a ratio the median of the per-round ratios.
    """
    n = args.tasks
    rows = []
    for label, way in WAYS.items():
        sides = ["stdlib", "poolwatch"] + (["traced"] if way is wait_results else [])
        samples: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        for r in range(args.repeats):
            for side in sides if r % 2 == 0 else sides[::-1]:
                samples[side].append(sample_in_child(side, label, n))
        rate = {side: [s["rate"] for s in got] for side, got in samples.items()}
        cpu = {side: [s["cpu_us"] for s in got] for side, got in samples.items()}
        switches = {side: [s["switches"] for s in got] for side, got in samples.items()}
        rows.append(baseline_row(f"{label}: ThreadPoolExecutor(10)", rate["stdlib"], "tasks/s"))
        rows.append(compared_row(f"{label}: poolwatch history+metrics", rate["poolwatch"],
                                 rate["stdlib"], "tasks/s", ">= 1.3x"))  # fmt: skip
        # CPU per task: what the GIL lets a thread pool reach on any number of cores; the
        # ratio is the stdlib's CPU over poolwatch's (higher is better, as for rates).
        rows.append(compared_row(f"{label}: CPU per task, poolwatch (stdlib / poolwatch)",
                                 [1 / c for c in cpu["poolwatch"]],
                                 [1 / c for c in cpu["stdlib"]], "us", None,
                                 value=statistics.median(cpu["poolwatch"])))  # fmt: skip
        rows.append(row(f"{label}: context switches per 1,000 tasks, stdlib / poolwatch",
                        statistics.median(switches["poolwatch"]), "", None, None,
                        spread=f"{statistics.median(switches['stdlib']):.0f} / "
                        f"{statistics.median(switches['poolwatch']):.0f}"))  # fmt: skip
        if "traced" in rate:
            traced = f"{label}: poolwatch +tracing (100%, no-op export)"
            rows.append(compared_row(traced, rate["traced"], rate["stdlib"], "tasks/s",
                                     ">= 0.4x"))  # fmt: skip
    return rows


def cost_sample(side: str, n: int, run: bool) -> dict[str, float]:
    """CPU to submit ``n`` tasks to a one-worker executor that cannot start them (a
    paused pool; a stdlib worker held on an event), then, if ``run``, to run them all."""
    ex, close = make_executor(side, workers=1)
    per = 1e6 / max(n, 1)  # n=0 measures the fixed part (for instruction counts)
    ex.submit(add_one, 0).result()  # the worker exists and the function is known
    gate = threading.Event()
    if side == "stdlib":
        ex.submit(gate.wait)
    else:
        ex.pause()  # type: ignore[attr-defined]
    gc.collect()
    gc.disable()  # a collection would land on one side or the other by chance
    start = time.process_time()
    for i in range(n):
        ex.submit(add_one, i)
    submitted = time.process_time()
    if not run:  # the caller exits at once, leaving the tasks queued
        return {"submit_us": (submitted - start) * per}
    gate.set()
    if side != "stdlib":
        ex.resume()  # type: ignore[attr-defined]
    ex.shutdown(wait=True)
    ran = time.process_time()
    gc.enable()
    close()
    return {"submit_us": (submitted - start) * per, "worker_us": (ran - submitted) * per}


def bench_cost(args: argparse.Namespace) -> list[dict[str, Any]]:
    """CPU per task on each side of the queue, each sample in a fresh interpreter."""
    n = args.tasks
    samples: dict[str, list[dict[str, float]]] = {"stdlib": [], "poolwatch": []}
    for r in range(args.repeats):
        for side in ("stdlib", "poolwatch") if r % 2 == 0 else ("poolwatch", "stdlib"):
            out = subprocess.run(
                [sys.executable, __file__, "--cost", side, str(n)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            samples[side].append(json.loads(out.stdout))
    rows = []
    for part, label in (("submit_us", "submit()"), ("worker_us", "worker, per task")):
        std = [s[part] for s in samples["stdlib"]]
        ours = [s[part] for s in samples["poolwatch"]]
        rows.append(baseline_row(f"CPU of {label}: ThreadPoolExecutor", std, "us"))
        rows.append(compared_row(f"CPU of {label}: poolwatch (stdlib / poolwatch)",
                                 [1 / c for c in ours], [1 / c for c in std], "us", None,
                                 value=statistics.median(ours)))  # fmt: skip
    return rows


def bench_batch(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Submit rate alone (waiting is not timed): a loop of submit() and submit_many()."""
    n = args.tasks

    def submit_rate(executor: Executor, batch: bool) -> float:
        start = time.perf_counter()
        if batch:
            futures = executor.submit_many(add_one, ((i,) for i in range(n)))  # type: ignore[attr-defined]
        else:
            futures = [executor.submit(add_one, i) for i in range(n)]
        elapsed = time.perf_counter() - start
        for f in futures:
            f.result()
        return n / elapsed

    def stdlib_loop() -> float:
        with ThreadPoolExecutor(10) as ex:
            return submit_rate(ex, batch=False)

    def poolwatch_submit(batch: bool) -> float:
        with poolwatch.PoolManager(registry=CollectorRegistry()) as manager:
            return submit_rate(manager.create_pool("bench", max_workers=10), batch)

    samples = rounds(
        args.repeats,
        {
            "stdlib": stdlib_loop,
            "loop": lambda: poolwatch_submit(False),
            "batch": lambda: poolwatch_submit(True),
        },
    )
    return [
        baseline_row("submit rate, ThreadPoolExecutor loop of submit()", samples["stdlib"],
                     "tasks/s"),
        compared_row("submit rate, poolwatch loop of submit()", samples["loop"],
                     samples["stdlib"], "tasks/s", None),
        compared_row("submit rate, poolwatch submit_many()", samples["batch"],
                     samples["stdlib"], "tasks/s", ">= 2x"),
        compared_row("submit rate, poolwatch submit_many() vs its own submit() loop",
                     samples["batch"], samples["loop"], "tasks/s", None),
    ]  # fmt: skip


def bench_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = args.memory_tasks
    with poolwatch.PoolManager(registry=CollectorRegistry()) as manager:
        pool = manager.create_pool("mem", max_workers=4, history_size=n)
        pool.submit(add_one, 0).result()  # kinds, workers and buffers of one task exist
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for start in range(0, n, 10_000):
            for f in pool.submit_many(add_one, ((i,) for i in range(start, start + 10_000))):
                f.result()
        del f
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        retained = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return [
        row(f"bytes retained per finished task in history ({n:,} tasks)", retained / n,
            "bytes", None, "<= 200"),
    ]  # fmt: skip


def bench_cancel(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = 20_000
    with poolwatch.PoolManager(registry=CollectorRegistry()) as manager:
        pool = manager.create_pool("cancel", max_workers=2)
        pool.pause()
        futures = pool.submit_many(add_one, ((i,) for i in range(n)))
        ids = [f.task_id for f in futures]
        times = []
        clock = time.perf_counter_ns
        for task_id in ids:
            t0 = clock()
            pool.cancel(task_id)
            times.append(clock() - t0)
        pool.resume()
    times.sort()
    p50 = times[len(times) // 2] / 1000
    p99 = times[int(len(times) * 0.99)] / 1000
    return [
        row(f"cancel a queued task by id, p50 ({n:,} queued)", p50, "us", None, None),
        row(f"cancel a queued task by id, p99 ({n:,} queued)", p99, "us", None, "<= 50"),
    ]


def bench_pools(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    n = args.tasks // 2
    for count in (1, 10, 100, 1000):
        with poolwatch.PoolManager(registry=CollectorRegistry()) as manager:
            pools = [manager.create_pool(f"p{i}", max_workers=1) for i in range(count)]
            for p in pools:  # warm: start a worker in each
                p.submit(add_one, 0).result()
            start = time.perf_counter()
            futures = [pools[i % count].submit(add_one, i) for i in range(n)]
            for f in futures:
                f.result()
            per_task = (time.perf_counter() - start) / n * 1e6
        rows.append(row(f"submit+complete per task, {count} pools", per_task, "us", None, None))
    for count in (10, 100, 1000):
        registry = CollectorRegistry()
        with poolwatch.PoolManager(registry=registry) as manager:
            for i in range(count):
                p = manager.create_pool(f"p{i}", max_workers=1)
                p.submit(add_one, 0).result()
            samples = []
            for _ in range(5):
                start = time.perf_counter()
                render_metrics(manager, "text/plain")
                samples.append((time.perf_counter() - start) * 1000)
        target = "<= 100" if count == 1000 else None
        rows.append(row(f"/metrics render, {count} pools", statistics.median(samples), "ms",
                        None, target))  # fmt: skip
    for count in (10, 100, 1000):
        with poolwatch.PoolManager(registry=CollectorRegistry()) as manager:
            for i in range(count):
                p = manager.create_pool(f"p{i}", max_workers=1)
                p.submit_many(add_one, [(j,) for j in range(30)])[-1].result()
            samples = []
            for _ in range(7):
                start = time.perf_counter()
                page = manager.tasks(limit=20)
                samples.append((time.perf_counter() - start) * 1000)
            assert len(page.items) == 20
        rows.append(row(f"tasks() first page across {count} pools, 30 tasks each",
                        statistics.median(samples), "ms", None, None))  # fmt: skip
    return rows


def bench_pages(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    sizes = (1_000, 100_000) if args.quick else (1_000, 100_000, 1_000_000)
    for size in sizes:
        with poolwatch.PoolManager(registry=CollectorRegistry()) as manager:
            pool = manager.create_pool("hist", max_workers=4, history_size=size)
            manager.create_pool("other", max_workers=1)
            for start in range(0, size, 50_000):
                chunk = min(50_000, size - start)
                futures = pool.submit_many(add_one, ((i,) for i in range(chunk)))
                futures[-1].result()
                for f in futures:
                    f.result()
            del futures
            for label, kwargs in (
                ("first page, all pools", {}),
                ("first page, one pool", {"pool": "hist"}),
                ("first page, state=succeeded", {"state": "succeeded"}),
                ("page 40", {"pool": "hist", "offset": 800}),
            ):
                samples = []
                for _ in range(7):
                    start = time.perf_counter()
                    page = manager.tasks(limit=20, **kwargs)  # type: ignore[arg-type]
                    samples.append((time.perf_counter() - start) * 1000)
                assert len(page.items) == 20
                rows.append(row(f"tasks() {label}, {size:,} in history",
                                statistics.median(samples), "ms", None, None))  # fmt: skip
    return rows


def bench_tracing_off(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Submit cost in a paused pool (no worker competing), tracing off and on."""
    n = args.tasks

    def submit_cost(traced: bool) -> float:
        provider = None
        if traced:
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
        with poolwatch.PoolManager(registry=CollectorRegistry(), tracer_provider=provider) as m:
            pool = m.create_pool("t", max_workers=1)
            pool.pause()
            start = time.perf_counter()
            for i in range(n):
                pool.submit(add_one, i)
            cost = (time.perf_counter() - start) / n * 1e6
            pool.shutdown(cancel_futures=True)
        if provider is not None:
            provider.shutdown()
        return cost

    def sdk_span_cost() -> float:
        """The OpenTelemetry SDK alone: one span with poolwatch's five attributes, made
        current and ended (BatchSpanProcessor, no-op exporter): the floor under traced tasks."""
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
        tracer = provider.get_tracer("bench")
        parent = otel_context.get_current()
        start = time.perf_counter()
        for i in range(n):
            span = tracer.start_span(
                "bench.task",
                context=parent,
                attributes={
                    "poolwatch.pool.name": "bench",
                    "poolwatch.task.name": "bench.task",
                    "poolwatch.task.id": f"1-{i:x}",
                    "poolwatch.task.queue_wait_seconds": 0.0001,
                    "thread.name": "poolwatch-bench-1",
                },
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            otel_context.detach(token)
            span.end()
        cost = (time.perf_counter() - start) / n * 1e6
        provider.shutdown()
        return cost

    samples = rounds(
        args.repeats,
        {
            "off": lambda: submit_cost(False),
            "on": lambda: submit_cost(True),
            "sdk": sdk_span_cost,
        },
    )
    med = {k: statistics.median(v) for k, v in samples.items()}
    return [
        row("submit() cost per task, tracing off", med["off"], "us", None, None),
        row("submit() cost per task, tracing on (context capture)", med["on"], "us", None, None),
        row("OpenTelemetry SDK alone: one span, 5 attributes, attach", med["sdk"], "us", None,
            None),
    ]  # fmt: skip


def bench_processes(args: argparse.Namespace) -> list[dict[str, Any]]:
    """kind="process" beside ProcessPoolExecutor, loky and the ideal (bench_process.py)."""
    from bench_process import bench_process

    return bench_process(args, rounds, row, baseline_row, compared_row)


def bench_dask(args: argparse.Namespace) -> list[dict[str, Any]]:
    """kind="dask" against Client.get_executor() (loadtest/bench_dask.py); needs [dask]."""
    try:
        import bench_dask
    except ImportError as exc:
        print(f"skipping dask: {exc} (pip install -e '.[dask]')", file=sys.stderr)
        return []
    return bench_dask.bench_dask(args, sys.modules[__name__])


BENCHES: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {
    "throughput": bench_throughput,
    "cost": bench_cost,
    "batch": bench_batch,
    "memory": bench_memory,
    "cancel": bench_cancel,
    "tracing": bench_tracing_off,
    "pools": bench_pools,
    "pages": bench_pages,
    "process": bench_processes,
    "family": lambda args: bench_adoption.bench_family(args, sys.modules[__name__]),
    "adoption": lambda args: bench_adoption.bench_adoption(args, sys.modules[__name__]),
    "dask": bench_dask,
}


def row(
    name: str,
    value: float,
    unit: str,
    ratio: float | None,
    target: str | None,
    *,
    spread: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "ratio": ratio,
        "spread": spread,
        "target": target,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--only", default="", help=f"comma-separated rows of: {', '.join(BENCHES)}")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per median (default 7)")
    parser.add_argument("--cpus", default="", help="pin the run to these CPUs, e.g. 0 or 0,1")
    parser.add_argument("--sample", nargs=3, metavar=("SIDE", "WAY", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--cost", nargs="+", metavar="ARG",
        help="SIDE N [submit]: one cost sample (stdlib or poolwatch; submit: do not run the "
        "tasks), printed as JSON; under valgrind, instructions per task come from two sizes",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.cost:
        side, n, *mode = args.cost
        print(json.dumps(cost_sample(side, int(n), run=mode != ["submit"])))
        sys.stdout.flush()
        os._exit(0)  # submit-only leaves tasks behind on purpose: do not wait for them
    if args.sample:  # one throughput sample, in a child interpreter (bench_throughput)
        side, way, n = args.sample
        print(json.dumps(sample(side, way, int(n))))
        return 0
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.tasks = 20_000 if args.quick else 50_000
    args.memory_tasks = 20_000 if args.quick else 100_000
    chosen = [b for b in args.only.split(",") if b] or list(BENCHES)
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(BENCHES)}")
    rows: list[dict[str, Any]] = []
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(BENCHES[name](args))
    width = max(len(r["name"]) for r in rows)
    print(f"\n{'benchmark':<{width}}  {'value':>12}  unit      ratio  {'spread':>11}  target")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        print(
            f"{r['name']:<{width}}  {r['value']:>12,.2f}  {r['unit']:<8} {ratio:>6}  "
            f"{r['spread'] or '':>11}  {r['target'] or ''}"
        )
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "threads_at_end": threading.active_count(),
        "poolwatch": poolwatch.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"\n{machine}\nwritten to {RESULTS / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
