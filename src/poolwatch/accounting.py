"""Per-pool counters and histograms, updated under the pool's lock and read at scrape time.

Nothing here touches prometheus_client on the task path: a finished task adds one to a
list slot and to a float; the metrics collector copies these under the lock and renders
them outside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .tasks import TASK_ATTR, default_name, task_type_of

if TYPE_CHECKING:
    from .records import PoolStats

__all__ = [
    "BUCKETS",
    "OTHER_LABEL",
    "Histogram",
    "LabelCap",
    "LabelStats",
    "PoolSnapshot",
    "SnapshotSum",
    "TaskKind",
    "TaskKinds",
]

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


class TaskKinds:
    """The task names one pool has seen, each with its ``task`` label's stats.

    ``lookup`` is the submit path's cheap step (a dict look-up by code object, no lock);
    ``add`` is called under the pool's lock for a function not seen before. At most
    ``label_limit`` names get a label of their own (more count as ``_other``) and at most
    ``MAX_KINDS`` names are remembered (more are recorded as ``_other``).
    """

    MAX_KINDS = 4096

    __slots__ = ("_by_code", "_label_limit", "by_name", "has_timeouts", "labels", "listed")

    def __init__(self, label_limit: int) -> None:
        self._label_limit = label_limit
        self._by_code: dict[Any, tuple[Any, Any, TaskKind]] = {}  # code -> (qualname, type, kind)
        self.by_name: dict[str, TaskKind] = {}
        self.listed: list[TaskKind] = []  # by index, as the history stores them
        self.labels: dict[str, LabelStats] = {}
        self.has_timeouts = False

    def lookup(self, fn: Callable[..., Any]) -> TaskKind | None:
        """The kind of ``fn`` if it was seen before, else ``None`` (call ``add``)."""
        code = getattr(fn, "__code__", None)
        if code is None:
            return None
        cached = self._by_code.get(code)
        # Functions sharing the code differ in their __qualname__ object (a decorator's
        # wrappers) or in the @task type attached (closures from one factory, which share
        # even the __qualname__): compare both by identity, it costs little.
        if (
            cached is not None
            and cached[0] is getattr(fn, "__qualname__", None)
            and cached[1] is getattr(fn, TASK_ATTR, None)
        ):
            return cached[2]
        return None

    def add(self, fn: Callable[..., Any]) -> TaskKind:
        """The kind of ``fn``, made if need be (call under the pool's lock)."""
        tt = task_type_of(fn)
        name = tt.name if tt is not None else default_name(fn)
        kind = self.by_name.get(name)
        if kind is None:
            if len(self.listed) >= self.MAX_KINDS:
                name = OTHER_LABEL
                kind = self.by_name.get(name)
            if kind is None:
                kind = TaskKind(len(self.listed), name, self._label_stats(name), None)
                self.by_name[name] = kind
                self.listed.append(kind)
        if tt is not None and tt.run_timeout is not None:
            kind.run_timeout = tt.run_timeout
            self.has_timeouts = True
        code = getattr(fn, "__code__", None)
        if code is not None and len(self._by_code) < self.MAX_KINDS:
            self._by_code[code] = (
                getattr(fn, "__qualname__", None),
                getattr(fn, TASK_ATTR, None),
                kind,
            )
        return kind

    def _label_stats(self, name: str) -> LabelStats:
        stats = self.labels.get(name)
        if stats is None:
            if len(self.labels) >= self._label_limit:
                name = OTHER_LABEL
                stats = self.labels.get(name)
            if stats is None:
                stats = self.labels[name] = LabelStats(name)
        return stats

    def reset_counts(self) -> None:
        """Zero every label's counts and histograms (a forked child starts clean)."""
        for stats in self.labels.values():
            stats.succeeded = stats.failed = stats.cancelled = 0
            stats.run = Histogram()

    def run_timeouts(self) -> list[float]:
        return [k.run_timeout for k in self.listed if k.run_timeout is not None]


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
    kind: str = "thread"  # the pool's kind: thread, process or dask


class LabelCap:
    """The ``task`` labels a pool family exports: the first ``limit`` names it sees keep a
    label of their own for good, later ones count as ``_other`` for good, whatever order
    the instances end in (a series never turns into another). Not thread-safe on its
    own: its owner calls it under its lock."""

    __slots__ = ("_limit", "_names")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._names: set[str] = set()

    def label(self, name: str) -> str:
        """The label ``name`` is counted under."""
        names = self._names
        if name in names or name == OTHER_LABEL:
            return name
        if len(names) < self._limit:
            names.add(name)
            return name
        return OTHER_LABEL


class SnapshotSum:
    """Counts added up over many pools' snapshots: what a pool family keeps of the
    instances that ended, and how it adds the live ones to them.

    Counters and histograms add; ``task`` labels are as ``cap`` says (shared by a sum and
    its copies); of two exemplars in one bucket the later is kept. Not thread-safe on its
    own: its owner calls it under its lock.
    """

    __slots__ = (
        "_cap",
        "cancelled",
        "failed",
        "labels",
        "queue_wait",
        "rejected_full",
        "rejected_shutdown",
        "submitted",
        "succeeded",
        "timeouts_queue",
        "timeouts_run",
    )  # fmt: skip

    def __init__(self, cap: LabelCap) -> None:
        self._cap = cap
        self.submitted = self.succeeded = self.failed = self.cancelled = 0
        self.rejected_full = self.rejected_shutdown = 0
        self.timeouts_queue = self.timeouts_run = 0
        self.queue_wait = Histogram()
        self.labels: dict[str, LabelStats] = {}

    def copy(self) -> SnapshotSum:
        other = SnapshotSum(self._cap)
        for name in ("submitted", "succeeded", "failed", "cancelled", "rejected_full",
                     "rejected_shutdown", "timeouts_queue", "timeouts_run"):  # fmt: skip
            setattr(other, name, getattr(self, name))
        other.queue_wait = _copy_histogram(self.queue_wait)
        other.labels = {
            k: LabelStats(v.label, v.succeeded, v.failed, v.cancelled, _copy_histogram(v.run))
            for k, v in self.labels.items()
        }
        return other

    def add(self, snap: PoolSnapshot) -> None:
        """Add one pool's numbers."""
        s = snap.stats
        self.submitted += s.submitted
        self.succeeded += s.succeeded
        self.failed += s.failed
        self.cancelled += s.cancelled
        self.rejected_full += snap.rejected_full
        self.rejected_shutdown += snap.rejected_shutdown
        self.timeouts_queue += snap.timeouts_queue
        self.timeouts_run += snap.timeouts_run
        _add_into(self.queue_wait, snap.queue_wait)
        for name, ok, failed, cancelled, hist in snap.labels:
            label = self._cap.label(name)
            stats = self.labels.get(label)
            if stats is None:
                stats = self.labels[label] = LabelStats(label)
            stats.succeeded += ok
            stats.failed += failed
            stats.cancelled += cancelled
            _add_into(stats.run, hist)

    def label_rows(self) -> list[tuple[str, int, int, int, HistogramSnapshot]]:
        return [
            (s.label, s.succeeded, s.failed, s.cancelled, s.run.snapshot())
            for s in self.labels.values()
        ]


def _copy_histogram(h: Histogram) -> Histogram:
    out = Histogram()
    out.counts = list(h.counts)
    out.sum = h.sum
    out.exemplars = list(h.exemplars)
    return out


def _add_into(h: Histogram, snap: HistogramSnapshot) -> None:
    counts, total, exemplars = snap
    for i, n in enumerate(counts):
        if n:
            h.counts[i] += n
    h.sum += total
    for i, ex in enumerate(exemplars):
        if ex is not None:
            mine = h.exemplars[i]
            if mine is None or mine[2] <= ex[2]:
                h.exemplars[i] = ex
