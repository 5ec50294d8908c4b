"""The Prometheus collector of a ``PoolManager``: every pool's numbers, read at scrape time.

Pools keep plain counters and bucket counts (see ``accounting.py``); a scrape copies each
pool's numbers under its lock, then renders them here without holding any lock. A removed
pool is simply not iterated any more, so its series vanish from the next scrape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    Exemplar,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ._version import __version__
from .accounting import BUCKETS, HistogramSnapshot, PoolSnapshot

if TYPE_CHECKING:
    from .manager import PoolManager

__all__ = ["PoolCollector"]

_BOUNDS = [floatToGoString(b) for b in BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]
_POOL_STATES = ("running", "paused", "shutting_down", "terminated")


class PoolCollector(Collector):
    """Exports the contract's ``poolwatch_*`` families for every pool of one manager."""

    def __init__(self, manager: PoolManager) -> None:
        self._manager = manager

    def describe(self) -> Iterable[Metric]:
        # Names only, so that registering twice in one registry is refused up front.
        return list(_families())

    def collect(self) -> Iterable[Metric]:
        snaps = [pool._metrics_snapshot() for pool in self._manager.pools()]
        return _families(snaps)


def _families(snaps: Iterable[PoolSnapshot] = ()) -> Iterator[Metric]:
    submitted = CounterMetricFamily(
        "poolwatch_tasks_submitted", "Tasks accepted by the pool.", labels=["pool"]
    )
    rejected = CounterMetricFamily(
        "poolwatch_tasks_rejected",
        "Tasks refused: the queue was full (reason=queue_full) or the pool shut down.",
        labels=["pool", "reason"],
    )
    completed = CounterMetricFamily(
        "poolwatch_tasks_completed",
        "Tasks finished, by task name and outcome (succeeded, failed, cancelled).",
        labels=["pool", "task", "outcome"],
    )
    timeouts = CounterMetricFamily(
        "poolwatch_tasks_timeouts",
        "Queue timeouts (cancelled before starting) and run timeouts (marked overdue).",
        labels=["pool", "kind"],
    )
    queue_wait = HistogramMetricFamily(
        "poolwatch_task_queue_wait_seconds",
        "Time tasks waited in the queue before starting.",
        labels=["pool"],
    )
    run = HistogramMetricFamily(
        "poolwatch_task_run_seconds",
        "Time tasks ran, by task name; exemplars carry the trace id of traced tasks.",
        labels=["pool", "task"],
    )
    max_workers = GaugeMetricFamily(
        "poolwatch_pool_max_workers", "Configured maximum of worker threads.", labels=["pool"]
    )
    workers = GaugeMetricFamily("poolwatch_pool_workers", "Live worker threads.", labels=["pool"])
    active = GaugeMetricFamily(
        "poolwatch_pool_active_workers", "Workers running a task.", labels=["pool"]
    )
    queued = GaugeMetricFamily(
        "poolwatch_pool_queued_tasks", "Tasks waiting in the queue.", labels=["pool"]
    )
    capacity = GaugeMetricFamily(
        "poolwatch_pool_queue_capacity",
        "Queue capacity (+Inf when unbounded).",
        labels=["pool"],
    )
    oldest = GaugeMetricFamily(
        "poolwatch_pool_oldest_queued_seconds",
        "Age of the oldest queued task; 0 when the queue is empty.",
        labels=["pool"],
    )
    overdue = GaugeMetricFamily(
        "poolwatch_pool_overdue_tasks",
        "Tasks running past their run timeout.",
        labels=["pool"],
    )
    state = GaugeMetricFamily(
        "poolwatch_pool_state",
        "1 for the pool's current state, 0 for the others.",
        labels=["pool", "state"],
    )
    for s in snaps:
        p = s.name
        submitted.add_metric([p], s.submitted)
        rejected.add_metric([p, "queue_full"], s.rejected_full)
        rejected.add_metric([p, "shutdown"], s.rejected_shutdown)
        timeouts.add_metric([p, "queue"], s.timeouts_queue)
        timeouts.add_metric([p, "run"], s.timeouts_run)
        _add_histogram(queue_wait, [p], s.queue_wait)
        for label, ok, failed, cancelled, hist in s.labels:
            completed.add_metric([p, label, "succeeded"], ok)
            completed.add_metric([p, label, "failed"], failed)
            completed.add_metric([p, label, "cancelled"], cancelled)
            _add_histogram(run, [p, label], hist)
        max_workers.add_metric([p], s.max_workers)
        workers.add_metric([p], s.workers)
        active.add_metric([p], s.active)
        queued.add_metric([p], s.queued)
        capacity.add_metric([p], math.inf if s.capacity is None else s.capacity)
        oldest.add_metric([p], s.oldest_queued_age)
        overdue.add_metric([p], s.overdue)
        for name in _POOL_STATES:
            state.add_metric([p, name], 1.0 if name == s.state else 0.0)
    build = GaugeMetricFamily(
        "poolwatch_build_info", "poolwatch version; always 1.", labels=["version"]
    )
    build.add_metric([__version__], 1)
    yield from (
        submitted, rejected, completed, timeouts, queue_wait, run, max_workers, workers,
        active, queued, capacity, oldest, overdue, state, build,
    )  # fmt: skip


def _add_histogram(family: HistogramMetricFamily, labels: list[str], h: HistogramSnapshot) -> None:
    counts, total, exemplars = h
    buckets: list[tuple[str, float] | tuple[str, float, Exemplar | None]] = []
    acc = 0
    for bound, count, ex in zip(_BOUNDS, counts, exemplars, strict=True):
        acc += count
        if ex is None:
            buckets.append((bound, acc))
        else:
            trace_id, value, ts = ex
            buckets.append((bound, acc, Exemplar({"trace_id": f"{trace_id:032x}"}, value, ts)))
    family.add_metric(labels, buckets, total)  # type: ignore[arg-type]
