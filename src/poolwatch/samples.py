"""A manager's recent past: per-pool samples at one-second resolution, and latency.

One sampler thread per served manager reads only public data, ``pool.stats()`` every
second and ``pool.metrics_snapshot()`` (histogram bucket counts) every ten, so the task
path pays nothing. What it keeps is bounded and small:

- eight series per pool for the last fifteen minutes: three gauges (queued, workers,
  active) and five per-second increments of counters (completed, failed, rejected,
  queue and run timeouts). The current minute is a 32-bit array; each closed minute is
  stored series by series, byte-shuffled and zlib-compressed: small, mostly repeating
  numbers shrink to a few hundred bytes a minute;
- per pool, what each ten-second interval added to the queue-wait and run-time
  histograms (per task label), compressed the same way. A latency quantile over a
  window is read from the sum of the intervals it spans, as Prometheus's
  ``histogram_quantile`` reads a ``rate()``.

Thread-safe: the sampler thread writes under a lock, readers copy under it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import weakref
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from .accounting import BUCKETS, PoolSnapshot
from .records import PoolStats
from .users import Users

__all__ = [
    "COUNTER_SERIES",
    "GAUGE_SERIES",
    "SERIES",
    "Latency",
    "PoolLatency",
    "PoolSamples",
    "SampleHistory",
    "quantile",
    "served_history",
]

GAUGE_SERIES = ("queued", "workers", "active")
COUNTER_SERIES = ("completed", "failed", "rejected", "queue_timeouts", "run_timeouts")
SERIES = GAUGE_SERIES + COUNTER_SERIES
log = logging.getLogger("poolwatch")

_WIDTH = len(SERIES)
_INT32 = (1 << 31) - 1
_NBUCKETS = len(BUCKETS) + 1
QUANTILES = (0.5, 0.95, 0.99)


class SampledPool(Protocol):
    @property
    def name(self) -> str: ...

    def stats(self) -> PoolStats: ...

    def metrics_snapshot(self) -> PoolSnapshot: ...


class PoolSource(Protocol):
    def pools(self) -> Sequence[SampledPool]: ...


def _compress(values: array[int]) -> bytes:
    """int32 values with the bytes of each split into planes (the high planes of small
    numbers are zeros, which deflate reduces to almost nothing), raw-deflated."""
    raw = values.tobytes()
    size = values.itemsize
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(b"".join(raw[i::size] for i in range(size))) + packer.flush()


def _decompress(blob: bytes) -> array[int]:
    raw = zlib.decompress(blob, -15)
    size = array("i").itemsize
    plane = len(raw) // size
    out = bytearray(len(raw))
    for i in range(size):
        out[i::size] = raw[i * plane : (i + 1) * plane]
    values = array("i")
    values.frombytes(bytes(out))
    return values


def _read_checkpoints(values: array[int], labels: Sequence[str]) -> Iterator[_Checkpoint]:
    """The checkpoints of a minute: each ``start, end, rows``, the queue-wait buckets,
    then ``rows`` times a label's index in ``labels`` and its run-time buckets."""
    at = 0
    n = len(values)
    while at < n:
        start, end, rows = values[at], values[at + 1], values[at + 2]
        at += 3
        queue = values[at : at + _NBUCKETS]
        at += _NBUCKETS
        runs = {}
        for _ in range(rows):
            runs[labels[values[at]]] = values[at + 1 : at + 1 + _NBUCKETS]
            at += 1 + _NBUCKETS
        yield start, end, runs, queue


def _clip(value: int) -> int:
    return _INT32 if value > _INT32 else -_INT32 if value < -_INT32 else value


def quantile(q: float, counts: Sequence[int]) -> float | None:
    """The ``q`` quantile of a histogram (non-cumulative counts per ``BUCKETS`` bound,
    then +Inf), interpolated within its bucket like Prometheus's ``histogram_quantile``;
    ``None`` when it is empty. A quantile in the +Inf bucket is the highest bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, n in enumerate(counts):
        if n and seen + n >= rank:
            if index >= len(BUCKETS):
                return BUCKETS[-1]
            lower = BUCKETS[index - 1] if index else 0.0
            upper = BUCKETS[index]
            return lower + (upper - lower) * max(0.0, rank - seen) / n
        seen += n
    return BUCKETS[-1]


@dataclass(frozen=True, slots=True)
class Latency:
    """Quantiles (seconds) of one histogram over a window; ``None`` with no observations."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, counts: Sequence[int]) -> Latency:
        p50, p95, p99 = (quantile(q, counts) for q in QUANTILES)
        return cls(int(sum(counts)), p50, p95, p99)


@dataclass(frozen=True, slots=True)
class PoolLatency:
    """A pool's queue wait and run time over a window, and run time per task label."""

    pool: str
    queue_wait: Latency
    run_time: Latency
    tasks: tuple[tuple[str, Latency], ...]


@dataclass(frozen=True, slots=True)
class PoolSamples:
    """One pool's samples: ``values[name][i]`` is at ``start + i * interval`` (epoch s)."""

    pool: str
    start: float
    interval: float
    values: dict[str, list[int]]


# One checkpoint: (first tick, last tick, run-time bucket deltas by task label,
# queue-wait bucket deltas): what the pool's histograms gained over those ticks.
_Checkpoint: TypeAlias = "tuple[int, int, dict[str, array[int]], array[int]]"


@dataclass(slots=True)
class _Track:
    """Everything kept for one pool (one ``ManagedPool`` object).

    ``chunks`` are closed minutes: (first tick, task labels, compressed samples then
    checkpoints). Plain lists, tuples and int32 arrays throughout: a deque alone, or
    one checkpoint as lists of Python ints, would cost more than a compressed minute.
    """

    pool: object
    first_tick: int
    counters: tuple[int, ...]
    chunks: list[tuple[int, tuple[str, ...], bytes]] = field(default_factory=list)
    open_tick: int = 0
    current: array[int] = field(default_factory=lambda: array("i"))
    # The open minute's checkpoints (see _read_checkpoints) and the labels they name.
    open_hist: array[int] = field(default_factory=lambda: array("i"))
    open_labels: list[str] = field(default_factory=list)
    hist_tick: int = -1
    queue_hist: array[int] = field(default_factory=lambda: array("q"))
    run_hist: dict[str, array[int]] = field(default_factory=dict)


def _counters(s: PoolStats) -> tuple[int, ...]:
    return (
        s.succeeded + s.failed + s.cancelled,
        s.failed,
        s.rejected,
        s.queue_timeouts,
        s.run_timeouts,
    )


class SampleHistory:
    """Samples of every pool of ``source`` every ``interval`` seconds, for ``seconds``.

    :meth:`start` runs the sampler thread (one sample at once, then one per interval)
    until :meth:`stop`; :meth:`sample` takes one by hand. Histogram deltas are kept every
    ``latency_every`` samples. ``clock`` and ``wall`` (monotonic and epoch seconds) are
    for tests.
    """

    def __init__(
        self,
        source: PoolSource,
        *,
        interval: float = 1.0,
        seconds: float = 900.0,
        chunk: int = 60,
        latency_every: int = 10,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not interval > 0 or not seconds >= interval:
            raise ValueError(
                f"need interval > 0 and seconds >= interval, got {interval}, {seconds}"
            )
        self.interval = float(interval)
        self.size = math.ceil(seconds / interval)
        self.chunk = max(1, min(chunk, self.size))
        self.latency_every = max(1, latency_every)
        # Weakly: the shared histories are kept per manager in a weak mapping.
        self._source = weakref.ref(source)
        self._clock = clock
        self._t0 = clock()
        self._epoch0 = wall()
        self.after_fork_in_child()
        _histories.add(self)

    def after_fork_in_child(self) -> None:
        """Empty, no thread, no users: also what a forked child starts with, since the
        parent's sampler thread is not in the child and its pools start clean there."""
        self._lock = threading.Lock()
        self._tracks: dict[str, _Track] = {}
        self._last_tick = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._users = Users()

    # -- the sampler thread ---------------------------------------------------------

    def start(self) -> None:
        """Start the sampler thread (once; later calls do nothing while it runs)."""
        with self._lock:
            if self._thread is not None:
                return
            # Each thread has its own stop event: a stop racing a restart stops only
            # the thread it was meant for.
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="poolwatch-sampler", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the sampler thread and wait for it; the samples stay readable."""
        with self._lock:
            thread, self._thread = self._thread, None
            stop = self._stop
        if thread is not None:
            stop.set()
            thread.join()

    def acquire(self) -> None:
        """One more user (a served app): the first one starts the sampler."""
        if self._users.add():
            self.start()

    def release(self) -> None:
        """One user fewer: the last one stops the sampler."""
        if self._users.remove():
            self.stop()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def _run(self, stop: threading.Event) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # never let one bad read end the history
                log.exception("sampling the pools failed")
            elapsed = self._clock() - self._t0
            due = (math.floor(elapsed / self.interval + 0.5) + 1) * self.interval
            if stop.wait(max(0.0, due - elapsed)):
                return

    # -- writing ----------------------------------------------------------------------

    def sample(self) -> None:
        """Take one sample of every pool now (the sampler thread calls this)."""
        tick = int((self._clock() - self._t0) / self.interval + 0.5)
        source = self._source()
        pools = list(source.pools()) if source is not None else []
        stats = [(p, p.stats()) for p in pools]
        take_hist = tick // self.latency_every != self._last_tick // self.latency_every
        snaps = {p.name: p.metrics_snapshot() for p in pools} if take_hist else {}
        with self._lock:
            if tick <= self._last_tick:
                return
            self._last_tick = tick
            seen = set()
            for pool, s in stats:
                seen.add(s.name)
                track = self._tracks.get(s.name)
                if track is None or track.pool is not pool:
                    track = self._tracks[s.name] = _Track(pool, tick, _counters(s), open_tick=tick)
                self._append(track, tick, s)
                snap = snaps.get(s.name)
                if snap is not None:
                    self._checkpoint(track, tick, snap)
            for name in [n for n in self._tracks if n not in seen]:
                del self._tracks[name]

    def _append(self, track: _Track, tick: int, s: PoolStats) -> None:
        counters = _counters(s)
        deltas = [
            max(0, now - before) for now, before in zip(counters, track.counters, strict=True)
        ]
        track.counters = counters
        gauges = [s.queued, s.workers, s.active]
        missed = tick - (track.open_tick + len(track.current) // _WIDTH)
        # A late sampler (a stalled machine) fills the seconds it missed with the gauges
        # of now and no increments; what happened meanwhile is counted in this sample.
        for _ in range(max(0, min(missed, self.size))):
            self._push(track, [_clip(v) for v in gauges] + [0] * len(COUNTER_SERIES))
        self._push(track, [_clip(v) for v in gauges + deltas])

    def _push(self, track: _Track, row: list[int]) -> None:
        current = track.current
        current.extend(row)
        rows = len(current) // _WIDTH
        if rows < self.chunk:
            return
        chunks = track.chunks
        labels = tuple(track.open_labels)
        if chunks and chunks[-1][1] == labels:
            labels = chunks[-1][1]  # one tuple shared by the minutes that name the same
        values = array("i")
        for c in range(_WIDTH):
            values.extend(current[c::_WIDTH])
        values.extend(track.open_hist)
        chunks.append((track.open_tick, labels, _compress(values)))
        track.open_tick += rows
        track.current = array("i")
        track.open_hist = array("i")
        track.open_labels = []
        # Whole minutes older than the window are dropped.
        drop = 0
        while drop < len(chunks) and chunks[drop][0] + self.chunk <= track.open_tick - self.size:
            drop += 1
        if drop:
            del chunks[:drop]
        if chunks:
            track.first_tick = max(track.first_tick, chunks[0][0])

    def _checkpoint(self, track: _Track, tick: int, snap: PoolSnapshot) -> None:
        queue = array("q", snap.queue_wait[0])
        runs = {label: array("q", hist[0]) for label, _, _, _, hist in snap.labels}
        if track.hist_tick >= 0:
            added = []
            for label, counts in runs.items():
                row = array("i", _deltas(counts, track.run_hist.get(label)))
                if any(row):
                    if label not in track.open_labels:
                        track.open_labels.append(label)
                    added.append((track.open_labels.index(label), row))
            out = track.open_hist
            out.extend((track.hist_tick, tick, len(added)))
            out.extend(_deltas(queue, track.queue_hist))
            for index, row in added:
                out.append(index)
                out.extend(row)
        track.hist_tick = tick
        track.queue_hist = queue
        track.run_hist = runs

    # -- reading ----------------------------------------------------------------------

    def samples(self, pool: str | None = None, seconds: float | None = None) -> list[PoolSamples]:
        """Each pool's samples (or only ``pool``'s), the last ``seconds`` of them."""
        with self._lock:
            tracks = [
                (name, t.first_tick, t.open_tick, list(t.chunks), array("i", t.current))
                for name, t in self._tracks.items()
                if pool is None or name == pool
            ]
        keep = (
            self.size
            if seconds is None
            else max(1, min(self.size, math.ceil(seconds / self.interval)))
        )
        out = []
        for name, first, open_tick, chunks, current in tracks:
            blocks = []
            for tick, _, blob in chunks:
                values = _decompress(blob)
                blocks.append(
                    (tick, [values[c * self.chunk : (c + 1) * self.chunk] for c in range(_WIDTH)])
                )
            blocks.append((open_tick, [current[c::_WIDTH] for c in range(_WIDTH)]))
            end = open_tick + len(current) // _WIDTH
            start = max(first, end - keep)
            columns: list[list[int]] = [[] for _ in SERIES]
            for tick, block in blocks:
                lo = max(0, start - tick)
                for column, values in zip(columns, block, strict=True):
                    column.extend(values[lo:])
            out.append(
                PoolSamples(
                    pool=name,
                    start=self._epoch0 + start * self.interval,
                    interval=self.interval,
                    values=dict(zip(SERIES, columns, strict=True)),
                )
            )
        return out

    def latency(
        self, pools: Iterable[SampledPool], seconds: float
    ) -> tuple[float, list[PoolLatency]]:
        """Quantiles over about the last ``seconds`` (to within ``latency_every``
        samples) for ``pools``, and the seconds the data covers: less while the history
        is young, and 0 for a pool the sampler has not seen yet."""
        now_tick = (self._clock() - self._t0) / self.interval
        horizon = now_tick - seconds / self.interval
        results = []
        covered = 0.0
        for pool in pools:
            snap = pool.metrics_snapshot()
            queue = [0] * _NBUCKETS
            runs: dict[str, list[int]] = {}
            checkpoints: list[_Checkpoint] = []
            packed: list[tuple[tuple[str, ...], bytes]] = []
            since = None
            with self._lock:
                track = self._tracks.get(pool.name)
                if track is not None and track.pool is pool and track.hist_tick >= 0:
                    # What was added since the last checkpoint, read live...
                    queue = list(_deltas(array("q", snap.queue_wait[0]), track.queue_hist))
                    for label, _, _, _, hist in snap.labels:
                        before = track.run_hist.get(label)
                        runs[label] = list(_deltas(array("q", hist[0]), before))
                    since = float(track.hist_tick)
                    packed = [
                        (labels, blob)
                        for tick, labels, blob in track.chunks
                        if tick + self.chunk > horizon - self.latency_every
                    ]
                    checkpoints = list(
                        _read_checkpoints(array("i", track.open_hist), track.open_labels)
                    )
            # ... then the checkpoints whose interval lies mostly inside the window.
            if since is not None:
                for labels, blob in packed:
                    values = _decompress(blob)[_WIDTH * self.chunk :]
                    checkpoints.extend(_read_checkpoints(values, labels))
                for start, end, added, queue_added in checkpoints:
                    if start + end >= 2 * horizon:
                        since = min(since, start)
                        _add(queue, queue_added)
                        for label, row in added.items():
                            _add(runs.setdefault(label, [0] * _NBUCKETS), row)
                covered = max(covered, (now_tick - since) * self.interval)
            total_run = [sum(col) for col in zip(*runs.values(), strict=True)] or [0] * _NBUCKETS
            results.append(
                PoolLatency(
                    pool=pool.name,
                    queue_wait=Latency.of(queue),
                    run_time=Latency.of(total_run),
                    tasks=tuple((name, Latency.of(c)) for name, c in sorted(runs.items())),
                )
            )
        return min(covered, seconds), results

    def memory_bytes(self) -> int:
        """The bytes the kept samples and histogram deltas take (``sys.getsizeof``)."""
        size = sys.getsizeof(self._tracks)
        with self._lock:
            for name, t in self._tracks.items():
                size += sys.getsizeof(name) + sys.getsizeof(t) + sys.getsizeof(t.counters)
                size += sys.getsizeof(t.chunks) + sys.getsizeof(t.current)
                for chunk in t.chunks:
                    size += sys.getsizeof(chunk) + sys.getsizeof(chunk[2])
                size += sys.getsizeof(t.open_hist) + sys.getsizeof(t.open_labels)
                size += sys.getsizeof(t.queue_hist) + sys.getsizeof(t.run_hist)
                size += sum(sys.getsizeof(a) for a in t.run_hist.values())
        return size


def _deltas(now: array[int], before: array[int] | None) -> Iterable[int]:
    if before is None or len(before) != len(now):
        return (_clip(v) for v in now)
    # A bucket that went down means a new pool under the name: count from zero.
    if any(a < b for a, b in zip(now, before, strict=True)):
        return (_clip(v) for v in now)
    return (_clip(a - b) for a, b in zip(now, before, strict=True))


def _add(into: list[int], row: Sequence[int]) -> None:
    for i, n in enumerate(row):
        into[i] += n


_served_lock = threading.Lock()
_served: weakref.WeakKeyDictionary[PoolSource, SampleHistory] = weakref.WeakKeyDictionary()


def served_history(source: PoolSource) -> SampleHistory:
    """The one history of ``source`` (a manager), shared by every app that serves it,
    so that a manager served twice still has one sampler thread."""
    with _served_lock:
        history = _served.get(source)
        if history is None:
            history = _served[source] = SampleHistory(source)
        return history


_histories: weakref.WeakSet[SampleHistory] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _served_lock
    _served_lock = threading.Lock()
    for history in list(_histories):
        history.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
