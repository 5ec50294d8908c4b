"""Prometheus export of a ``PoolManager``: every pool's numbers, read at scrape time.

Pools keep plain counters and bucket counts (see ``accounting.py``); a scrape copies each
pool's numbers under its lock, then renders them without holding any lock. A removed pool
is simply not iterated any more, so its series vanish from the next scrape.

Two renderings share the family table below:

- ``PoolCollector``, registered in the manager's registry, so that anything that reads a
  prometheus_client registry (``generate_latest``, an exporter, a push) sees the families;
- ``render_metrics``, which the HTTP ``/metrics`` route uses: it writes poolwatch's
  families as text directly (tens of thousands of series for a thousand pools in a few
  tens of milliseconds, where the generic path takes about a second) and lets
  prometheus_client render everything else in the registry.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    Exemplar,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ._version import __version__
from .accounting import BUCKETS, HistogramSnapshot, PoolSnapshot

if TYPE_CHECKING:
    from collections.abc import Sequence

    from prometheus_client import CollectorRegistry


class _Exporting(Protocol):
    def metrics_snapshot(self) -> PoolSnapshot: ...


class PoolSource(Protocol):
    """What the metrics need of a manager: its pools."""

    def pools(self) -> Sequence[_Exporting]: ...


class MetricsSource(PoolSource, Protocol):
    """A manager as ``render_metrics`` reads it."""

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def collector(self) -> PoolCollector: ...


__all__ = [
    "FAMILIES",
    "PoolCollector",
    "encoder_for",
    "render_metrics",
    "render_pool_families",
    "render_snapshots",
]

# name -> (type, labels, help); the order is the exposition order.
FAMILIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "poolwatch_tasks_submitted": ("counter", ("pool",), "Tasks accepted by the pool."),
    "poolwatch_tasks_rejected": (
        "counter",
        ("pool", "reason"),
        "Tasks refused: the queue was full (reason=queue_full) or the pool shut down.",
    ),
    "poolwatch_tasks_completed": (
        "counter",
        ("pool", "task", "outcome"),
        "Tasks finished, by task name and outcome (succeeded, failed, cancelled).",
    ),
    "poolwatch_tasks_timeouts": (
        "counter",
        ("pool", "kind"),
        "Queue timeouts (cancelled before starting) and run timeouts (marked overdue).",
    ),
    "poolwatch_task_queue_wait_seconds": (
        "histogram",
        ("pool",),
        "Time tasks waited in the queue before starting.",
    ),
    "poolwatch_task_run_seconds": (
        "histogram",
        ("pool", "task"),
        "Time tasks ran, by task name; exemplars carry the trace id of traced tasks.",
    ),
    "poolwatch_pool_max_workers": ("gauge", ("pool",), "Configured maximum of worker threads."),
    "poolwatch_pool_workers": ("gauge", ("pool",), "Live worker threads."),
    "poolwatch_pool_active_workers": ("gauge", ("pool",), "Workers running a task."),
    "poolwatch_pool_queued_tasks": ("gauge", ("pool",), "Tasks waiting in the queue."),
    "poolwatch_pool_queue_capacity": (
        "gauge",
        ("pool",),
        "Queue capacity (+Inf when unbounded).",
    ),
    "poolwatch_pool_oldest_queued_seconds": (
        "gauge",
        ("pool",),
        "Age of the oldest queued task; 0 when the queue is empty.",
    ),
    "poolwatch_pool_overdue_tasks": ("gauge", ("pool",), "Tasks running past their run timeout."),
    "poolwatch_pool_state": (
        "gauge",
        ("pool", "state"),
        "1 for the pool's current state, 0 for the others.",
    ),
    "poolwatch_pool_info": (
        "gauge",
        ("pool", "kind"),
        "Where the pool runs its tasks (kind = thread, process or dask); always 1.",
    ),
    "poolwatch_build_info": ("gauge", ("version",), "poolwatch version; always 1."),
}

_BOUNDS = [floatToGoString(b) for b in BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]
_LE = [f'le="{b}"}} ' for b in _BOUNDS]  # the end of each bucket line's labels
_POOL_STATES = ("running", "paused", "shutting_down", "terminated")
_OUTCOMES = ("succeeded", "failed", "cancelled")


class PoolCollector(Collector):
    """Exports the ``poolwatch_*`` families of every pool of one manager."""

    def __init__(self, manager: PoolSource) -> None:
        self._manager = manager
        self._local = threading.local()

    @contextlib.contextmanager
    def suppressed(self) -> Iterator[None]:
        """While inside, this thread's collections skip poolwatch's families."""
        self._local.suppressed = True
        try:
            yield
        finally:
            self._local.suppressed = False

    def describe(self) -> Iterable[Metric]:
        # Names only, so that registering twice in one registry is refused up front.
        return list(_families([]))

    def collect(self) -> Iterable[Metric]:
        if getattr(self._local, "suppressed", False):
            return []  # render_metrics writes these itself
        return _families([pool.metrics_snapshot() for pool in self._manager.pools()])


def _families(snaps: list[PoolSnapshot]) -> Iterator[Metric]:
    fams: dict[str, Any] = {}
    for name, (kind, labels, doc) in FAMILIES.items():
        cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}.get(
            kind, HistogramMetricFamily
        )
        fams[name] = cls(name, doc, labels=list(labels))
    for s in snaps:
        p = s.stats.name
        fams["poolwatch_tasks_submitted"].add_metric([p], s.stats.submitted)
        fams["poolwatch_tasks_rejected"].add_metric([p, "queue_full"], s.rejected_full)
        fams["poolwatch_tasks_rejected"].add_metric([p, "shutdown"], s.rejected_shutdown)
        fams["poolwatch_tasks_timeouts"].add_metric([p, "queue"], s.timeouts_queue)
        fams["poolwatch_tasks_timeouts"].add_metric([p, "run"], s.timeouts_run)
        _add_histogram(fams["poolwatch_task_queue_wait_seconds"], [p], s.queue_wait)
        for label, *outcomes, hist in s.labels:
            for outcome, count in zip(_OUTCOMES, outcomes, strict=True):
                fams["poolwatch_tasks_completed"].add_metric([p, label, outcome], count)
            _add_histogram(fams["poolwatch_task_run_seconds"], [p, label], hist)
        for name, v in zip(_GAUGES, _gauges(s), strict=True):
            fams[name].add_metric([p], v)
        for state in _POOL_STATES:
            fams["poolwatch_pool_state"].add_metric(
                [p, state], 1 if state == s.stats.state.value else 0
            )
        fams["poolwatch_pool_info"].add_metric([p, s.kind], 1)
    fams["poolwatch_build_info"].add_metric([__version__], 1)
    return iter(fams.values())


_GAUGES = (
    "poolwatch_pool_max_workers",
    "poolwatch_pool_workers",
    "poolwatch_pool_active_workers",
    "poolwatch_pool_queued_tasks",
    "poolwatch_pool_queue_capacity",
    "poolwatch_pool_oldest_queued_seconds",
    "poolwatch_pool_overdue_tasks",
)


def _gauges(snap: PoolSnapshot) -> tuple[float, ...]:
    """The values of the ``_GAUGES`` families for one pool, in that order."""
    s = snap.stats
    capacity = math.inf if s.queue_capacity is None else s.queue_capacity
    return (
        s.max_workers,
        s.workers,
        s.active,
        s.queued,
        capacity,
        s.oldest_queued_age,
        s.overdue,
    )


def _add_histogram(family: HistogramMetricFamily, labels: list[str], h: HistogramSnapshot) -> None:
    counts, total, exemplars = h
    buckets: list[Any] = []
    acc = 0
    for bound, count, ex in zip(_BOUNDS, counts, exemplars, strict=True):
        acc += count
        if ex is None:
            buckets.append((bound, acc))
        else:
            trace_id, value, ts = ex
            buckets.append((bound, acc, Exemplar({"trace_id": f"{trace_id:032x}"}, value, ts)))
    family.add_metric(labels, buckets, total)


# -- the fast text rendering used by the /metrics route ---------------------------------


def encoder_for(accept: str | None) -> tuple[Callable[[CollectorRegistry], bytes], str]:
    """prometheus_client's encoder for an HTTP ``Accept`` header, and its content type."""
    try:
        return choose_encoder(accept or "")
    except (TypeError, ValueError):  # an unreadable OpenMetrics version: use the text format
        return choose_encoder("")


def render_metrics(manager: MetricsSource, accept: str | None = None) -> tuple[bytes, str]:
    """The registry's exposition for an HTTP ``Accept`` header: (body, content type).

    OpenMetrics (with exemplars) when the header asks for it, else Prometheus text 0.0.4.
    """
    encoder, content_type = encoder_for(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    with manager.collector.suppressed():
        others = encoder(manager.registry).decode()
    ours = render_pool_families(manager, openmetrics)
    if openmetrics:
        eof = "# EOF\n"
        others = others[: -len(eof)] if others.endswith(eof) else others
        return (others + ours + eof).encode(), content_type
    return (others + ours).encode(), content_type


def render_pool_families(manager: PoolSource, openmetrics: bool = False) -> str:
    """The ``poolwatch_*`` families of ``manager``'s pools as exposition text (Prometheus
    text 0.0.4, or OpenMetrics without the closing ``# EOF``)."""
    return render_snapshots([pool.metrics_snapshot() for pool in manager.pools()], openmetrics)


def render_snapshots(snaps: list[PoolSnapshot], openmetrics: bool = False) -> str:
    """``render_pool_families`` of snapshots already taken: whatever else is derived
    from the same snapshots agrees with the text."""
    out: list[str] = []
    w = out.append

    def header(name: str) -> None:
        kind, _, doc = FAMILIES[name]
        shown = name + "_total" if kind == "counter" and not openmetrics else name
        w(f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n")

    _render_counters(snaps, w, header)
    _render_histograms(snaps, w, header, openmetrics)
    _render_gauges(snaps, w, header)
    return "".join(out)


def _render_counters(snaps: list[PoolSnapshot], w: Any, header: Any) -> None:
    header("poolwatch_tasks_submitted")
    for s in snaps:
        w(f'poolwatch_tasks_submitted_total{{pool="{s.stats.name}"}} {s.stats.submitted}.0\n')
    header("poolwatch_tasks_rejected")
    for s in snaps:
        w(
            f'poolwatch_tasks_rejected_total{{pool="{s.stats.name}",reason="queue_full"}} '
            f"{s.rejected_full}.0\n"
            f'poolwatch_tasks_rejected_total{{pool="{s.stats.name}",reason="shutdown"}} '
            f"{s.rejected_shutdown}.0\n"
        )
    header("poolwatch_tasks_completed")
    for s in snaps:
        for label, ok, failed, cancelled, _ in s.labels:
            pre = f'poolwatch_tasks_completed_total{{pool="{s.stats.name}",task="{_escape(label)}",'
            w(
                f'{pre}outcome="succeeded"}} {ok}.0\n{pre}outcome="failed"}} {failed}.0\n'
                f'{pre}outcome="cancelled"}} {cancelled}.0\n'
            )
    header("poolwatch_tasks_timeouts")
    for s in snaps:
        pre = f'poolwatch_tasks_timeouts_total{{pool="{s.stats.name}",kind='
        w(f'{pre}"queue"}} {s.timeouts_queue}.0\n{pre}"run"}} {s.timeouts_run}.0\n')


def _render_histograms(snaps: list[PoolSnapshot], w: Any, header: Any, openmetrics: bool) -> None:
    header("poolwatch_task_queue_wait_seconds")
    for s in snaps:
        _write_histogram(
            w,
            "poolwatch_task_queue_wait_seconds",
            f'pool="{s.stats.name}"',
            s.queue_wait,
            openmetrics,
        )
    header("poolwatch_task_run_seconds")
    for s in snaps:
        for label, _, _, _, hist in s.labels:
            _write_histogram(
                w,
                "poolwatch_task_run_seconds",
                f'pool="{s.stats.name}",task="{_escape(label)}"',
                hist,
                openmetrics,
            )


def _render_gauges(snaps: list[PoolSnapshot], w: Any, header: Any) -> None:
    gauges = [_gauges(s) for s in snaps]
    for i, name in enumerate(_GAUGES):
        header(name)
        for s, values in zip(snaps, gauges, strict=True):
            w(f'{name}{{pool="{s.stats.name}"}} {_number(values[i])}\n')
    header("poolwatch_pool_state")
    for s in snaps:
        for state in _POOL_STATES:
            on = 1 if state == s.stats.state.value else 0
            w(f'poolwatch_pool_state{{pool="{s.stats.name}",state="{state}"}} {on}.0\n')
    header("poolwatch_pool_info")
    for s in snaps:
        w(f'poolwatch_pool_info{{pool="{s.stats.name}",kind="{s.kind}"}} 1.0\n')
    header("poolwatch_build_info")
    w(f'poolwatch_build_info{{version="{__version__}"}} 1.0\n')


def _write_histogram(
    w: Any, name: str, labels: str, h: HistogramSnapshot, openmetrics: bool
) -> None:
    counts, total, exemplars = h
    head = f"{name}_bucket{{{labels},"
    cumulative = list(accumulate(counts))
    if openmetrics and any(exemplars):
        for bound, acc, ex in zip(_LE, cumulative, exemplars, strict=True):
            if ex is None:
                w(f"{head}{bound}{acc}.0\n")
            else:
                trace_id, value, ts = ex
                w(f'{head}{bound}{acc}.0 # {{trace_id="{trace_id:032x}"}} {value!r} {ts:.3f}\n')
    else:
        w("".join([f"{head}{bound}{acc}.0\n" for bound, acc in zip(_LE, cumulative, strict=True)]))
    w(f"{name}_count{{{labels}}} {cumulative[-1]}.0\n{name}_sum{{{labels}}} {total!r}\n")


def _number(v: float) -> str:
    if isinstance(v, int):
        return f"{v}.0"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value
