"""Per-pool counters and histograms, updated under the pool's lock and read at scrape time.

Nothing here touches prometheus_client on the task path: a finished task adds one to a
list slot and to a float; the metrics collector copies these under the lock and renders
them outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import PoolStats

__all__ = ["BUCKETS", "OTHER_LABEL", "Histogram", "LabelStats", "PoolSnapshot", "TaskKind"]

# Upper bounds (seconds) shared by the queue-wait and run-time histograms. Tasks in
# poolwatch run from well under a millisecond (cache look-ups, fast RPCs) to ten minutes
# (reports, exports), and queue waits span the same range under backlog. Roughly three
# buckets per decade (1-2.5-5) from 0.5 ms to 10 s keep p50/p95/p99 within a factor of 2.5
# where most tasks live; past 10 s, 30 s, 1, 2, 5 and 10 minutes mark the operational
# thresholds people alert on. Nineteen bounds keep a series set small enough for 1,000
# pools on one scrape.
BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

OTHER_LABEL = "_other"


class Histogram:
    """Bucket counts (not cumulative; the last one is +Inf), their sum, and exemplars."""

    __slots__ = ("counts", "exemplars", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        # The latest traced observation of each bucket: (trace_id, value, epoch seconds).
        self.exemplars: list[tuple[int, float, float] | None] = [None] * (len(BUCKETS) + 1)

    def snapshot(self) -> HistogramSnapshot:
        return list(self.counts), self.sum, list(self.exemplars)


@dataclass(slots=True)
class LabelStats:
    """Everything kept per value of the ``task`` label of one pool."""

    label: str
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    run: Histogram = field(default_factory=Histogram)


@dataclass(slots=True)
class TaskKind:
    """What a pool knows about one task name: its history index, label and run timeout."""

    index: int
    name: str
    stats: LabelStats
    run_timeout: float | None


HistogramSnapshot = tuple[list[int], float, list[tuple[int, float, float] | None]]


@dataclass(slots=True)  # not frozen: built for every pool on every scrape, keep it cheap
class PoolSnapshot:
    """A pool's exported numbers at one instant (see ``ManagedPool.metrics_snapshot``)."""

    stats: PoolStats
    rejected_full: int
    rejected_shutdown: int
    timeouts_queue: int
    timeouts_run: int
    queue_wait: HistogramSnapshot
    # (task label, succeeded, failed, cancelled, run-time histogram)
    labels: list[tuple[str, int, int, int, HistogramSnapshot]]
