"""The engine under ``ManagedPool``: its state, worker loop and task bookkeeping.

The design, in short:

- One lock per pool guards everything that changes (queue, counters, worker bookkeeping,
  history). Correctness never leans on the GIL.
- The future is the task record: one object per task. Queued tasks wait in a deque;
  cancelling one marks it and leaves a tombstone that workers skip, so a cancel is O(1).
- Idle workers park on a lock of their own, and a submit wakes exactly one of them.
  A worker that finishes a task records it and takes the next one in a single acquisition
  of the pool lock, and resolves the finished future after releasing it.
- Counts and histograms are plain numbers updated under that same lock; the metrics
  collector reads them at scrape time (see ``metrics.py``).
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from concurrent.futures._base import RUNNING as _FUTURE_RUNNING
from time import monotonic
from typing import TYPE_CHECKING, Any

from .accounting import BUCKETS, OTHER_LABEL, Histogram, LabelStats, PoolSnapshot, TaskKind
from .errors import TaskCancelledError
from .future import TaskFuture, _local
from .history import CANCELLED, FAILED, NAN, QUEUED, RUNNING, SUCCEEDED, History, error_info
from .records import PoolState, PoolStats
from .tasks import TASK_ATTR, default_name, task_type_of

if TYPE_CHECKING:
    from .manager import PoolManager

__all__ = ["PoolCore"]

log = logging.getLogger("poolwatch")

_MAX_KINDS = 4096  # distinct task names remembered per pool; more are counted, not indexed


class _Worker:
    __slots__ = ("index", "name", "retire", "started", "task", "wake", "woken")

    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name
        self.wake = threading.Lock()
        self.wake.acquire()  # held while the worker is not parked: release() wakes it
        self.woken = False
        self.retire = False
        self.started = False
        self.task: TaskFuture | None = None


class PoolCore:
    """State and mechanics of a pool; ``ManagedPool`` adds the public Executor API."""

    def __init__(
        self,
        manager: PoolManager,
        uid: int,
        name: str,
        *,
        max_workers: int,
        queue_capacity: int | None,
        rejection_policy: str,
        queue_timeout: float | None,
        run_timeout: float | None,
        history_size: int,
        task_label_limit: int,
    ) -> None:
        self._manager = manager
        self._uid = uid
        self._name = name
        self._tracing = manager._tracing
        self._wall_offset = manager._wall_offset
        self._lock = threading.Lock()
        # settings
        self._max_workers = max_workers
        self._capacity = queue_capacity
        self._policy = rejection_policy
        self._queue_timeout = queue_timeout
        self._run_timeout = run_timeout
        self._label_limit = task_label_limit
        # the queue and the tasks not finished yet
        self._queue: deque[TaskFuture] = deque()
        self._tombstones = 0
        self._queued = 0
        self._live: dict[int, TaskFuture] = {}
        self._next_seq = 1
        # workers
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._threads: list[threading.Thread] = []
        self._nworkers = 0  # live or starting, not retiring
        # Tasks the caller_runs policy started, and the threads running them: few, and
        # only while the queue is full. The monitor times them out like workers' tasks.
        self._caller_runs: dict[TaskFuture, threading.Thread] = {}
        self._waking = 0  # woken or starting, not yet at the queue
        self._active = 0
        self._spawned = 0
        self._worker_names: list[str] = []
        self._worker_index: dict[str, int] = {}
        # lifecycle
        self._paused = False
        self._closing = False
        self._terminated = threading.Event()
        # counts
        self._submitted = 0
        self._succeeded = 0
        self._failed = 0
        self._cancelled = 0
        self._rejected_full = 0
        self._rejected_shutdown = 0
        self._timeouts_queue = 0
        self._timeouts_run = 0
        self._overdue = 0
        self._queue_wait = Histogram()
        # task kinds: by code object (fast path) and by name
        self._kinds: dict[Any, tuple[Any, Any, TaskKind]] = {}  # code -> (qualname, type, kind)
        self._kinds_by_name: dict[str, TaskKind] = {}
        self._kind_list: list[TaskKind] = []
        self._labels: dict[str, LabelStats] = {}
        self._has_kind_timeouts = False
        self._history = History(history_size)

    def _state_locked(self) -> PoolState:
        if self._closing:
            return PoolState.TERMINATED if self._terminated.is_set() else PoolState.SHUTTING_DOWN
        return PoolState.PAUSED if self._paused else PoolState.RUNNING

    def _pop_oldest_locked(self) -> TaskFuture | None:
        q = self._queue
        while q:
            fut = q.popleft()
            if fut._tstate == QUEUED:
                return fut
            self._tombstones -= 1
        return None

    def _kind_for(self, fn: Callable[..., Any]) -> TaskKind:
        code = getattr(fn, "__code__", None)
        if code is not None:
            cached = self._kinds.get(code)
            # Functions sharing the code differ in their __qualname__ object (a decorator's
            # wrappers) or in the @task type attached (closures from one factory, which
            # share even the __qualname__): compare both by identity, it costs little.
            if (
                cached is not None
                and cached[0] is getattr(fn, "__qualname__", None)
                and cached[1] is getattr(fn, TASK_ATTR, None)
            ):
                return cached[2]
        return self._new_kind(fn, code)

    def _new_kind(self, fn: Callable[..., Any], code: Any) -> TaskKind:
        tt = task_type_of(fn)
        name = tt.name if tt is not None else default_name(fn)
        with self._lock:
            kind = self._kinds_by_name.get(name)
            if kind is None:
                stats = self._labels.get(name)
                if stats is None:
                    if len(self._labels) >= self._label_limit:
                        stats = self._labels.get(OTHER_LABEL)
                        if stats is None:
                            stats = self._labels[OTHER_LABEL] = LabelStats(OTHER_LABEL)
                    else:
                        stats = self._labels[name] = LabelStats(name)
                if len(self._kind_list) >= _MAX_KINDS:
                    # Past this many names in one pool, records share one overflow name.
                    name = OTHER_LABEL
                    kind = self._kinds_by_name.get(name)
                if kind is None:
                    kind = TaskKind(len(self._kind_list), name, stats, None)
                    self._kinds_by_name[name] = kind
                    self._kind_list.append(kind)
            if tt is not None and tt.run_timeout is not None:
                kind.run_timeout = tt.run_timeout
                self._has_kind_timeouts = True
            if code is not None and len(self._kinds) < _MAX_KINDS:
                qualname = getattr(fn, "__qualname__", None)
                self._kinds[code] = (qualname, getattr(fn, TASK_ATTR, None), kind)
        if kind.run_timeout is not None:
            self._manager._watch(self)
        return kind

    def _worker_slot(self, name: str) -> int:
        index = self._worker_index.get(name)
        if index is None:
            index = self._worker_index[name] = len(self._worker_names)
            self._worker_names.append(name)
        return index

    def _reserve_worker_locked(self) -> _Worker:
        self._spawned += 1
        name = f"poolwatch-{self._name}-{self._spawned}"
        w = _Worker(self._worker_slot(name), name)
        w.woken = True
        self._nworkers += 1
        self._waking += 1
        self._workers.add(w)
        return w

    def _next_worker_locked(self) -> _Worker | None:
        """Pick a worker to come for queued work: an idle one, or a new one if allowed.

        Callers wake at most one worker at a time (when none is already on its way); a
        worker that finds more work behind its task wakes the next. Waking one thread per
        task would cost a futex wake and a GIL handover on every submit.
        """
        if self._paused:
            return None
        if self._idle:
            w = self._idle.pop()
            w.woken = True
            self._waking += 1
            return w
        if self._nworkers < self._max_workers:
            return self._reserve_worker_locked()
        return None

    def _wake(self, w: _Worker) -> None:
        """Wake a worker chosen by ``_next_worker_locked`` (call without the lock)."""
        if w.started:
            w.wake.release()
        else:
            self._start_worker(w)

    def _dispatch_locked(self, limit: int) -> list[_Worker]:
        """Choose up to ``limit`` workers for queued tasks nobody is coming for; the caller
        wakes them (``_wake``) once the lock is released."""
        chosen: list[_Worker] = []
        while len(chosen) < limit and self._queued > self._waking:
            w = self._next_worker_locked()
            if w is None:
                break
            chosen.append(w)
        return chosen

    def _start_worker(self, w: _Worker) -> None:
        w.started = True
        t = threading.Thread(target=self._work, args=(w,), name=w.name)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        try:
            t.start()
        except RuntimeError:
            log.exception("pool %r could not start a worker thread", self._name)
            with self._lock:
                self._threads.remove(t)
                self._nworkers -= 1
                self._waking -= 1
                self._workers.discard(w)
                self._maybe_terminated_locked()

    def _work(self, w: _Worker) -> None:
        """A worker thread's loop: take a task, run it, record it, repeat."""
        lock = self._lock
        done: TaskFuture | None = None
        outcome = SUCCEEDED
        payload: Any = None
        fatal = False
        while True:
            lock.acquire()
            now = monotonic()
            resolved = False
            if done is not None:
                resolved = self._finish_locked(done, outcome, payload, now)
                w.task = None
            if w.woken:
                w.woken = False
                self._waking -= 1
            task: TaskFuture | None = None
            chain: _Worker | None = None
            park = leave = False
            if fatal or w.retire:
                leave = True
            elif self._nworkers > self._max_workers:
                self._nworkers -= 1
                leave = True
            elif self._paused and not self._closing:
                park = True
            else:
                queue = self._queue
                while queue:
                    task = queue.popleft()
                    if task._tstate == QUEUED:
                        break
                    self._tombstones -= 1
                    task = None
                if task is not None:
                    self._start_locked(task, w.index, now)
                    w.task = task
                elif self._closing:
                    self._nworkers -= 1
                    leave = True
                else:
                    park = True
            if park:
                self._idle.append(w)
            if leave:
                self._workers.discard(w)
                if fatal:
                    self._nworkers -= 1  # replaced below if work is waiting
                self._maybe_terminated_locked()
            if not park and self._queued > self._waking == 0:
                # More work behind this task (or a worker leaving): send the next worker.
                chain = self._next_worker_locked()
            lock.release()
            if done is not None:
                if not resolved:
                    # Callbacks run here. TaskFuture logs whatever they raise, even
                    # SystemExit; this worker is already booked idle or busy, so nothing
                    # may stop it from getting back to its loop.
                    try:
                        done._resolve(outcome, payload)
                    except BaseException:
                        log.exception("resolving task %s failed", done.task_id)
                done = payload = None
            if chain is not None:
                self._wake(chain)
            if leave:
                return
            if park:
                w.wake.acquire()
                continue
            assert task is not None  # for the type checker: not park and not leave
            try:
                outcome, payload, fatal = self._execute(task, w.name)
            except BaseException as exc:  # not the task's (_execute catches those)
                outcome, payload, fatal = self._engine_failed(task, exc)
            done = task

    def _start_locked(
        self, task: TaskFuture, worker: int, now: float, *, queued: bool = True
    ) -> None:
        task._tstate = RUNNING
        task._state = _FUTURE_RUNNING  # Future.running() is True from here on
        task._started = now
        task._worker = worker
        if queued:
            self._queued -= 1
        self._active += 1
        wait = now - task._submitted
        h = self._queue_wait
        h.counts[bisect_left(BUCKETS, wait)] += 1
        h.sum += wait

    def _execute(self, task: TaskFuture, thread: str) -> tuple[int, Any, bool]:
        """Run a started task; returns (outcome, result or exception, fatal)."""
        previous = getattr(_local, "task", None)
        _local.task = task
        span = None
        tracer = self._tracing.tracer(task._started) if task._trace_ctx is not None else None
        if tracer is not None:
            opened = self._tracing.start(
                tracer, task, self._name, thread, task._started - task._submitted
            )
            if opened is not None:
                span, token = opened
        outcome = SUCCEEDED
        fatal = False
        try:
            payload = task._fn(*task._args, **task._kwargs)
        except TaskCancelledError as exc:
            outcome = CANCELLED if task._cancel_requested else FAILED
            payload = exc
        except BaseException as exc:
            outcome = FAILED
            payload = exc
            fatal = not isinstance(exc, Exception)
        finally:
            _local.task = previous
        if outcome == FAILED:
            task._error = error_info(payload)
        if span is not None:
            task._trace_id = self._tracing.end(
                span,
                token,
                task,
                payload if outcome == FAILED else None,
                outcome == CANCELLED,
            )
        return outcome, payload, fatal

    def _engine_failed(self, task: TaskFuture, exc: BaseException) -> tuple[int, Any, bool]:
        """Outcome of a task whose run or recording failed inside poolwatch (tracing, say):
        it fails with that error, so that its future is resolved all the same."""
        log.exception("pool %r failed to run or record task %s", self._name, task.task_id)
        task._error = error_info(exc)
        return FAILED, exc, False

    def _run_in_caller(self, fut: TaskFuture) -> None:
        """Run a task the ``caller_runs`` policy started in the submitting thread."""
        try:
            outcome, payload, _ = self._execute(fut, threading.current_thread().name)
        except BaseException as exc:  # not the task's (_execute catches those)
            outcome, payload, _ = self._engine_failed(fut, exc)
        with self._lock:
            del self._caller_runs[fut]
            resolved = self._finish_locked(fut, outcome, payload, monotonic())
            self._maybe_terminated_locked()
        if not resolved:
            fut._resolve(outcome, payload)

    def _finish_locked(self, task: TaskFuture, outcome: int, payload: Any, now: float) -> bool:
        """Record a task's end; resolves its future too when nobody waits on it (returns
        True), else the caller resolves it once the lock is released."""
        task._tstate = outcome
        task._finished = now
        self._active -= 1
        stats = task._kind.stats
        if outcome == SUCCEEDED:
            self._succeeded += 1
            stats.succeeded += 1
        elif outcome == FAILED:
            self._failed += 1
            stats.failed += 1
        else:
            self._cancelled += 1
            stats.cancelled += 1
        run = now - task._started
        h = stats.run
        i = bisect_left(BUCKETS, run)
        h.counts[i] += 1
        h.sum += run
        if task._trace_id:
            h.exemplars[i] = (task._trace_id, run, now + self._wall_offset)
        if task._overdue_at:
            self._overdue -= 1
        self._history.append(
            task._seq,
            task._kind.index,
            outcome,
            task._worker,
            task._submitted,
            task._started,
            now,
            task._trace_id,
            task._cancel_requested,
            task._error,
        )
        del self._live[task._seq]
        task._fn = task._args = task._kwargs = task._trace_ctx = None
        return task._resolve_locked(outcome, payload)

    def _cancel_queued_locked(self, task: TaskFuture, now: float) -> None:
        task._tstate = CANCELLED
        task._finished = now
        self._queued -= 1
        self._cancelled += 1
        task._kind.stats.cancelled += 1
        self._history.append(
            task._seq, task._kind.index, CANCELLED, -1, task._submitted, NAN, now, 0,
            task._cancel_requested, None,
        )  # fmt: skip
        del self._live[task._seq]
        task._fn = task._args = task._kwargs = task._trace_ctx = None
        task._resolve_locked(CANCELLED, None)  # else _mark_cancelled() does it after

    def _tombstone_locked(self, task: TaskFuture, now: float) -> None:
        """Cancel a queued task in place; the worker that meets it in the deque skips it."""
        self._cancel_queued_locked(task, now)
        self._tombstones += 1
        queue = self._queue
        if self._tombstones > 64 and self._tombstones * 2 > len(queue):
            live = [t for t in queue if t._tstate == QUEUED]
            queue.clear()  # in place: workers hold no reference of their own, but be safe
            queue.extend(live)
            self._tombstones = 0

    def _has_timeouts(self) -> bool:
        return (
            self._queue_timeout is not None
            or self._run_timeout is not None
            or self._has_kind_timeouts
        )

    def _timeout_limits(self) -> list[float]:
        limits = [k.run_timeout for k in self._kind_list if k.run_timeout is not None]
        for limit in (self._queue_timeout, self._run_timeout):
            if limit is not None:
                limits.append(limit)
        return limits

    def _stats_locked(self) -> PoolStats:
        return PoolStats(
            name=self._name,
            state=self._state_locked(),
            max_workers=self._max_workers,
            workers=len(self._workers),
            active=self._active,
            idle=len(self._idle),
            queued=self._queued,
            queue_capacity=self._capacity,
            rejection_policy=self._policy,
            queue_timeout=self._queue_timeout,
            run_timeout=self._run_timeout,
            submitted=self._submitted,
            succeeded=self._succeeded,
            failed=self._failed,
            cancelled=self._cancelled,
            rejected=self._rejected_full + self._rejected_shutdown,
            overdue=self._overdue,
            oldest_queued_age=self._oldest_age_locked(monotonic()),
            queue_timeouts=self._timeouts_queue,
            run_timeouts=self._timeouts_run,
        )

    def metrics_snapshot(self) -> PoolSnapshot:
        """Everything the metrics collector exports, copied under the lock."""
        with self._lock:
            return PoolSnapshot(
                stats=self._stats_locked(),
                rejected_full=self._rejected_full,
                rejected_shutdown=self._rejected_shutdown,
                timeouts_queue=self._timeouts_queue,
                timeouts_run=self._timeouts_run,
                queue_wait=self._queue_wait.snapshot(),
                labels=[
                    (s.label, s.succeeded, s.failed, s.cancelled, s.run.snapshot())
                    for s in self._labels.values()
                ],
            )

    def _oldest_age_locked(self, now: float) -> float:
        q = self._queue
        while q and q[0]._tstate != QUEUED:
            q.popleft()
            self._tombstones -= 1
        return max(0.0, now - q[0]._submitted) if q else 0.0

    def _check_deadlines(self, now: float) -> None:
        """Cancel tasks queued too long and flag tasks running too long (the monitor's tick)."""
        expired: list[TaskFuture] = []
        with self._lock:
            limit = self._queue_timeout
            if limit is not None:
                q = self._queue
                while q:
                    head = q[0]
                    if head._tstate != QUEUED:
                        q.popleft()
                        self._tombstones -= 1
                        continue
                    if now - head._submitted <= limit:
                        break
                    q.popleft()
                    self._cancel_queued_locked(head, now)
                    self._timeouts_queue += 1
                    expired.append(head)
            running = [w.task for w in self._workers]
            running += self._caller_runs
            for task in running:
                if task is None or task._overdue_at:
                    continue
                run_limit = task._kind.run_timeout or self._run_timeout
                if run_limit is not None and now - task._started > run_limit:
                    task._overdue_at = now
                    self._overdue += 1
                    self._timeouts_run += 1
                    if not task._cancel_requested:
                        task._cancel_requested = True
                        task._cancel_requested_at = now
        for task in expired:
            task._mark_cancelled()

    def _maybe_terminated_locked(self) -> None:
        if self._closing and self._nworkers == 0 and self._queued == 0 and self._active == 0:
            self._terminated.set()
